package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/mem"
)

// tracesDir returns the folder of real captures, ../shared/traces from the module root,
// or skips the test when it is absent.
func tracesDir(tb testing.TB) string {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Clean(filepath.Join(wd, "..", "..", "..", "shared", "traces"))
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		tb.Skipf("real captures not found: %s (../shared/traces from the module root) is absent", dir)
	}
	return dir
}

// traceFile returns the path of one real capture, or skips the test when it is absent.
func traceFile(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(tracesDir(tb), rel)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("real capture not found: %s", p)
	}
	return p
}

// synthFrames returns n frames with awkward sizes (empty, a 4-byte runt, jumbo, 64 KiB),
// some cut by a snaplen (WireLen > len(Data)), with nanosecond timestamps, or microsecond
// ones when usec is set.
func synthFrames(n int, usec bool) []mem.Frame {
	rng := rand.New(rand.NewPCG(7, uint64(n)))
	ts := int64(1_700_000_000_123_456_789)
	sizes := []int{4, 0, 14, 60, 1514, 9018, 65535, 1, 3, 5, 7}
	fs := make([]mem.Frame, n)
	for i := range fs {
		size := 1 + rng.IntN(1514)
		if i < len(sizes) {
			size = sizes[i]
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		wire := size
		if rng.IntN(3) == 0 {
			wire += rng.IntN(1500)
		}
		ts += rng.Int64N(3e9)
		if i == 3 {
			ts = ts / 1e9 * 1e9 // on a second
		}
		t := ts
		if usec {
			t = t / 1000 * 1000
		}
		fs[i] = mem.Frame{Data: data, Time: t, WireLen: wire}
	}
	return fs
}

// buildPcap encodes frames as a classic pcap file by hand (pcapgo writes little-endian
// only).
func buildPcap(frames []mem.Frame, order binary.ByteOrder, nano bool, linkType uint32) []byte {
	var b bytes.Buffer
	var hdr [24]byte
	magic := uint32(magicMicro)
	if nano {
		magic = magicNano
	}
	order.PutUint32(hdr[0:], magic)
	order.PutUint16(hdr[4:], 2)
	order.PutUint16(hdr[6:], 4)
	order.PutUint32(hdr[16:], MaxSnaplen)
	order.PutUint32(hdr[20:], linkType)
	b.Write(hdr[:])
	for _, f := range frames {
		var rec [16]byte
		frac := uint32(f.Time % 1e9)
		if !nano {
			frac /= 1000
		}
		order.PutUint32(rec[0:], uint32(f.Time/1e9))
		order.PutUint32(rec[4:], frac)
		order.PutUint32(rec[8:], uint32(len(f.Data)))
		order.PutUint32(rec[12:], uint32(max(f.WireLen, len(f.Data))))
		b.Write(rec[:])
		b.Write(f.Data)
	}
	return b.Bytes()
}

// buildPcapng encodes frames as a pcapng file by hand, in either byte order. With extras,
// it adds a name resolution block, an interface statistics block at the end, and options
// on some packets, so that the reader meets the block types it must step over.
func buildPcapng(frames []mem.Frame, bo binary.ByteOrder, linkType uint16, extras bool) []byte {
	order := bo.(binary.AppendByteOrder)
	var b bytes.Buffer
	u32 := func(v uint32) { b.Write(order.AppendUint32(nil, v)) }
	block := func(typ uint32, body []byte) {
		total := uint32(12 + len(body))
		u32(typ)
		u32(total)
		b.Write(body)
		u32(total)
	}
	opt := func(body []byte, code uint16, val []byte) []byte {
		body = order.AppendUint16(body, code)
		body = order.AppendUint16(body, uint16(len(val)))
		body = append(body, val...)
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		return body
	}
	endOpts := func(body []byte) []byte { return append(body, 0, 0, 0, 0) }

	// section header: byte-order magic, version 1.0, section length unknown, options
	shb := order.AppendUint32(nil, ngByteOrderMagic)
	shb = order.AppendUint16(shb, 1)
	shb = order.AppendUint16(shb, 0)
	shb = append(shb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	shb = endOpts(opt(shb, 4, []byte("snf test")))
	block(ngSHB, shb)

	idb := order.AppendUint16(nil, linkType)
	idb = order.AppendUint16(idb, 0)
	idb = order.AppendUint32(idb, MaxSnaplen)
	idb = endOpts(opt(opt(idb, 2, []byte("eth0")), 9, []byte{9}))
	block(ngIDB, idb)

	if extras {
		nrb := order.AppendUint16(nil, 1) // IPv4 record
		nrb = order.AppendUint16(nrb, 4+9)
		nrb = append(nrb, 10, 0, 0, 1)
		nrb = append(nrb, "host.lan\x00"...)
		nrb = append(nrb, 0, 0, 0) // padding
		nrb = append(nrb, 0, 0, 0, 0)
		block(ngNRB, nrb)
	}
	for i, f := range frames {
		epb := order.AppendUint32(nil, 0)
		epb = order.AppendUint32(epb, uint32(uint64(f.Time)>>32))
		epb = order.AppendUint32(epb, uint32(f.Time))
		epb = order.AppendUint32(epb, uint32(len(f.Data)))
		epb = order.AppendUint32(epb, uint32(max(f.WireLen, len(f.Data))))
		epb = append(epb, f.Data...)
		for len(epb)%4 != 0 {
			epb = append(epb, 0)
		}
		if extras && i%3 == 1 {
			epb = endOpts(opt(epb, 1, []byte("a comment")))
		}
		block(ngEPB, epb)
	}
	if extras {
		isb := order.AppendUint32(nil, 0)
		isb = append(isb, 0, 0, 0, 0, 0, 0, 0, 0)
		block(ngISB, isb)
	}
	return b.Bytes()
}

// span is one record (classic pcap) or block (pcapng) of a file.
type span struct {
	start, end int64
	packet     bool
}

// spans walks a well-formed capture and returns where Open stops reading (the end of the
// file header, or of the first interface description block), and every record or block.
func spans(tb testing.TB, data []byte) (hdrEnd int64, sp []span) {
	tb.Helper()
	m := binary.LittleEndian.Uint32(data)
	if m == ngSHB {
		var order binary.ByteOrder = binary.LittleEndian
		for off := int64(0); off < int64(len(data)); {
			typ := binary.LittleEndian.Uint32(data[off:])
			if typ == ngSHB {
				if binary.BigEndian.Uint32(data[off+8:]) == ngByteOrderMagic {
					order = binary.BigEndian
				} else {
					order = binary.LittleEndian
				}
			} else {
				typ = order.Uint32(data[off:])
			}
			total := int64(order.Uint32(data[off+4:]))
			sp = append(sp, span{off, off + total, typ == ngEPB || typ == ngSPB || typ == ngPB})
			if typ == ngIDB && hdrEnd == 0 {
				hdrEnd = off + total
			}
			off += total
		}
		return hdrEnd, sp
	}
	var order binary.ByteOrder = binary.LittleEndian
	if m == magicMicroSwap || m == magicNanoSwap {
		order = binary.BigEndian
	}
	sp = append(sp, span{0, 24, false})
	for off := int64(24); off < int64(len(data)); {
		end := off + 16 + int64(order.Uint32(data[off+8:]))
		sp = append(sp, span{off, end, true})
		off = end
	}
	return 24, sp
}

// readAll reads r to the end with batches of size batch, checking the port.Reader
// contract on the way, and returns copies of the frames and the final error (io.EOF at a
// clean end).
func readAll(tb testing.TB, r *Reader, batch int) ([]mem.Frame, error) {
	tb.Helper()
	pkts := make([]packet.Packet, batch)
	var out []mem.Frame
	for {
		n, err := r.Read(pkts)
		if err != nil {
			if n != 0 {
				tb.Fatalf("Read returned %d packets with error %v", n, err)
			}
			if n2, err2 := r.Read(pkts); n2 != 0 || err2 != err {
				tb.Fatalf("Read after error %v returned %d, %v", err, n2, err2)
			}
			return out, err
		}
		if n <= 0 || n > batch {
			tb.Fatalf("Read returned %d packets and no error (batch %d)", n, batch)
		}
		for _, p := range pkts[:n] {
			out = append(out, mem.Frame{Data: append([]byte(nil), p.Data...), Time: p.Time, WireLen: p.WireLen})
		}
	}
}

// sameFrames reports the first difference between two lists of frames; WireLen 0 in want
// means len(Data).
func sameFrames(tb testing.TB, what string, got, want []mem.Frame) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("%s: %d frames, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		wl := max(w.WireLen, len(w.Data))
		if !bytes.Equal(g.Data, w.Data) || g.Time != w.Time || g.WireLen != wl {
			tb.Fatalf("%s: frame %d: got %d bytes at %d ns wire %d, want %d bytes at %d ns wire %d (data equal: %v)",
				what, i, len(g.Data), g.Time, g.WireLen, len(w.Data), w.Time, wl, bytes.Equal(g.Data, w.Data))
		}
	}
}

// asError returns err as an *Error or fails.
func asError(tb testing.TB, err error) *Error {
	tb.Helper()
	var e *Error
	if !errors.As(err, &e) {
		tb.Fatalf("error %v (%T) is not a *pcapfile.Error", err, err)
	}
	return e
}

// writeAll writes frames with a Writer into a buffer.
func writeAll(tb testing.TB, frames []mem.Frame, format Format) []byte {
	tb.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, "buf", format, LinkTypeEthernet, 0)
	if err != nil {
		tb.Fatal(err)
	}
	pkts := make([]packet.Packet, len(frames))
	ptrs := make([]*packet.Packet, len(frames))
	for i, f := range frames {
		pkts[i].SetData(f.Data, f.Time, f.WireLen)
		ptrs[i] = &pkts[i]
	}
	for len(ptrs) > 0 { // in batches of up to 5
		k := min(5, len(ptrs))
		if err := w.Write(ptrs[:k]); err != nil {
			tb.Fatal(err)
		}
		ptrs = ptrs[k:]
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func readBytes(tb testing.TB, data []byte, name string) ([]mem.Frame, error) {
	tb.Helper()
	r, err := NewReader(bytes.NewReader(data), name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readAll(tb, r, 7)
}
