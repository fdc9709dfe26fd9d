package replay

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/snf-dev/snf/internal/pkttest"
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
	one := len(batch(0, 1, 1).Pkts[0].Data)
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
	e.Fill(r)
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

// TestLogSteadyStateAllocs: appending and trimming in steady state allocates nothing.
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

// BenchmarkLogAppend: the cost of logging, per packet (copying it), batches of 32.
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
