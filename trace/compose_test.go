package trace

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/port/pcapfile"
)

// tagged returns a UDP frame whose payload names it, and the name back.
func tagged(name string) []byte { return pkttest.UDP(hostA, srvX, 1000, 2000, []byte(name)) }

func tagOf(t *testing.T, f mem.Frame) string {
	t.Helper()
	var p packet.Packet
	p.SetData(f.Data, f.Time, 0)
	return string(p.Payload())
}

func composeMem(t *testing.T, inputs []ComposeInput) []mem.Frame {
	t.Helper()
	w := mem.NewWriter()
	n, err := Compose(inputs, w)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(w.Frames()) {
		t.Fatalf("Compose returned %d, wrote %d", n, len(w.Frames()))
	}
	return w.Frames()
}

// TestComposeMergeOrder merges three inputs with interleaved and equal timestamps, each
// longer than a read batch so that the merge crosses batch refills.
func TestComposeMergeOrder(t *testing.T) {
	var ins [3][]mem.Frame
	var want []string
	// Input i has packets at times 3k+i for k < 100, and all three have one at 1000 and
	// two at 2000; the ties must come out in input order, each input's in its own order.
	for k := range 100 {
		for i := range ins {
			name := string(rune('a'+i)) + strings.Repeat("x", k%3) + "-" + itoa(k)
			ins[i] = append(ins[i], mem.Frame{Data: tagged(name), Time: int64(3*k + i)})
			want = append(want, name)
		}
	}
	for i := range ins {
		name := string(rune('a' + i))
		ins[i] = append(ins[i], mem.Frame{Data: tagged(name + "-tie"), Time: 1000},
			mem.Frame{Data: tagged(name + "-tie2a"), Time: 2000}, mem.Frame{Data: tagged(name + "-tie2b"), Time: 2000})
	}
	want = append(want, "a-tie", "b-tie", "c-tie", "a-tie2a", "a-tie2b", "b-tie2a", "b-tie2b", "c-tie2a", "c-tie2b")
	var inputs []ComposeInput
	for i := range ins {
		inputs = append(inputs, ComposeInput{Reader: mem.NewReader(ins[i])})
	}
	got := composeMem(t, inputs)
	if len(got) != len(want) {
		t.Fatalf("%d frames out, want %d", len(got), len(want))
	}
	for i := range got {
		if tag := tagOf(t, got[i]); tag != want[i] {
			t.Fatalf("frame %d is %q, want %q", i, tag, want[i])
		}
		if i > 0 && got[i].Time < got[i-1].Time {
			t.Fatalf("frame %d at %d after one at %d", i, got[i].Time, got[i-1].Time)
		}
	}
}

func itoa(k int) string {
	if k < 10 {
		return string(rune('0' + k))
	}
	return itoa(k/10) + string(rune('0'+k%10))
}

func TestComposeShiftAndStart(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	a := []mem.Frame{{Data: tagged("a0"), Time: base}, {Data: tagged("a1"), Time: base + 10*ms}}
	b := []mem.Frame{{Data: tagged("b0"), Time: base + 5*ms}, {Data: tagged("b1"), Time: base + 7*ms}}
	c := []mem.Frame{{Data: tagged("c0"), Time: 123}, {Data: tagged("c1"), Time: 123 + 2*ms}}
	start := time.Unix(0, base+8*ms)
	got := composeMem(t, []ComposeInput{
		{Reader: mem.NewReader(a)},
		{Reader: mem.NewReader(b), Shift: 4 * time.Millisecond},                  // b0 at 9 ms, b1 at 11 ms
		{Reader: mem.NewReader(c), Start: start, Shift: time.Hour /* ignored */}, // c0 at 8 ms, c1 at 10 ms
	})
	want := []struct {
		tag string
		at  int64
	}{{"a0", 0}, {"c0", 8}, {"b0", 9}, {"a1", 10}, {"c1", 10}, {"b1", 11}}
	if len(got) != len(want) {
		t.Fatalf("%d frames, want %d", len(got), len(want))
	}
	for i, w := range want {
		if tag := tagOf(t, got[i]); tag != w.tag || got[i].Time != base+w.at*ms {
			t.Errorf("frame %d: %s at %+d ms, want %s at %d ms", i, tag, (got[i].Time-base)/ms, w.tag, w.at)
		}
	}
	// A negative shift moves an input earlier.
	got = composeMem(t, []ComposeInput{{Reader: mem.NewReader(a), Shift: -time.Millisecond}})
	if got[0].Time != base-ms || got[1].Time != base+9*ms {
		t.Errorf("negative shift: %d, %d", got[0].Time-base, got[1].Time-base)
	}
}

// TestComposeRewrite re-addresses valid frames of every kind and checks that addresses
// change on both sides, that A↔B swaps, and that every checksum stays valid.
func TestComposeRewrite(t *testing.T) {
	victim := netip.MustParseAddr("10.66.0.7")
	v6victim := netip.MustParseAddr("2001:db8::66")
	frames := [][]byte{
		pkttest.TCP(hostA, srvX, 4000, 80, pkttest.SYN, nil),
		pkttest.TCP(srvX, hostA, 80, 4000, "PA", []byte("HTTP/1.1 200 OK\r\n\r\nhello")),
		pkttest.UDP(hostA, srvY, 5353, 53, []byte("odd-length")),
		pkttest.UDP(srvY, hostB, 53, 5353, []byte("x")),
		pkttest.Echo(hostA, srvX, 9, false),
		pkttest.Echo(srvX, hostA, 9, true),
		pkttest.UDP(v6a, v6b, 1, 2, []byte("six")),
		pkttest.TCP(v6b, v6a, 2, 1, pkttest.ACK, nil),
		pkttest.IPProto(hostA, srvX, 47, []byte("gre")),
		pkttest.TCP(hostB, srvY, 1, 2, pkttest.SYN, nil), // hostB and srvY: untouched
	}
	in := make([]mem.Frame, len(frames))
	for i, f := range frames {
		if err := pkttest.VerifyChecksums(f); err != nil {
			t.Fatalf("frame %d invalid before: %v", i, err)
		}
		in[i] = mem.Frame{Data: f, Time: int64(i)}
	}
	rw := map[netip.Addr]netip.Addr{
		hostA: victim,
		srvX:  srvY, srvY: srvX, // a swap
		v6a:                                     v6victim,
		netip.MustParseAddr("::ffff:10.0.0.99"): netip.MustParseAddr("10.0.0.98"), // mapped keys are unmapped
	}
	got := composeMem(t, []ComposeInput{{Reader: mem.NewReader(in), Rewrite: rw}})
	wantKeys := []struct{ src, dst netip.Addr }{
		{victim, srvY}, {srvY, victim}, {victim, srvX}, {srvX, hostB}, {victim, srvY}, {srvY, victim},
		{v6victim, v6b}, {v6b, v6victim}, {victim, srvY}, {hostB, srvX},
	}
	for i, f := range got {
		var p packet.Packet
		p.SetData(f.Data, f.Time, 0)
		if p.Key.SrcAddr() != wantKeys[i].src || p.Key.DstAddr() != wantKeys[i].dst {
			t.Errorf("frame %d: %s, want %s > %s", i, p.Key, wantKeys[i].src, wantKeys[i].dst)
		}
		if err := pkttest.VerifyChecksums(f.Data); err != nil {
			t.Errorf("frame %d (%s): %v after rewriting", i, p.Key, err)
		}
		if !bytes.Equal(p.Payload(), mustPayload(frames[i])) {
			t.Errorf("frame %d: payload changed", i)
		}
	}
	// An address and its replacement of different families cannot be rewritten.
	_, err := Compose([]ComposeInput{{Reader: mem.NewReader(in), Rewrite: map[netip.Addr]netip.Addr{hostA: v6a}}}, mem.NewWriter())
	if err == nil || !strings.Contains(err.Error(), "input 0") || !strings.Contains(err.Error(), "one family") {
		t.Errorf("family mismatch: %v", err)
	}
}

func mustPayload(f []byte) []byte {
	var p packet.Packet
	p.SetData(f, 0, 0)
	return append([]byte(nil), p.Payload()...)
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []*packet.Packet) error {
	if w.n += len(p); w.n > 70 {
		return errors.New("disk full")
	}
	return nil
}
func (w *failWriter) Close() error { return nil }

func TestComposeErrors(t *testing.T) {
	boom := errors.New("corrupt record")
	good := []mem.Frame{{Data: tagged("g"), Time: 1}, {Data: tagged("g"), Time: 3}}
	bad := []mem.Frame{{Data: tagged("b"), Time: 2}}
	w := mem.NewWriter()
	n, err := Compose([]ComposeInput{{Reader: mem.NewReader(good)}, {Reader: mem.NewReaderError(bad, boom)}}, w)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "input 1") {
		t.Errorf("read error: %v, want it wrapped naming input 1", err)
	}
	if n != len(w.Frames()) || n > 2 {
		t.Errorf("returned %d with %d written", n, len(w.Frames()))
	}
	var many []mem.Frame
	for i := range 200 {
		many = append(many, mem.Frame{Data: tagged("m"), Time: int64(i)})
	}
	if n, err := Compose([]ComposeInput{{Reader: mem.NewReader(many)}}, &failWriter{}); err == nil || !strings.Contains(err.Error(), "disk full") || n != 64 {
		t.Errorf("write error: n=%d, %v; want the first batch of 64 counted and the error", n, err)
	}
	if _, err := Compose([]ComposeInput{{}}, mem.NewWriter()); err == nil {
		t.Error("an input without a reader must be an error")
	}
	if n, err := Compose(nil, mem.NewWriter()); n != 0 || err != nil {
		t.Errorf("no inputs: %d, %v", n, err)
	}
}

// TestComposeRoundTrip merges real captures re-addressed to one host into a pcap file,
// reads it back and checks it frame by frame against the inputs.
func TestComposeRoundTrip(t *testing.T) {
	names := []string{"zeek_ssh_single-conn.pcap", "zeek_http_get.pcap", "zeek_irc-basic.pcap", "zeek_irc-dcc-send.pcapng"}
	victim := netip.MustParseAddr("10.66.0.7")
	clients := []netip.Addr{
		netip.MustParseAddr("192.150.186.169"), netip.MustParseAddr("141.142.228.5"),
		netip.MustParseAddr("192.168.6.110"), netip.MustParseAddr("10.0.0.7"),
	}
	start := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	var inputs []ComposeInput
	var total uint64
	var validBefore int
	var readers []*pcapfile.Reader
	for i, name := range names {
		path := tracePath(t, filepath.Join("trojan_ingredients", name))
		r, err := pcapfile.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, r)
		s := fileStats(t, path, time.Millisecond)
		total += s.Packets
		validBefore += countValid(t, path)
		// Each piece starts 2 s after the previous one: they overlap in time.
		inputs = append(inputs, ComposeInput{Reader: r, Start: start.Add(time.Duration(i) * 2 * time.Second),
			Rewrite: map[netip.Addr]netip.Addr{clients[i]: victim}})
	}
	out := filepath.Join(t.TempDir(), "merged.pcap")
	w, err := pcapfile.Create(out, pcapfile.FormatPcap, pcapfile.LinkTypeEthernet, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Compose(inputs, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range readers {
		r.Close()
	}
	if uint64(n) != total {
		t.Fatalf("wrote %d packets, the inputs have %d", n, total)
	}
	s := fileStats(t, out, time.Millisecond)
	if s.Packets != total || !s.First.Equal(start) {
		t.Errorf("merged capture: %d packets from %s, want %d from %s", s.Packets, s.First, total, start)
	}
	// SSH 1 flow, HTTP 1, IRC 1, IRC with DCC 3.
	if s.Flows != 6 || s.TCPFlows != 6 {
		t.Errorf("%d flows (%d TCP), want 6 TCP", s.Flows, s.TCPFlows)
	}
	// Read back: time order, every client address gone. Captures taken on a sending host
	// hold frames with unfinished (offloaded) checksums: every frame valid before must be
	// valid after, and an incremental update keeps an invalid one invalid.
	var last int64
	var seen, fromVictim, validAfter int
	eachPacket(t, out, func(p *packet.Packet) {
		if p.Time < last {
			t.Fatalf("packet %d goes back in time", seen)
		}
		last = p.Time
		for _, c := range clients {
			if p.Key.SrcAddr() == c || p.Key.DstAddr() == c {
				t.Fatalf("packet %d still has client address %s: %s", seen, c, p.Key)
			}
		}
		if p.Key.SrcAddr() == victim {
			fromVictim++
		}
		if p.Flags&packet.Truncated == 0 && pkttest.VerifyChecksums(p.Data) == nil {
			validAfter++
		}
		seen++
	})
	if seen != n || fromVictim < n/4 {
		t.Errorf("read back %d packets (%d from the victim), wrote %d", seen, fromVictim, n)
	}
	t.Logf("%d packets merged, %d from the victim, %d with valid checksums before and after", n, fromVictim, validAfter)
	if validAfter != validBefore || validBefore < n/2 {
		t.Errorf("%d frames with valid checksums after re-addressing, %d before (of %d)", validAfter, validBefore, n)
	}
}

func eachPacket(t *testing.T, path string, fn func(p *packet.Packet)) {
	t.Helper()
	r, err := pcapfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	batch := make([]packet.Packet, 64)
	for {
		k, err := r.Read(batch)
		for i := range batch[:k] {
			fn(&batch[i])
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func countValid(t *testing.T, path string) int {
	n := 0
	eachPacket(t, path, func(p *packet.Packet) {
		if p.Flags&packet.Truncated == 0 && pkttest.VerifyChecksums(p.Data) == nil {
			n++
		}
	})
	return n
}
