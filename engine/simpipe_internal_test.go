package engine

import (
	"math"
	"slices"
	"testing"
)

// TestFitHandoff: the hand-off fitted to a p50 and a p99 makes the sum of two independent
// hand-offs have them (within 3%), for tails from light to heavy.
func TestFitHandoff(t *testing.T) {
	for _, c := range []struct{ p50, p99 float64 }{{10e3, 25e3}, {10e3, 60e3}, {8e3, 100e3}, {5e3, 5e3}} {
		mean, cv := fitHandoff(c.p50, c.p99)
		s := &sim{pl: newSimPipe(Pipeline{Handoff: mean, HandoffCV: cv}, 9)}
		v := make([]float64, 200000)
		for i := range v {
			v[i] = float64(s.hop() + s.hop())
		}
		slices.Sort(v)
		g50, g99 := v[len(v)/2], v[len(v)*99/100]
		t.Logf("p50 %.0f p99 %.0f: hand-off mean %v cv %.2f; two: p50 %.0f p99 %.0f", c.p50, c.p99, mean, cv, g50, g99)
		if math.Abs(g50/c.p50-1) > 0.03 || math.Abs(g99/c.p99-1) > 0.03 {
			t.Errorf("p50 %.0f p99 %.0f: fitted hand-offs give p50 %.0f p99 %.0f", c.p50, c.p99, g50, g99)
		}
	}
	if m, cv := fitHandoff(0, 1e3); m != 0 || cv != 0 {
		t.Errorf("nothing to fit: %v %v", m, cv)
	}
}
