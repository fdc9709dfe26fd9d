package engine

import (
	"encoding/binary"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/snf-dev/snf/packet"
)

// testLender returns a lender whose arena has 4 KiB blocks (four 1,000-byte frames each), so
// that its memory is reused after a few frames, and n packets that read into it.
func testLender(slots, batch, n int) (*lender, []atomic.Uint64, []packet.Packet) {
	done := make([]atomic.Uint64, slots)
	d := newLender(slots, batch, done)
	d.arena = packet.NewArena(64<<10, 4096)
	d.arena.OnNeed = d.release
	read := make([]packet.Packet, n)
	for i := range read {
		read[i].UseArena(d.arena)
	}
	return d, done, read
}

// TestLenderKeepsBorrowedFrames: whatever the root reads, however long a frame read waits
// before the root dispatches it (an input that reads ahead: port.Paced), wherever it sends
// it, and whenever the egress is done with a batch or a unit fails, no frame read is given to
// another frame before it is dispatched, nor one a batch borrows before the batch is done
// with it (or, for a failed unit's, before it ended). Every frame read carries its own
// number; every frame waiting or borrowed must still carry it.
func TestLenderKeepsBorrowedFrames(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const slots, batch, pkts = 3, 4, 12
		d, done, read := testLender(slots, batch, pkts)
		type lent struct {
			f []byte
			n uint16
		}
		type flying struct {
			seq    uint64
			frames []lent
		}
		var (
			fill    [slots][]lent
			sent    [slots][]flying
			seqs    [slots]uint64
			zombies [][]lent // failed units' unfinished batches: held until they end
			n       uint16
			frame   = make([]byte, 1000)
			ahead   []int    // read, not dispatched yet, in order: indices in read
			free    []int    // packets free to read into
			number  []uint16 = make([]uint16, pkts)
		)
		for i := range pkts {
			free = append(free, i)
		}
		check := func(what string, ls []lent) {
			for _, l := range ls {
				if got := binary.BigEndian.Uint16(l.f); got != l.n {
					t.Fatalf("%s: a borrowed frame holds frame %d's bytes, want frame %d's", what, got, l.n)
				}
			}
		}
		flush := func(u int) {
			seqs[u]++
			d.sentBatch(u, seqs[u])
			sent[u] = append(sent[u], flying{seqs[u], fill[u]})
			fill[u] = nil
		}
		for range rapid.IntRange(1, 200).Draw(t, "steps") {
			switch rapid.IntRange(0, 9).Draw(t, "op") { // 7-9: dispatch
			case 0, 1, 2: // the input reads frames (ahead of the root, maybe)
				for range rapid.IntRange(0, min(batch, len(free))).Draw(t, "read") {
					i := free[0]
					free = free[1:]
					n++
					binary.BigEndian.PutUint16(frame, n)
					read[i].SetData(frame, 0, 0)
					number[i] = n
					ahead = append(ahead, i)
				}
			default: // the root dispatches the frames read first
				for range rapid.IntRange(0, len(ahead)).Draw(t, "dispatch") {
					i := ahead[0]
					ahead = ahead[1:]
					free = append(free, i)
					u := rapid.IntRange(-1, slots-1).Draw(t, "unit")
					if u < 0 {
						continue // dropped (the root does not; a lender must not care)
					}
					if f := d.take(u, &read[i]); f != nil {
						fill[u] = append(fill[u], lent{f, number[i]})
					}
					if len(fill[u]) == batch {
						flush(u)
					}
				}
			case 3: // a batch leaves early (a tick), or is not sent
				u := rapid.IntRange(0, slots-1).Draw(t, "unit")
				if rapid.Bool().Draw(t, "send") {
					flush(u)
				} else {
					d.drop(u)
					fill[u] = nil
				}
			case 4, 5: // the egress is done with a unit's oldest batches
				u := rapid.IntRange(0, slots-1).Draw(t, "unit")
				k := rapid.IntRange(0, len(sent[u])).Draw(t, "done")
				if k > 0 && sent[u][k-1].seq > done[u].Load() {
					done[u].Store(sent[u][k-1].seq)
				}
				sent[u] = sent[u][k:]
			case 6: // a unit fails: what it has not finished is held until it ends
				u := rapid.IntRange(0, slots-1).Draw(t, "unit")
				if rapid.Bool().Draw(t, "ended") && len(zombies) > 0 {
					zombies, d.hold = nil, noLend // (the engine: live.updateCovered)
					continue
				}
				var z []lent
				for _, b := range sent[u] {
					z = append(z, b.frames...)
				}
				sent[u] = nil
				if low := d.abandon(u); low != noLend {
					d.hold = min(d.hold, low)
				}
				zombies = append(zombies, z)
			}
			for _, i := range ahead {
				if got := binary.BigEndian.Uint16(read[i].Data); got != number[i] {
					t.Fatalf("a frame read and not dispatched yet holds frame %d's bytes, want frame %d's", got, number[i])
				}
			}
			for u := range slots {
				check("a batch being filled", fill[u])
				for _, b := range sent[u] {
					check("a batch in flight", b.frames)
				}
			}
			for _, z := range zombies {
				check("a failed unit's batch", z)
			}
		}
	})
}

// TestLenderReusesMemory: when the egress keeps up, the lender's arena reuses a few blocks
// for ever; what is still in flight is all it holds.
func TestLenderReusesMemory(t *testing.T) {
	const batch = 4
	d, done, read := testLender(2, batch, batch)
	frame := make([]byte, 1000)
	var seqs [2]uint64
	for range 10000 {
		for i := range read {
			read[i].SetData(frame, 0, 0)
		}
		for i := range read {
			if d.take(i%2, &read[i]) == nil {
				t.Fatal("a frame read into the arena was not lent")
			}
		}
		for u := range 2 {
			seqs[u]++
			d.sentBatch(u, seqs[u])
			if seqs[u] > 2 { // two batches in flight per unit
				done[u].Store(seqs[u] - 2)
			}
		}
	}
	// In flight: 4 batches of 2 frames, and the read batch: 3 blocks; one more is being
	// filled, one was just freed.
	if s := d.arena.Stats(); s.Blocks > 6 || s.Overflows != 0 {
		t.Errorf("%d blocks, %d frames overflowed: want at most 6 blocks reused, none overflowed", s.Blocks, s.Overflows)
	}
}
