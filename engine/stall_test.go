package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port/mem"
)

// runWithin runs cfg and fails the test if the run has not ended within limit (a stall of
// minutes would hold it). It returns the run's summary and error.
func runWithin(t *testing.T, ctx context.Context, cfg engine.LiveConfig, limit time.Duration) (engine.LiveSummary, error) {
	t.Helper()
	type result struct {
		s   engine.LiveSummary
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := engine.RunLive(ctx, cfg)
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		return r.s, r.err
	case <-time.After(limit):
		t.Fatalf("the run has not ended %s after it started: it waits for a stalled unit", limit)
	}
	panic("unreachable")
}

// TestStallCancelled: a run cancelled while a unit stalls for a minute (not detected: a fail
// timeout of an hour) ends promptly, as interrupted, with the packets dispatched written —
// the stalled unit's sleep ends with the run's context.
func TestStallCancelled(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := generated(t, 2000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pol, _ := policy.New("static", policy.Options{StaticUnits: 1})
	w := &mem.Writer{}
	s, err := runWithin(t, ctx, engine.LiveConfig{Spec: spec, In: mem.NewReader(frames), Out: w, Policy: pol,
		MinUnits: 1, MaxUnits: 1, Batch: 16, Capacity: 2000, Tick: time.Millisecond,
		Recovery: true, Checkpoint: time.Millisecond, FailTimeout: time.Hour,
		Faults: []engine.Fault{
			{Kind: engine.FaultStall, Unit: 0, AtPacket: 50, For: time.Minute},
			{Kind: engine.FaultCall, AtPacket: 100, Do: cancel},
		}}, 30*time.Second)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run ended with %v, want context.Canceled", err)
	}
	if s.Packets < 100 || s.Packets >= uint64(len(frames)) || s.Written != s.Packets || s.Failures != 0 {
		t.Errorf("%d packets dispatched, %d written, %d failures: want the ~100 dispatched before the cancel written, none failed", s.Packets, s.Written, s.Failures)
	}
}

// TestStragglerReplacedEndsRun: a unit stalled for a minute is replaced (a static pool: its
// queue fills, the root sees it); the straggler's sleep ends with its Kill, so the run ends
// promptly instead of waiting for it — and as the straggler woken early processes nothing,
// the output still equals one chain's.
func TestStragglerReplacedEndsRun(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := generated(t, 20000)
	want := reference(t, spec, frames)
	pol, _ := policy.New("static", policy.Options{StaticUnits: 2})
	w := &mem.Writer{}
	var got outcome
	s, err := runWithin(t, context.Background(), engine.LiveConfig{Spec: spec, In: mem.NewReader(frames), Out: w, Policy: pol,
		MinUnits: 1, MaxUnits: 2, Batch: 16, Capacity: 2000, Tick: time.Millisecond,
		Recovery: true, Checkpoint: time.Millisecond, FailTimeout: 20 * time.Millisecond,
		Faults: []engine.Fault{{Kind: engine.FaultStall, Unit: 0, AtPacket: 3500, For: time.Minute}},
		OnDone: func(chains []*snf.Chain) { got = collect(t, w, chains, frames[len(frames)-1].Time) }}, 45*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s.Failures == 0 {
		t.Error("the stalled unit was not replaced")
	}
	compare(t, want, got)
}

// TestStallAtEndReplaced: a unit that stalls on its last batches, after the root read the
// whole input, is still detected and replaced (the fail timeout holds until the units
// ended): the run ends promptly, its output equal to one chain's, rather than wait out the
// stall.
func TestStallAtEndReplaced(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := generated(t, 2000)
	want := reference(t, spec, frames)
	for _, pn := range []string{"static", "snf"} {
		t.Run(pn, func(t *testing.T) {
			pol, _ := policy.New(pn, policy.Options{StaticUnits: 1})
			w := &mem.Writer{}
			var got outcome
			s, err := runWithin(t, context.Background(), engine.LiveConfig{Spec: spec, In: mem.NewReader(frames), Out: w, Policy: pol,
				MinUnits: 1, MaxUnits: 1, Batch: 16, Capacity: 2000, Tick: time.Millisecond,
				Recovery: true, Checkpoint: time.Millisecond, FailTimeout: 20 * time.Millisecond,
				Faults: []engine.Fault{{Kind: engine.FaultStall, Unit: 0, AtPacket: uint64(len(frames) - 8), For: time.Minute}},
				OnDone: func(chains []*snf.Chain) { got = collect(t, w, chains, frames[len(frames)-1].Time) }}, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if s.Failures == 0 || len(s.FaultsMissed) != 0 {
				t.Errorf("%d failures, faults missed %v: want the stalled unit replaced", s.Failures, s.FaultsMissed)
			}
			compare(t, want, got)
		})
	}
}

// TestStallAtEndReplayFails: a unit stalled on the last batches is replaced after the input
// ended, and its replay fails (the input no longer holds its packets): the run ends with
// that error. (The replacement's input was left open: it waited for batches that never
// came, and the run waited for it for ever.)
func TestStallAtEndReplayFails(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := generated(t, 2000)
	in := &losing{Reader: mem.NewReader(frames)}
	pol, _ := policy.New("static", policy.Options{StaticUnits: 1})
	n := uint64(len(frames))
	_, err = runWithin(t, context.Background(), engine.LiveConfig{Spec: spec, In: in, Policy: pol,
		MinUnits: 1, MaxUnits: 1, Batch: 16, Capacity: 2000, Tick: time.Millisecond,
		Recovery: true, Checkpoint: time.Hour, FailTimeout: 20 * time.Millisecond,
		Faults: []engine.Fault{{Kind: engine.FaultStall, Unit: 0, AtPacket: n - 8, For: time.Minute},
			{Kind: engine.FaultCall, AtPacket: n - 7, Do: func() { in.lost.Store(true) }}}}, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "cannot be replayed") {
		t.Fatalf("err %v, want the replay's failure", err)
	}
}
