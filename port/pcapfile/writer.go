package pcapfile

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/snf-dev/snf/packet"
)

// Writer writes packets to a capture file. It implements port.Writer and port.LinkTyper.
// Output is buffered: Close flushes it. A Writer is not safe for concurrent use.
type Writer struct {
	name     string
	file     *os.File // set by Create, closed by Close
	format   Format
	linkType uint32
	bw       *bufio.Writer
	pw       *pcapgo.Writer
	ng       *pcapgo.NgWriter
	n        int64 // packets written
	err      error // sticky
	closed   bool
}

// Create creates (or truncates) the file at path and writes the file header of a capture
// in the given format, link type and snap length (0 means MaxSnaplen).
//
// Classic pcap is written little-endian with nanosecond timestamps, so every timestamp
// round-trips exactly (a microsecond capture is written back with identical times).
// pcapng is written as one section with one interface at nanosecond resolution.
func Create(path string, format Format, linkType uint32, snaplen uint32) (*Writer, error) {
	if err := checkWriterArgs(path, format, linkType); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, pathError(path, "cannot create", err)
	}
	w, err := NewWriter(f, path, format, linkType, snaplen)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	w.file = f
	return w, nil
}

func checkWriterArgs(name string, format Format, linkType uint32) error {
	switch {
	case format > FormatPcapNG:
		return &Error{File: name, Offset: -1, Msg: fmt.Sprintf("unknown capture format %d", uint8(format))}
	case format == FormatPcapNG && linkType > math.MaxUint16:
		return &Error{File: name, Offset: -1, Msg: fmt.Sprintf("link type %d does not fit in pcapng's 16 bits", linkType)}
	}
	return nil
}

// NewWriter writes a capture to w, as Create does to a file; name is the name used in
// errors. Close flushes the output but does not close w.
func NewWriter(w io.Writer, name string, format Format, linkType uint32, snaplen uint32) (*Writer, error) {
	if err := checkWriterArgs(name, format, linkType); err != nil {
		return nil, err
	}
	if snaplen == 0 {
		snaplen = MaxSnaplen
	}
	wr := &Writer{name: name, format: format, linkType: linkType, bw: bufio.NewWriterSize(w, 256<<10)}
	var err error
	if format == FormatPcap {
		wr.pw = pcapgo.NewWriterNanos(wr.bw)
		err = wr.pw.WriteFileHeader(snaplen, layers.LinkType(linkType))
	} else {
		// pcapgo wraps its output in bufio.NewWriter, which returns wr.bw itself since it is
		// larger than the default size: a single buffer, flushed by Close.
		wr.ng, err = pcapgo.NewNgWriterInterface(wr.bw, pcapgo.NgInterface{
			Name:                "snf0",
			OS:                  runtime.GOOS,
			LinkType:            layers.LinkType(linkType),
			SnapLength:          snaplen,
			TimestampResolution: 9,
		}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
			Hardware:    runtime.GOARCH,
			OS:          runtime.GOOS,
			Application: "snf",
		}})
	}
	if err != nil {
		return nil, wr.fail(err, "writing the file header: %v", err)
	}
	return wr, nil
}

func (w *Writer) fail(err error, format string, args ...any) error {
	return &Error{File: w.name, Offset: -1, Msg: fmt.Sprintf(format, args...), Err: err}
}

// LinkType returns the link type the file was created with.
func (w *Writer) LinkType() uint32 { return w.linkType }

// Format returns the format the file was created with.
func (w *Writer) Format() Format { return w.format }

// Count returns the number of packets written so far.
func (w *Writer) Count() int64 { return w.n }

// Write appends pkts to the file: for each packet, p.Data with capture length len(p.Data),
// original length p.WireLen (len(p.Data) if smaller) and timestamp p.Time. Frames longer
// than MaxSnaplen are refused (the Reader would refuse them too), as are timestamps the
// format cannot hold (before 1970, or after 2106 in classic pcap). After an error, every
// later Write returns it again.
func (w *Writer) Write(pkts []*packet.Packet) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return w.fail(nil, "write after Close")
	}
	for _, p := range pkts {
		if err := w.write(p); err != nil {
			w.err = err
			return err
		}
		w.n++
	}
	return nil
}

func (w *Writer) write(p *packet.Packet) error {
	if p == nil {
		return w.fail(nil, "packet %d: nil packet", w.n)
	}
	if len(p.Data) > MaxSnaplen {
		return w.fail(nil, "packet %d: frame of %d bytes is longer than the maximum capture length %d", w.n, len(p.Data), MaxSnaplen)
	}
	if p.Time < 0 || (w.format == FormatPcap && p.Time/1e9 > math.MaxUint32) {
		return w.fail(nil, "packet %d: timestamp %d ns is out of the range of %s", w.n, p.Time, w.format)
	}
	ci := gopacket.CaptureInfo{
		Timestamp:     time.Unix(0, p.Time),
		CaptureLength: len(p.Data),
		Length:        max(p.WireLen, len(p.Data)),
	}
	var err error
	if w.pw != nil {
		err = w.pw.WritePacket(ci, p.Data)
	} else {
		err = w.ng.WritePacket(ci, p.Data)
	}
	if err != nil {
		return w.fail(err, "packet %d: %v", w.n, err)
	}
	return nil
}

// Flush writes the buffered output to the file.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = w.fail(err, "write error: %v", err)
		return w.err
	}
	return nil
}

// Close flushes the output and closes the file opened by Create (not the io.Writer given
// to NewWriter). It returns the first error of the Writer's life, if any. Closing twice
// is a no-op.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.Flush()
	if w.file != nil {
		if cerr := w.file.Close(); cerr != nil && err == nil {
			err = w.fail(cerr, "close error: %v", cerr)
		}
	}
	return err
}
