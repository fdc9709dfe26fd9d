package engine_test

import (
	"bytes"
	"context"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/trace"
)

func mustSpec(t testing.TB, names string) *snf.ChainSpec {
	t.Helper()
	spec, err := snf.ChainFromNames(names)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// mustPolicy returns the policy name (units for static); "mover" and "evacuator" are the
// tests' own policies that move flows.
func mustPolicy(t testing.TB, name string, units int) policy.Policy {
	t.Helper()
	switch name {
	case "mover":
		return &mover{}
	case "evacuator":
		return &evacuator{}
	}
	p, err := policy.New(name, policy.Options{StaticUnits: units, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func genReader(t testing.TB, packets, flows int, rate float64, seed uint64) port.Reader {
	t.Helper()
	cfg := trace.DefaultGenConfig()
	cfg.Packets, cfg.Flows, cfg.Rate, cfg.Seed = packets, flows, rate, seed
	g, err := trace.NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func runSim(t testing.TB, cfg engine.SimConfig) engine.SimSummary {
	t.Helper()
	s, err := engine.RunSim(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.InputErr != nil {
		t.Fatal(s.InputErr)
	}
	return s
}

// TestSimDeterministic: two runs with one seed give the same summary and the same output
// bytes; another seed gives other service times (and, with the pipeline model, other
// hand-offs), hence other latencies.
func TestSimDeterministic(t *testing.T) {
	spec := mustSpec(t, "nat,firewall")
	frames := generated(t, 30000)
	for _, model := range []struct {
		name string
		pipe engine.Pipeline
	}{{"units", engine.Pipeline{}}, {"pipeline", testPipe}} {
		run := func(pol string, seed uint64) (engine.SimSummary, []mem.Frame) {
			w := &mem.Writer{}
			s := runSim(t, engine.SimConfig{Spec: spec, In: mem.NewReader(frames), Out: w, Policy: mustPolicy(t, pol, 4),
				MaxUnits: 8, Capacity: 6000, CV: 0.7, Seed: seed, Tick: time.Millisecond, Pipeline: model.pipe})
			s.Wall = 0
			return s, w.Frames()
		}
		for _, pol := range policy.Names() {
			t.Run(model.name+"/"+pol, func(t *testing.T) {
				a, fa := run(pol, 1)
				b, fb := run(pol, 1)
				if !reflect.DeepEqual(a, b) {
					t.Errorf("same seed, different summaries:\n%+v\n%+v", a, b)
				}
				if len(fa) != len(fb) {
					t.Fatalf("same seed: %d and %d packets out", len(fa), len(fb))
				}
				for i := range fa {
					if !bytes.Equal(fa[i].Data, fb[i].Data) || fa[i].Time != fb[i].Time {
						t.Fatalf("same seed: output packet %d differs", i)
					}
				}
				c, _ := run(pol, 2)
				if a.Packets != uint64(len(frames)) {
					t.Errorf("%d packets of %d", a.Packets, len(frames))
				}
				if model.pipe != (engine.Pipeline{}) {
					if c.LatencyFromRoot == a.LatencyFromRoot && c.LatencyMean == a.LatencyMean {
						t.Errorf("seeds 1 and 2 gave the same latencies (%+v, mean %v)", a.LatencyFromRoot, a.LatencyMean)
					}
					return
				}
				if c.LatencyMean == a.LatencyMean && c.ServiceMean == a.ServiceMean {
					t.Errorf("seeds 1 and 2 gave the same latency and service means (%v, %v)", a.LatencyMean, a.ServiceMean)
				}
				if a.UnitsMax < 2 {
					t.Errorf("up to %d units; want more than one", a.UnitsMax)
				}
				t.Logf("%d out, units %d-%d, %d handovers, p99 %v, %d dropped", a.Written, a.UnitsMin, a.UnitsMax, a.Handovers, a.Latency.P99, a.Dropped)
			})
		}
	}
}

// TestSimEqualsOneUnit: on a chain without cross-flow state (firewall), a simulated run on
// 1 to 8 units gives, for every policy that keeps flow state in units and for one that
// moves every flowlet, the packets of the one-unit run, byte for byte and in the same order
// within each flow, the same final flow states, and no reordering.
func TestSimEqualsOneUnit(t *testing.T) {
	spec := mustSpec(t, "firewall")
	frames := generated(t, 20000) // 20,000 packets/s over 300 flows
	want := reference(t, spec, frames)
	end := frames[len(frames)-1].Time
	for _, pn := range []string{"snf", "perflow", "static", "mover", "evacuator"} {
		t.Run(pn, func(t *testing.T) {
			pol := mustPolicy(t, pn, 4)
			w := &mem.Writer{}
			var got outcome
			// 5,000 packets/s per unit: the load needs 4 to 5 units.
			s := runSim(t, engine.SimConfig{Spec: spec, In: mem.NewReader(frames), Out: w, Policy: pol, MaxUnits: 8,
				Capacity: 5000, CV: 0.5, QueueLimit: 1 << 20, Tick: time.Millisecond, Seed: 3,
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
			if s.UnitsMax < 2 {
				t.Errorf("at most %d units: the pool never grew", s.UnitsMax)
			}
			if (pn == "mover" || pn == "evacuator") && s.Handovers == 0 {
				t.Errorf("no handover")
			}
			if pn == "evacuator" && s.Evacuated == 0 {
				t.Errorf("no evacuation")
			}
			t.Logf("units %d/%.2f/%d, %d handovers (%d evacuations), %d held, p99 %v", s.UnitsMin, s.UnitsMean, s.UnitsMax, s.Handovers, s.Evacuated, s.Held, s.Latency.P99)
		})
	}
}

// TestSimQueueing: one unit, Poisson arrivals (the generator's) and exponential service
// times: an M/M/1 queue, whose mean time in the system is 1/(µ-λ). At 50% load the
// simulated mean must be within 5% of it, at 90% load (slower to converge) within 10%.
func TestSimQueueing(t *testing.T) {
	const mu = 100000.0 // packets/s: a mean service time of 10µs
	spec := mustSpec(t, "none")
	for _, c := range []struct {
		rho, tol float64
		packets  int
	}{{0.5, 0.05, 200000}, {0.9, 0.10, 600000}} {
		lambda := c.rho * mu
		s := runSim(t, engine.SimConfig{Spec: spec, In: genReader(t, c.packets, 1000, lambda, 7), Policy: mustPolicy(t, "static", 1),
			MaxUnits: 1, Capacity: mu, Service: engine.ServiceExponential, QueueLimit: 1 << 22, Seed: 11})
		theory := 1 / (mu - lambda)
		got := s.LatencyMean.Seconds()
		t.Logf("load %.1f: mean time in system %.2fµs, M/M/1 %.2fµs (%+.1f%%); mean service %v; p50 %v p99 %v",
			c.rho, got*1e6, theory*1e6, 100*(got/theory-1), s.ServiceMean, s.Latency.P50, s.Latency.P99)
		if math.Abs(got/theory-1) > c.tol {
			t.Errorf("load %.1f: mean time in system %.2fµs, M/M/1 says %.2fµs: more than %.0f%% off", c.rho, got*1e6, theory*1e6, 100*c.tol)
		}
		if s.Dropped != 0 || s.Written != uint64(c.packets) {
			t.Errorf("load %.1f: %d dropped, %d of %d out", c.rho, s.Dropped, s.Written, c.packets)
		}
	}
}

// TestSimUnitsFollowLoad: a load that ramps from 0.5 to 8 units' worth and back down: the
// active units rise, then fall; the unit-seconds spent are at least the oracle's.
func TestSimUnitsFollowLoad(t *testing.T) {
	const capacity = 20000.0
	spec := mustSpec(t, "firewall")
	var rates []float64
	for _, f := range []float64{0.5, 1, 2, 3, 4, 5, 6, 7, 8, 8, 7, 6, 5, 4, 3, 2, 1, 0.5, 0.5, 0.5} {
		rates = append(rates, f*capacity)
	}
	const base = 100000.0
	in := engine.Reshape(genReader(t, 140000, 2000, base, 5), base, rates, 100*time.Millisecond) // 147,000 packets' worth
	s := runSim(t, engine.SimConfig{Spec: spec, In: in, Policy: mustPolicy(t, "snf", 16), MaxUnits: 16,
		Capacity: capacity, CV: 0.5, Seed: 1})
	if len(s.Ticks) < 50 {
		t.Fatalf("%d ticks", len(s.Ticks))
	}
	peak, peakAt := 0, 0
	for i, tk := range s.Ticks {
		if tk.Active > peak {
			peak, peakAt = tk.Active, i
		}
	}
	n := len(s.Ticks)
	early := s.Ticks[n/20].Active
	late := s.Ticks[n-n/20-1].Active
	t.Logf("%d ticks over %v: active %d early, peak %d at tick %d, %d late; unit-s %.3f, oracle %.3f (ratio %.2f); %d dropped, p99 %v",
		n, s.Elapsed, early, peak, peakAt, late, s.UnitSeconds, s.OracleUnitSeconds, s.OracleRatio, s.Dropped, s.Latency.P99)
	if peak < 8 || early > peak/2 || late > peak/2 || peakAt < n/4 || peakAt > 3*n/4 {
		t.Errorf("active units do not follow the load: %d early, peak %d at tick %d of %d, %d late", early, peak, peakAt, n, late)
	}
	if s.UnitSeconds < s.OracleUnitSeconds {
		t.Errorf("%.3f unit-seconds, below the oracle's %.3f", s.UnitSeconds, s.OracleUnitSeconds)
	}
}

// TestSim1000Units: a static pool of 1,000 units all take flows, and an elastic pool grows
// to hundreds of units under a load that needs them.
func TestSim1000Units(t *testing.T) {
	spec := mustSpec(t, "firewall")
	t.Run("static", func(t *testing.T) {
		var chains []*snf.Chain
		var busy int
		s := runSim(t, engine.SimConfig{Spec: spec, In: genReader(t, 200000, 20000, 1e6, 3), Policy: mustPolicy(t, "static", 1000),
			MaxUnits: 1000, Capacity: 2000, OnDone: func(c []*snf.Chain) {
				chains = c
				for _, c := range c {
					if c != nil && c.Stats().In > 0 {
						busy++
					}
				}
			}})
		if len(chains) != 1000 || busy != 1000 || s.UnitsMin != 1000 {
			t.Errorf("%d units, %d of them processed packets, min active %d; want 1000", len(chains), busy, s.UnitsMin)
		}
		t.Logf("%d packets, %d out, %d dropped, p99 %v", s.Packets, s.Written, s.Dropped, s.Latency.P99)
	})
	t.Run("snf", func(t *testing.T) {
		// 1,000,000 packets/s on units of 2,000: 625 units at 80%; with a tick of 100µs
		// (one activation per tick) the pool can grow by 10 units per ms.
		s := runSim(t, engine.SimConfig{Spec: spec, In: genReader(t, 300000, 20000, 1e6, 3), Policy: mustPolicy(t, "snf", 1000),
			MaxUnits: 1000, Capacity: 2000, Tick: 100 * time.Microsecond, ColdStart: 100 * time.Microsecond})
		if s.UnitsMax < 200 {
			t.Errorf("at most %d units active; want hundreds", s.UnitsMax)
		}
		t.Logf("units %d/%.1f/%d, %d packets, %d out, %d dropped, %d handovers, p99 %v", s.UnitsMin, s.UnitsMean, s.UnitsMax, s.Packets, s.Written, s.Dropped, s.Handovers, s.Latency.P99)
	})
}

var _ = packet.Packet{}
