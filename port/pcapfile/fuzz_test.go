package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/mem"
)

// fuzzSeeds are tiny valid captures built here with pcapgo's writers (and by hand for the
// big-endian and microsecond variants pcapgo does not write).
func fuzzSeeds(tb testing.TB) [][]byte {
	fs := []mem.Frame{
		{Data: []byte{1, 2, 3, 4}, Time: 1_600_000_000_000_000_001, WireLen: 60},
		{Data: bytes.Repeat([]byte{0xab}, 21), Time: 1_600_000_000_500_000_000},
	}
	var p bytes.Buffer
	pw := pcapgo.NewWriterNanos(&p)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		tb.Fatal(err)
	}
	var ng bytes.Buffer
	nw, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range fs {
		if err := pw.WritePacket(ciOf(f), f.Data); err != nil {
			tb.Fatal(err)
		}
		if err := nw.WritePacket(ciOf(f), f.Data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := nw.Flush(); err != nil {
		tb.Fatal(err)
	}
	return [][]byte{
		p.Bytes(),
		ng.Bytes(),
		buildPcap(fs, binary.BigEndian, false, 1),
		buildPcapng(fs, binary.BigEndian, 1, true),
	}
}

// FuzzReader feeds arbitrary bytes to NewReader and reads to the end. It must never panic
// or hang, must keep the port.Reader contract, and must report every failure as a one-line
// *Error naming the input and an offset inside it.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
		f.Add(s[:len(s)*2/3]) // cut mid-record
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.pcap"
		check := func(err error) {
			if err == io.EOF {
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not a *Error", err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "pcapfile: "+name+": ") || strings.Contains(msg, "\n") {
				t.Fatalf("bad error message %q", msg)
			}
			if strings.Contains(msg, "internal error") {
				t.Fatalf("internal error: %v", err)
			}
			if e.Offset > int64(len(data)) {
				t.Fatalf("error offset %d beyond the input's %d bytes: %v", e.Offset, len(data), err)
			}
		}
		r, err := NewReader(bytes.NewReader(data), name)
		if err != nil {
			if r != nil {
				t.Fatal("NewReader returned a Reader and an error")
			}
			check(err)
			return
		}
		if r.LinkType() != LinkTypeEthernet {
			t.Fatalf("link type %d accepted", r.LinkType())
		}
		pkts := make([]packet.Packet, 3)
		// Every packet takes at least 16 bytes of the input (a classic record header, or
		// a pcapng simple packet block): more Reads than that is a loop.
		total := 0
		for reads := 0; ; reads++ {
			if reads > len(data)/16+2 {
				t.Fatalf("%d Reads and %d packets from %d bytes: not ending", reads, total, len(data))
			}
			n, err := r.Read(pkts)
			if err != nil {
				if n != 0 {
					t.Fatalf("Read returned %d packets and %v", n, err)
				}
				check(err)
				if n2, err2 := r.Read(pkts); n2 != 0 || err2 != err {
					t.Fatalf("Read after %v: %d, %v", err, n2, err2)
				}
				break
			}
			if n <= 0 || n > len(pkts) {
				t.Fatalf("Read returned %d and no error", n)
			}
			for _, p := range pkts[:n] {
				if p.WireLen < len(p.Data) || len(p.Data) > MaxSnaplen {
					t.Fatalf("packet of %d bytes, wire length %d", len(p.Data), p.WireLen)
				}
			}
			total += n
			if off := r.Offset(); off < 0 || off > int64(len(data)) {
				t.Fatalf("Offset %d outside the %d-byte input", off, len(data))
			}
		}
		r.Close()
	})
}
