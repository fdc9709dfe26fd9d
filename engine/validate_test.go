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
// the same flowlet gap, target and tick, and the live engine's pipeline (Pipeline,
// CalibratePipeline: the root's reads and batches, the hand-offs between goroutines; states
// move in-process, so TransferBase is none).
//
// Stated tolerance, tested: the unit-seconds of each policy agree within 25%, and along the
// timeline (each simulated tick against the live sample nearest in time) the active units
// differ by at most 1.5 on average. Latency, measured over the same span (from the root's
// release of a packet's batch to the egress: SimSummary.LatencyFromRoot against RunLive's
// Latency): p50 and p99 of each policy within latencyFactor (4×, either way) of the live
// engine's, and their geometric means over the four policies within latencyMean (2×).
// Without the pipeline model every simulated p50 and p99 is more than latencyFactor below
// the live one: the test checks that too, so that the tolerance can fail.
//
// The live runs are paced in wall-clock time (about 4s each) and the live controller
// ticks on the wall clock: this is the one simulator test that depends on the machine. A
// live run's latency on this shared 2-core machine swings with the other processes' load
// (p50 between about 7 and 30µs, p99 between 45 and 600µs from one run to the next;
// BENCHMARKS.md, "Validation"). So each policy runs live twice and the lower of the two
// runs' percentiles counts (other processes only add latency), the pipeline is calibrated
// just before (the machine's state of the moment), and the factors are chosen from eight
// runs of this test: per policy the sim was 0.71–3.0× the live runs for p50 and 0.41–1.67×
// for p99 (the live engine's p50 has two modes on this machine, about 7 and 15µs, and the
// calibration does not always catch the live runs' one), on average over the policies
// 1.31–1.64× for p50 and 0.62–1.06× for p99. Without the pipeline model the sim was
// 0.01–0.06× the live runs. Under the race detector (which slows channel
// operations, the store and the chains by different factors, so that the model measured
// under it no longer adds up: 0.3–2.8× per policy) latency is logged, not asserted,
// and each policy runs live once.
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
	t.Logf("calibrated: service %.0f packets/s", speed)
	const capacity, gap = 2000.0, 500 * time.Microsecond
	var logOn, logOff [2]float64 // sums of the logs of the p50 and p99 ratios, sim/live
	for _, pol := range []string{"snf", "perflow", "perpacket", "static"} {
		t.Run(pol, func(t *testing.T) {
			// The pipeline is measured next to the live runs, so that both see the machine's
			// load of the moment.
			pipe, probe, err := engine.CalibratePipeline(spec, 3000, 1500*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("pipeline %+v (fitted to the live engine's p50 %v, p99 %v)", pipe, probe.P50, probe.P99)
			runLive := func() engine.LiveSummary {
				in, err := pcapfile.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer in.Close()
				live, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: port.Paced(in, 4, time.Sleep, time.Now),
					Policy: mustPolicy(t, pol, 8), MinUnits: 1, MaxUnits: 8, FlowletGap: gap, Capacity: capacity})
				if err != nil {
					t.Fatal(err)
				}
				return live
			}
			// Latency: the lower of two runs for each percentile (other processes on this
			// machine only add latency, and a run's tail can swing 5×).
			live := runLive()
			again := live
			if !raceOn {
				again = runLive()
			}
			lat := engine.Percentiles{P50: min(live.Latency.P50, again.Latency.P50), P99: min(live.Latency.P99, again.Latency.P99),
				P999: min(live.Latency.P999, again.Latency.P999)}
			simulate := func(p engine.Pipeline) engine.SimSummary {
				in, err := pcapfile.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer in.Close()
				return runSim(t, engine.SimConfig{Spec: spec, In: in, Policy: mustPolicy(t, pol, 8), MinUnits: 1, MaxUnits: 8,
					FlowletGap: gap, Speed: 4, Capacity: capacity, ServiceRate: speed, Target: 0.8, CV: 0.5, ColdStart: -1,
					TransferBase: -1, Seed: 1, Pipeline: p})
			}
			sim, off := simulate(pipe), simulate(engine.Pipeline{})
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
			t.Logf("unit-s live %.3f sim %.3f (%+.0f%%); units live %d/%.2f/%d sim %d/%.2f/%d, mean |Δ active| %.2f; handovers live %d sim %d; held live %d sim %d",
				live.UnitSeconds, sim.UnitSeconds, 100*(sim.UnitSeconds/live.UnitSeconds-1), live.UnitsMin, live.UnitsMean, live.UnitsMax,
				sim.UnitsMin, sim.UnitsMean, sim.UnitsMax, diff, live.Handovers, sim.Handovers, live.Held, sim.Held)
			ratio := func(s engine.Percentiles) [2]float64 {
				return [2]float64{float64(s.P50) / float64(lat.P50), float64(s.P99) / float64(lat.P99)}
			}
			r, ro := ratio(sim.LatencyFromRoot), ratio(off.LatencyFromRoot)
			t.Logf("latency live p50 %v p99 %v p99.9 %v (runs: %v %v, %v %v); sim p50 %v p99 %v p99.9 %v (×%.2f, ×%.2f); without the pipeline model p50 %v p99 %v (×%.3f, ×%.3f)",
				lat.P50, lat.P99, lat.P999, live.Latency.P50, live.Latency.P99, again.Latency.P50, again.Latency.P99,
				sim.LatencyFromRoot.P50, sim.LatencyFromRoot.P99, sim.LatencyFromRoot.P999, r[0], r[1], off.LatencyFromRoot.P50, off.LatencyFromRoot.P99, ro[0], ro[1])
			if r := sim.UnitSeconds / live.UnitSeconds; r < 0.75 || r > 1.25 {
				t.Errorf("unit-seconds: sim %.3f, live %.3f: more than 25%% apart", sim.UnitSeconds, live.UnitSeconds)
			}
			if diff > 1.5 {
				t.Errorf("active units differ by %.2f on average along the timeline; want at most 1.5", diff)
			}
			if sim.Written != live.Written || sim.Reorders != live.Reorders && pol != "perpacket" {
				t.Errorf("out: sim %d live %d; reorders sim %d live %d", sim.Written, live.Written, sim.Reorders, live.Reorders)
			}
			for k, name := range []string{"p50", "p99"} {
				logOn[k] += math.Log(r[k]) / 4
				logOff[k] += math.Log(ro[k]) / 4
				if raceOn {
					continue
				}
				if !(r[k] >= 1/latencyFactor && r[k] <= latencyFactor) {
					t.Errorf("latency %s: sim ×%.2f the live runs'; want within %g×", name, r[k], latencyFactor)
				}
				if ro[k] >= 1/latencyFactor {
					t.Errorf("latency %s without the pipeline model: ×%.3f the live runs'; the tolerance (%g×) cannot tell it", name, ro[k], latencyFactor)
				}
			}
		})
	}
	for k, name := range []string{"p50", "p99"} {
		on, off := math.Exp(logOn[k]), math.Exp(logOff[k])
		t.Logf("latency %s over the policies (geometric mean): sim ×%.2f the live runs', ×%.3f without the pipeline model", name, on, off)
		if !raceOn && !(on >= 1/latencyMean && on <= latencyMean) {
			t.Errorf("latency %s: sim ×%.2f the live runs' over the policies; want within %g×", name, on, latencyMean)
		}
	}
	if raceOn {
		t.Log("race detector on: latency logged, not asserted (it slows channels, the store and the chains by different factors)")
	}
}

// The latency tolerance of TestSimMatchesLive: each policy's p50 and p99 within
// latencyFactor (either way) of the live engine's; their geometric means over the policies
// within latencyMean.
const latencyFactor, latencyMean = 4.0, 2.0

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
