package engine_test

import (
	"testing"
	"time"

	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/trace"
)

// dayWorkload is the default input of 'snf sim': a data-center day of web-search flows
// (diurnal 0.2 → 1 → 0.2, bursts of twice the arrivals) whose peak is about ten units of
// 1,000,000 packets/s: 4.75 million packets over 1s.
const dayWorkload = "websearch,load=1,link=6.72e+10,profile=diurnal:min=0.2,max=1+bursts:x=2,len=50ms,rate=2,duration=1s,warmup=200ms,seed=1"

// TestSimDay: on the data-center day, with the defaults of 'snf sim' (gap 5ms, target 0.9,
// growth on measured load, backlog bound 500µs, busy moves after 4 ticks), snf meets the
// 1ms SLO at p99 (at most 1% of packets over it), drops nothing, reorders nothing, and
// spends at most 1.15 times the oracle's unit-seconds (the goal) — less than 60% of
// perflow's and half of static's, which run the same traffic. (The simulation is
// deterministic: these are exact numbers for this seed, not timings.)
func TestSimDay(t *testing.T) {
	if testing.Short() || raceOn {
		// 4.75 million packets per policy: 8s, or 4.5 minutes under the race detector (the
		// same code runs under it in the smaller simulations of sim_test.go).
		t.Skip("4.75 million packets per policy: not in -short or -race runs")
	}
	spec := mustSpec(t, "nat,firewall")
	cfg, err := trace.ParseWorkload(dayWorkload)
	if err != nil {
		t.Fatal(err)
	}
	run := func(pol string) engine.SimSummary {
		w, err := trace.NewWorkload(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := runSim(t, engine.SimConfig{Spec: spec, In: w, Policy: mustPolicy(t, pol, 16), MaxUnits: 16, Capacity: 1e6,
			CV: 0.5, Seed: 1, FlowletGap: 5 * time.Millisecond, Target: 0.9, ScaleOnMeasured: true, MaxBacklog: 500 * time.Microsecond, BusyAfter: 4, SLO: time.Millisecond})
		t.Logf("%-8s unit-s %.3f (oracle %.3f, ratio %.2f), units %d/%.2f/%d, over SLO %.2f%%, p99 %v, dropped %d, handovers/s %.0f",
			pol, s.UnitSeconds, s.OracleUnitSeconds, s.OracleRatio, s.UnitsMin, s.UnitsMean, s.UnitsMax, 100*s.OverSLOFrac, s.Latency.P99, s.Dropped, s.HandoversPerSec)
		return s
	}
	snf, perflow, static := run("snf"), run("perflow"), run("static")
	if snf.OverSLOFrac > 0.01 || snf.Dropped != 0 || snf.Reorders != 0 {
		t.Errorf("snf: %.2f%% over the SLO, %d dropped, %d reordered; want at most 1%% and none", 100*snf.OverSLOFrac, snf.Dropped, snf.Reorders)
	}
	if snf.OracleRatio > 1.15 || snf.UnitsMax < 6 {
		t.Errorf("snf: %.2f× the oracle, at most %d units; want at most 1.15× (the issue's goal) and a pool that grew", snf.OracleRatio, snf.UnitsMax)
	}
	if snf.UnitSeconds > 0.6*perflow.UnitSeconds || snf.UnitSeconds > 0.5*static.UnitSeconds {
		t.Errorf("snf %.3f unit-seconds, perflow %.3f, static %.3f: want under 60%% and 50%% of them", snf.UnitSeconds, perflow.UnitSeconds, static.UnitSeconds)
	}
}
