package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
)

// The packet counts in ../shared/traces/README.md.
var traceCounts = map[string]int{
	"ndpi_gnutella.pcap":                           3905,
	"pcapplusplus_tls2.pcap":                       7451,
	"pcapplusplus_example.pcap":                    4631,
	"tcpreplay_test.pcap":                          179,
	"nmap_synscan.pcap":                            2011,
	"ddos_synflood_spoofed.pcap":                   37841,
	"trojan_ingredients/zeek_ssh_single-conn.pcap": 94,
	"trojan_ingredients/zeek_http_get.pcap":        14,
	"trojan_ingredients/zeek_zip_test.pcap":        118,
	"trojan_ingredients/zeek_pe_pe-single.pcap":    123,
	"trojan_ingredients/zeek_ftp_retr.pcap":        67,
	"trojan_ingredients/zeek_irc-basic.pcap":       34,
	"trojan_ingredients/zeek_irc-dcc-send.pcapng":  1184,
}

// pcapgoFrames reads a capture with pcapgo alone: the oracle the Reader is checked against.
func pcapgoFrames(tb testing.TB, data []byte) []mem.Frame {
	tb.Helper()
	var out []mem.Frame
	add := func(d []byte, t int64, l int) {
		out = append(out, mem.Frame{Data: append([]byte(nil), d...), Time: t, WireLen: l})
	}
	if binary.LittleEndian.Uint32(data) == ngSHB {
		r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			tb.Fatal(err)
		}
		for {
			d, ci, err := r.ReadPacketData()
			if err == io.EOF {
				return out
			}
			if err != nil {
				tb.Fatal(err)
			}
			add(d, ci.Timestamp.UnixNano(), ci.Length)
		}
	}
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		tb.Fatal(err)
	}
	for {
		d, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		add(d, ci.Timestamp.UnixNano(), ci.Length)
	}
}

func ciOf(f mem.Frame) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: time.Unix(0, f.Time), CaptureLength: len(f.Data), Length: max(f.WireLen, len(f.Data))}
}

// TestRoundTripTraces reads every real capture, writes it back in the same format, and
// reads the copy: both reads give the same frames, in the same order, with the same
// timestamps (ns) and original lengths, which are also what pcapgo alone reads.
func TestRoundTripTraces(t *testing.T) {
	dir := tracesDir(t)
	var files []string
	for _, pat := range []string{"*.pcap", "*.pcapng", "trojan_ingredients/*.pcap", "trojan_ingredients/*.pcapng"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Skipf("no captures in %s", dir)
	}
	out := t.TempDir()
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		t.Run(rel, func(t *testing.T) {
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if r.LinkType() != LinkTypeEthernet {
				t.Fatalf("link type %d", r.LinkType())
			}
			want := FormatFromName(path)
			if r.Format() != want {
				t.Fatalf("format %v, want %v", r.Format(), want)
			}
			orig, err := readAll(t, r, 32)
			if err != io.EOF {
				t.Fatalf("read: %v", err)
			}
			st, _ := os.Stat(path)
			if r.Offset() != st.Size() {
				t.Errorf("Offset at the end %d, file size %d", r.Offset(), st.Size())
			}
			r.Close()
			if n, ok := traceCounts[filepath.ToSlash(rel)]; ok && len(orig) != n {
				t.Errorf("%d packets, README says %d", len(orig), n)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			sameFrames(t, "Reader vs pcapgo", orig, pcapgoFrames(t, raw))
			if rel == "ndpi_gnutella.pcap" && len(orig[0].Data) != 4 {
				t.Errorf("first frame of %s has %d bytes, want the 4-byte runt", rel, len(orig[0].Data))
			}

			copyPath := filepath.Join(out, strings.ReplaceAll(rel, string(filepath.Separator), "_"))
			w, err := Create(copyPath, FormatFromName(copyPath), r.LinkType(), 0)
			if err != nil {
				t.Fatal(err)
			}
			pkts := make([]packet.Packet, 64)
			ptrs := make([]*packet.Packet, 64)
			r2, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			for {
				n, err := r2.Read(pkts)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				for i := range pkts[:n] {
					ptrs[i] = &pkts[i]
				}
				if err := w.Write(ptrs[:n]); err != nil {
					t.Fatal(err)
				}
			}
			r2.Close()
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if w.Count() != int64(len(orig)) {
				t.Errorf("wrote %d packets, read %d", w.Count(), len(orig))
			}

			r3, err := Open(copyPath)
			if err != nil {
				t.Fatal(err)
			}
			defer r3.Close()
			if r3.Format() != want {
				t.Errorf("copy format %v, want %v", r3.Format(), want)
			}
			back, err := readAll(t, r3, 17)
			if err != io.EOF {
				t.Fatalf("read copy: %v", err)
			}
			sameFrames(t, "copy vs original", back, orig)
		})
	}
}

// TestRoundTripSynthetic covers what the real captures do not: both byte orders, both
// timestamp resolutions, pcapng's other blocks, empty and 64 KiB frames.
func TestRoundTripSynthetic(t *testing.T) {
	nsFrames, usFrames := synthFrames(300, false), synthFrames(300, true)
	for _, tc := range []struct {
		name   string
		frames []mem.Frame
		data   []byte
	}{
		{"pcap-le-ns", nsFrames, buildPcap(nsFrames, binary.LittleEndian, true, 1)},
		{"pcap-be-ns", nsFrames, buildPcap(nsFrames, binary.BigEndian, true, 1)},
		{"pcap-le-us", usFrames, buildPcap(usFrames, binary.LittleEndian, false, 1)},
		{"pcap-be-us", usFrames, buildPcap(usFrames, binary.BigEndian, false, 1)},
		{"pcapng-le", nsFrames, buildPcapng(nsFrames, binary.LittleEndian, 1, false)},
		{"pcapng-be", nsFrames, buildPcapng(nsFrames, binary.BigEndian, 1, false)},
		{"pcapng-le-extras", nsFrames, buildPcapng(nsFrames, binary.LittleEndian, 1, true)},
		{"pcapng-be-extras", nsFrames, buildPcapng(nsFrames, binary.BigEndian, 1, true)},
		{"pcapgo-writer-pcap", nsFrames, writeAll(t, nsFrames, FormatPcap)},
		{"pcapgo-writer-pcapng", nsFrames, writeAll(t, nsFrames, FormatPcapNG)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readBytes(t, tc.data, tc.name)
			if err != io.EOF {
				t.Fatal(err)
			}
			sameFrames(t, "read", got, tc.frames)
			sameFrames(t, "pcapgo", pcapgoFrames(t, tc.data), tc.frames)
			for _, f := range []Format{FormatPcap, FormatPcapNG} {
				back, err := readBytes(t, writeAll(t, got, f), tc.name+" copy")
				if err != io.EOF {
					t.Fatal(err)
				}
				sameFrames(t, "copy as "+f.String(), back, tc.frames)
			}
		})
	}
}

// TestMicrosecondTimestampsKept: a microsecond pcap written back keeps its timestamps to
// the nanosecond.
func TestMicrosecondTimestampsKept(t *testing.T) {
	fs := synthFrames(50, true)
	got, err := readBytes(t, writeAll(t, fs, FormatPcap), "us")
	if err != io.EOF {
		t.Fatal(err)
	}
	sameFrames(t, "µs round trip", got, fs)
}

type cutCase struct {
	name string
	data []byte
}

// small returns frames of at most 150 bytes, so that a capture is cheap to cut at every byte.
func small(fs []mem.Frame) []mem.Frame {
	for i := range fs {
		fs[i].Data = fs[i].Data[:min(len(fs[i].Data), 150)]
	}
	return fs
}

func cutCases(t *testing.T) []cutCase {
	fs := small(synthFrames(12, false))
	cs := []cutCase{
		{"pcap-le", buildPcap(fs, binary.LittleEndian, true, 1)},
		{"pcap-be", buildPcap(small(synthFrames(12, true)), binary.BigEndian, false, 1)},
		{"pcapng-le", buildPcapng(fs, binary.LittleEndian, 1, true)},
		{"pcapng-be", buildPcapng(fs, binary.BigEndian, 1, true)},
	}
	return cs
}

// checkCut reads data cut to c bytes and checks the outcome: a clean end when the cut
// falls on a record boundary, otherwise an error naming the file and the offset of the
// record (or block) the cut falls in, after exactly the complete records before the cut.
func checkCut(t *testing.T, name string, data []byte, c int64) {
	t.Helper()
	hdrEnd, sp := spans(t, data)
	file := fmt.Sprintf("%s@%d", name, c)
	r, err := NewReader(bytes.NewReader(data[:c]), file)

	// Where the cut falls: the last record or block starting at or before it.
	var in span
	boundary := c == 0
	good := 0
	for _, s := range sp {
		if s.start <= c {
			in = s
		}
		if s.end == c {
			boundary = true
		}
		if s.packet && s.end <= c {
			good++
		}
	}
	prefix := "pcapfile: " + file + ": "
	if c < hdrEnd {
		if err == nil {
			t.Fatalf("cut at %d (in the header, which ends at %d): Open succeeded", c, hdrEnd)
		}
		e := asError(t, err)
		if !strings.HasPrefix(err.Error(), prefix) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("cut at %d: error %q does not start with %q on one line", c, err, prefix)
		}
		switch {
		case c == 0:
			if err.Error() != prefix+"empty file (0 bytes), not a pcap or pcapng capture" {
				t.Fatalf("empty: %v", err)
			}
		case e.Offset != in.start && !(boundary && e.Offset == c):
			t.Fatalf("cut at %d: Open error at offset %d, want %d: %v", c, e.Offset, in.start, err)
		case !errors.Is(err, io.ErrUnexpectedEOF):
			t.Fatalf("cut at %d: Open error %v is not a truncation", c, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("cut at %d: Open: %v", c, err)
	}
	frames, err := readAll(t, r, 5)
	if len(frames) != good {
		t.Fatalf("cut at %d: %d packets delivered before %v, want %d", c, len(frames), err, good)
	}
	if boundary {
		if err != io.EOF {
			t.Fatalf("cut at %d on a record boundary: %v, want io.EOF", c, err)
		}
		if r.Offset() != c {
			t.Fatalf("cut at %d: Offset at the end %d", c, r.Offset())
		}
		return
	}
	e := asError(t, err)
	want := fmt.Sprintf("%soffset %d: ", prefix, in.start)
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("cut at %d: error %q, want %q… truncated …", c, err, want)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) || e.Offset != in.start || r.Offset() != in.start {
		t.Fatalf("cut at %d: error %#v, Offset %d", c, e, r.Offset())
	}
}

// TestTruncatedEverywhere cuts small synthetic captures at every byte.
func TestTruncatedEverywhere(t *testing.T) {
	for _, tc := range cutCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			for c := int64(0); c <= int64(len(tc.data)); c++ {
				checkCut(t, tc.name, tc.data, c)
			}
		})
	}
}

// TestTruncatedTraces cuts real captures at a few offsets: mid file header, mid record
// header, mid record data, on a boundary.
func TestTruncatedTraces(t *testing.T) {
	for _, rel := range []string{"tcpreplay_test.pcap", "ndpi_gnutella.pcap", "trojan_ingredients/zeek_irc-dcc-send.pcapng"} {
		path := traceFile(t, rel)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, sp := spans(t, data)
		cuts := []int64{0, 2, 10, 23, 24, 30}
		for _, i := range []int{1, 2, 3, 10, 50, 100, len(sp) / 2, len(sp) - 2} {
			if i < len(sp) {
				s := sp[i]
				cuts = append(cuts, s.start, s.start+3, s.start+15, s.start+16, s.start+17, (s.start+s.end)/2, s.end-1)
			}
		}
		cuts = append(cuts, int64(len(data))-1, int64(len(data)))
		for _, c := range cuts {
			if c >= 0 && c <= int64(len(data)) {
				checkCut(t, filepath.Base(rel), data, c)
			}
		}
	}
}

// TestTruncatedFileError: a truncated file on disk, through Open.
func TestTruncatedFileError(t *testing.T) {
	data := buildPcap(synthFrames(5, false), binary.LittleEndian, true, 1)
	_, sp := spans(t, data)
	path := filepath.Join(t.TempDir(), "cut.pcap")
	cut := sp[3].start + 20
	if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	frames, err := readAll(t, r, 64)
	want := fmt.Sprintf("pcapfile: %s: offset %d: truncated packet record (header says %d bytes of packet data, 4 present)",
		path, sp[3].start, sp[3].end-sp[3].start-16)
	if len(frames) != 2 || err == nil || err.Error() != want {
		t.Fatalf("got %d frames and %v\nwant 2 frames and %s", len(frames), err, want)
	}
}

// TestGarbage: garbage instead of a capture, garbage after one, a corrupt record length.
func TestGarbage(t *testing.T) {
	fs := synthFrames(8, false)
	pcap := buildPcap(fs, binary.LittleEndian, true, 1)
	ng := buildPcapng(fs, binary.LittleEndian, 1, false)
	_, psp := spans(t, pcap)
	_, nsp := spans(t, ng)
	junk := bytes.Repeat([]byte{0xee}, 40)

	corrupt := func(data []byte, off int64, v uint32) []byte {
		d := bytes.Clone(data)
		binary.LittleEndian.PutUint32(d[off:], v)
		return d
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		good   int
		off    int64
		substr string
	}{
		{"text", []byte("this is not a capture file at all\n"), 0, 0, "not a pcap or pcapng file (magic 74 68 69 73)"},
		{"zeros", make([]byte, 100), 0, 0, "not a pcap or pcapng file"},
		{"gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}, 0, 0, "gzip-compressed"},
		{"three bytes", []byte{0xd4, 0xc3, 0xb2}, 0, 0, "truncated file header (3 of 4 bytes of magic number)"},
		{"pcap+junk", append(bytes.Clone(pcap), junk...), 8, int64(len(pcap)), "absurd capture length 4008636142"},
		{"pcapng+junk", append(bytes.Clone(ng), junk...), 8, int64(len(ng)), "absurd total length"},
		{"pcap absurd caplen", corrupt(pcap, psp[4].start+8, 0x7fffffff), 3, psp[4].start, "absurd capture length 2147483647 (the maximum is 262144)"},
		{"pcap caplen>origlen", corrupt(pcap, psp[4].start+12, 1), 3, psp[4].start, "capture length"},
		{"pcap bad version", corrupt(pcap, 4, 0x00030003), 0, 0, "bad pcap file header"},
		{"pcapng caplen overruns", corrupt(ng, nsp[5].start+20, 5000), 3, nsp[5].start, "capture length 5000 overruns the block"},
		{"pcapng absurd caplen", corrupt(ng, nsp[5].start+20, 0xffffff00), 3, nsp[5].start, "absurd capture length"},
		{"pcapng bad trailer", corrupt(ng, nsp[5].end-4, 12), 3, nsp[5].start, "trailing length 12 that does not match"},
		{"pcapng short block", corrupt(ng, nsp[5].start+4, 8), 3, nsp[5].start, "below its minimum 32"},
		{"pcapng odd block", corrupt(ng, nsp[5].start+4, 33), 3, nsp[5].start, "not a multiple of 4"},
		{"pcapng bad interface", corrupt(ng, nsp[5].start+8, 7), 3, nsp[5].start, "Interface id 7 not present"},
		{"pcapng bad byte order", corrupt(ng, 8, 0x12345678), 0, 0, "bad byte-order magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.data), tc.name)
			var frames []mem.Frame
			if err == nil {
				frames, err = readAll(t, r, 64)
				if r.Offset() != tc.off {
					t.Errorf("Offset after the error %d, want %d", r.Offset(), tc.off)
				}
			}
			if len(frames) != tc.good {
				t.Errorf("%d good packets, want %d", len(frames), tc.good)
			}
			sameFrames(t, "good packets", frames, fs[:len(frames)])
			e := asError(t, err)
			prefix := fmt.Sprintf("pcapfile: %s: offset %d: ", tc.name, tc.off)
			if e.Offset != tc.off || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.substr) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q\nwant %q…%q…", err, prefix, tc.substr)
			}
		})
	}
}

func TestLinkTypeRefused(t *testing.T) {
	fs := synthFrames(3, false)
	want := "unsupported link type 101 (Raw); snf reads Ethernet (1) captures"
	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	w.Flush()
	for _, tc := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"raw-le.pcap", buildPcap(fs, binary.LittleEndian, true, 101), want},
		{"raw-be.pcap", buildPcap(fs, binary.BigEndian, false, 101), want},
		{"raw.pcapng", buildPcapng(fs, binary.BigEndian, 101, true), want},
		{"raw-pcapgo.pcapng", ng.Bytes(), want},
		{"odd.pcap", buildPcap(fs, binary.LittleEndian, true, 4000), "unsupported link type 4000 (unknown); snf reads Ethernet (1) captures"},
		{"fcs.pcap", buildPcap(fs, binary.BigEndian, true, 0x1000_0001), "unsupported link type field 0x10000001 (link type 1 with FCS or reserved bits set); snf reads Ethernet (1) captures"},
	} {
		path := filepath.Join(t.TempDir(), tc.name)
		if err := os.WriteFile(path, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path)
		if err == nil {
			r.Close()
			t.Fatalf("%s: Open succeeded", tc.name)
		}
		if err.Error() != "pcapfile: "+path+": "+tc.msg {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestMixedLinkTypes: a pcapng whose second interface is not Ethernet fails at the first
// packet of that interface, after the packets before it.
func TestMixedLinkTypes(t *testing.T) {
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriter(&b, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeRaw})
	if err != nil {
		t.Fatal(err)
	}
	fs := synthFrames(3, false)
	for i, f := range fs {
		ci := ciOf(f)
		if i == 2 {
			ci.InterfaceIndex = id
		}
		if err := w.WritePacket(ci, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	frames, err := readBytes(t, b.Bytes(), "mixed.pcapng")
	if len(frames) != 2 || err == nil || !strings.Contains(err.Error(), "link type") {
		t.Fatalf("%d frames, %v", len(frames), err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pcap")
	os.WriteFile(empty, nil, 0o644)
	missing := filepath.Join(dir, "missing.pcap")
	for _, tc := range []struct{ path, want string }{
		{empty, "pcapfile: " + empty + ": empty file (0 bytes), not a pcap or pcapng capture"},
		{missing, "pcapfile: " + missing + ": cannot open: no such file or directory"},
		{dir, "pcapfile: " + dir + ": is a directory, not a capture file"},
	} {
		r, err := Open(tc.path)
		if err == nil {
			r.Close()
			t.Fatalf("Open(%s) succeeded", tc.path)
		}
		if err.Error() != tc.want {
			t.Errorf("Open(%s) = %q, want %q", tc.path, err, tc.want)
		}
	}
	_, err := Open(missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v is not fs.ErrNotExist", err)
	}
}

func TestReadAfterClose(t *testing.T) {
	r, err := NewReader(bytes.NewReader(buildPcap(synthFrames(3, false), binary.LittleEndian, true, 1)), "x")
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if n, err := r.Read(make([]packet.Packet, 4)); n != 0 || err == nil || !strings.Contains(err.Error(), "read after Close") {
		t.Fatalf("Read after Close = %d, %v", n, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReadAllocs proves the steady state allocates nothing per packet.
func TestReadAllocs(t *testing.T) {
	fs := synthFrames(6000, false)
	for _, f := range []Format{FormatPcap, FormatPcapNG} {
		r, err := NewReader(bytes.NewReader(writeAll(t, fs, f)), "allocs")
		if err != nil {
			t.Fatal(err)
		}
		pkts := make([]packet.Packet, 32)
		for range 4 { // warm up: packet buffers, pcapgo's buffer
			if _, err := r.Read(pkts); err != nil {
				t.Fatal(err)
			}
		}
		allocs := testing.AllocsPerRun(100, func() {
			if n, err := r.Read(pkts); n != len(pkts) || err != nil {
				t.Fatalf("Read = %d, %v", n, err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: %v allocations per Read of %d packets", f, allocs, len(pkts))
		}
	}
}

func TestWriteAllocs(t *testing.T) {
	for _, f := range []Format{FormatPcap, FormatPcapNG} {
		w, err := NewWriter(io.Discard, "discard", f, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		pkts := make([]packet.Packet, 32)
		ptrs := make([]*packet.Packet, 32)
		for i := range pkts {
			pkts[i].SetData(make([]byte, 60+i*40), int64(i)*1e6, 0)
			ptrs[i] = &pkts[i]
		}
		if a := testing.AllocsPerRun(100, func() { w.Write(ptrs) }); a != 0 {
			t.Errorf("%v: %v allocations per Write", f, a)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	var p packet.Packet
	for _, tc := range []struct {
		format Format
		time   int64
		size   int
		want   string
	}{
		{FormatPcap, -1, 60, "timestamp -1 ns is out of the range of pcap"},
		{FormatPcapNG, -5, 60, "timestamp -5 ns is out of the range of pcapng"},
		{FormatPcap, (1 << 32) * 1e9, 60, "out of the range of pcap"},
		{FormatPcap, 0, MaxSnaplen + 1, "frame of 262145 bytes is longer than the maximum capture length 262144"},
	} {
		w, err := NewWriter(io.Discard, "out", tc.format, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		p.SetData(make([]byte, tc.size), tc.time, 0)
		err = w.Write([]*packet.Packet{&p})
		if err == nil || !strings.HasPrefix(err.Error(), "pcapfile: out: packet 0: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Write: %v, want …%s", err, tc.want)
		}
		if err2 := w.Write(nil); err2 != err {
			t.Errorf("error not sticky: %v", err2)
		}
	}
	// A pcapng with (1<<32) s is fine.
	w, _ := NewWriter(io.Discard, "out", FormatPcapNG, 1, 0)
	p.SetData(make([]byte, 60), (1<<32)*1e9, 0)
	if err := w.Write([]*packet.Packet{&p}); err != nil {
		t.Error(err)
	}
	w.Close()
	if err := w.Write([]*packet.Packet{&p}); err == nil || !strings.Contains(err.Error(), "write after Close") {
		t.Errorf("Write after Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	bad := filepath.Join(t.TempDir(), "no", "such", "dir", "x.pcap")
	if _, err := Create(bad, FormatPcap, 1, 0); err == nil || err.Error() != "pcapfile: "+bad+": cannot create: no such file or directory" {
		t.Errorf("Create in a missing directory: %v", err)
	}
	if _, err := Create(filepath.Join(t.TempDir(), "x"), FormatPcapNG, 70000, 0); err == nil || !strings.Contains(err.Error(), "16 bits") {
		t.Errorf("Create pcapng with link type 70000: %v", err)
	}
	if _, err := Create(filepath.Join(t.TempDir(), "x"), Format(9), 1, 0); err == nil {
		t.Error("Create with an unknown format succeeded")
	}
}

func TestWriterHeader(t *testing.T) {
	var b bytes.Buffer
	w, _ := NewWriter(&b, "x", FormatPcap, 1, 1500)
	w.Close()
	if b.Len() != 24 || binary.LittleEndian.Uint32(b.Bytes()) != magicNano || binary.LittleEndian.Uint32(b.Bytes()[16:]) != 1500 {
		t.Fatalf("header % x", b.Bytes())
	}
	r, err := NewReader(&b, "x")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]packet.Packet, 1)); n != 0 || err != io.EOF {
		t.Fatalf("empty capture: %d, %v", n, err)
	}
}

func TestFormat(t *testing.T) {
	for s, want := range map[string]Format{"pcap": FormatPcap, "PCAPNG": FormatPcapNG, " pcapng ": FormatPcapNG} {
		if f, err := ParseFormat(s); err != nil || f != want {
			t.Errorf("ParseFormat(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := ParseFormat("erf"); err == nil {
		t.Error("ParseFormat(erf) succeeded")
	}
	for name, want := range map[string]Format{"a.pcap": FormatPcap, "a.pcapng": FormatPcapNG, "dir.pcapng/A.PCAPNG": FormatPcapNG, "x": FormatPcap, "x.cap": FormatPcap} {
		if f := FormatFromName(name); f != want {
			t.Errorf("FormatFromName(%q) = %v", name, f)
		}
	}
	var f Format
	if err := f.UnmarshalText([]byte("pcapng")); err != nil || f != FormatPcapNG {
		t.Errorf("UnmarshalText: %v %v", f, err)
	}
	if b, err := FormatPcapNG.MarshalText(); err != nil || string(b) != "pcapng" {
		t.Errorf("MarshalText: %s %v", b, err)
	}
}

// TestReread: a capture opened by its path reads any packet again by the position Read gave
// it (port.Rereader), in any order, classic pcap and pcapng (with blocks to step over); one
// read from a stream cannot; a file truncated since fails with the offset and no panic.
func TestReread(t *testing.T) {
	frames := synthFrames(3000, false) // with frames far apart: the window moves
	files := map[string][]byte{
		"classic": buildPcap(frames, binary.LittleEndian, true, LinkTypeEthernet),
		"ng":      buildPcapng(frames, binary.BigEndian, LinkTypeEthernet, true),
	}
	var _ port.Rereader = (*Reader)(nil)
	for name, data := range files {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name+".pcap")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if !r.Rereadable() {
				t.Fatal("a capture opened by its path: want Rereadable")
			}
			pkts := make([]packet.Packet, 7)
			var pos []uint64
			var got [][]byte
			for {
				n, err := r.Read(pkts)
				for i := range pkts[:n] {
					if len(pos) > 0 && pkts[i].Pos <= pos[len(pos)-1] {
						t.Fatalf("packet %d at %d, after one at %d: want increasing positions", len(pos), pkts[i].Pos, pos[len(pos)-1])
					}
					got, pos = append(got, bytes.Clone(pkts[i].Data)), append(pos, pkts[i].Pos)
				}
				if err != nil {
					break
				}
			}
			if len(got) != len(frames) {
				t.Fatalf("read %d frames, want %d", len(got), len(frames))
			}
			order := rand.New(rand.NewPCG(1, 2)).Perm(len(got))
			order = append(order, 0, 1, 2, len(got)-1) // in order too
			for _, i := range order {
				b, err := r.Reread(nil, pos[i], len(got[i]))
				if err != nil || !bytes.Equal(b, got[i]) || !bytes.Equal(b, frames[i].Data) {
					t.Fatalf("frame %d at %d: reread %d bytes, err %v; equal %v", i, pos[i], len(b), err, bytes.Equal(b, got[i]))
				}
			}
			// Truncated since: the last frames are gone.
			if err := os.Truncate(path, int64(pos[len(pos)-1])); err != nil {
				t.Fatal(err)
			}
			r.win = r.win[:0] // (what the window held is gone too)
			last := len(pos) - 1
			if _, err := r.Reread(nil, pos[last], len(got[last])); err == nil || asError(t, err).Offset != int64(pos[last]) {
				t.Errorf("reread past a truncated end: err %v, want an error at offset %d", err, pos[last])
			}
		})
	}
	t.Run("stream", func(t *testing.T) {
		r, err := NewReader(bytes.NewReader(files["classic"]), "stdin")
		if err != nil {
			t.Fatal(err)
		}
		pkts := make([]packet.Packet, 4)
		if n, _ := r.Read(pkts); n != 4 {
			t.Fatalf("read %d", n)
		}
		if r.Rereadable() {
			t.Error("a capture read from a stream: want not Rereadable")
		}
		if _, err := r.Reread(nil, pkts[0].Pos, len(pkts[0].Data)); err == nil {
			t.Error("Reread from a stream: want an error")
		}
	})
}

// TestWaited: a Read that had to wait for its source (a pipe whose writer had not written
// yet) says so (port.Waiter), even when it fills the whole batch; the next Read, of data
// already buffered, does not; nor do Reads of a source that hands out its data at once, a
// kilobyte at a time; nor, ever, Reads of a regular file.
func TestWaited(t *testing.T) {
	file := buildPcap(synthFrames(12, false), binary.LittleEndian, true, 1)
	end4 := 24 // the end of the 4th record
	for range 4 {
		end4 += 16 + int(binary.LittleEndian.Uint32(file[end4+8:]))
	}
	pr, pw := io.Pipe()
	go func() {
		pw.Write(file[:end4])
		time.Sleep(20 * time.Millisecond)
		pw.Write(file[end4:])
		pw.Close()
	}()
	r, err := NewReader(pr, "pipe")
	if err != nil {
		t.Fatal(err)
	}
	pkts := make([]packet.Packet, 4)
	for i, want := range []bool{false, true, false} { // buffered; 20 ms for the pipe; buffered
		if n, err := r.Read(pkts); n != 4 || err != nil {
			t.Fatalf("read %d: %d, %v", i, n, err)
		}
		if got := port.Waited(r); got != want {
			t.Errorf("pipe, read %d: Waited %v, want %v", i, got, want)
		}
	}
	// A source with its data there, a kilobyte per read: a few reads in case one was
	// descheduled for longer than a wait.
	m, err := NewReader(&chunky{bytes.NewReader(file)}, "memory")
	if err != nil {
		t.Fatal(err)
	}
	waits := 0
	for range 3 {
		if n, err := m.Read(pkts); n != 4 || err != nil {
			t.Fatalf("memory: %d, %v", n, err)
		}
		if port.Waited(m) {
			waits++
		}
	}
	if waits > 1 {
		t.Errorf("reads of data already there: %d of 3 waited", waits)
	}
	path := filepath.Join(t.TempDir(), "f.pcap")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 3 {
		if _, err := f.Read(pkts); err != nil {
			t.Fatal(err)
		}
		if port.Waited(f) {
			t.Error("a regular file's read waited")
		}
	}
}

// chunky hands out at most a kilobyte per Read.
type chunky struct{ r io.Reader }

func (c *chunky) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), 1024)]) }

// TestPipeReturnsEarly: from a pipe whose writer wrote three records and part of a fourth and
// writes no more for now, a Read of 64 returns the three at once, not once the writer wrote
// 61 more; from a writer ahead of the reader (the pipe holds all it wrote), Reads fill their
// batches. Classic pcap and pcapng.
func TestPipeReturnsEarly(t *testing.T) {
	var frames []mem.Frame
	for i := range 150 {
		frames = append(frames, mem.Frame{Data: bytes.Repeat([]byte{byte(i)}, 100), Time: int64(i+1) * 1000, WireLen: 100})
	}
	for _, c := range []struct {
		name string
		data []byte
	}{{"pcap", buildPcap(frames, binary.LittleEndian, true, 1)}, {"pcapng", buildPcapng(frames, binary.BigEndian, 1, false)}} {
		_, sp := spans(t, c.data)
		var recs []span
		for _, s := range sp {
			if s.packet {
				recs = append(recs, s)
			}
		}
		cut := recs[2].end + 10 // three records, and ten bytes of the fourth
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(c.data[:cut]); err != nil { // (the pipe holds 64 KiB)
			t.Fatal(err)
		}
		r, err := NewReader(pr, c.name)
		if err != nil {
			t.Fatal(err)
		}
		pkts := make([]packet.Packet, 64)
		got := make(chan int, 1)
		go func() {
			n, _ := r.Read(pkts)
			got <- n
		}()
		select {
		case n := <-got:
			if n != 3 {
				t.Errorf("%s: the first Read gave %d packets, want the 3 written", c.name, n)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: the first Read waited for the writer with 3 packets read", c.name)
			pw.Write(c.data[cut:])
			pw.Close()
			<-got
			pr.Close()
			continue
		}
		if _, err := pw.Write(c.data[cut:]); err != nil { // the rest, ahead of the reader
			t.Fatal(err)
		}
		pw.Close()
		var sizes []int
		for {
			n, err := r.Read(pkts)
			if err != nil {
				break
			}
			sizes = append(sizes, n)
		}
		if !slices.Equal(sizes, []int{64, 64, 19}) {
			t.Errorf("%s: after the writer wrote the rest, Reads gave %v packets, want [64 64 19]", c.name, sizes)
		}
		pr.Close()
	}
}
