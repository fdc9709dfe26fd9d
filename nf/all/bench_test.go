package all_test

import (
	"slices"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	_ "github.com/snf-dev/snf/nf/all"
	"github.com/snf-dev/snf/packet"
)

// The chain benchmarks of BENCHMARKS.md, over the packets of a real capture held in memory,
// reporting ns/pkt. They run beside the packet package's Floor and Parse benchmarks, and are
// compared with them as ratios within one run:
//
//		go test -run x -bench . -benchmem ./packet/ ./nf/all/
//
//	  - Chain/restore: per packet, copy the headers back from the capture (NFs rewrite them in
//	    place, and the next pass must see the original packet) and parse — the baseline;
//	  - Chain/<nfs>: restore, then the chain in batches of 64 (flow lookup, the NFs). A chain's
//	    own cost is its line minus Chain/restore.
const benchCapture = "pcapplusplus_example.pcap"

// headerBytes is how much of each frame Chain benchmarks restore before a pass: more than
// any header an NF rewrites.
const headerBytes = 128

func BenchmarkChain(b *testing.B) {
	// Each packet keeps its own buffer, as packets in a port's batch do; frames are the
	// captured ones, to restore.
	pkts := testtrace.Packets(b, benchCapture)
	frames := make([][]byte, len(pkts))
	for i := range pkts {
		frames[i] = slices.Clone(pkts[i].Data)
		pkts[i].SetData(frames[i], int64(i)*1000, 0)
	}
	for _, chain := range []string{"restore", "none", "nat", "firewall", "nat,firewall", "lb", "ratelimit", "portscan", "monitor", "trojan", "ids"} {
		b.Run(chain, func(b *testing.B) {
			var c *snf.Chain
			if chain != "restore" {
				c = testtrace.ChainOf(b, chain, snf.ChainOptions{})
			}
			out := make([]*packet.Packet, 0, 2*testtrace.BatchSize)
			var clock uint64
			n := 0
			pass := func() {
				if n+testtrace.BatchSize > len(pkts) {
					n = 0
				}
				batch := pkts[n : n+testtrace.BatchSize]
				for j := range batch {
					p := &batch[j]
					copy(p.Data[:min(headerBytes, len(p.Data))], frames[n+j])
					p.Parse()
					clock++
					p.Clock, p.Time = clock, int64(clock)*1000
				}
				n += testtrace.BatchSize
				if c != nil {
					out = c.Process(batch, out[:0])
				}
			}
			// Warm up: one pass over the capture creates the flows and mappings.
			testtrace.BenchBatches(b, len(pkts)/testtrace.BatchSize+1, pass)
		})
	}
}
