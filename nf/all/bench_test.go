package all_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/snf-dev/snf"
	_ "github.com/snf-dev/snf/nf/all"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
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

func loadFrames(b *testing.B) [][]byte {
	path, _ := filepath.Abs(filepath.Join("../../../shared/traces", benchCapture))
	if _, err := os.Stat(path); err != nil {
		b.Skipf("real capture not found at %s (it sits beside the repository in CI): %v", path, err)
	}
	r, err := pcapfile.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var frames [][]byte
	batch := make([]packet.Packet, 64)
	for {
		n, err := r.Read(batch)
		for i := range batch[:n] {
			frames = append(frames, append([]byte(nil), batch[i].Data...))
		}
		if err != nil {
			return frames
		}
	}
}

const batchSize = 64

func reportPerPacket(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/pkt")
}

// headerBytes is how much of each frame Chain benchmarks restore before a pass: more than
// any header an NF rewrites.
const headerBytes = 128

func BenchmarkChain(b *testing.B) {
	frames := loadFrames(b)
	// Each packet keeps its own buffer, as packets in a port's batch do.
	pkts := make([]packet.Packet, len(frames))
	for i, f := range frames {
		pkts[i].SetData(f, int64(i)*1000, 0)
	}
	for _, chain := range []string{"restore", "none", "nat", "firewall", "nat,firewall", "lb", "ratelimit", "portscan", "monitor", "trojan", "ids"} {
		b.Run(chain, func(b *testing.B) {
			var c *snf.Chain
			if chain != "restore" {
				spec, err := snf.ChainFromNames(chain)
				if err != nil {
					b.Fatal(err)
				}
				if c, err = snf.NewChain(spec, snf.ChainOptions{}); err != nil {
					b.Fatal(err)
				}
				defer c.Close()
			}
			out := make([]*packet.Packet, 0, 2*batchSize)
			var clock uint64
			n := 0
			pass := func() {
				if n+batchSize > len(pkts) {
					n = 0
				}
				batch := pkts[n : n+batchSize]
				for j := range batch {
					p := &batch[j]
					copy(p.Data[:min(headerBytes, len(p.Data))], frames[n+j])
					p.Parse()
					clock++
					p.Clock, p.Time = clock, int64(clock)*1000
				}
				n += batchSize
				if c != nil {
					out = c.Process(batch, out[:0])
				}
			}
			// Warm up: one pass over the capture creates the flows and mappings.
			for range len(pkts)/batchSize + 1 {
				pass()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				pass()
			}
			reportPerPacket(b)
		})
	}
}
