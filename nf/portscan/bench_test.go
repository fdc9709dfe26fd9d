package portscan_test

import (
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
)

// newReplay replays a capture pass after pass, each pass a second after the previous one's
// end, so that time moves forward as in a longer capture and replies, timeouts and flow
// expiry keep their real spacing.
func newReplay(tb testing.TB, name string) *testtrace.Replay {
	pkts := testtrace.Packets(tb, name)
	return testtrace.NewReplay(pkts, testtrace.Span(pkts)+time.Second)
}

// BenchmarkPortscan: ns per packet of the chain (flow lookup and the detector) over real
// captures, in batches of 64, after a warm-up round; "none" is the empty chain (flow lookup
// only) for reference.
func BenchmarkPortscan(b *testing.B) {
	for _, name := range []string{"pcapplusplus_example.pcap", "nmap_synscan.pcap"} {
		for _, chain := range []string{"none", "portscan"} {
			b.Run(name+"/"+chain, func(b *testing.B) {
				var c *snf.Chain
				if chain == "none" {
					c = testtrace.ChainOf(b, "none", snf.ChainOptions{})
				} else {
					c = testtrace.Chain(b, testtrace.OneNF("portscan", ""), snf.ChainOptions{Alerts: &testtrace.Alerts{}})
				}
				r := newReplay(b, name)
				testtrace.BenchBatches(b, r.Batches()+1, func() { r.Batch(c) })
			})
		}
	}
}

// TestNoAllocsOnCapture: chain.Process of a batch of a real capture allocates nothing once
// warm.
func TestNoAllocsOnCapture(t *testing.T) {
	for _, name := range []string{"pcapplusplus_example.pcap", "nmap_synscan.pcap", "ndpi_gnutella.pcap"} {
		c := testtrace.Chain(t, testtrace.OneNF("portscan", "{block: true}"), snf.ChainOptions{Alerts: &testtrace.Alerts{}})
		r := newReplay(t, name)
		batch := func() { r.Batch(c) }
		for range 2 * (r.Batches() + 1) {
			batch()
		}
		if n := testing.AllocsPerRun(100, batch); n != 0 {
			t.Errorf("%s: %v allocations per batch of %d", name, n, testtrace.BatchSize)
		}
	}
}
