// Package pcapfile reads and writes capture files: classic libpcap files (either byte
// order, microsecond or nanosecond timestamps) and pcapng, through
// github.com/gopacket/gopacket/pcapgo.
//
// The Reader is a port.Reader. It reads Ethernet captures only (link type 1), allocates
// nothing per packet in steady state, and reports a bad file with an *Error that names the
// file and the byte offset of the bad record, after delivering every good packet before it.
//
// The Writer is a port.Writer: it writes classic pcap with nanosecond timestamps, or
// pcapng, so that what a Reader read is written back with identical frames, timestamps and
// original lengths.
package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

var (
	_ port.Reader    = (*Reader)(nil)
	_ port.Waiter    = (*Reader)(nil)
	_ port.LinkTyper = (*Reader)(nil)
	_ port.Writer    = (*Writer)(nil)
	_ port.LinkTyper = (*Writer)(nil)
)

const (
	// LinkTypeEthernet is the only link type the Reader accepts (LINKTYPE_ETHERNET).
	LinkTypeEthernet = 1
	// MaxSnaplen is the largest capture length of a record the Reader accepts, libpcap's
	// MAXIMUM_SNAPLEN (which libpcap also enforces for Ethernet). A larger length is taken
	// for a corrupt record. It is also the Writer's default snap length.
	MaxSnaplen = 262144
)

// classic pcap magic numbers, as read little-endian.
const (
	magicMicro      = 0xA1B2C3D4
	magicNano       = 0xA1B23C4D
	magicMicroSwap  = 0xD4C3B2A1
	magicNanoSwap   = 0x4D3CB2A1
	magicKuznetzov  = 0xA1B2CD34
	magicKuznetzovS = 0x34CDB2A1
	magicPcapng     = ngSHB
)

// Reader reads the packets of a capture file. It implements port.Reader and
// port.LinkTyper. A Reader is not safe for concurrent use.
type Reader struct {
	name     string
	file     *os.File // set by Open, closed by Close
	format   Format
	linkType uint32

	cr countingReader // the source, counting the bytes read from it
	br *bufio.Reader  // over cr

	// classic pcap
	pr    *pcapgo.Reader
	order binary.ByteOrder

	// pcapng
	ng *pcapgo.NgReader
	fr *ngFramer

	off int64 // offset of the next record
	err error // sticky: io.EOF, an *Error, or errClosed

	// Reading frames again (port.Rereader, by the file offsets Read gives as Packet.Pos):
	// a window of the file (Open of a regular file) that Reread reads through.
	reread bool
	win    []byte
	winOff int64
}

// rereadWindow is how much of the file Reread reads at once: a replay rereads the frames
// after a checkpoint in order, a few syscalls for thousands of frames.
const rereadWindow = 1 << 20

// countingReader counts the bytes read through it, and notes a read that waited.
type countingReader struct {
	r      io.Reader
	n      int64
	timed  bool // not a regular file: a read may wait for a writer (Reader.Waited)
	waited bool // (timed) a read since Reader.Read began took longer than waitedAfter
	// pipe: an *os.File that is not a regular file (a pipe, a FIFO, a socket); drained:
	// the last read returned less than it asked for — all the pipe held — so the next may
	// wait for the writer (Reader.Read then returns the packets it has).
	pipe, drained bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	var start time.Time
	if c.timed {
		start = time.Now()
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.drained = n < len(p)
	// (Once per 64 KiB read: a buffer's worth already in a pipe takes microseconds.)
	if c.timed && time.Since(start) > waitedAfter {
		c.waited = true
	}
	return n, err
}

// waitedAfter is how long a read from a source that is not a regular file must take to
// count as a wait for data (Reader.Waited): a pipe that blocked until its writer wrote. (It
// is wall time: a read the scheduler delayed counts too.)
const waitedAfter = 200 * time.Microsecond

// Open opens a capture file, detects its format from its magic number (classic pcap in
// either byte order with microsecond or nanosecond timestamps, or pcapng) and reads its
// header. A file whose link type is not Ethernet is refused here.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, pathError(path, "cannot open", err)
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, &Error{File: path, Offset: -1, Msg: "is a directory, not a capture file"}
	}
	r, err := NewReader(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		r.reread = true
		r.cr.timed = false // (its reads never wait for a writer: Waited)
	}
	return r, nil
}

// NewReader reads a capture from r, as Open does for a file; name is the name used in
// errors. Close does not close r.
func NewReader(r io.Reader, name string) (*Reader, error) {
	rd := &Reader{name: name}
	rd.cr.r, rd.cr.timed = r, true
	if f, ok := r.(*os.File); ok {
		fi, err := f.Stat()
		rd.cr.pipe = err == nil && !fi.Mode().IsRegular()
	}
	// The buffer must be at least bufio's default size: pcapgo's classic reader then uses
	// this very bufio.Reader instead of wrapping it in one of its own (bufio.NewReader
	// returns a large enough *bufio.Reader as is), which lets readClassic Peek at the
	// next record header before pcapgo reads it.
	rd.br = bufio.NewReaderSize(&rd.cr, 64<<10)

	magic, err := rd.br.Peek(4)
	if len(magic) < 4 {
		switch {
		case err != nil && err != io.EOF:
			return nil, rd.fail(0, err, "read error: %v", err)
		case len(magic) == 0:
			return nil, rd.fail(-1, nil, "empty file (0 bytes), not a pcap or pcapng capture")
		}
		return nil, rd.fail(0, io.ErrUnexpectedEOF, "truncated file header (%d of 4 bytes of magic number), not a pcap or pcapng capture", len(magic))
	}
	switch m := binary.LittleEndian.Uint32(magic); {
	case m == magicMicro || m == magicNano:
		rd.order = binary.LittleEndian
		err = rd.openClassic()
	case m == magicMicroSwap || m == magicNanoSwap:
		rd.order = binary.BigEndian
		err = rd.openClassic()
	case m == magicPcapng:
		err = rd.openNg()
	case magic[0] == 0x1f && magic[1] == 0x8b:
		err = rd.fail(0, nil, "gzip-compressed file: decompress it first (gunzip)")
	case m == magicKuznetzov || m == magicKuznetzovS:
		err = rd.fail(0, nil, "modified (Kuznetzov) pcap format is not supported: convert it with editcap -F pcap")
	default:
		err = rd.fail(0, nil, "not a pcap or pcapng file (magic %02x %02x %02x %02x)", magic[0], magic[1], magic[2], magic[3])
	}
	if err != nil {
		return nil, err
	}
	return rd, nil
}

func (r *Reader) fail(off int64, err error, format string, args ...any) *Error {
	return &Error{File: r.name, Offset: off, Msg: fmt.Sprintf(format, args...), Err: err}
}

func (r *Reader) checkLinkType() error {
	if r.linkType == LinkTypeEthernet {
		return nil
	}
	name := layers.LinkType(r.linkType).String()
	if r.linkType > 0xffff || name == "UnknownLinkType" {
		name = "unknown"
	}
	return &Error{File: r.name, Offset: -1, Msg: fmt.Sprintf("unsupported link type %d (%s); snf reads Ethernet (1) captures", r.linkType, name)}
}

func (r *Reader) openClassic() error {
	r.format = FormatPcap
	hdr, err := r.br.Peek(24)
	if len(hdr) < 24 {
		if err != nil && err != io.EOF {
			return r.fail(0, err, "read error: %v", err)
		}
		return r.fail(0, io.ErrUnexpectedEOF, "truncated pcap file header (%d of 24 bytes)", len(hdr))
	}
	// pcapgo keeps only the low 16 bits of the link type field; the high bits say whether
	// frames end with an FCS (or are reserved), so they must be zero too.
	field := r.order.Uint32(hdr[20:24])
	pr, err := pcapgo.NewReader(r.br)
	if err != nil {
		return r.fail(0, err, "bad pcap file header: %v", err)
	}
	if r.pos() != 24 {
		return r.fail(0, nil, "internal error: pcapgo did not read through the shared buffer")
	}
	r.pr = pr
	r.off = 24
	r.linkType = uint32(pr.LinkType())
	if field>>16 != 0 {
		return &Error{File: r.name, Offset: -1, Msg: fmt.Sprintf("unsupported link type field 0x%08x (link type %d with FCS or reserved bits set); snf reads Ethernet (1) captures", field, field&0xffff)}
	}
	return r.checkLinkType()
}

func (r *Reader) openNg() error {
	r.format = FormatPcapNG
	r.fr = &ngFramer{src: r.br, name: r.name}
	ng, err := pcapgo.NewNgReader(r.fr, pcapgo.NgReaderOptions{
		// snf reads one link type: a packet of an interface with another link type is an
		// error, not skipped silently (libpcap's behaviour, and pcapgo's default).
		ErrorOnMismatchingLinkType: true,
	})
	if err != nil {
		if e, ok := r.fr.err.(*Error); ok {
			return e
		}
		if err == io.EOF {
			return r.fail(r.fr.end, io.ErrUnexpectedEOF, "pcapng file without an interface description block")
		}
		return r.ngError(err)
	}
	r.ng = ng
	r.off = r.fr.end
	r.linkType = uint32(ng.LinkType())
	return r.checkLinkType()
}

// pos is the position in the source of the next byte not yet consumed from r.br.
func (r *Reader) pos() int64 { return r.cr.n - int64(r.br.Buffered()) }

// LinkType returns the capture's link type (a LINKTYPE_* value): always 1, Ethernet,
// since Open refuses other link types.
func (r *Reader) LinkType() uint32 { return r.linkType }

// Format returns the format of the file: FormatPcap or FormatPcapNG.
func (r *Reader) Format() Format { return r.format }

// Offset returns the byte offset in the file of the next record (pcapng: block) to be
// read: after a Read, the offset just past the last packet delivered; after a read error,
// the offset of the bad record.
func (r *Reader) Offset() int64 { return r.off }

var errClosed = errors.New("read after Close")

// Close closes the file opened by Open. It does not close the io.Reader given to NewReader.
func (r *Reader) Close() error {
	if r.err != nil && errors.Is(r.err, errClosed) {
		return nil
	}
	r.err = &Error{File: r.name, Offset: -1, Msg: errClosed.Error(), Err: errClosed}
	if r.file != nil {
		return r.file.Close()
	}
	return nil
}

// Read fills pkts with the next packets of the file and returns how many it filled. It
// follows the port.Reader contract: n > 0 with a nil error while packets remain, then 0
// and io.EOF at a clean end of the file. For a truncated or corrupt file, the good packets
// before the bad record are returned first (with a nil error), then 0 and an *Error that
// names the file and the offset of the bad record; every later Read returns that error
// again.
//
// From a pipe (an *os.File that is not a regular file: a pipe, a FIFO, /dev/stdin from a
// pipe, a socket), Read returns the packets it has once it has one, the next record is not
// all buffered, and the pipe gave all it held at its last read: the next read may wait for
// the writer, and the packets read would wait with it (a batch of 64 at 100 packets/s:
// 0.64 s). From a writer ahead of the reader, reads fill the buffer and batches stay full.
// (Another io.Reader given to NewReader is read until the batch is full.)
func (r *Reader) Read(pkts []packet.Packet) (int, error) {
	r.cr.waited = false
	if r.err != nil {
		return 0, r.err
	}
	for i := range pkts {
		if i > 0 && r.cr.pipe && r.cr.drained && !r.buffered() {
			return i, nil
		}
		var err error
		if r.pr != nil {
			err = r.readClassic(&pkts[i])
		} else {
			err = r.readNg(&pkts[i])
		}
		if err != nil {
			r.err = err
			if i > 0 {
				return i, nil
			}
			return 0, err
		}
	}
	return len(pkts), nil
}

// buffered reports whether the next record is wholly in the buffer: reading it reads
// nothing from the source. (For pcapng, the next block read from it: a block the reader
// took part of already, or one that is not a packet's, may make Read return early or
// wait.)
func (r *Reader) buffered() bool {
	n := r.br.Buffered()
	if r.pr != nil {
		if n < 16 {
			return false
		}
		hdr, _ := r.br.Peek(16) // (buffered: no read)
		return n-16 >= int(r.order.Uint32(hdr[8:12]))
	}
	if n < 8 || r.fr.order == nil {
		return false
	}
	hdr, _ := r.br.Peek(8)
	return n >= int(r.fr.order.Uint32(hdr[4:8]))
}

// Waited reports whether the last Read waited for its source (port.Waiter): one of its
// reads from it took longer than a read of data already there takes — a pipe whose writer
// had not written yet. Never for a regular file opened by Open: its reads from the page
// cache may take that long when the machine's cores are busy (the pool saturated), and a
// capture file's pace is the reader's own.
func (r *Reader) Waited() bool { return r.cr.waited }

// readClassic reads one record of a classic pcap file into p. The record header is checked
// here first, so that pcapgo only reads records whose lengths make sense and errors say
// what is wrong; record offsets are exact: 24 + Σ(16 + caplen).
func (r *Reader) readClassic(p *packet.Packet) error {
	hdr, err := r.br.Peek(16)
	if len(hdr) < 16 {
		switch {
		case len(hdr) == 0 && err == io.EOF:
			return io.EOF
		case err == io.EOF:
			return r.fail(r.off, io.ErrUnexpectedEOF, "truncated packet record header (%d of 16 bytes)", len(hdr))
		}
		return r.fail(r.off, err, "read error: %v", err)
	}
	caplen, origlen := r.order.Uint32(hdr[8:12]), r.order.Uint32(hdr[12:16])
	if caplen > MaxSnaplen {
		return r.fail(r.off, nil, "packet record with an absurd capture length %d (the maximum is %d): corrupt file?", caplen, MaxSnaplen)
	}
	if caplen > origlen {
		return r.fail(r.off, nil, "packet record with a capture length %d above its original length %d: corrupt file?", caplen, origlen)
	}
	data, ci, err := r.zeroCopyClassic()
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			have := max(r.pos()-r.off-16, 0)
			return r.fail(r.off, io.ErrUnexpectedEOF, "truncated packet record (header says %d bytes of packet data, %d present)", caplen, have)
		}
		return r.fail(r.off, err, "reading packet record: %v", err)
	}
	p.SetData(data, ci.Timestamp.UnixNano(), ci.Length)
	p.Pos = uint64(r.off + 16)
	r.off += 16 + int64(caplen)
	return nil
}

// readNg reads the next packet of a pcapng file into p.
func (r *Reader) readNg(p *packet.Packet) error {
	data, ci, err := r.zeroCopyNg()
	if err != nil {
		if e, ok := r.fr.err.(*Error); ok { // the framer's error comes first
			r.off = e.Offset
			return e
		}
		if err == io.EOF {
			r.off = r.fr.end
			return io.EOF
		}
		return r.ngError(err)
	}
	ts := int64(0) // a simple packet block has no timestamp: pcapgo gives the zero Time
	if !ci.Timestamp.IsZero() {
		ts = ci.Timestamp.UnixNano()
	}
	p.SetData(data, ts, ci.Length)
	// The frame's offset: past the block's fixed fields (pcapng spec, 4.2–4.4).
	switch r.fr.typ {
	case ngEPB, ngPB:
		p.Pos = uint64(r.fr.start + 28)
	case ngSPB:
		p.Pos = uint64(r.fr.start + 12)
	}
	r.off = r.fr.end
	return nil
}

// Rereadable reports whether Reread can read frames again: a capture opened by its path,
// a regular file (port.Rereader).
func (r *Reader) Rereadable() bool { return r.reread }

// Reread appends the n-byte frame at file offset pos (a packet's Pos) to dst, reading the
// file again (port.Rereader). It fails when the file no longer holds it (truncated since).
func (r *Reader) Reread(dst []byte, pos uint64, n int) ([]byte, error) {
	if !r.reread || r.file == nil {
		return dst, &Error{File: r.name, Offset: -1, Msg: "cannot read packets again: not a capture file opened by its path"}
	}
	off := int64(pos)
	if off < 0 || n < 0 {
		return dst, &Error{File: r.name, Offset: off, Msg: fmt.Sprintf("no %d-byte frame to read again at this offset", n)}
	}
	if off < r.winOff || off+int64(n) > r.winOff+int64(len(r.win)) {
		size := max(n, rereadWindow)
		if cap(r.win) < size {
			r.win = make([]byte, size)
		}
		k, err := r.file.ReadAt(r.win[:size], off)
		if k < n {
			r.win = r.win[:0]
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dst, r.fail(off, err, "reading a packet again: %d of its %d bytes present (the file changed since it was read?)", k, n)
		}
		r.win, r.winOff = r.win[:k], off
	}
	return append(dst, r.win[off-r.winOff:][:n]...), nil
}

// ngError turns an error from pcapgo into an *Error at the offset of the block pcapgo
// was reading: the framer never hands it bytes of two blocks in one Read, so that is the
// last block served.
func (r *Reader) ngError(err error) error {
	r.off = r.fr.start
	if errors.Is(err, pcapgo.ErrNgLinkTypeMismatch) {
		return r.fail(r.fr.start, err, "pcapng interface with a link type other than the file's first (%d); snf reads Ethernet (1) captures", r.linkType)
	}
	return r.fail(r.fr.start, err, "%s: %v", blockName(r.fr.typ), err)
}

// zeroCopyClassic and zeroCopyNg call pcapgo. Our own checks (readClassic's record header
// checks, the ngFramer's block checks) are meant to keep pcapgo from ever panicking; the
// recover is a last line of defence that turns a panic on a crafted file into an error
// naming the offset, rather than crashing the process. The message says "internal error"
// so that FuzzReader can tell such a case apart and fail on it.
func (r *Reader) zeroCopyClassic() (data []byte, ci gopacket.CaptureInfo, err error) {
	defer r.recoverPcapgo(&err)
	return r.pr.ZeroCopyReadPacketData()
}

func (r *Reader) zeroCopyNg() (data []byte, ci gopacket.CaptureInfo, err error) {
	defer r.recoverPcapgo(&err)
	return r.ng.ZeroCopyReadPacketData()
}

func (r *Reader) recoverPcapgo(err *error) {
	if v := recover(); v != nil {
		*err = fmt.Errorf("internal error: pcapgo panicked: %v", v)
	}
}
