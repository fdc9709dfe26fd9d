package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/unit"
)

type discard struct{}

func (discard) SendState(int, unit.State) {}
func (discard) SendOut(*unit.Batch)       {}

// TestWaitUnitsStuck: a unit that waits, after its input ended, for a handover state that
// never comes is stopped, and the run ends with an error naming it, and the state, instead
// of hanging.
func TestWaitUnitsStuck(t *testing.T) {
	defer func(d time.Duration) { unitsStuckAfter = d }(unitsStuckAfter)
	unitsStuckAfter = 300 * time.Millisecond
	l := &live{}
	for i, stuck := range []bool{false, true} {
		chain := testtrace.ChainOf(t, "firewall", snf.ChainOptions{})
		in := make(chan *unit.Batch, 1)
		lu := &liveUnit{u: unit.New(i, chain, in, discard{}, nil), chain: chain}
		b := unit.NewBatch(1, nil)
		if stuck { // a state from unit 0 that will never be sent
			b.Ctl = append(b.Ctl, unit.Control{Kind: unit.Expect, Flow: 7, Peer: 0, Hid: 1})
		}
		in <- b
		close(in)
		l.units = append(l.units, lu)
		l.goUnit(lu)
	}
	done := make(chan error, 1)
	go func() { done <- l.waitUnits() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "units [1] did not end") ||
			!strings.Contains(err.Error(), "unit 1 waited for 1 state(s), the oldest: flow 7's (handover 1, from unit 0, 0 packets held)") {
			t.Errorf("got %v, want an error naming unit 1 and the state it waited for", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waitUnits hangs")
	}
}

// TestWaitUnitsStatesAreProgress: a unit that takes states one by one after its input ended,
// for longer than unitsStuckAfter in all, is working, not stuck (a run whose units hand
// thousands of flows to each other at its end took over 10 s, under load, without a batch).
func TestWaitUnitsStatesAreProgress(t *testing.T) {
	defer func(d time.Duration) { unitsStuckAfter = d }(unitsStuckAfter)
	unitsStuckAfter = time.Second
	chain := testtrace.ChainOf(t, "firewall", snf.ChainOptions{})
	in := make(chan *unit.Batch, 1)
	l := &live{}
	lu := &liveUnit{u: unit.New(0, chain, in, discard{}, nil), chain: chain}
	l.units = append(l.units, lu)
	const states = 40
	b := unit.NewBatch(1, nil)
	for i := range states {
		b.Ctl = append(b.Ctl, unit.Control{Kind: unit.Expect, Flow: uint64(100 + i), Peer: 1, Hid: uint64(1 + i)})
	}
	in <- b
	close(in)
	l.goUnit(lu)
	go func() {
		for i := range states { // 40 × 50 ms: twice unitsStuckAfter in all
			time.Sleep(50 * time.Millisecond)
			lu.u.State <- unit.State{Flow: uint64(100 + i), From: 1, Hid: uint64(1 + i)}
		}
	}()
	if err := l.waitUnits(); err != nil {
		t.Errorf("a unit taking a state every 50 ms was declared stuck: %v", err)
	}
}
