// Package port is snf's batched packet I/O. A Reader fills a batch of Packets; a Writer
// sends a batch out. Implementations live in sub-packages: pcapfile (capture files) and mem
// (tests); trace.Generator is a Reader of synthetic traffic.
package port

import "github.com/snf-dev/snf/packet"

// Reader reads packets in batches.
//
// Read fills pkts[0:n] (SetData on each: the Packets and their buffers belong to the caller,
// who reuses them for the next call) and returns n. It returns n > 0 with a nil error while
// packets remain; at the end it returns 0 and io.EOF. A fatal input error (a truncated or
// garbage file) is returned only after every good packet before it has been delivered: a
// Read that hits the error returns the good packets first with a nil error, and the next
// Read returns 0 and the error.
type Reader interface {
	Read(pkts []packet.Packet) (n int, err error)
	Close() error
}

// Writer writes packets in batches. Write copies what it needs before it returns: the
// caller reuses the Packets afterwards.
type Writer interface {
	Write(pkts []*packet.Packet) error
	Close() error
}

// LinkTyper is implemented by readers that know the link type of their frames (a pcap
// LINKTYPE_* value); writers created for their output use the same link type.
type LinkTyper interface {
	LinkType() uint32
}
