// Package afpacket reads and writes the frames of a live network interface through Linux's
// AF_PACKET sockets, with memory-mapped rings (TPACKET_V2): the kernel writes each received
// frame into a slot of a receive ring shared with the process, and takes the frames to send
// from a transmit ring, one system call per batch.
//
// A Port is a port.Rereader: it keeps every frame it read in its receive ring until its
// reader releases it (port.Releaser), so the packet log of a chain reading a live interface
// keeps only where each packet is in the ring, as it does for a capture file, and a replay
// reads the frames again from there. The ring is fixed memory (Options.Frames slots of
// Options.FrameSize bytes); while the log holds it all, the kernel drops what arrives, and
// counts it (Stats.Dropped) — a live interface cannot be made to wait. A reader that does
// not read frames again tells it so (port.ReleaseAll) and each slot goes back to the kernel
// as soon as it was read.
//
// A live interface has no end: Read waits for packets, and returns 0 with a nil error when
// none came within Options.Poll, so that its caller keeps its clocks (checkpoints, failure
// detection, the controller) running; it returns io.EOF after Options.Count packets, after
// Options.Idle without one, or once Stop was called (from any goroutine: a signal handler).
//
// It needs Linux and the CAP_NET_RAW capability (root).
package afpacket

import (
	"errors"
	"time"
)

// Options configures a Port. The zero value is usable: the defaults are given per field.
type Options struct {
	// Frames is the number of slots of the receive ring, and so the most frames the Port
	// holds for rereads at once (default 65536); rounded up to fill the ring's blocks.
	Frames int
	// FrameSize is a slot's size in bytes, a power of two from 256 to 65536 (default 2048):
	// a frame longer than the slot's room for data (FrameSize - 66 bytes: 1982 by default)
	// is read truncated, with its wire length, and counted (Stats.Truncated). The transmit
	// ring's slots are the same size.
	FrameSize int
	// TxFrames is the number of slots of the transmit ring (default 4096); 0 with NoTx.
	TxFrames int
	// NoTx opens the Port for reading only (no transmit ring): Write fails.
	NoTx bool
	// NoPromisc leaves the interface's promiscuous mode alone. By default a Port that reads
	// puts the interface in it for as long as the Port is open (as tcpdump does): a network
	// function in the path of other hosts' traffic must see frames not addressed to it.
	NoPromisc bool
	// NoRx opens the Port for writing only (no receive ring: the kernel copies no frame
	// to it): Read fails.
	NoRx bool
	// Poll is the longest a Read waits for a packet before it returns 0 and a nil error
	// (default 10 ms).
	Poll time.Duration
	// Idle ends the input (Read returns io.EOF) after this long without a packet (the first
	// one counted from Open); 0: never.
	Idle time.Duration
	// Count ends the input after this many packets; 0: no limit.
	Count int64
}

// Stats counts what a Port saw.
type Stats struct {
	Received  uint64 // frames read (given to the caller)
	Truncated uint64 // of them, longer than a slot: read truncated
	Dropped   uint64 // frames the kernel dropped: the receive ring was full
	Sent      uint64 // frames queued for sending
	TxDropped uint64 // frames not sent: shorter than an Ethernet header, or longer than a slot or the interface's MTU allows
}

// ErrClosed is returned by the methods of a closed Port.
var ErrClosed = errors.New("afpacket: port closed")

const (
	defaultFrames    = 1 << 16
	defaultFrameSize = 2048
	defaultTxFrames  = 4096
	defaultPoll      = 10 * time.Millisecond
	linkTypeEthernet = 1 // LINKTYPE_ETHERNET
)

func (o Options) withDefaults() (Options, error) {
	if o.Frames < 0 || o.TxFrames < 0 || o.FrameSize < 0 || o.Poll < 0 || o.Idle < 0 || o.Count < 0 {
		return o, errors.New("afpacket: negative option")
	}
	if o.NoTx && o.NoRx {
		return o, errors.New("afpacket: a port opened for neither reading nor writing")
	}
	if o.Frames == 0 {
		o.Frames = defaultFrames
	}
	if o.FrameSize == 0 {
		o.FrameSize = defaultFrameSize
	}
	if o.FrameSize < 256 || o.FrameSize > 1<<16 || o.FrameSize&(o.FrameSize-1) != 0 {
		return o, errors.New("afpacket: the frame size must be a power of two from 256 to 65536")
	}
	if o.TxFrames == 0 && !o.NoTx {
		o.TxFrames = defaultTxFrames
	}
	if o.Poll == 0 {
		o.Poll = defaultPoll
	}
	return o, nil
}
