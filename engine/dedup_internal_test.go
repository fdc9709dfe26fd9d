package engine

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/unit"
)

// TestDedupModel: the egress's dedup keeps an output exactly when its clock was not written
// before and is within the window behind the highest clock written — against a model that
// remembers every clock — over random batches: clocks mostly rising (units interleave),
// duplicates (replays, some at the window's far end), far jumps (more than a window), a
// packet's several outputs (one clock: all kept, or all dropped).
func TestDedupModel(t *testing.T) {
	e := &egress{}
	e.dedupOn(5000) // 16,384 clocks, 12,288 kept
	window := e.window()
	written := map[uint64]bool{}
	var hi uint64
	r := rand.New(rand.NewPCG(3, 4))
	next := uint64(1)
	for it := range 20000 {
		b := &unit.Batch{}
		n := 1 + r.IntN(20)
		pkts := make([]packet.Packet, n)
		for i := range pkts {
			switch k := r.IntN(100); {
			case k < 10 && next > 50: // a replay of a recent clock
				pkts[i].Clock = next - 1 - uint64(r.IntN(50))
			case k < 12: // a jump past the window
				next += window + uint64(r.IntN(100))
				pkts[i].Clock = next
			case k < 17 && i > 0: // a frame an NF emitted with the packet before: its clock
				pkts[i].Clock = pkts[i-1].Clock
			case k < 20 && next > window+20: // a replay near the window's far end
				pkts[i].Clock = next - window - 20 + uint64(r.IntN(40))
			default:
				next += 1 + uint64(r.IntN(3))
				pkts[i].Clock = next
			}
			b.Out = append(b.Out, &pkts[i])
			b.OutStamp = append(b.OutStamp, 0)
			if it%2 == 0 { // as a unit fills them (else the egress reads the packets)
				b.OutClock = append(b.OutClock, pkts[i].Clock)
			}
		}
		var want []uint64
		for _, p := range b.Out {
			c := p.Clock
			if !written[c] && c+window > hi {
				want = append(want, c)
			}
		}
		for _, c := range want {
			written[c] = true
			hi = max(hi, c)
		}
		e.dedup(b)
		if len(b.Out) != len(want) {
			t.Fatalf("kept %d outputs, want %d", len(b.Out), len(want))
		}
		for i, p := range b.Out {
			if p.Clock != want[i] || b.OutClock[i] != want[i] || len(b.OutClock) != len(b.Out) {
				t.Fatalf("kept clock %d (OutClock %v), want %d", p.Clock, b.OutClock, want[i])
			}
		}
	}
}

// TestMarkClocksBatched: markClocks over a batch (its highest clock and cleared range
// kept in registers through the loop) leaves the marks, the highest clock and the cleared
// range exactly as marking its clocks one at a time, over random batches: rising and
// repeated clocks, clocks behind the highest, behind the window, and jumps past what is
// cleared and past the window.
func TestMarkClocksBatched(t *testing.T) {
	for seed := range uint64(50) {
		a, b := &egress{}, &egress{}
		a.dedupOn(5000)
		b.dedupOn(5000)
		window := a.window()
		r := rand.New(rand.NewPCG(seed, 7))
		next := uint64(1)
		for it := range 2000 {
			clocks := make([]uint64, 1+r.IntN(70))
			for i := range clocks {
				switch k := r.IntN(100); {
				case k < 3: // past the window
					next += window + uint64(r.IntN(100))
				case k < 8: // past what mark cleared ahead
					next += dedupAhead + uint64(r.IntN(3*dedupAhead))
				case k < 15 && next > window+100: // behind the window
					clocks[i] = next - window - uint64(r.IntN(100))
					continue
				case k < 30 && next > 200: // behind the highest
					clocks[i] = next - uint64(r.IntN(200))
					continue
				case k < 35 && i > 0: // the clock before again
					clocks[i] = clocks[i-1]
					continue
				default:
					next += 1 + uint64(r.IntN(3))
				}
				clocks[i] = next
			}
			for i := range clocks {
				a.markClocks(clocks[i : i+1])
			}
			b.markClocks(clocks)
			if a.hi != b.hi || a.clean != b.clean || !slices.Equal(a.seen, b.seen) {
				t.Fatalf("seed %d, batch %d %v: hi %d/%d, clean %d/%d, marks equal %v",
					seed, it, clocks, a.hi, b.hi, a.clean, b.clean, slices.Equal(a.seen, b.seen))
			}
		}
	}
}

// TestDedupBatchFallsBack: a batch whose clocks fall back by more than the window marks
// nothing for the clock that left it (its bit would be a clock's ahead, which must stay
// clear): that clock, never written, is kept when it comes.
func TestDedupBatchFallsBack(t *testing.T) {
	e := &egress{}
	e.dedupOn(5000) // 16,384 clocks, 12,288 kept
	// (Then a batch whose second clock is exactly the window behind its first, which cleared
	// the marks up to 25,096: the second's bit is 25,096's, which comes after a later one.)
	for _, clocks := range [][]uint64{{100}, {12438, 145}, {16600}, {16529}, {21000, 8712}, {25097}, {25096}} {
		b := &unit.Batch{}
		pkts := make([]packet.Packet, len(clocks))
		for i, c := range clocks {
			pkts[i].Clock = c
			b.Out, b.OutStamp, b.OutClock = append(b.Out, &pkts[i]), append(b.OutStamp, 0), append(b.OutClock, c)
		}
		e.dedup(b)
		if len(b.Out) != len(clocks) {
			t.Fatalf("batch %v: kept %d outputs, want all (none written before)", clocks, len(b.Out))
		}
	}
}

// BenchmarkDedup: the egress's dedup per output, batches of 64 from two units in turn, no
// replay: checked (the batches of a slot whose unit failed once) and marked only (a slot
// whose unit never failed: the path every batch takes when nothing failed); harness-only is
// the loop's own cost (filling the clocks), to subtract.
func BenchmarkDedup(b *testing.B) {
	b.Run("checked", func(b *testing.B) { benchDedup(b, (*egress).dedup) })
	b.Run("never-failed", func(b *testing.B) { benchDedup(b, (*egress).markAll) })
	b.Run("harness-only", func(b *testing.B) { benchDedup(b, func(*egress, *unit.Batch) {}) })
}

func benchDedup(b *testing.B, dedup func(*egress, *unit.Batch)) {
	e := &egress{}
	e.dedupOn(1<<18 + 2*8*64)
	var bs [2]*unit.Batch
	pkts := make([]packet.Packet, 2*64)
	for u := range bs {
		bs[u] = &unit.Batch{}
		for i := range 64 {
			bs[u].Out = append(bs[u].Out, &pkts[u*64+i])
			bs[u].OutStamp = append(bs[u].OutStamp, 0)
			bs[u].OutClock = append(bs[u].OutClock, 0)
		}
	}
	clock := uint64(0)
	for i := 0; b.Loop(); i++ {
		bt := bs[i%2]
		bt.Out, bt.OutStamp, bt.OutClock = bt.Out[:64], bt.OutStamp[:64], bt.OutClock[:64]
		for j := range 64 {
			clock += 1 + uint64(j%2) // the two units' packets interleave
			bt.OutClock[j] = clock
		}
		dedup(e, bt)
		if len(bt.Out) != 64 {
			b.Fatal("dropped a fresh output")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(64*b.N), "ns/output")
}
