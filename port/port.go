// Package port is snf's batched packet I/O. A Reader fills a batch of Packets; a Writer
// sends a batch out. Implementations live in sub-packages: pcapfile (capture files), afpacket
// (live interfaces, Linux) and mem (tests); trace.Generator is a Reader of synthetic traffic.
package port

import (
	"math"

	"github.com/snf-dev/snf/packet"
)

// Reader reads packets in batches.
//
// Read fills pkts[0:n] (SetData on each: the Packets and their buffers belong to the caller,
// who reuses them for the next call) and returns n. It returns n > 0 with a nil error while
// packets remain; at the end it returns 0 and io.EOF. A fatal input error (a truncated or
// garbage file) is returned only after every good packet before it has been delivered: a
// Read that hits the error returns the good packets first with a nil error, and the next
// Read returns 0 and the error. An input without an end (a live interface) may return 0 and
// a nil error when no packet came for a while, so that its caller's clocks keep running:
// callers read again.
type Reader interface {
	Read(pkts []packet.Packet) (n int, err error)
	Close() error
}

// Rereader is a Reader that can read again, for as long as it is open, a frame it delivered:
// memory, a capture file opened by its path. The packet log (replay.Log) then keeps where
// each packet is in the input instead of a copy of its frame — its memory holds metadata
// only, and the root's reads touch no more memory than without it.
type Rereader interface {
	Reader
	// Rereadable reports whether Reread works (a capture read from a pipe: no). When it
	// does, Read sets each packet's Pos to where its frame is in the input, increasing from
	// packet to packet (the engine checks each read's first and last: an input that sets
	// none fails a run of more than one packet).
	Rereadable() bool
	// Reread appends the n-byte frame at pos (a packet's Pos) to dst. It fails when the
	// input no longer holds that frame (a file truncated since).
	Reread(dst []byte, pos uint64, n int) ([]byte, error)
}

// Releaser is a Rereader that keeps in memory what reads its frames again (a traffic
// generator keeps what builds each frame again), until its reader releases them: its
// reader calls Release as it goes, else that memory grows with every frame read.
type Releaser interface {
	Rereader
	// Release tells the input that no frame before position pos will be read again
	// (Reread of one then fails). Release(math.MaxUint64): none will, and the input stops
	// keeping them.
	Release(pos uint64)
}

// Holder is a Releaser whose memory for the frames it keeps is fixed (a live interface's
// receive ring, port/afpacket): while it keeps Holds() frames not released, it reads no more
// (and what arrives meanwhile is dropped where it comes from). The live engine bounds its
// packet log below that, so that the log's back-pressure comes first.
type Holder interface {
	Releaser
	Holds() int
}

// ReleaseAll tells r, if it is a Releaser, that none of its frames will be read again: it
// keeps nothing for that from then on. A reader that never reads frames again calls it
// before its first Read (the engines do, but for a packet log that keeps positions).
func ReleaseAll(r Reader) {
	if rl, ok := r.(Releaser); ok {
		rl.Release(math.MaxUint64)
	}
}

// Copied hides r's Rereader methods (and its other methods but Read, Close and a Waiter's
// Waited: a LinkTyper's link type too): the packet log then copies each frame, as it does
// from an input that cannot be read again (a pipe). Its frames will not be read again
// through it: r is told so (ReleaseAll).
func Copied(r Reader) Reader {
	ReleaseAll(r)
	return copied{r}
}

type copied struct{ Reader }

func (c copied) Waited() bool { return Waited(c.Reader) }

// Waiter is a Reader that says whether its last Read waited for packets to come — a paced
// replay that slept until they were due, a pipe that blocked until they were written — rather
// than finding them there. A Read that filled the whole batch after such a wait still leaves
// the input setting the pace: the live engine takes full reads that did not wait for a sign
// that the pool cannot keep up (policy.Pool.Saturated).
type Waiter interface {
	Reader
	Waited() bool
}

// Waited reports whether r's last Read waited for its packets (port.Waiter; false for a
// Reader that is not one: memory, a generator).
func Waited(r Reader) bool {
	w, ok := r.(Waiter)
	return ok && w.Waited()
}

// Writer writes packets in batches. Write copies what it needs before it returns: the
// caller reuses the Packets afterwards. It changes nothing of them (the live engine's
// egress reads their metadata after Write, for the packet log).
type Writer interface {
	Write(pkts []*packet.Packet) error
	Close() error
}

// LinkTyper is implemented by readers that know the link type of their frames (a pcap
// LINKTYPE_* value); writers created for their output use the same link type.
type LinkTyper interface {
	LinkType() uint32
}
