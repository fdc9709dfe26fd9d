package replay

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/unit"
)

var clockNext uint64

// batch returns unit u's batch seq with n packets of flow u (clocks continue globally).
func batch(u int, seq uint64, n int) *unit.Batch {
	b := unit.NewBatch(n, nil)
	b.Unit, b.Seq, b.Now = u, seq, int64(seq)*1000
	for i := range n {
		clockNext++
		f := pkttest.UDP(netip.AddrFrom4([4]byte{10, 0, 0, byte(u)}), netip.MustParseAddr("10.9.9.9"), 1000, 53, []byte(fmt.Sprint(clockNext)))
		b.Pkts[i].SetData(f, int64(clockNext), 0)
		b.Pkts[i].Clock, b.Pkts[i].Flow = clockNext, uint64(u)
	}
	b.N = n
	b.Ctl = append(b.Ctl, unit.Control{At: 0, Kind: unit.Expect, Flow: 7, Peer: 1, Hid: seq})
	return b
}

// TestLogBoundAndTrim: the log refuses what does not fit, trims from the head as checkpoints
// cover entries, never past an uncovered one, and says which unit holds it up.
func TestLogBoundAndTrim(t *testing.T) {
	const one = bufSize // the memory a small frame takes in the log
	l := NewLog(10*one, 1000, 2)
	var trimmed []string
	l.OnTrim = func(e *Entry) { trimmed = append(trimmed, fmt.Sprintf("%d/%d", e.Unit, e.Seq)) }
	for seq := uint64(1); seq <= 2; seq++ {
		for u := range 2 {
			if !l.Append(batch(u, seq, 2)) {
				t.Fatalf("batch %d/%d refused with room", u, seq)
			}
		}
	}
	if l.Append(batch(0, 3, 3)) {
		t.Fatal("a batch beyond the bound was logged")
	}
	if l.Blocking() != 0 || l.Packets() != 8 || l.Bytes() != 8*one {
		t.Fatalf("blocking %d, %d packets, %d bytes", l.Blocking(), l.Packets(), l.Bytes())
	}
	l.Covered(1, 2) // unit 1 covered, but unit 0's first batch is at the head
	if len(trimmed) != 0 {
		t.Fatalf("trimmed %v past an uncovered head", trimmed)
	}
	l.Covered(0, 1)
	if fmt.Sprint(trimmed) != "[0/1 1/1]" || l.Blocking() != 0 {
		t.Fatalf("trimmed %v, blocking %d; want [0/1 1/1], 0", trimmed, l.Blocking())
	}
	if !l.Append(batch(0, 3, 3)) {
		t.Fatal("refused after trimming")
	}
	var since []uint64
	l.Since(0, 1, func(e *Entry) { since = append(since, e.Seq) })
	if fmt.Sprint(since) != "[2 3]" {
		t.Errorf("unit 0 since 1: %v, want [2 3]", since)
	}
	l.Covered(0, 1) // not an advance: nothing happens
	l.Covered(0, 3)
	if l.Len() != 0 || l.Blocking() != -1 || l.Bytes() != 0 {
		t.Errorf("after covering everything: %d entries, %d bytes", l.Len(), l.Bytes())
	}
	big := batch(1, 3, 20) // larger than the bound on its own: logged into an empty log
	if !l.Append(big) {
		t.Error("an oversized batch was refused by an empty log")
	}
	if s := l.Stats(); s.Refused != 1 || s.Appended != 6 || s.Trimmed != 5 {
		t.Errorf("stats %+v", s)
	}
}

// TestLogFillCopies: an entry refills a batch with the same packets, clocks, flows,
// controls and time, independent of the batch it was logged from.
func TestLogFillCopies(t *testing.T) {
	l := NewLog(1<<20, 1000, 1)
	b := batch(0, 5, 4)
	want := make([][]byte, b.N)
	for i := range b.N {
		want[i] = bytes.Clone(b.Pkts[i].Data)
	}
	l.Append(b)
	for i := range b.N { // the unit rewrites its packets in place
		b.Pkts[i].Data[len(b.Pkts[i].Data)-1] ^= 0xff
	}
	var e *Entry
	l.Since(0, 0, func(x *Entry) { e = x })
	r := unit.NewBatch(1, nil)
	if err := e.Fill(r); err != nil {
		t.Fatal(err)
	}
	if r.N != 4 || r.Seq != 5 || r.Now != 5000 || len(r.Ctl) != 1 || r.Ctl[0].Hid != 5 {
		t.Fatalf("refilled batch: N %d seq %d now %d ctl %v", r.N, r.Seq, r.Now, r.Ctl)
	}
	for i := range r.N {
		p := &r.Pkts[i]
		if !bytes.Equal(p.Data, want[i]) || p.Clock != b.Pkts[i].Clock || p.Flow != 0 || !p.IP() {
			t.Errorf("packet %d: clock %d flow %d ip %v, data equal %v", i, p.Clock, p.Flow, p.IP(), bytes.Equal(p.Data, want[i]))
		}
	}
}

// source is an input that can read its frames again (port.Rereader's Reread), which may lose
// them.
type source struct {
	frames [][]byte
	reads  int
	lost   bool
}

func (s *source) Reread(dst []byte, pos uint64, n int) ([]byte, error) {
	s.reads++
	if s.lost || pos >= uint64(len(s.frames)) || len(s.frames[pos]) != n {
		return dst, errors.New("gone")
	}
	return append(dst, s.frames[pos]...), nil
}

// TestLogPositions: with an input that can read its frames again, the log keeps positions
// (packet.Packet.Pos) and metadata, no frame bytes; a replay reads the frames from the input,
// as read whatever the unit's copy went through; an input that lost a frame fails the replay,
// naming the packet.
func TestLogPositions(t *testing.T) {
	pk := batch(0, 0, 4).Pkts[:4]
	src := &source{}
	for i := range pk {
		src.frames = append(src.frames, nil, bytes.Clone(pk[i].Data)) // frame i at 2i+1
	}
	l := NewLog(1<<20, 1000, 1)
	l.Src = src
	b := unit.NewBatch(4, nil)
	b.Seq = 1
	for i := range pk {
		pk[i].Flow, pk[i].Pos = uint64(10+i), uint64(2*i+1)
		b.Pkts[i].CopyFrom(&pk[i])
		b.N++
	}
	if !l.Append(b) || l.Stats().Copied != 0 || l.Bytes() != 0 || l.Packets() != 4 || l.Stats().Arena.Frames != 0 {
		t.Fatalf("log holds %d bytes, %d packets, stats %+v: want 4 packets, no bytes, nothing copied", l.Bytes(), l.Packets(), l.Stats())
	}
	for i := range b.N { // the unit's chain rewrites the packets' headers,
		b.Pkts[i].SetSrcPort(4242)
	}
	b.Log.Prepare(b) // then it prepares the entry:
	for i := range b.N {
		b.Pkts[i].Clock, b.Pkts[i].Flow, b.Pkts[i].Pos = 0, 0, 0 // (taken: no unit changes these)
	}
	var e *Entry
	l.Since(0, 0, func(x *Entry) { e = x })
	if e.Frame(0) != nil {
		t.Error("Frame of a packet left in the input: want nil")
	}
	r := unit.NewBatch(1, nil)
	if err := e.Fill(r); err != nil {
		t.Fatal(err)
	}
	for i := range r.N {
		p := &r.Pkts[i]
		if !bytes.Equal(p.Data, src.frames[2*i+1]) || p.Clock != pk[i].Clock || p.Flow != uint64(10+i) || p.Key.SrcPort == 4242 {
			t.Errorf("replayed packet %d: clock %d flow %d, frame as read %v", i, p.Clock, p.Flow, bytes.Equal(p.Data, src.frames[2*i+1]))
		}
	}
	if src.reads != 4 {
		t.Errorf("%d rereads, want 4", src.reads)
	}
	src.lost = true
	e.src, l.Src = nil, nil // (no input to read again: an error, not a panic)
	if _, err := e.Original(nil, 0); err == nil {
		t.Error("Original without an input: want an error")
	}
	e.src, l.Src = src, src
	if err := e.Fill(r); err == nil || r.N != 0 || !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "clock") {
		t.Errorf("replay from an input that lost its frames: err %v, %d packets; want the input's error and none", err, r.N)
	}
	// Covered, it leaves the log; a long run allocates nothing once warm.
	seq := uint64(1)
	step := func() {
		seq++
		b.Reset()
		b.Seq = seq
		for i := range pk {
			b.Pkts[i].CopyFrom(&pk[i])
			b.N++
		}
		l.Append(b)
		b.Log.Prepare(b)
		l.Covered(0, seq)
	}
	for range 1000 {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 || l.Len() > 1 {
		t.Errorf("%.1f allocations per batch, %d batches held: want 0 and the covered ones gone", a, l.Len())
	}
}

// TestLogKeep: frames the root reads into the log's arena and keeps are logged where they
// were read, without a copy, with their batch; the unit rewriting its batch, and the root
// reading its next packets, leave the log as it was; after a checkpoint covers them their
// memory is reused. A frame read elsewhere changes hands; a batch whose packets were not
// kept (or were dropped) is copied.
func TestLogKeep(t *testing.T) {
	l := NewLog(1<<20, 1000, 2)
	src := batch(0, 0, 4).Pkts[:4]
	in := make([]packet.Packet, len(src)) // the root's read packets
	for i := range in {
		in[i].UseArena(l.Arena())
	}
	read := func() {
		for i := range in {
			in[i].SetData(src[i].Data, src[i].Time, 0)
			in[i].Clock = src[i].Clock
		}
	}
	read()
	b := unit.NewBatch(4, nil) // unit 1's batch
	b.Unit, b.Seq = 1, 1
	frames := make([]*byte, len(in))
	for i := range in {
		frames[i] = &in[i].Data[0]
		// The batch borrows the frame as the log keeps it: the one the root read.
		f := l.Keep(1, &in[i])
		if &f[0] != frames[i] {
			t.Fatalf("packet %d: Keep returned other memory than the frame it kept", i)
		}
		b.Pkts[i].Borrow(&in[i], f)
		b.N++
	}
	if !l.Append(b) {
		t.Fatal("refused")
	}
	if !b.LogFirst || b.Log == nil {
		t.Fatal("a batch of kept frames: want the unit to prepare its entry first (LogFirst)")
	}
	read() // the root reads its next packets; the unit prepares the entry (it saves the
	// headers), then its chain rewrites the batch in place
	b.Log.Prepare(b)
	for i := range b.N {
		b.Pkts[i].SetSrcPort(4242)
		b.Pkts[i].SetDstAddr(netip.MustParseAddr("192.0.2.7"))
	}
	var e *Entry
	l.Since(1, 0, func(x *Entry) { e = x })
	if e == nil || e.Len() != 4 || l.Stats().Copied != 0 {
		t.Fatalf("entry %v, stats %+v: want 4 kept packets, none copied", e, l.Stats())
	}
	// The log holds the frames lent, rewritten; Original and a replay (Fill) give them as read.
	r := unit.NewBatch(1, nil)
	if err := e.Fill(r); err != nil {
		t.Fatal(err)
	}
	for i := range e.Len() {
		m := e.Meta(i)
		f := e.Frame(i)
		if &f[0] != frames[i] || &b.Pkts[i].Data[0] != frames[i] || bytes.Equal(f, src[i].Data) || m.Clock != b.Pkts[i].Clock {
			t.Errorf("packet %d: lent (same memory) %v, rewritten in place %v, clock %d", i, &f[0] == frames[i], !bytes.Equal(f, src[i].Data), m.Clock)
		}
		if o, err := e.Original(nil, i); err != nil || !bytes.Equal(o, src[i].Data) {
			t.Errorf("packet %d: Original differs from the frame read", i)
		}
		if !bytes.Equal(r.Pkts[i].Data, src[i].Data) || r.Pkts[i].Clock != m.Clock || r.Pkts[i].Key.SrcPort == 4242 {
			t.Errorf("packet %d: replayed frame differs from the frame read", i)
		}
	}
	if want := 4 * ((len(src[0].Data)+63)&^63 + src[0].Rewritable()); l.Bytes() != want {
		t.Errorf("%d bytes held, want %d", l.Bytes(), want)
	}

	// Covered: a long run reuses the arena's memory (a few blocks at most) and allocates
	// nothing once warm (the unit filling each entry before its chain runs).
	seq := uint64(1)
	step := func() {
		read()
		b.Reset()
		seq++
		b.Unit, b.Seq = 1, seq
		for i := range in {
			if f := l.Keep(1, &in[i]); f != nil {
				b.Pkts[i].Borrow(&in[i], f)
			} else {
				b.Pkts[i].CopyFrom(&in[i])
			}
			b.N++
		}
		l.Append(b)
		b.Log.Prepare(b)
		l.Covered(1, seq)
	}
	for range 100000 {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Errorf("%.1f allocations per kept batch", a)
	}
	if s := l.Stats().Arena; s.Blocks > 3 || s.Overflows != 0 {
		t.Errorf("arena %+v after 400,000 frames: want its memory reused", s)
	}

	// A frame that is p's own buffer changes hands; one that is not is copied.
	var own, foreign packet.Packet
	own.SetData(src[0].Data, 0, 0)
	foreign.Data = bytes.Clone(src[1].Data)
	ownData := &own.Data[0]
	l.Keep(0, &own)
	l.Keep(0, &foreign)
	c := unit.NewBatch(2, nil)
	c.Unit, c.Seq, c.N = 0, 1, 2
	c.Pkts[0].CopyFrom(&own)
	c.Pkts[1].CopyFrom(&foreign)
	l.Append(c)
	l.Since(0, 0, func(x *Entry) { e = x })
	if copied := l.Stats().Copied; copied != 0 || &e.Frame(0)[0] != ownData || &e.Frame(1)[0] == &foreign.Data[0] || !bytes.Equal(e.Frame(1), src[1].Data) {
		t.Errorf("own frame taken over: %v; foreign frame copied: %v (batches copied %d)", &e.Frame(0)[0] == ownData, &e.Frame(1)[0] != &foreign.Data[0], copied)
	}

	// Kept, then dropped: the unit's next batch is copied.
	read()
	l.Keep(0, &in[0])
	l.Drop(0)
	d := batch(0, 2, 2)
	if !l.Append(d) || l.Stats().Copied != 1 {
		t.Fatalf("stats %+v: want the unkept batch copied", l.Stats())
	}
	// Kept packets that are not the batch's: the batch is copied.
	l.Keep(0, &in[1])
	l.Keep(0, &in[2])
	x := batch(0, 3, 2)
	l.Append(x)
	l.Since(0, 2, func(y *Entry) { e = y })
	if l.Stats().Copied != 2 || e.Meta(0).Clock != x.Pkts[0].Clock || !bytes.Equal(e.Frame(1), x.Pkts[1].Data) {
		t.Errorf("stats %+v, logged clock %d want %d", l.Stats(), e.Meta(0).Clock, x.Pkts[0].Clock)
	}
	// The same with a batch that borrows the frames kept: the frames go with what was kept,
	// so the batch takes copies of its own first (no longer lent).
	y := batch(0, 4, 2)
	for i := range 2 {
		read()
		f := l.Keep(0, &in[i])
		y.Pkts[i].Borrow(&y.Pkts[i], f) // y's clocks, in's frames: not what was kept
	}
	l.Append(y)
	for i := range 2 {
		if &y.Pkts[i].Data[0] == &in[i].Data[0] || !bytes.Equal(y.Pkts[i].Data, in[i].Data) {
			t.Errorf("packet %d of a mismatched lent batch: still in the arena %v", i, &y.Pkts[i].Data[0] == &in[i].Data[0])
		}
	}
	// Lend off (an NF writes frames itself): Keep keeps the frame, lends nothing, and the
	// entry saves no headers.
	l.Lend = false
	read()
	z := unit.NewBatch(1, nil)
	z.Unit, z.Seq = 1, seq+1
	if f := l.Keep(1, &in[0]); f != nil {
		t.Error("Lend off: Keep lent the frame")
	}
	z.Pkts[0].CopyFrom(&in[0])
	z.N = 1
	l.Append(z)
	z.Log.Prepare(z)
	l.Since(1, seq, func(x *Entry) { e = x })
	if e.Len() != 1 || len(e.hdrs) != 0 {
		t.Errorf("Lend off: %d packets, %d header bytes saved; want 1, none", e.Len(), len(e.hdrs))
	}
	// Kept, dropped, kept again: what was kept before the Drop is not the next batch's.
	l.Lend = true
	read()
	l.Keep(0, &in[3])
	l.Drop(0)
	copied := l.Stats().Copied
	if k, _ := keepBatch(t, l, 0, 10, [][]byte{src[0].Data, src[1].Data}); !k.LogFirst || l.Stats().Copied != copied {
		t.Errorf("a batch kept after a Drop: copied %v, want it kept", l.Stats().Copied != copied)
	}
}

// TestLogSteadyStateAllocs: logging copied batches and trimming them in steady state
// allocates nothing (kept ones: TestLogKeep).
func TestLogSteadyStateAllocs(t *testing.T) {
	l := NewLog(1<<20, 1<<20, 1)
	bs := []*unit.Batch{batch(0, 1, 32), batch(0, 2, 32)}
	seq := uint64(0)
	step := func() {
		for _, b := range bs {
			seq++
			b.Seq = seq
			l.Append(b)
		}
		l.Covered(0, seq)
	}
	for range 10 {
		step()
	}
	if a := testing.AllocsPerRun(100, step); a != 0 {
		t.Errorf("%.1f allocations per two batches", a)
	}
}

// TestLogPositionsCompact: a log with Src keeps a batch's packets in half a Meta each when
// they fit (positions, clocks and times near the batch's first, lengths under 64 KiB), in
// Metas when one does not; either way a replay gives every packet's metadata and frame back
// exactly.
func TestLogPositionsCompact(t *testing.T) {
	cases := []struct {
		name    string
		compact bool
		edit    func(i int, p *packet.Packet, pos *uint64)
	}{
		{"near", true, func(int, *packet.Packet, *uint64) {}},
		// (The batch's times are whole µs apart: kept in µs when seconds apart.)
		{"times seconds apart", true, func(i int, p *packet.Packet, _ *uint64) { p.Time += int64(i) * 3e9 }},
		{"times seconds apart, in ns", false, func(i int, p *packet.Packet, _ *uint64) { p.Time += int64(i)*3e9 + int64(i%2) }},
		{"times an hour apart", false, func(i int, p *packet.Packet, _ *uint64) { p.Time += int64(i) * 3600e9 }},
		{"times seconds back", true, func(i int, p *packet.Packet, _ *uint64) { p.Time -= int64(i) * 7e9 }},
		// (The first and last near, those between seconds away: ns tried first, then µs.)
		{"times seconds apart, then back", true, func(i int, p *packet.Packet, _ *uint64) {
			if i == 1 || i == 2 {
				p.Time += 3e9
			}
		}},
		{"times seconds apart, a clock far", false, func(i int, p *packet.Packet, _ *uint64) {
			p.Time += int64(i) * 3e9
			if i == 3 {
				p.Clock += 1 << 33
			}
		}},
		{"times going back", true, func(i int, p *packet.Packet, _ *uint64) { p.Time -= int64(i) * 5e8 }},
		{"clocks far apart", false, func(i int, p *packet.Packet, _ *uint64) { p.Clock += uint64(i) << 33 }},
		{"positions far apart", false, func(i int, _ *packet.Packet, pos *uint64) { *pos += uint64(i) << 33 }},
		{"positions going back", false, func(i int, _ *packet.Packet, pos *uint64) { *pos = 1000 - uint64(i) }},
		{"a jumbo wire length", false, func(i int, p *packet.Packet, _ *uint64) {
			if i == 2 {
				p.WireLen = 70000
			}
		}},
		{"a jumbo frame", false, func(i int, p *packet.Packet, _ *uint64) {
			if i == 1 {
				p.SetData(append(p.Data, make([]byte, 70000)...), p.Time, 70100)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := batch(0, 1, 4)
			src := &mapSource{frames: map[uint64][]byte{}}
			for i := range b.N {
				p := &b.Pkts[i]
				p.Time, p.WireLen, p.Flow = 1e18+int64(i)*1000, len(p.Data)+4, uint64(100+i)
				p.Pos = 1<<40 + uint64(i)*100
				c.edit(i, p, &p.Pos)
				src.frames[p.Pos] = bytes.Clone(p.Data)
			}
			l := NewLog(1<<30, 1000, 1)
			l.Src = src
			if !l.Append(b) {
				t.Fatal("refused")
			}
			var e *Entry
			l.Since(0, 0, func(x *Entry) { e = x })
			if got := len(e.at) > 0; got != c.compact || e.Len() != b.N {
				t.Fatalf("compact %v, %d packets: want %v, %d", got, e.Len(), c.compact, b.N)
			}
			r := unit.NewBatch(1, nil)
			if err := e.Fill(r); err != nil {
				t.Fatal(err)
			}
			for i := range b.N {
				p, q := &b.Pkts[i], &r.Pkts[i]
				if q.Time != p.Time || q.Clock != p.Clock || q.Flow != p.Flow || q.WireLen != p.WireLen || !bytes.Equal(q.Data, p.Data) {
					t.Errorf("packet %d replayed as time %d clock %d flow %d wire %d (%d bytes); want %d %d %d %d (%d)",
						i, q.Time, q.Clock, q.Flow, q.WireLen, len(q.Data), p.Time, p.Clock, p.Flow, p.WireLen, len(p.Data))
				}
			}
		})
	}
}

// TestLogLazyFill: an entry kept by positions is filled once, by whichever comes first — the
// unit's Prepare, or the log when a replay needs it (from the batch, which no unit
// finished) — and a batch whose entry left the log and was reused for another batch (a
// failed unit waking up with it) fills nothing: the entry keeps the other batch's packets. With -race, a unit
// and the log racing for one entry fill it once, consistently.
func TestLogLazyFill(t *testing.T) {
	src := &mapSource{frames: map[uint64][]byte{}}
	l := NewLog(1<<30, 1000, 1)
	l.Src = src
	logged := func(b *unit.Batch) {
		for i := range b.N {
			b.Pkts[i].Pos = b.Pkts[i].Clock * 10
			src.frames[b.Pkts[i].Pos] = bytes.Clone(b.Pkts[i].Data)
		}
		if !l.Append(b) {
			t.Fatal("refused")
		}
	}
	check := func(b *unit.Batch, clocks []uint64) {
		t.Helper()
		var e *Entry
		l.Since(0, b.Seq-1, func(x *Entry) {
			if x.Seq == b.Seq {
				e = x
			}
		})
		r := unit.NewBatch(1, nil)
		if err := e.Fill(r); err != nil {
			t.Fatal(err)
		}
		for i, c := range clocks {
			if r.Pkts[i].Clock != c || !bytes.Equal(r.Pkts[i].Data, src.frames[c*10]) {
				t.Fatalf("batch %d, packet %d: clock %d, want %d (and its frame)", b.Seq, i, r.Pkts[i].Clock, c)
			}
		}
	}
	old := batch(0, 1, 4)
	logged(old)
	stale := old.Log
	l.Covered(0, 1) // trimmed: its entry is free for the next batch
	b := batch(0, 2, 4)
	logged(b)
	if b.Log != stale {
		t.Fatal("the entry was not reused (the test needs it)")
	}
	stale.Prepare(old) // the failed unit's batch, whose entry is b's now: nothing (else old's clocks)
	check(b, []uint64{b.Pkts[0].Clock, b.Pkts[1].Clock, b.Pkts[2].Clock, b.Pkts[3].Clock})

	// A unit and the log (a replay) race for one entry: either fills it, once.
	for seq := uint64(3); seq < 200; seq++ {
		b := batch(0, seq, 8)
		logged(b)
		want := make([]uint64, b.N)
		for i := range want {
			want[i] = b.Pkts[i].Clock
		}
		done := make(chan struct{})
		go func() {
			b.Log.Prepare(b)
			close(done)
		}()
		check(b, want)
		<-done
		l.Covered(0, seq)
	}
}

// TestLogLazyWaits: whichever of the unit and the log finds the other filling an entry
// waits until it is filled — the unit does not send on a batch the log is reading, the log
// does not replay an entry half filled — and a refused Append leaves one entry: the Force
// that follows logs it.
func TestLogLazyWaits(t *testing.T) {
	src := &mapSource{frames: map[uint64][]byte{}}
	l := NewLog(1<<30, 6, 1) // (6 packets: a second batch of 4 is refused)
	l.Src = src
	mk := func(seq uint64) *unit.Batch {
		b := batch(0, seq, 4)
		for i := range b.N {
			b.Pkts[i].Pos = b.Pkts[i].Clock
			src.frames[b.Pkts[i].Pos] = bytes.Clone(b.Pkts[i].Data)
		}
		return b
	}
	b1 := mk(1)
	if !l.Append(b1) {
		t.Fatal("refused")
	}
	e, tk := b1.Log.(*Entry), b1.LogTicket
	for _, who := range []string{"unit", "log"} {
		e.st.Store(tk<<2 | 1) // the other one is filling it
		done := make(chan struct{})
		go func() {
			if who == "unit" {
				e.Prepare(b1)
			} else {
				e.ready()
			}
			close(done)
		}()
		select {
		case <-done:
			t.Fatalf("the %s went on while the entry was being filled", who)
		case <-time.After(20 * time.Millisecond):
		}
		e.fill(b1)
		e.st.Store(tk<<2 | 2)
		<-done
	}
	if e.Len() != 4 || e.Meta(3).Clock != b1.Pkts[3].Clock {
		t.Fatalf("entry: %d packets", e.Len())
	}

	b2 := mk(2)
	if l.Append(b2) {
		t.Fatal("not refused")
	}
	refused, tk2 := b2.Log, b2.LogTicket
	l.Force(b2)
	if b2.Log != refused || b2.LogTicket != tk2 || l.Len() != 2 {
		t.Fatalf("Force made another entry (%v), or logged %d entries: want the refused one, 2", b2.Log != refused, l.Len())
	}
	var n int
	l.Since(0, 1, func(x *Entry) { n = x.Len() })
	if n != 4 {
		t.Fatalf("the forced batch: %d packets, want 4", n)
	}
}

// mapSource is an input that reads frames again by any position.
type mapSource struct{ frames map[uint64][]byte }

func (s *mapSource) Reread(dst []byte, pos uint64, n int) ([]byte, error) {
	f, ok := s.frames[pos]
	if !ok || len(f) != n {
		return dst, errors.New("gone")
	}
	return append(dst, f...), nil
}

// BenchmarkLogKeep: the root's cost of logging, per packet, when it keeps its packets (no
// copy; the time includes the reader's SetData into the buffer the log gave, and the batch's
// packet borrowing the frame), batches of 32. (The unit fills the entry before its chain
// runs: BenchmarkLogKeepFill.)
func BenchmarkLogKeep(b *testing.B) { benchKeep(b, false) }

// BenchmarkLogKeepFill: BenchmarkLogKeep, and the unit's fill of each entry (Prepare: the
// metadata and the headers of the frames lent).
func BenchmarkLogKeepFill(b *testing.B) { benchKeep(b, true) }

func benchKeep(b *testing.B, fill bool) {
	l := NewLog(1<<26, 1<<20, 1)
	in := batch(0, 0, 32).Pkts[:32]
	frames := make([][]byte, len(in))
	for j := range in {
		frames[j] = bytes.Clone(in[j].Data)
		in[j].UseArena(l.Arena())
	}
	b.SetBytes(int64(len(in[0].Data)))
	logBatches(b, l, len(in), func(bt *unit.Batch, _ int) {
		for j := range in {
			in[j].SetData(frames[j], 0, 0) // as the root's reader does
			if f := l.Keep(0, &in[j]); f != nil {
				bt.Pkts[j].Borrow(&in[j], f)
			} else {
				bt.Pkts[j].CopyFrom(&in[j])
			}
			bt.N++
		}
	}, fill)
}

// logBatches runs the loop of the Log benchmarks: batches of n packets, filled by fill (i:
// the index of the batch's first packet), logged, prepared (with prepare, as the unit
// does), and covered at once.
func logBatches(b *testing.B, l *Log, n int, fill func(bt *unit.Batch, i int), prepare bool) {
	bt := unit.NewBatch(n, nil)
	b.ResetTimer()
	seq := uint64(0)
	for i := 0; i < b.N; i += n {
		seq++
		bt.Reset()
		bt.Seq = seq
		fill(bt, i)
		l.Append(bt)
		if prepare && bt.Log != nil {
			bt.Log.Prepare(bt)
		}
		l.Covered(0, seq)
	}
}

// BenchmarkLogPositions: the cost of logging, per packet, from an input that can read its
// packets again (positions and metadata only), batches of 32; the batch's packets are not
// timed (the root fills them with or without a log) but for their positions (as the
// input's Read sets them).
func BenchmarkLogPositions(b *testing.B) {
	// dense: times ns apart; sparse: a second apart, as a slow capture's at full speed (µs).
	for _, c := range []struct {
		name string
		gap  int64
	}{{"dense", 1}, {"sparse", 1e9}} {
		b.Run(c.name, func(b *testing.B) {
			l := NewLog(1<<26, 1<<20, 1)
			l.Src = &source{}
			in := batch(0, 0, 32).Pkts[:32]
			bt := unit.NewBatch(len(in), nil)
			for j := range in {
				bt.Pkts[j].CopyFrom(&in[j])
				bt.Pkts[j].Time = int64(j) * c.gap
			}
			bt.N = len(in)
			b.ResetTimer()
			seq := uint64(0)
			for i := 0; i < b.N; i += len(in) {
				seq++
				bt.Seq = seq
				for j := range bt.Pkts[:bt.N] {
					bt.Pkts[j].Pos = uint64(i + j)
				}
				l.Append(bt)
				bt.Log.Prepare(bt) // (the unit's part)
				if e := bt.Log.(*Entry); len(e.at) == 0 {
					b.Fatal("the batch was not kept compactly")
				}
				l.Covered(0, seq)
			}
		})
	}
}

// BenchmarkLogAppend: the cost of logging, per packet, when the batch is copied, batches of 32.
func BenchmarkLogAppend(b *testing.B) {
	l := NewLog(1<<26, 1<<20, 1)
	bt := batch(0, 1, 32)
	b.SetBytes(int64(len(bt.Pkts[0].Data)))
	b.ResetTimer()
	seq := uint64(0)
	for i := 0; i < b.N; i += 32 {
		seq++
		bt.Seq = seq
		l.Append(bt)
		l.Covered(0, seq)
	}
}

// TestLogLowPos: LowPos is the lowest input position of the packets the log holds, across
// units whose batches interleave (a unit's batch may start before another's that was logged
// earlier), trims, refused batches and entries reused — against a brute-force model.
func TestLogLowPos(t *testing.T) {
	const units = 3
	r := rand.New(rand.NewPCG(5, 6))
	l := NewLog(1<<30, 400, units)
	l.Src = &source{}
	type logged struct {
		unit       int
		seq, first uint64
	}
	var (
		model   []logged
		pos     uint64 // the next packet read
		seqs    [units]uint64
		open    [units][]uint64 // by unit: the positions of its batch being filled
		covered [units]uint64
	)
	if l.LowPos() != ^uint64(0) {
		t.Fatalf("empty log: LowPos %d", l.LowPos())
	}
	for step := range 20000 {
		switch k := r.IntN(10); {
		case k < 6: // the root reads a packet for some unit
			u := r.IntN(units)
			open[u] = append(open[u], pos)
			pos += 1 + uint64(r.IntN(3)) // (some packets dropped, or sent nowhere)
		case k < 8: // a unit's batch is logged
			u := r.IntN(units)
			if len(open[u]) == 0 && r.IntN(2) == 0 {
				continue
			}
			// (A batch of controls only, at times: it holds no position.)
			b := unit.NewBatch(max(1, len(open[u])), nil)
			b.Unit, b.Seq, b.N = u, seqs[u]+1, len(open[u])
			for i, p := range open[u] {
				b.Pkts[i].Pos = p
			}
			if !l.Append(b) {
				continue // (full: the batch stays open; the engine would send it later)
			}
			seqs[u]++
			first := ^uint64(0)
			if len(open[u]) > 0 {
				first = open[u][0]
			}
			model = append(model, logged{u, b.Seq, first})
			open[u] = open[u][:0]
		default: // a checkpoint covers a unit up to some batch
			u := r.IntN(units)
			if seqs[u] > covered[u] {
				covered[u] += 1 + uint64(r.IntN(int(seqs[u]-covered[u])))
				l.Covered(u, covered[u])
				for len(model) > 0 && model[0].seq <= covered[model[0].unit] {
					model = model[1:]
				}
			}
		}
		want := ^uint64(0)
		for _, m := range model {
			want = min(want, m.first)
		}
		if got := l.LowPos(); got != want || l.Len() != len(model) {
			t.Fatalf("step %d: LowPos %d, %d entries; want %d, %d", step, got, l.Len(), want, len(model))
		}
	}
}

// TestLogKeepLazy: an entry of kept frames is filled by the unit before its chain runs
// (Prepare: the metadata and the headers the chain rewrites), or by the log when it needs
// it first (a unit that failed before it started); compactly, or in Metas when some frames
// are not in the arena (own buffers) or the packets' times are too far apart; with Lend
// off nothing is lent and no header saved. A replay gives every frame as read.
func TestLogKeepLazy(t *testing.T) {
	cases := []struct {
		name                    string
		unitFirst, lend, spread bool
		own                     []bool // by packet: read into a buffer of its own, not the arena
	}{
		{"unit, compact", true, true, false, nil},
		{"log first", false, true, false, nil},
		{"own frames", true, true, false, []bool{false, true, false, true}},
		{"times far apart", true, true, true, nil},
		{"log first, own frames", false, true, false, []bool{true, false, false, false}},
		{"lend off", true, false, false, []bool{false, false, true, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := NewLog(1<<20, 1000, 1)
			l.Lend = c.lend
			src := batch(0, 0, 4).Pkts[:4]
			if c.spread {
				for i := range src {
					src[i].Time = int64(i) * (3e9 + 7) // (seconds apart, not whole µs: not compact)
				}
			}
			in := make([]packet.Packet, len(src))
			b := unit.NewBatch(4, nil)
			b.Unit, b.Seq = 0, 1
			for i := range in {
				if c.own == nil || !c.own[i] {
					in[i].UseArena(l.Arena())
				}
				in[i].SetData(src[i].Data, src[i].Time, 0)
				in[i].Clock, in[i].Flow = src[i].Clock, 9
				if f := l.Keep(0, &in[i]); f != nil {
					b.Pkts[i].Borrow(&in[i], f)
				} else {
					b.Pkts[i].CopyFrom(&in[i])
				}
				b.N++
			}
			if !l.Append(b) || !b.LogFirst {
				t.Fatalf("appended: want a lazy entry the unit prepares first")
			}
			var e *Entry
			if !c.unitFirst { // the log needs the entry before any unit prepared it
				l.Since(0, 0, func(x *Entry) { e = x })
			}
			b.Log.Prepare(b)     // (the unit: filled already, if the log was first)
			for i := range b.N { // its chain rewrites the batch (lent frames: the log's)
				b.Pkts[i].SetSrcPort(4242)
			}
			l.Since(0, 0, func(x *Entry) { e = x })
			r := unit.NewBatch(1, nil)
			if err := e.Fill(r); err != nil {
				t.Fatal(err)
			}
			for i := range src {
				o, err := e.Original(nil, i)
				if err != nil || !bytes.Equal(o, src[i].Data) || !bytes.Equal(r.Pkts[i].Data, src[i].Data) {
					t.Errorf("packet %d: Original %v (%v), replayed frame equal %v: want the frame as read", i, bytes.Equal(o, src[i].Data), err, bytes.Equal(r.Pkts[i].Data, src[i].Data))
				}
				if m := e.Meta(i); m.Clock != src[i].Clock || m.Time != src[i].Time || m.Flow != 9 || int(m.len) != len(src[i].Data) {
					t.Errorf("packet %d: meta %+v", i, m)
				}
				lent := c.lend && (c.own == nil || !c.own[i])
				if f := e.Frame(i); lent == bytes.Equal(f, src[i].Data) {
					t.Errorf("packet %d: the log's frame rewritten %v, want %v (lent)", i, !bytes.Equal(f, src[i].Data), lent)
				}
			}
			if compact := len(e.at) > 0; compact != (c.own == nil && !c.spread) {
				t.Errorf("compact %v", compact)
			}
			// What the root counted (Keep) is what the entry holds once filled.
			held := len(e.hdrs)
			for i := range src {
				if m := e.Meta(i); m.where == inArena {
					held += (int(m.len) + 63) &^ 63
				} else {
					held += cap(e.own[m.pos])
				}
			}
			if l.Bytes() != held {
				t.Errorf("the log counts %d bytes, holds %d", l.Bytes(), held)
			}
		})
	}

	// A batch whose packets were made from the root's before Keep (their Pos not Keep's):
	// not the kept frames' batch — it is copied.
	l := NewLog(1<<20, 1000, 1)
	src := batch(0, 0, 3).Pkts[:3]
	b := unit.NewBatch(3, nil)
	b.Unit, b.Seq = 0, 1
	for i := range src {
		var p packet.Packet
		p.UseArena(l.Arena())
		p.SetData(src[i].Data, src[i].Time, 0)
		p.Clock = src[i].Clock
		b.Pkts[i].CopyFrom(&p)
		l.Keep(0, &p)
		b.N++
	}
	l.Append(b)
	var e *Entry
	l.Since(0, 0, func(x *Entry) { e = x })
	for i := range src {
		if o, err := e.Original(nil, i); err != nil || !bytes.Equal(o, src[i].Data) || b.LogFirst {
			t.Errorf("packet %d of a batch made before Keep: Original right %v (%v), lazy %v", i, bytes.Equal(o, src[i].Data), err, b.LogFirst)
		}
	}
	if l.Stats().Copied != 1 {
		t.Errorf("stats %+v: want the batch copied", l.Stats())
	}
}

// TestLogKeepRace: the unit fills its entry and its chain rewrites the frames while the log,
// on the root's goroutine, fills the same entry for a replay (a unit declared failed): the
// claim lets one of them copy the headers, before the chain writes them; the replay gives
// the frames as read (under -race: no data race).
func TestLogKeepRace(t *testing.T) {
	l := NewLog(1<<26, 1<<20, 1)
	src := batch(0, 0, 256).Pkts[:256] // (long enough for the two to meet while one fills)
	in := make([]packet.Packet, len(src))
	for i := range in {
		in[i].UseArena(l.Arena())
	}
	r := unit.NewBatch(1, nil)
	b := unit.NewBatch(len(src), nil)
	for round := range 200 {
		b.Reset()
		b.Unit, b.Seq = 0, uint64(round+1)
		for i := range in {
			in[i].SetData(src[i].Data, src[i].Time, 0)
			in[i].Clock = src[i].Clock
			b.Pkts[i].Borrow(&in[i], l.Keep(0, &in[i]))
			b.N++
		}
		l.Append(b)
		started, done := make(chan struct{}), make(chan struct{})
		go func() { // the unit
			defer close(done)
			close(started)
			for range round % 4 {
				runtime.Gosched()
			}
			b.Log.Prepare(b)
			for i := range b.N {
				b.Pkts[i].SetSrcPort(4242)
				b.Pkts[i].SetDstAddr(netip.MustParseAddr("192.0.2.9"))
			}
		}()
		<-started
		var e *Entry
		l.Since(0, uint64(round), func(x *Entry) { e = x }) // (fills it, unless the unit did)
		<-done
		if err := e.Fill(r); err != nil {
			t.Fatal(err)
		}
		for i := range src {
			if !bytes.Equal(r.Pkts[i].Data, src[i].Data) {
				t.Fatalf("round %d, packet %d: replayed frame differs from the frame read", round, i)
			}
		}
		l.Covered(0, uint64(round+1))
	}
}

// keepBatch reads frames into l's arena as the root does and sends them as unit u's batch
// seq: Keep, the batch borrows what is lent, Append. It returns the batch and the packets
// read (whose frames the arena holds).
func keepBatch(t *testing.T, l *Log, u int, seq uint64, frames [][]byte) (*unit.Batch, []packet.Packet) {
	t.Helper()
	b, in := keptBatch(l, u, seq, frames)
	if !l.Append(b) {
		t.Fatalf("batch %d of unit %d refused", seq, u)
	}
	return b, in
}

// keptBatch is keepBatch without the Append.
func keptBatch(l *Log, u int, seq uint64, frames [][]byte) (*unit.Batch, []packet.Packet) {
	in := make([]packet.Packet, len(frames))
	b := unit.NewBatch(len(frames), nil)
	b.Unit, b.Seq = u, seq
	for i, f := range frames {
		clockNext++
		in[i].UseArena(l.Arena())
		in[i].SetData(f, int64(clockNext)*1000, 0)
		in[i].Clock, in[i].Flow = clockNext, uint64(u)
		if d := l.Keep(u, &in[i]); d != nil {
			b.Pkts[i].Borrow(&in[i], d)
		} else {
			b.Pkts[i].CopyFrom(&in[i])
		}
		b.N++
	}
	return b, in
}

// TestLogHeadersOnly: with HeadersOnly, once the egress wrote a batch the log forgets its
// frames: a replay gets the headers saved and the payloads zeroed (the frame whole when it
// was not parsed to its L4 header) — or, for the packets a unit held (from the 64th on, all of
// them once one is), every packet of a batch that was replayed, and a frame not lent, the
// frames as read; the arena's memory is reused while batches are in flight only; what the
// log counts is what it holds.
func TestLogHeadersOnly(t *testing.T) {
	a, d := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.9.9.9")
	payload := bytes.Repeat([]byte("payload!"), 80)
	udp := pkttest.UDP(a, d, 1000, 53, payload)
	nonIP := append(bytes.Repeat([]byte{0xff}, 12), 0x08, 0x06) // ARP's EtherType
	nonIP = append(nonIP, payload[:100]...)
	truncated := udp[:14+20+4] // IPv4, half a UDP header: not parsed to L4
	frames := [][]byte{udp, nonIP, truncated, pkttest.TCP(a, d, 5, 80, "PA", payload)}
	// A frame not lent: its headers (the whole frame, not parsed to L4) past MaxHeader.
	longNonIP := append(slices.Clone(nonIP[:14]), bytes.Repeat([]byte{7}, 400)...)
	var long [][]byte // a batch of 80 frames
	for len(long) < 80 {
		long = append(long, frames...)
	}
	zeroed := func(f []byte) []byte { // what a replay gives frame f once forgotten
		var p packet.Packet
		p.SetData(f, 0, 0)
		if p.Flags&packet.HasL4 == 0 {
			return f
		}
		w := p.Rewritable()
		return append(append([]byte(nil), f[:w]...), make([]byte, len(f)-w)...)
	}

	const late = "held, and late for an earlier use" // (a failed unit's call, after a new use's)
	const past = "held, past the 64th packet"
	const beyond = "marked past its end" // (a late call for a longer batch of an earlier use)
	for _, c := range []string{"written", "held", "replayed", "held before", late, "not written", "not lent", past, beyond} {
		t.Run(c, func(t *testing.T) {
			fr := frames
			switch c {
			case "not lent":
				fr = append(slices.Clone(frames), longNonIP)
			case past:
				fr = long
			}
			done := make([]atomic.Uint64, 2)
			l := NewLog(1<<20, 1000, 2)
			l.HeadersOnly(done)
			var old *unit.Batch
			if c == "held before" || c == late { // an earlier use of the entry, trimmed
				old, _ = keepBatch(t, l, 1, 1, frames)
				old.Log.Prepare(old)
				if c == "held before" {
					old.Log.Held(old, 3) // (a unit held a packet of it)
				}
				l.Covered(1, 1)
				done[1].Store(1)
				l.release()
			}
			b, _ := keepBatch(t, l, 0, 1, fr)
			if old != nil && old.Log != b.Log {
				t.Fatal("the entry was not reused")
			}
			b.Log.Prepare(b) // the unit, before its chain
			for i := range b.N {
				b.Pkts[i].SetSrcPort(4242) // its chain rewrites the lent frames
			}
			switch c {
			case "held":
				b.Log.Held(b, 3) // the TCP frame
			case late:
				b.Log.Held(b, 3)
				old.Log.Held(old, 0) // (lands in b's use: its payload is kept too, needlessly)
			case "replayed":
				l.Since(0, 0, func(*Entry) {})
			case past:
				b.Log.Held(b, 70) // (its payload, and those of the others from the 64th on)
			case beyond:
				b.Log.Held(b, 40) // nothing to keep: none counted
			}
			if c != "not written" {
				done[0].Store(1) // the egress wrote it
			}
			l.release()
			var e *Entry
			l.Since(0, 0, func(x *Entry) { e = x })
			r := unit.NewBatch(1, nil)
			if err := e.Fill(r); err != nil {
				t.Fatal(err)
			}
			st := l.Stats()
			kept := map[string][]int{"held": {3}, "replayed": {0, 1, 2, 3}, late: {0, 3}, "not lent": {4}, past: {}}[c] // payloads
			if c == past {
				for i := 63; i < len(fr); i++ {
					kept = append(kept, i)
				}
			}
			gone := c != "not written"
			if e.gone != gone || (st.Shortened > 0) != gone || (st.Tailed > 0) != (len(kept) > 0 && gone) ||
				st.TailedPackets != uint64(len(kept)) && gone {
				t.Fatalf("gone %v, stats %+v: want gone %v, the payloads of %v kept", e.gone, st, gone, kept)
			}
			// A unit failing now may rewrite the frames of a batch not written yet, not of
			// one written and forgotten (whose memory may be another frame's).
			if low := l.LowSince(0, 0); (low == noPos) != gone {
				t.Errorf("LowSince %d with the batch gone %v", low, gone)
			}
			for i := range fr {
				want := fr[i]
				if gone && !slices.Contains(kept, i) {
					want = zeroed(want)
				}
				if !bytes.Equal(r.Pkts[i].Data, want) {
					t.Errorf("frame %d replayed as %x, want %x", i, r.Pkts[i].Data, want)
				}
			}
			held := len(e.hdrs) + cap(e.tails) // what the log counts is what it holds
			if !gone {
				held += e.abytes
			}
			if l.Bytes() != held {
				t.Errorf("the log counts %d bytes, holds %d", l.Bytes(), held)
			}
		})
	}

	// The bound counts the frames until the egress wrote their batch, the headers after: a
	// log bounded at 40 KB (a hundred batches' headers; their frames take 170) takes them
	// all once written, without waiting for the arena to need memory (which forgets them too).
	done := make([]atomic.Uint64, 1)
	l := NewLog(40<<10, 1<<20, 1)
	l.HeadersOnly(done)
	for seq := uint64(1); seq <= 100; seq++ {
		b, _ := keepBatch(t, l, 0, seq, frames) // (fails when refused)
		b.Log.Prepare(b)
		done[0].Store(seq)
	}
	if st := l.Stats(); st.Arena.Blocks != 1 || st.Refused != 0 || l.Len() != 100 {
		t.Errorf("%+v, %d batches logged: want 100 in one block, none refused", st, l.Len())
	}

	// The arena holds the batches in flight only: 2,000 batches of 64 frames of ~700 bytes
	// read through an arena that stays at a few blocks while the log keeps 100 batches
	// (checkpoints cover the older ones) — without HeadersOnly it holds those 100 batches'
	// frames, 5 MB; and the log allocates nothing once warm.
	for _, short := range []bool{true, false} {
		done := make([]atomic.Uint64, 1)
		l := NewLog(1<<30, 1<<30, 1)
		if short {
			l.HeadersOnly(done)
		}
		in := make([]packet.Packet, 64)
		b := unit.NewBatch(len(in), nil)
		seq := uint64(0)
		step := func() {
			seq++
			b.Reset()
			b.Unit, b.Seq = 0, seq
			for i := range in {
				in[i].UseArena(l.Arena())
				in[i].SetData(frames[0], int64(seq), 0)
				in[i].Clock = seq*64 + uint64(i)
				if f := l.Keep(0, &in[i]); f != nil {
					b.Pkts[i].Borrow(&in[i], f)
				} else {
					b.Pkts[i].CopyFrom(&in[i])
				}
				b.N++
			}
			if !l.Append(b) {
				t.Fatal("refused")
			}
			b.Log.Prepare(b)
			if seq > 4 {
				done[0].Store(seq - 4) // four batches in flight
			}
			if seq > 100 {
				l.Covered(0, seq-100)
			}
		}
		for range 2000 {
			step()
		}
		st := l.Stats()
		t.Logf("HeadersOnly %v: %d arena blocks, %d batches shortened, %d bytes held", short, st.Arena.Blocks, st.Shortened, l.Bytes())
		if blocks := st.Arena.Blocks; short != (blocks <= 8) || short != (st.Shortened >= 1990) {
			t.Errorf("HeadersOnly %v: %d arena blocks, %d batches shortened", short, blocks, st.Shortened)
		}
		if short && l.Bytes() > 100*64*128 {
			t.Errorf("the log counts %d bytes for 6,400 frames' headers", l.Bytes())
		}
		if a := testing.AllocsPerRun(500, step); short && a != 0 {
			t.Errorf("%.1f allocations per batch", a)
		}
	}
}

// TestLogClosePools: a closed log's entries go to the logs made after it — a log growing to
// its peak then makes no entries anew — and work there as new ones: a log keeping frames takes
// the entries of one that kept positions, and the other way round.
func TestLogClosePools(t *testing.T) {
	frames := [][]byte{batch(0, 0, 1).Pkts[0].Data, batch(0, 0, 1).Pkts[0].Data}
	const entries = 200
	grow := func() {
		l := NewLog(64<<20, 1<<20, 1)
		for seq := uint64(1); seq <= entries; seq++ {
			keepBatch(t, l, 0, seq, frames)
		}
		l.Close()
	}
	allocs := func() float64 { // (testing.AllocsPerRun runs grow once before it counts)
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		grow()
		runtime.ReadMemStats(&m1)
		return float64(m1.Mallocs - m0.Mallocs)
	}
	entryPool.mu.Lock()
	entryPool.free = nil
	entryPool.mu.Unlock()
	cold := allocs() // (its entries made, then pooled)
	warm := allocs()
	// A new entry is four allocations: the entry, and room for its metadata and headers.
	if warm > cold-3*entries {
		t.Errorf("a log growing to %d entries: %.0f allocations with entries pooled, %.0f without: want at least %d fewer", entries, warm, cold, 3*entries)
	}

	// Positions in entries that kept frames.
	pk := batch(0, 0, 2).Pkts[:2]
	src := &source{}
	for i := range pk {
		src.frames = append(src.frames, bytes.Clone(pk[i].Data))
	}
	p := NewLog(1<<20, 1000, 1)
	p.Src = src
	b := unit.NewBatch(2, nil)
	b.Seq = 1
	for i := range pk {
		pk[i].Pos = uint64(i)
		b.Pkts[i].CopyFrom(&pk[i])
		b.Pkts[i].SetSrcPort(4242) // the unit's chain rewrites its copy
		b.N++
	}
	p.Append(b)
	b.Log.Prepare(b)
	var e *Entry
	p.Since(0, 0, func(x *Entry) { e = x })
	r := unit.NewBatch(2, nil)
	if err := e.Fill(r); err != nil || r.N != 2 || !bytes.Equal(r.Pkts[1].Data, src.frames[1]) || len(e.hdrs) != 0 || e.arena != p.arena {
		t.Fatalf("positions in a pooled entry: replay %v, %d packets, frame as read %v, %d header bytes", err, r.N, r.N == 2 && bytes.Equal(r.Pkts[1].Data, src.frames[1]), len(e.hdrs))
	}
	p.Close()

	// Frames kept in entries that kept positions (and frames).
	k := NewLog(1<<20, 1000, 1)
	for seq := uint64(1); seq <= 3; seq++ {
		c, _ := keepBatch(t, k, 0, seq, frames)
		c.Log.Prepare(c) // the unit saves the headers, then its chain rewrites the frames
		for i := range c.N {
			c.Pkts[i].SetSrcPort(4242)
		}
	}
	k.Since(0, 0, func(x *Entry) {
		if err := x.Fill(r); err != nil || r.N != 2 || !bytes.Equal(r.Pkts[0].Data, frames[0]) || x.arena != k.arena {
			t.Errorf("batch %d kept in a pooled entry: replay %v, frame as read %v", x.Seq, err, err == nil && bytes.Equal(r.Pkts[0].Data, frames[0]))
		}
	})
	k.Close()
}

// TestLogKeptRunHeld: a frame kept for a unit's batch being filled (in the run only: no
// pending entry, the fast path) keeps its arena memory while other units' batches come and
// go and the arena reuses its blocks (release must count l.run[u].low).
func TestLogKeptRunHeld(t *testing.T) {
	l := NewLog(1<<20, 1<<20, 2)
	a, d := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.9.9.9")
	first := pkttest.UDP(a, d, 1000, 53, bytes.Repeat([]byte{0xaa}, 1000))
	other := pkttest.UDP(a, d, 2000, 53, bytes.Repeat([]byte{0x55}, 1000))
	var p packet.Packet
	p.UseArena(l.Arena())
	p.SetData(first, 1, 0)
	clockNext++
	p.Clock = clockNext
	f := l.Keep(0, &p) // unit 0's batch being filled: one frame, lent
	if f == nil {
		t.Fatal("not lent")
	}
	b0 := unit.NewBatch(1, nil)
	b0.Unit, b0.Seq = 0, 1
	b0.Pkts[0].Borrow(&p, f)
	b0.N = 1
	// Unit 1 gets thousands of batches, each covered at once: the arena wraps many times.
	for seq := uint64(1); seq <= 2000; seq++ {
		b, _ := keepBatch(t, l, 1, seq, [][]byte{other, other, other, other})
		b.Log.Prepare(b)
		l.Covered(1, seq)
	}
	if !bytes.Equal(b0.Pkts[0].Data, first) {
		t.Fatalf("unit 0's kept frame was overwritten while its batch was being filled (arena %+v)", l.Stats().Arena)
	}
	if !l.Append(b0) {
		t.Fatal("refused")
	}
	b0.Log.Prepare(b0)
	var e *Entry
	l.Since(0, 0, func(x *Entry) { e = x })
	if o, err := e.Original(nil, 0); err != nil || !bytes.Equal(o, first) {
		t.Fatalf("replay of unit 0's batch: %v, frame as read %v", err, bytes.Equal(o, first))
	}
}

// TestLogPooledTickets: an entry pooled by Close gets, in the next log, a ticket no batch of
// the closed log holds (each log has its own range: logTickets): a late Prepare from a
// goroutine of the finished run (a misuse: Close's precondition) would leave it alone.
func TestLogPooledTickets(t *testing.T) {
	entryPool.mu.Lock()
	entryPool.free = nil
	entryPool.mu.Unlock()
	frames := [][]byte{batch(0, 0, 1).Pkts[0].Data, batch(0, 0, 1).Pkts[0].Data}
	a := NewLog(1<<20, 1000, 1)
	old, _ := keepBatch(t, a, 0, 1, frames) // a unit of the finished run has not prepared it
	a.Close()
	b := NewLog(1<<20, 1000, 1)
	cur, _ := keepBatch(t, b, 0, 1, frames)
	if cur.Log != old.Log {
		t.Fatal("the closed log's entry was not reused")
	}
	if cur.LogTicket == old.LogTicket {
		t.Fatalf("a pooled entry's new use has ticket %d, the same as the closed log's batch holds: a late Prepare of that batch would claim it", cur.LogTicket)
	}
	e := cur.Log.(*Entry)
	old.Log.Prepare(old) // late, and from the other log's batch: it leaves the entry alone
	if e.st.Load() != cur.LogTicket<<2 {
		t.Fatalf("a late Prepare of the closed log's batch filled the new log's entry (state %d)", e.st.Load()&3)
	}
	cur.Log.Prepare(cur)
	if e.st.Load() != cur.LogTicket<<2|2 || e.Len() != 2 {
		t.Fatalf("the entry's own batch: state %d, %d packets; want filled, 2", e.st.Load()&3, e.Len())
	}
}

// TestLogKeptForce: a batch of kept frames logged by Force — with no Append first (the
// engine's waitRoom forces other units' batches that carry controls), or after a refused
// Append — is logged as kept (not copied), once, its bytes counted once.
func TestLogKeptForce(t *testing.T) {
	frames := [][]byte{batch(0, 0, 1).Pkts[0].Data, batch(0, 0, 1).Pkts[0].Data}
	mk := func(l *Log, u int, seq uint64) *unit.Batch {
		b, _ := keptBatch(l, u, seq, frames)
		return b
	}
	// Forced with no Append.
	l := NewLog(1<<20, 1000, 2)
	b := mk(l, 0, 1)
	l.Force(b)
	if !b.LogFirst || l.Stats().Copied != 0 || l.Len() != 1 {
		t.Errorf("forced kept batch: LogFirst %v, copied %d, %d entries: want kept, none copied, 1", b.LogFirst, l.Stats().Copied, l.Len())
	}
	one := l.Bytes()
	// Refused, then forced: one entry, counted once.
	k := NewLog(1<<20, 3, 2) // (3 packets: a second batch of 2 is refused)
	b1 := mk(k, 0, 1)
	if !k.Append(b1) {
		t.Fatal("refused")
	}
	b2 := mk(k, 1, 1)
	if k.Append(b2) {
		t.Fatal("not refused")
	}
	e2 := b2.Log
	k.Force(b2)
	if b2.Log != e2 || !b2.LogFirst || k.Stats().Copied != 0 || k.Len() != 2 || k.Bytes() != 2*one {
		t.Errorf("refused then forced: same entry %v, LogFirst %v, copied %d, %d entries, %d bytes: want the same, kept, 2 entries, %d bytes",
			b2.Log == e2, b2.LogFirst, k.Stats().Copied, k.Len(), k.Bytes(), 2*one)
	}
	b2.Log.Prepare(b2)
	k.Since(1, 0, func(x *Entry) {
		if o, err := x.Original(nil, 1); err != nil || !bytes.Equal(o, frames[1]) {
			t.Errorf("forced batch's replay: %v", err)
		}
	})
}
