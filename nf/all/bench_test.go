package all_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/snf-dev/snf"
	_ "github.com/snf-dev/snf/nf/all"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
)

// The benchmarks of BENCHMARKS.md: every one runs over the packets of a real capture held in
// memory, in batches of 64, and reports ns/packet. Compare them as ratios within one run:
//
//	go test -run x -bench . -benchmem ./nf/all/
//
// Floor is the reference: copying the frame, a minimal hand parse of the IPv4 5-tuple and
// one Go map update. Pipeline/copy+parse copies and parses each frame as ports do
// (Packet.SetData); Pipeline/<chain> adds the chain's processing, so an NF's own cost is its
// line minus copy+parse.

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

type floorKey struct {
	src, dst uint32
	sp, dp   uint16
	proto    uint8
}

func BenchmarkFloor(b *testing.B) {
	frames := loadFrames(b)
	m := map[floorKey]uint64{}
	buf := make([]byte, 2048)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		for j := 0; j < batchSize; j++ {
			f := frames[n]
			n++
			if n == len(frames) {
				n = 0
			}
			d := buf[:copy(buf, f)]
			if len(d) < 38 || binary.BigEndian.Uint16(d[12:]) != 0x0800 {
				continue
			}
			ihl := int(d[14]&0xf) * 4
			if len(d) < 14+ihl+4 {
				continue
			}
			k := floorKey{
				src: binary.BigEndian.Uint32(d[26:]), dst: binary.BigEndian.Uint32(d[30:]), proto: d[23],
				sp: binary.BigEndian.Uint16(d[14+ihl:]), dp: binary.BigEndian.Uint16(d[14+ihl+2:]),
			}
			m[k]++
		}
	}
	reportPerPacket(b)
}

func reportPerPacket(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/pkt")
}

func BenchmarkPipeline(b *testing.B) {
	frames := loadFrames(b)
	for _, chain := range []string{"copy+parse", "none", "nat", "firewall", "nat,firewall"} {
		b.Run(chain, func(b *testing.B) {
			var c *snf.Chain
			if chain != "copy+parse" {
				spec, err := snf.ChainFromNames(chain)
				if err != nil {
					b.Fatal(err)
				}
				if c, err = snf.NewChain(spec, snf.ChainOptions{}); err != nil {
					b.Fatal(err)
				}
				defer c.Close()
			}
			batch := make([]packet.Packet, batchSize)
			out := make([]*packet.Packet, 0, 2*batchSize)
			var clock uint64
			n := 0
			fill := func() {
				for j := range batch {
					batch[j].SetData(frames[n], int64(clock)*1000, 0)
					clock++
					batch[j].Clock = clock
					n++
					if n == len(frames) {
						n = 0
					}
				}
			}
			// Warm up: one pass over the capture creates the flows and mappings.
			for range len(frames)/batchSize + 1 {
				fill()
				if c != nil {
					out = c.Process(batch, out[:0])
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				fill()
				if c != nil {
					out = c.Process(batch, out[:0])
				}
			}
			reportPerPacket(b)
		})
	}
}
