package monitor_test

import (
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/store"
)

// newReplay replays a capture pass after pass, each pass a second after the previous one's
// end.
func newReplay(tb testing.TB, name string) *testtrace.Replay {
	pkts := testtrace.Packets(tb, name)
	return testtrace.NewReplay(pkts, testtrace.Span(pkts)+time.Second)
}

// BenchmarkMonitor: ns per packet of the chain over pcapplusplus_example.pcap in batches of
// 64 after a warm-up round; "none" is the empty chain (flow lookup only) for reference.
func BenchmarkMonitor(b *testing.B) {
	for _, nfs := range []string{"none", "monitor"} {
		b.Run(nfs, func(b *testing.B) {
			c := testtrace.ChainOf(b, nfs, snf.ChainOptions{})
			r := newReplay(b, "pcapplusplus_example.pcap")
			testtrace.BenchBatches(b, r.Batches()+1, func() { r.Batch(c) })
		})
	}
}

// TestNoAllocsOnCapture: chain.Process of a batch of a real capture allocates nothing once
// warm (the capture loops, so flushes to the shared sketch happen during the measurement).
// With the embedded store: a Redis client allocates for each flush it sends (at most once per
// `flush` interval of packet time), whatever SNF_TEST_STORE says.
func TestNoAllocsOnCapture(t *testing.T) {
	for _, name := range []string{"pcapplusplus_example.pcap", "ndpi_gnutella.pcap"} {
		c := testtrace.ChainOf(t, "monitor", snf.ChainOptions{Store: store.NewEmbedded()})
		r := newReplay(t, name)
		batch := func() { r.Batch(c) }
		for range 2 * (r.Batches() + 1) {
			batch()
		}
		before := testtrace.Metric(c, 0, "flushes")
		if n := testing.AllocsPerRun(200, batch); n != 0 {
			t.Errorf("%s: %v allocations per batch of %d", name, n, testtrace.BatchSize)
		}
		if testtrace.Metric(c, 0, "flushes") == before {
			t.Errorf("%s: no flush during the measurement", name)
		}
	}
}
