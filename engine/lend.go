package engine

import (
	"sync/atomic"

	"github.com/snf-dev/snf/packet"
)

// lender lends the frames the root reads to the units' batches instead of copying them: the
// root reads its packets into an arena (packet.Packet.UseArena), each batch borrows its
// packets' frames there (packet.Packet.Borrow), its unit rewrites them in place and the
// egress writes them out; the arena reuses their memory once the egress is done with the
// batch. The frames in flight are then all the memory the root writes: a few MB, reused
// while still in cache. (Copying each frame into a batch's own buffers writes memory last
// written on another core; reading into the packet log's arena, which keeps frames until a
// checkpoint covers them, writes tens of MB: each measured 7–15 % of throughput against
// this, BENCHMARKS.md "Seventh session".)
//
// The live engine lends when the root would otherwise copy each packet into a batch: without
// a packet log, and when the log keeps positions in the input (replay.Log.Src), whose
// replays read the input again. (When the log keeps the frames, it lends them itself:
// replay.Log.Keep.) Not for a chain whose NFs write frames themselves (snf.FrameWriter).
//
// It is used by the root's goroutine only; the egress reports what it is done with through
// done.
type lender struct {
	arena *packet.Arena
	// end is the arena position after the last frame lent: every frame below it was
	// dispatched (lent, copied, or dropped by the root), as frames are dispatched in the
	// order they were read. (Not the arena's head when a read starts: an input may read
	// ahead into the root's packets — port.Paced — and hand them over reads later.)
	end  uint64
	fill []uint64          // by slot: the lowest position lent to the batch being filled (noLend: none)
	sent []fifo[lentBatch] // by slot: the batches sent with lent frames, oldest first
	done []atomic.Uint64   // by slot: the highest Seq the egress is done with (live.egressed)
	hold uint64            // failed units that may still rewrite frames lent to them (noLend: none)
	lent uint64            // frames lent
}

// staleReads is how many reads a batch that holds an arena's frames (lent, or kept in the
// packet log's arena) may stay open, from its first packet (live.stale): its first frame
// holds the arena's memory from there on, so a unit that gets few packets while the input
// runs at full speed would have the arena fill up (and later frames get memory of their
// own). It leaves after that many reads (about 1,000 packets), full or not.
const staleReads = 16

const noLend = ^uint64(0)

// lentBatch is a batch sent with lent frames: its Seq and the lowest position it borrows.
type lentBatch struct{ seq, low uint64 }

// lowLent returns the lowest position lent to a batch of q (a slot's lent batches in flight,
// oldest first) the egress is not done with (done: its highest Seq done), forgetting the
// others (noLend: none).
func lowLent(q *fifo[lentBatch], done uint64) uint64 {
	for q.Len() > 0 && q.Front().seq <= done {
		q.Drop()
	}
	if q.Len() == 0 {
		return noLend
	}
	return q.Front().low // batches borrow frames in the order the root read them
}

// newLender returns a lender for slots units, whose batches hold batch packets; done is
// where the egress records, by slot, the highest Seq it is done with.
func newLender(slots, batch int, done []atomic.Uint64) *lender {
	// Every batch of every unit in flight, and the root's read batch, full of 2 KiB frames:
	// the root waits for a free batch before it lends more, so the arena does not overflow
	// (but while a failed unit holds frames: frames then get memory of their own).
	size := ((slots*(batchesPerUnit+1)+1)*batch*2048 + 4*lendBlock)
	d := &lender{arena: packet.NewArena(size, lendBlock), fill: make([]uint64, slots),
		sent: make([]fifo[lentBatch], slots), done: done, hold: noLend}
	for u := range d.fill {
		d.fill[u] = noLend
	}
	d.arena.OnNeed = d.release
	return d
}

// lendBlock is the lender's arena block: a few hundred frames.
const lendBlock = 256 << 10

// take returns p's frame, in the arena, for unit u's batch being filled to borrow — nil
// (copy it) when it is not in the arena (no lender, or a frame the arena had no room for).
func (d *lender) take(u int, p *packet.Packet) []byte {
	if d == nil {
		return nil
	}
	pos, ok := p.ArenaPos()
	if !ok {
		return nil
	}
	if d.fill[u] == noLend { // the batch's first: its lowest
		d.fill[u] = pos
	}
	d.end = pos + uint64(len(p.Data))
	d.lent++
	return p.Data
}

// lending reports whether unit u's batch being filled borrows frames (live.stale).
func (d *lender) lending(u int) bool { return d != nil && d.fill[u] != noLend }

// sentBatch records that unit u's batch being filled left with Seq seq.
func (d *lender) sentBatch(u int, seq uint64) {
	if d == nil || d.fill[u] == noLend {
		return
	}
	d.sent[u].Push(lentBatch{seq, d.fill[u]})
	d.fill[u] = noLend
}

// drop forgets the frames lent to unit u's batch being filled: it is not sent.
func (d *lender) drop(u int) {
	if d != nil {
		d.fill[u] = noLend
	}
}

// abandon returns the lowest position lent to the batches slot u's unit has not finished
// (noLend: none) and forgets them: the unit failed, and may go on rewriting them until it
// ends (the caller holds them: hold). The batch being filled goes to its replacement.
func (d *lender) abandon(u int) uint64 {
	if d == nil {
		return noLend
	}
	low := lowLent(&d.sent[u], d.done[u].Load())
	d.sent[u].Reset()
	return low
}

// release frees the arena below the frames still lent or not yet dispatched (the arena's
// OnNeed).
func (d *lender) release() {
	low := min(d.end, d.hold)
	for u := range d.sent {
		low = min(low, d.fill[u], lowLent(&d.sent[u], d.done[u].Load()))
	}
	d.arena.Free(low)
}

// close gives the arena's memory to later runs (packet.Arena.Close): once no unit nor the
// egress reads a frame any more.
func (d *lender) close() {
	if d != nil {
		d.arena.Close()
	}
}
