package engine

import (
	"math/rand/v2"
	"testing"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/unit"
)

// TestDedupModel: the egress's dedup keeps an output exactly when its clock was not written
// before and is within the window behind the highest clock written — against a model that
// remembers every clock — over random batches: clocks mostly rising (units interleave),
// duplicates (replays), far jumps (more than a window).
func TestDedupModel(t *testing.T) {
	e := &egress{}
	e.dedupOn(300) // 1,024 clocks
	window := uint64(len(e.seen) * 64)
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
