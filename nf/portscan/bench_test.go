package portscan_test

import (
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

const batchSize = 64

// loop feeds a capture to a chain in batches of 64, round and round: each round shifts
// packet time by the capture's span plus a second, so time moves forward as in a longer
// capture and replies, timeouts and flow expiry keep their real spacing.
type loop struct {
	c     *snf.Chain
	pkts  []packet.Packet
	base  []int64
	span  int64
	n     int
	round int64
	clock uint64
	out   []*packet.Packet
}

func newLoop(tb testing.TB, c *snf.Chain, name string) *loop {
	pkts := readCapture(tb, name)
	l := &loop{c: c, pkts: pkts, out: make([]*packet.Packet, 0, 2*batchSize)}
	for _, p := range pkts {
		l.base = append(l.base, p.Time)
	}
	l.span = pkts[len(pkts)-1].Time - pkts[0].Time + 1e9
	return l
}

func (l *loop) batch() {
	if l.n+batchSize > len(l.pkts) {
		l.n = 0
		l.round++
	}
	b := l.pkts[l.n : l.n+batchSize]
	for j := range b {
		l.clock++
		b[j].Clock = l.clock
		b[j].Time = l.base[l.n+j] + l.round*l.span
	}
	l.n += batchSize
	l.out = l.c.Process(b, l.out[:0])
}

func newChain(tb testing.TB, yaml string) *snf.Chain {
	spec, err := snf.ParseChain([]byte(yaml), "bench.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	c, err := snf.NewChain(spec, snf.ChainOptions{Alerts: &sink{}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkPortscan: ns per packet of the chain (flow lookup and the detector) over real
// captures, in batches of 64, after a warm-up round; "none" is the empty chain (flow lookup
// only) for reference.
func BenchmarkPortscan(b *testing.B) {
	for _, name := range []string{"pcapplusplus_example.pcap", "nmap_synscan.pcap"} {
		for _, chain := range []string{"none", "portscan"} {
			b.Run(name+"/"+chain, func(b *testing.B) {
				c := newChain(b, "nfs:\n  - nf: portscan\n")
				if chain == "none" {
					spec, _ := snf.ChainFromNames("none")
					c, _ = snf.NewChain(spec, snf.ChainOptions{})
				}
				l := newLoop(b, c, name)
				for range len(l.pkts)/batchSize + 1 {
					l.batch()
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					l.batch()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/pkt")
			})
		}
	}
}

// TestNoAllocsOnCapture: chain.Process of a batch of a real capture allocates nothing once
// warm.
func TestNoAllocsOnCapture(t *testing.T) {
	for _, name := range []string{"pcapplusplus_example.pcap", "nmap_synscan.pcap", "ndpi_gnutella.pcap"} {
		l := newLoop(t, newChain(t, "nfs:\n  - nf: portscan\n    config: {block: true}\n"), name)
		for range 2 * (len(l.pkts)/batchSize + 1) {
			l.batch()
		}
		if n := testing.AllocsPerRun(100, l.batch); n != 0 {
			t.Errorf("%s: %v allocations per batch of %d", name, n, batchSize)
		}
	}
}
