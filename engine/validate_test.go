package engine_test

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/pcapfile"
)

// TestSimMatchesLive validates the simulator against the live engine on one small capture
// (pcapplusplus_example: 4,631 packets of web browsing) replayed at 4× its pace through
// nat,firewall on 1–8 units planned at 2,000 packets/s, for every policy. The simulator
// gets the calibrated model: units plan with the same capacity but serve at the chain's
// measured speed (ServiceRate, Calibrate), start warm (a goroutine starts in microseconds),
// and the same flowlet gap, target and tick. Stated tolerance, tested: the unit-seconds of
// each policy agree within 25%, and along the timeline (each simulated tick against the
// live sample nearest in time) the active units differ by at most 1.5 on average.
//
// Latency is compared, not asserted: the simulator models a unit's service and the state
// transfer, not the live engine's goroutine pipeline (batches of 64, channel hand-offs,
// scheduling on a shared 2-core machine), which is most of a live packet's latency; the
// log shows both (BENCHMARKS.md, "Validation").
//
// The live runs are paced in wall-clock time (about 1.5 s each) and the live controller
// ticks on the wall clock: this is the one simulator test that depends on the machine.
func TestSimMatchesLive(t *testing.T) {
	if testing.Short() {
		t.Skip("live runs at capture pace")
	}
	path, _ := filepath.Abs("../../shared/traces/pcapplusplus_example.pcap")
	if !fileExists(path) {
		t.Skip("capture not found")
	}
	spec := mustSpec(t, "nat,firewall")
	speed, err := medianCalibrate(spec)
	if err != nil {
		t.Fatal(err)
	}
	const capacity, gap = 2000.0, 500 * time.Microsecond
	for _, pol := range []string{"snf", "perflow", "perpacket", "static"} {
		t.Run(pol, func(t *testing.T) {
			in, err := pcapfile.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			live, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: port.Paced(in, 4, time.Sleep, time.Now),
				Policy: mustPolicy(t, pol, 8), MinUnits: 1, MaxUnits: 8, FlowletGap: gap, Capacity: capacity})
			in.Close()
			if err != nil {
				t.Fatal(err)
			}
			in, err = pcapfile.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			sim := runSim(t, engine.SimConfig{Spec: spec, In: in, Policy: mustPolicy(t, pol, 8), MinUnits: 1, MaxUnits: 8,
				FlowletGap: gap, Speed: 4, Capacity: capacity, ServiceRate: speed, Target: 0.8, CV: 0.5, ColdStart: -1, Seed: 1})
			in.Close()
			var diff float64
			for _, s := range sim.Ticks {
				near := live.Timeline[0]
				for _, l := range live.Timeline {
					if math.Abs(float64(l.At-s.At)) < math.Abs(float64(near.At-s.At)) {
						near = l
					}
				}
				diff += math.Abs(float64(s.Active - near.Active))
			}
			diff /= float64(len(sim.Ticks))
			t.Logf("unit-s live %.3f sim %.3f (%+.0f%%); units live %d/%.2f/%d sim %d/%.2f/%d, mean |Δ active| %.2f; handovers live %d sim %d",
				live.UnitSeconds, sim.UnitSeconds, 100*(sim.UnitSeconds/live.UnitSeconds-1), live.UnitsMin, live.UnitsMean, live.UnitsMax,
				sim.UnitsMin, sim.UnitsMean, sim.UnitsMax, diff, live.Handovers, sim.Handovers)
			t.Logf("latency live p50 %v p99 %v p99.9 %v; sim p50 %v p99 %v p99.9 %v", live.Latency.P50, live.Latency.P99, live.Latency.P999,
				sim.Latency.P50, sim.Latency.P99, sim.Latency.P999)
			if r := sim.UnitSeconds / live.UnitSeconds; r < 0.75 || r > 1.25 {
				t.Errorf("unit-seconds: sim %.3f, live %.3f: more than 25%% apart", sim.UnitSeconds, live.UnitSeconds)
			}
			if diff > 1.5 {
				t.Errorf("active units differ by %.2f on average along the timeline; want at most 1.5", diff)
			}
			if sim.Written != live.Written || sim.Reorders != live.Reorders && pol != "perpacket" {
				t.Errorf("out: sim %d live %d; reorders sim %d live %d", sim.Written, live.Written, sim.Reorders, live.Reorders)
			}
		})
	}
}

// medianCalibrate measures the chain's speed on this machine: the median of 3.
func medianCalibrate(spec *snf.ChainSpec) (float64, error) {
	var v []float64
	for range 3 {
		c, err := engine.Calibrate(spec, 20000)
		if err != nil {
			return 0, err
		}
		v = append(v, c)
	}
	slices.Sort(v)
	return v[1], nil
}
