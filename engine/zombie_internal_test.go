package engine

import (
	"sync/atomic"
	"testing"

	"github.com/snf-dev/snf/replay"
	"github.com/snf-dev/snf/unit"
)

// TestZombieHeldUntilEgressDrains: the frames a failed unit (a zombie) borrowed stay held
// until it ended and the egress took every batch that was queued for it when it ended — not
// when the egress's mark for the zombie's slot passed the last batch sent to it, which the
// replacement's batches move too: the zombie's last batch may still wait in the egress's
// queue then, and its frames would be reused under it.
func TestZombieHeldUntilEgressDrains(t *testing.T) {
	const low = 4096 // the zombie's lowest frame
	egressed := make([]atomic.Uint64, 1)
	l := &live{
		log:      replay.NewLog(1<<20, 1<<16, 1),
		egressed: egressed,
		lend:     newLender(1, 64, egressed),
		egress:   make(chan *unit.Batch, 8),
	}
	lu := &liveUnit{}
	l.zombies = []zombie{{lu: lu, slot: 0, sent: 5, low: low}}
	held := func() bool { return l.lend.hold == low }

	// The replacement's batches already moved the slot's mark past the zombie's last
	// batch (Seq 5), while the zombie still runs: held.
	l.egressed[0].Store(7)
	l.egressTaken.Store(10)
	l.updateCovered()
	if !held() {
		t.Fatal("a zombie still running: its frames were released")
	}
	// It ended with two batches in the egress's queue (its last among them), and the egress
	// may be writing a third: held until the egress took all three.
	lu.ended.Store(true)
	l.egress <- &unit.Batch{}
	l.egress <- &unit.Batch{}
	l.updateCovered()
	if got := l.zombies[0].drain; got != 13 {
		t.Fatalf("drain = %d, want 10 taken + 2 queued + 1 being written", got)
	}
	for taken := uint64(10); taken < 13; taken++ {
		l.egressTaken.Store(taken)
		<-l.egress // (the queue's length is read once, when the zombie ended)
		l.egress <- &unit.Batch{}
		l.updateCovered()
		if !held() {
			t.Fatalf("released with the egress at %d batches taken, before the zombie's last batch (13)", taken)
		}
	}
	l.egressTaken.Store(13)
	l.updateCovered()
	if held() || len(l.zombies) != 0 {
		t.Fatalf("the egress took every batch queued when the zombie ended: still held (hold %d, %d zombies)", l.lend.hold, len(l.zombies))
	}

	// And the slot's mark still counts: a zombie ended, the egress drained, but a batch sent
	// to the slot before the failure not yet written (the egress's mark below it) — held.
	for len(l.egress) > 0 {
		<-l.egress
	}
	l.zombies = []zombie{{lu: lu, slot: 0, sent: 9, low: low}}
	l.updateCovered() // drain: 13 taken + 1
	l.egressTaken.Store(14)
	l.updateCovered()
	if !held() {
		t.Fatal("released before the egress wrote the slot's batches up to the last sent to the zombie")
	}
	l.egressed[0].Store(9)
	l.updateCovered()
	if held() {
		t.Fatal("still held once the egress wrote them")
	}
}
