package engine

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestDurationBuckets: every duration falls in the bucket whose range holds it, and a
// bucket above 32 ns is at most 1/32 of its lowest value wide (3 %).
func TestDurationBuckets(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		v := time.Duration(r.Uint64N(1<<uint(r.IntN(60))) + 1)
		b := bucketOf(v)
		lo, hi := bucketValue(b), bucketValue(b+1)
		if v < lo || v >= hi {
			t.Fatalf("%d ns in bucket %d, [%d, %d)", v, b, lo, hi)
		}
		if lo >= subBuckets && float64(hi-lo) > float64(lo)/subBuckets {
			t.Fatalf("bucket %d is [%d, %d): wider than 1/%d of its low end", b, lo, hi, subBuckets)
		}
	}
	var d durations
	for i := 1; i <= 1000; i++ {
		d.add(time.Duration(i) * time.Microsecond)
	}
	if p := d.quantile(0.5); p < 485*time.Microsecond || p > 500*time.Microsecond {
		t.Errorf("median of 1..1000 µs: %v, want within 3 %% below 500µs", p)
	}
}
