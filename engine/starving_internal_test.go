package engine

import (
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/unit"
)

// TestStarving: a unit counts as starving when batches wait in its input and it did no work
// since the root last looked — not while its input is empty, nor when it worked since.
func TestStarving(t *testing.T) {
	l := &live{yieldProg: make([]uint64, 2)}
	var ins []chan *unit.Batch
	for i := range 2 {
		chain := testtrace.ChainOf(t, "firewall", snf.ChainOptions{})
		in := make(chan *unit.Batch, 4)
		ins = append(ins, in)
		l.units = append(l.units, &liveUnit{u: unit.New(i, chain, in, discard{}, nil), chain: chain})
	}
	if l.starving() || l.starving() {
		t.Fatal("no batch waiting: starving")
	}
	ins[0] <- unit.NewBatch(1, nil) // unit 0 gets a batch, and never runs
	if !l.starving() || !l.starving() {
		t.Fatal("a batch waits for unit 0, which does nothing: not starving")
	}
	<-ins[0]

	u := l.units[1].u
	done := make(chan struct{})
	go func() { defer close(done); u.Run() }()
	before := u.Progress()
	ins[1] <- unit.NewBatch(1, nil)
	waitFor(t, func() bool { return u.Progress() > before && len(ins[1]) == 0 })
	u.Stall(300 * time.Millisecond) // its next batch: taken, then a sleep
	ins[1] <- unit.NewBatch(1, nil) // taken
	waitFor(t, func() bool { return len(ins[1]) == 0 })
	ins[1] <- unit.NewBatch(1, nil) // waits
	if l.starving() {
		t.Error("a batch waits for unit 1, which worked since the last look: starving")
	}
	if !l.starving() {
		t.Error("a batch waits for unit 1, which did nothing since the last look: not starving")
	}
	close(ins[1])
	<-done
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
