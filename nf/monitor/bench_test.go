package monitor_test

import (
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

const batchSize = 64

// loop feeds a capture to a chain in batches of 64, round and round, each round later in
// packet time by the capture's span plus a second.
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

func chainOf(tb testing.TB, nfs string) *snf.Chain {
	spec, err := snf.ChainFromNames(nfs)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkMonitor: ns per packet of the chain over pcapplusplus_example.pcap in batches of
// 64 after a warm-up round; "none" is the empty chain (flow lookup only) for reference.
func BenchmarkMonitor(b *testing.B) {
	for _, nfs := range []string{"none", "monitor"} {
		b.Run(nfs, func(b *testing.B) {
			l := newLoop(b, chainOf(b, nfs), "pcapplusplus_example.pcap")
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

// TestNoAllocsOnCapture: chain.Process of a batch of a real capture allocates nothing once
// warm (the capture loops, so flushes to the shared sketch happen during the measurement).
func TestNoAllocsOnCapture(t *testing.T) {
	for _, name := range []string{"pcapplusplus_example.pcap", "ndpi_gnutella.pcap"} {
		c := chainOf(t, "monitor")
		l := newLoop(t, c, name)
		for range 2 * (len(l.pkts)/batchSize + 1) {
			l.batch()
		}
		before := metricOf(c, "flushes")
		if n := testing.AllocsPerRun(200, l.batch); n != 0 {
			t.Errorf("%s: %v allocations per batch of %d", name, n, batchSize)
		}
		if metricOf(c, "flushes") == before {
			t.Errorf("%s: no flush during the measurement", name)
		}
	}
}

func metricOf(c *snf.Chain, name string) uint64 {
	for _, m := range c.Report()[0].Metrics {
		if m.Name == name {
			return m.Value
		}
	}
	return 0
}
