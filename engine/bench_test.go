package engine_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port/mem"
)

// BenchmarkEndToEnd compares the two-NF chain (nat,firewall) run directly on one goroutine
// (engine.Run) with the elastic runtime on both cores (root + 2 units + egress), over the
// packets of a real capture repeated, from memory. The ratio of the packets/s is the
// runtime's overhead (or gain from the second core).
//
//	go test -run x -bench EndToEnd ./engine/
func BenchmarkEndToEnd(b *testing.B) {
	path, _ := filepath.Abs("../../shared/traces/pcapplusplus_example.pcap")
	t := &testing.T{}
	var frames []mem.Frame
	func() {
		defer func() { recover() }()
		frames = readFrames(t, path)
	}()
	if len(frames) == 0 {
		b.Skipf("real capture not found at %s (it sits beside the repository in CI)", path)
	}
	// Fifty copies of the capture, one after the other in time.
	base := frames
	span := base[len(base)-1].Time - base[0].Time + 1e9
	for k := 1; k < 50; k++ {
		for _, f := range base {
			f.Time += int64(k) * span
			frames = append(frames, f)
		}
	}
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("one-goroutine", func(b *testing.B) {
		for b.Loop() {
			chain, _ := snf.NewChain(spec, snf.ChainOptions{})
			if _, err := engine.Run(context.Background(), engine.Config{Chain: chain, In: mem.NewReader(frames)}); err != nil {
				b.Fatal(err)
			}
			chain.Close()
		}
		b.ReportMetric(float64(b.N*len(frames))/b.Elapsed().Seconds(), "packets/s")
	})
	for _, units := range []int{1, 2} {
		b.Run("elastic-"+string(rune('0'+units))+"-units", func(b *testing.B) {
			for b.Loop() {
				pol, _ := policy.New("static", policy.Options{StaticUnits: units})
				if _, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: mem.NewReader(frames),
					Policy: pol, MinUnits: units, MaxUnits: units, Capacity: 1e9}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(frames))/b.Elapsed().Seconds(), "packets/s")
		})
	}
}

// BenchmarkStarvedUnit: one unit gets every 200th packet (one flow), the other the rest, at
// full speed (firewall, two static units, 1,000,000 packets from memory). The root never
// blocks, and a unit its send woke waits on the root's processor until another one is
// free: without the root's check for a starving unit (live.starving), the rare unit waited
// up to the runtime's preemption of the root, holding its batches' lent frames. It reports
// the median packets/s and root-to-egress p99.9 over the runs, the lender's largest arena
// and the frames that found it full (given memory of their own).
//
//	go test -run x -bench StarvedUnit -benchtime 10x ./engine/
func BenchmarkStarvedUnit(b *testing.B) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		b.Fatal(err)
	}
	a, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	rare := pkttest.UDP(a, c, 1000, 53, make([]byte, 600))
	busy := pkttest.UDP(a, c, 2000, 53, make([]byte, 600))
	frames := make([]mem.Frame, 1000000)
	for i := range frames {
		frames[i] = mem.Frame{Data: busy, Time: int64(1 + i)}
		if i%200 == 0 {
			frames[i].Data = rare // (the first: pinFirst puts its flow on unit 1)
		}
	}
	var pps, p999 []float64
	arena, overflows := 0, uint64(0)
	for b.Loop() {
		s, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: mem.NewReader(frames),
			Policy: pinFirst(), MinUnits: 2, MaxUnits: 2, Capacity: 1e9})
		if err != nil {
			b.Fatal(err)
		}
		pps = append(pps, s.PPS())
		p999 = append(p999, float64(s.Latency.P999.Nanoseconds())/1e3)
		arena, overflows = max(arena, s.LendBytes), overflows+s.LendOverflows
	}
	b.ReportMetric(median(pps), "packets/s")
	b.ReportMetric(median(p999), "p99.9-µs")
	b.ReportMetric(float64(arena), "lend-arena-max-bytes")
	b.ReportMetric(float64(overflows), "lend-overflows")
}
