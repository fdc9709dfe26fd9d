package engine_test

import (
	"github.com/snf-dev/snf/trace"
	"testing"
	"time"

	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/packet"
)

// BenchmarkSim measures the simulator's speed: simulated packets per second of wall time,
// generated traffic (2,000,000 packets of 20,000 concurrent flows at 10,000,000 packets/s,
// made as the simulation reads them) through a firewall on units of 2,000,000 packets/s
// (about six units at 80%), per policy. BenchmarkSim/generator alone is the traffic
// generator's share.
//
//	go test -run x -bench Sim -benchmem ./engine/
func BenchmarkSim(b *testing.B) {
	const packets = 2000000
	spec := mustSpec(b, "firewall")
	b.Run("generator", func(b *testing.B) {
		batch := make([]packet.Packet, 64)
		for b.Loop() {
			g := genReader(b, packets, 2000, 1e7, 1)
			for {
				if _, err := g.Read(batch); err != nil {
					break
				}
			}
		}
		b.ReportMetric(float64(b.N*packets)/b.Elapsed().Seconds(), "packets/s")
	})
	for _, pol := range []string{"snf", "perflow", "perpacket", "static"} {
		b.Run(pol, func(b *testing.B) {
			b.ReportAllocs()
			var s engine.SimSummary
			for b.Loop() {
				s = runSim(b, engine.SimConfig{Spec: spec, In: genReader(b, packets, 2000, 1e7, 1), Policy: mustPolicy(b, pol, 8),
					MaxUnits: 16, Capacity: 2e6, CV: 0.5, Seed: 1})
			}
			b.ReportMetric(float64(b.N*packets)/b.Elapsed().Seconds(), "packets/s")
			b.ReportMetric(float64(s.Handovers), "handovers")
			b.ReportMetric(float64(s.UnitsMax), "units-max")
		})
	}
}

// BenchmarkSimDay measures the simulator on the default input of 'snf sim': a generated
// data-center day (web-search flows, diurnal load with bursts, 4.75 million packets whose
// peak needs about ten units of 1,000,000 packets/s) through nat,firewall, per policy, with
// the defaults of 'snf sim' (flowlet gap 5ms, target 0.9, growth on measured load, backlog bound 500µs, busy moves after 4 ticks).
//
//	go test -run x -bench SimDay -benchtime 1x ./engine/
func BenchmarkSimDay(b *testing.B) {
	spec := mustSpec(b, "nat,firewall")
	const day = "websearch,load=1,link=6.72e+10,profile=diurnal:min=0.2,max=1+bursts:x=2,len=50ms,rate=2,duration=1s,warmup=200ms,seed=1"
	cfg, err := trace.ParseWorkload(day)
	if err != nil {
		b.Fatal(err)
	}
	for _, pol := range []string{"snf", "perflow", "perpacket", "static"} {
		b.Run(pol, func(b *testing.B) {
			var s engine.SimSummary
			for b.Loop() {
				w, err := trace.NewWorkload(cfg)
				if err != nil {
					b.Fatal(err)
				}
				s = runSim(b, engine.SimConfig{Spec: spec, In: w, Policy: mustPolicy(b, pol, 16), MaxUnits: 16,
					Capacity: 1e6, CV: 0.5, Seed: 1, FlowletGap: 5 * time.Millisecond, Target: 0.9, ScaleOnMeasured: true, MaxBacklog: 500 * time.Microsecond, BusyAfter: 4, StoreRTT: 50 * time.Microsecond})
			}
			b.ReportMetric(float64(uint64(b.N)*s.Packets)/b.Elapsed().Seconds(), "packets/s")
			b.ReportMetric(s.OracleRatio, "oracle-ratio")
			b.ReportMetric(100*s.OverSLOFrac, "%over-SLO")
		})
	}
}
