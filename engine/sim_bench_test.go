package engine_test

import (
	"testing"

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
