package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/port/mem"
)

// testPipe is a pipeline model with every part on: hand-offs of 20µs on average (lognormal,
// CV 1), 1µs per batch, 2µs per packet at the root.
var testPipe = engine.Pipeline{Handoff: 20 * time.Microsecond, HandoffCV: 1, BatchCost: time.Microsecond, RootCost: 2 * time.Microsecond}

// TestSimPipelineLatency: packets far apart, one unit, constant service and hand-offs: each
// packet's latency is exactly the root's dispatch, a hand-off, the unit's batch cost and its
// service, and a hand-off; measured from the root's release, the same without the root's
// dispatch. Without the model it is the service alone.
func TestSimPipelineLatency(t *testing.T) {
	spec := mustSpec(t, "none")
	frames := generated(t, 2000)
	for i := range frames {
		frames[i].Time = int64(i) * int64(time.Millisecond)
	}
	const (
		service = time.Microsecond // Capacity 1e6, CV 0
		hop     = 10 * time.Microsecond
		batch   = 500 * time.Nanosecond
		root    = 300 * time.Nanosecond
	)
	run := func(p engine.Pipeline) engine.SimSummary {
		return runSim(t, engine.SimConfig{Spec: spec, In: mem.NewReader(frames), Policy: mustPolicy(t, "static", 1),
			MaxUnits: 1, Capacity: 1e6, Seed: 1, Pipeline: p})
	}
	off := run(engine.Pipeline{})
	on := run(engine.Pipeline{Handoff: hop, BatchCost: batch, RootCost: root})
	t.Logf("off: mean %v, p50 %v; on: mean %v, p50 %v p99 %v, from the root p50 %v", off.LatencyMean, off.Latency.P50,
		on.LatencyMean, on.Latency.P50, on.Latency.P99, on.LatencyFromRoot.P50)
	if off.LatencyMean != service || off.LatencyFromRoot != off.Latency {
		t.Errorf("off: mean latency %v, from the root %+v; want %v and the latency %+v", off.LatencyMean, off.LatencyFromRoot, service, off.Latency)
	}
	if want := root + hop + batch + service + hop; on.LatencyMean != want || on.Latency.P50 != on.Latency.P99 {
		t.Errorf("on: mean latency %v, p50 %v, p99 %v; want %v for every packet", on.LatencyMean, on.Latency.P50, on.Latency.P99, want)
	}
	if fr := on.LatencyFromRoot; fr.P50 != fr.P99 || fr.P50 > 2*hop+batch+service || fr.P50 < (2*hop+batch+service)*8/9 {
		t.Errorf("on: from the root %+v; want %v (its histogram bucket) for every packet", fr, 2*hop+batch+service)
	}
	if on.Written != off.Written || on.Written != uint64(len(frames)) {
		t.Errorf("%d and %d out of %d", on.Written, off.Written, len(frames))
	}
}

// TestSimPipelineRootBatches: packets that arrive faster than the root dispatches them wait
// for it and leave in reads of many; from the root's release they wait only for their
// batch's hand-offs and service.
func TestSimPipelineRootBatches(t *testing.T) {
	spec := mustSpec(t, "none")
	frames := generated(t, 5000)
	for i := range frames {
		frames[i].Time = int64(i) * 100 // 10 million packets/s
	}
	s := runSim(t, engine.SimConfig{Spec: spec, In: mem.NewReader(frames), Policy: mustPolicy(t, "static", 4),
		MaxUnits: 4, Capacity: 1e8, Seed: 1, QueueLimit: 1 << 20, Pipeline: engine.Pipeline{RootCost: 300 * time.Nanosecond}})
	// The root takes 1.5ms for 5,000 packets arriving over 0.5ms: the last waits about 1ms.
	t.Logf("latency p50 %v p99 %v, from the root p50 %v p99 %v", s.Latency.P50, s.Latency.P99, s.LatencyFromRoot.P50, s.LatencyFromRoot.P99)
	if s.Latency.P99 < 800*time.Microsecond || s.LatencyFromRoot.P99 > 64*10*time.Nanosecond+time.Microsecond {
		t.Errorf("latency p99 %v, from the root %v: want the root's backlog in the first, batches of at most 64 in the second",
			s.Latency.P99, s.LatencyFromRoot.P99)
	}
	if s.Written != uint64(len(frames)) || s.Reorders != 0 {
		t.Errorf("%d of %d out, %d reorders", s.Written, len(frames), s.Reorders)
	}
}

// TestSimPipelineEqualsOneUnit: TestSimEqualsOneUnit with the pipeline model: batches, hand-offs
// and states that leave after their batch change when packets leave, never what leaves
// nor the order within a flow.
func TestSimPipelineEqualsOneUnit(t *testing.T) {
	spec := mustSpec(t, "firewall")
	frames := generated(t, 20000)
	want := reference(t, spec, frames)
	end := frames[len(frames)-1].Time
	heavy := testPipe
	heavy.HandoffCV = 5 // a heavy tail: batches often ride with a late one
	for _, c := range []struct {
		pn   string
		pipe engine.Pipeline
	}{{"snf", testPipe}, {"perflow", testPipe}, {"static", testPipe}, {"mover", testPipe}, {"evacuator", testPipe},
		{"snf", heavy}, {"mover", heavy}, {"evacuator", heavy}} {
		pn := c.pn
		t.Run(fmt.Sprintf("%s,cv%g", pn, c.pipe.HandoffCV), func(t *testing.T) {
			pol := mustPolicy(t, pn, 4)
			w := &mem.Writer{}
			var got outcome
			s := runSim(t, engine.SimConfig{Spec: spec, In: mem.NewReader(frames), Out: w, Policy: pol, MaxUnits: 8,
				Capacity: 5000, CV: 0.5, QueueLimit: 1 << 20, Tick: time.Millisecond, Seed: 3, Pipeline: c.pipe,
				OnDone: func(chains []*snf.Chain) {
					var live []*snf.Chain
					for _, c := range chains {
						if c != nil {
							live = append(live, c)
						}
					}
					got = collect(t, w, live, end)
				}})
			compare(t, want, got)
			if s.Reorders != 0 || s.Dropped != 0 {
				t.Errorf("%d reorderings, %d dropped; want none", s.Reorders, s.Dropped)
			}
			if (pn == "mover" || pn == "evacuator") && (s.Handovers == 0 || s.Held == 0) {
				t.Errorf("%d handovers, %d packets held; want some", s.Handovers, s.Held)
			}
			t.Logf("units %d/%.2f/%d, %d handovers (%d evacuations), %d held, p99 %v (from the root %v)", s.UnitsMin, s.UnitsMean, s.UnitsMax,
				s.Handovers, s.Evacuated, s.Held, s.Latency.P99, s.LatencyFromRoot.P99)
		})
	}
}
