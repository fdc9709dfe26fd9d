package pcapfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// pcapng block types (pcapng spec, section 11.1).
const (
	ngSHB = 0x0A0D0D0A // section header
	ngIDB = 1          // interface description
	ngPB  = 2          // packet (obsolete)
	ngSPB = 3          // simple packet
	ngNRB = 4          // name resolution
	ngISB = 5          // interface statistics
	ngEPB = 6          // enhanced packet
	ngDSB = 10         // decryption secrets

	ngByteOrderMagic = 0x1A2B3C4D

	// maxBlockLen is the largest pcapng block accepted (Wireshark's historical limit):
	// a larger total length is taken for corruption rather than read.
	maxBlockLen = 16 << 20
	// eagerBlockLen: blocks up to this size are read into a buffer allocated up front;
	// larger ones grow as their bytes arrive, so a short file claiming a 16 MiB block
	// does not make the reader allocate 16 MiB.
	eagerBlockLen = MaxSnaplen + 64<<10
)

// ngFramer sits between the file and pcapgo's NgReader. It reads the file one pcapng block
// at a time, checks the block's framing (lengths, trailer, and that every length inside the
// block stays inside it) and only then hands the block's bytes to pcapgo, at most one block
// per Read call.
//
// This gives the Reader two things pcapgo does not:
//   - exact error positions: pcapgo reads through its own bufio.Reader, so the byte
//     position of the file is not known from outside; but since no Read returns bytes of
//     two blocks, whatever pcapgo is parsing when it fails is the last block served;
//   - a guarantee that pcapgo never reads past the end of a block. pcapgo trusts the
//     lengths inside a block (a capture length or option length larger than the block, a
//     block length below its minimum) and would then read on into the following blocks,
//     misparse them, or try to discard gigabytes. With the checks here, such a block is
//     reported as corrupt, at its own offset, before pcapgo sees a byte of it.
type ngFramer struct {
	src   io.Reader
	name  string
	order binary.ByteOrder // byte order of the current section; nil before the first SHB

	blk   []byte // the current block, served from blk[rd:]
	rd    int
	typ   uint32 // type of the current block
	start int64  // file offset of the current block
	end   int64  // file offset just past the current block

	nIf   int    // interfaces seen in the current section
	snap0 uint32 // snap length of the section's first interface (for simple packet blocks)

	err error    // sticky: io.EOF at a clean end, or an *Error
	hdr [12]byte // scratch for block headers (here, not on the stack: it would escape)
}

func (f *ngFramer) Read(p []byte) (int, error) {
	if f.rd == len(f.blk) {
		if f.err != nil {
			return 0, f.err
		}
		if err := f.next(); err != nil {
			f.err = err
			f.blk, f.rd = f.blk[:0], 0
			return 0, err
		}
	}
	n := copy(p, f.blk[f.rd:])
	f.rd += n
	return n, nil
}

// fail returns an *Error for the block starting at off.
func (f *ngFramer) fail(off int64, err error, format string, args ...any) error {
	return &Error{File: f.name, Offset: off, Msg: fmt.Sprintf(format, args...), Err: err}
}

// next reads and checks the block after the current one.
func (f *ngFramer) next() error {
	start := f.end
	hdr := f.hdr[:]
	n, err := io.ReadFull(f.src, hdr[:8])
	if err != nil {
		if n == 0 && err == io.EOF {
			return io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return f.fail(start, err, "truncated pcapng block header (%d of 8 bytes)", n)
		}
		return f.fail(start, err, "read error: %v", err)
	}
	typ := binary.LittleEndian.Uint32(hdr[0:4]) // the SHB type reads the same in both orders
	hlen := 8
	if typ == ngSHB {
		n, err := io.ReadFull(f.src, hdr[8:12])
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return f.fail(start, io.ErrUnexpectedEOF, "truncated pcapng section header block (%d of 12 bytes)", 8+n)
			}
			return f.fail(start, err, "read error: %v", err)
		}
		hlen = 12
		switch {
		case binary.LittleEndian.Uint32(hdr[8:12]) == ngByteOrderMagic:
			f.order = binary.LittleEndian
		case binary.BigEndian.Uint32(hdr[8:12]) == ngByteOrderMagic:
			f.order = binary.BigEndian
		default:
			return f.fail(start, nil, "pcapng section header block with a bad byte-order magic 0x%08x", binary.BigEndian.Uint32(hdr[8:12]))
		}
		f.nIf, f.snap0 = 0, 0
	} else if f.order == nil {
		return f.fail(start, nil, "pcapng file does not start with a section header block")
	} else {
		typ = f.order.Uint32(hdr[0:4])
	}
	total := f.order.Uint32(hdr[4:8])
	what := blockName(typ)
	switch {
	case total > maxBlockLen:
		return f.fail(start, nil, "%s with an absurd total length %d (the maximum is %d): corrupt file?", what, total, maxBlockLen)
	case total < minBlockLen(typ):
		return f.fail(start, nil, "%s with total length %d, below its minimum %d", what, total, minBlockLen(typ))
	case total%4 != 0:
		return f.fail(start, nil, "%s with total length %d, not a multiple of 4", what, total)
	}

	// Read the whole block, header included.
	blk := f.blk[:0]
	if cap(blk) < hlen {
		blk = make([]byte, 0, 4096)
	}
	blk = append(blk, hdr[:hlen]...)
	blk, err = readAppend(f.src, blk, int(total))
	f.blk = blk
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return f.fail(start, io.ErrUnexpectedEOF, "truncated %s (total length %d, %d bytes present)", what, total, len(blk))
		}
		return f.fail(start, err, "read error: %v", err)
	}
	if trail := f.order.Uint32(blk[total-4:]); trail != total {
		return f.fail(start, nil, "%s with a trailing length %d that does not match its total length %d", what, trail, total)
	}
	if err := f.check(typ, blk[8:total-4]); err != nil {
		return f.fail(start, nil, "%s: %v", what, err)
	}
	f.typ, f.start, f.end, f.rd = typ, start, start+int64(total), 0
	return nil
}

// check checks that the lengths inside a block body (the bytes between the total length
// and the trailing length) stay inside it, the way pcapgo will read them.
func (f *ngFramer) check(typ uint32, body []byte) error {
	switch typ {
	case ngSHB:
		return f.options(body[16:]) // byte-order magic, version, section length
	case ngIDB:
		if f.nIf == 0 {
			f.snap0 = f.order.Uint32(body[4:8])
		}
		f.nIf++
		return f.options(body[8:]) // link type, reserved, snap length
	case ngISB:
		return f.options(body[12:]) // interface id, timestamp
	case ngEPB, ngPB:
		caplen := f.order.Uint32(body[12:16])
		if caplen > MaxSnaplen {
			return fmt.Errorf("absurd capture length %d (the maximum is %d): corrupt file?", caplen, MaxSnaplen)
		}
		end := 20 + int(pad4(caplen))
		if end > len(body) {
			return fmt.Errorf("capture length %d overruns the block (%d bytes of packet data)", caplen, len(body)-20)
		}
		if typ == ngPB {
			return nil // pcapgo does not read packet block options
		}
		return f.options(body[end:])
	case ngSPB:
		// pcapgo takes the original length, cut to the first interface's snap length.
		caplen := f.order.Uint32(body[0:4])
		if f.snap0 != 0 && caplen > f.snap0 {
			caplen = f.snap0
		}
		if f.nIf == 0 {
			return nil // pcapgo rejects it: no interface
		}
		if caplen > MaxSnaplen {
			return fmt.Errorf("absurd packet length %d (the maximum is %d): corrupt file?", caplen, MaxSnaplen)
		}
		if 4+pad4(caplen) > uint64(len(body)) {
			return fmt.Errorf("packet length %d overruns the block (%d bytes of packet data)", caplen, len(body)-4)
		}
	case ngNRB:
		for rec := body; len(rec) >= 4; {
			rtyp, rlen := f.order.Uint16(rec[0:2]), f.order.Uint16(rec[2:4])
			if rtyp == 0 { // end of records; options follow, pcapgo skips them
				return nil
			}
			n := 4 + pad4(uint32(rlen))
			if n > uint64(len(rec)) {
				return fmt.Errorf("name record of type %d and length %d overruns the block", rtyp, rlen)
			}
			rec = rec[n:]
		}
	case ngDSB:
		if slen := f.order.Uint32(body[4:8]); 8+uint64(slen) > uint64(len(body)) {
			return fmt.Errorf("secrets length %d overruns the block", slen)
		}
	}
	return nil
}

// options checks a block's options: each must fit in the block.
func (f *ngFramer) options(b []byte) error {
	for len(b) >= 4 {
		code, olen := f.order.Uint16(b[0:2]), f.order.Uint16(b[2:4])
		if code == 0 { // end of options
			return nil
		}
		n := 4 + pad4(uint32(olen))
		if n > uint64(len(b)) {
			return fmt.Errorf("option %d of length %d overruns the block", code, olen)
		}
		b = b[n:]
	}
	if len(b) != 0 {
		return errors.New("options do not end on a 4-byte boundary")
	}
	return nil
}

func pad4(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }

// minBlockLen is the smallest total length of a block of type typ: type, total length
// and trailing length, plus the fixed fields of the block types pcapgo parses.
func minBlockLen(typ uint32) uint32 {
	switch typ {
	case ngSHB:
		return 28
	case ngIDB, ngDSB:
		return 20
	case ngISB:
		return 24
	case ngEPB, ngPB:
		return 32
	case ngSPB:
		return 16
	}
	return 12
}

func blockName(typ uint32) string {
	switch typ {
	case ngSHB:
		return "pcapng section header block"
	case ngIDB:
		return "pcapng interface description block"
	case ngPB:
		return "pcapng packet block"
	case ngSPB:
		return "pcapng simple packet block"
	case ngNRB:
		return "pcapng name resolution block"
	case ngISB:
		return "pcapng interface statistics block"
	case ngEPB:
		return "pcapng enhanced packet block"
	case ngDSB:
		return "pcapng decryption secrets block"
	}
	return fmt.Sprintf("pcapng block of type 0x%x", typ)
}

// readAppend reads from r until b holds n bytes. Up to eagerBlockLen the buffer is sized
// at once (and reused from block to block); beyond, it grows with the bytes actually read,
// because n comes from the file.
func readAppend(r io.Reader, b []byte, n int) ([]byte, error) {
	if n <= eagerBlockLen && cap(b) < n {
		nb := make([]byte, len(b), n)
		copy(nb, b)
		b = nb
	}
	for len(b) < n {
		if len(b) == cap(b) {
			grow := min(n-len(b), max(len(b), 64<<10))
			nb := make([]byte, len(b), len(b)+grow)
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(r, b[len(b):min(n, cap(b))])
		b = b[:len(b)+m]
		if err != nil {
			return b, err
		}
	}
	return b, nil
}
