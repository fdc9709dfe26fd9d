package engine_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
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
