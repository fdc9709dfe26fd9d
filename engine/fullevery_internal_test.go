package engine

import (
	"testing"
	"time"

	"github.com/snf-dev/snf/replay"
)

// TestFullEvery: full checkpoint records stay at most one per fullRecordEvery however short
// the interval, within [DefaultFullEvery, 4×DefaultFullEvery] records.
func TestFullEvery(t *testing.T) {
	d := replay.DefaultFullEvery
	for _, c := range []struct {
		interval time.Duration
		want     int
	}{{0, d}, {time.Second, d}, {10 * time.Millisecond, d}, {4 * time.Millisecond, 160}, {time.Millisecond, 4 * d}, {time.Microsecond, 4 * d}} {
		if got := fullEvery(c.interval); got != c.want {
			t.Errorf("fullEvery(%v) = %d, want %d", c.interval, got, c.want)
		}
	}
}
