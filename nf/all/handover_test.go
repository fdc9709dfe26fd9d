package all_test

import (
	"cmp"
	"slices"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/trace"
)

// chainOn returns a firewall chain that processed the built-in generator's traffic of seed
// (rate packets/s): its flows' times span the traffic's. It returns the last packet, and
// each flow's last packet.
func chainOn(b *testing.B, seed uint64, packets, flows int, rate float64) (*snf.Chain, packet.Packet, map[packet.Key]*packet.Packet) {
	cfg := trace.DefaultGenConfig()
	cfg.Packets, cfg.Flows, cfg.Rate, cfg.Seed = packets, flows, rate, seed
	g, err := trace.NewGenerator(cfg)
	if err != nil {
		b.Fatal(err)
	}
	c, err := snf.NewChain(mustSpec(b, "firewall"), snf.ChainOptions{})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]packet.Packet, 64)
	var last packet.Packet
	byFlow := map[packet.Key]*packet.Packet{}
	for {
		k, err := g.Read(batch)
		for i := range batch[:k] {
			p := byFlow[batch[i].Key]
			if p == nil {
				p = new(packet.Packet)
				byFlow[batch[i].Key], byFlow[batch[i].Key.Reverse()] = p, p
			}
			p.CopyFrom(&batch[i])
		}
		c.Process(batch[:k], nil)
		if k > 0 {
			last.CopyFrom(&batch[k-1])
		}
		if err != nil {
			return c, last, byFlow
		}
	}
}

// BenchmarkHandoverBurst: a unit with 10,000 flows takes 2,000 flows a peer ships at once
// (a draining unit moving its idle flows off, oldest first); their times are older than
// most of its own, and each one goes where it belongs in the table's time order. In "held",
// each flow also has a packet that waited for its state (5 ms old), processed as the state
// arrives, as unit.Unit does. Per flow imported.
func BenchmarkHandoverBurst(b *testing.B) {
	dst, recent, _ := chainOn(b, 1, 100000, 10000, 1e6) // 100 ms
	defer dst.Close()
	src, _, srcPkts := chainOn(b, 2, 12000, 2000, 2e5) // the first 60 ms of it
	defer src.Close()
	mine := map[packet.Key]bool{}
	if err := dst.Flows(func(k packet.Key, _ []byte) bool { mine[k] = true; return true }); err != nil {
		b.Fatal(err)
	}
	var keys []packet.Key
	if err := src.Flows(func(k packet.Key, _ []byte) bool {
		if !mine[k] {
			keys = append(keys, k)
		}
		return true
	}); err != nil {
		b.Fatal(err)
	}
	// Oldest first, as a draining unit ships them (RangeIdle).
	slices.SortFunc(keys, func(x, y packet.Key) int { return cmp.Compare(srcPkts[x].Time, srcPkts[y].Time) })
	held := make([]packet.Packet, len(keys))
	for i, k := range keys {
		held[i].CopyFrom(srcPkts[k])
	}
	states := make([][]byte, len(keys))
	for i, k := range keys {
		d, found, err := src.MoveOut(k, nil)
		if err != nil || !found {
			b.Fatalf("move out %s: found %v, %v", k, found, err)
		}
		states[i] = d
	}
	one := make([]packet.Packet, 1)
	var buf []byte
	for _, mode := range []string{"idle", "held"} {
		withHeld := mode == "held"
		b.Run(mode, func(b *testing.B) {
			imports := func() {
				for i, s := range states {
					if err := dst.ImportFlow(s); err != nil {
						b.Fatal(err)
					}
					if withHeld {
						held[i].Time, held[i].Clock = recent.Time-5e6, 0
						dst.Process(held[i:i+1], nil)
					}
				}
			}
			for b.Loop() {
				imports()
				one[0].CopyFrom(&recent)
				dst.Process(one, nil)
				b.StopTimer()
				for _, k := range keys { // the table as it was, for the next round
					var found bool
					var err error
					if buf, found, err = dst.MoveOut(k, buf[:0]); err != nil || !found {
						b.Fatalf("move out %s: found %v, %v", k, found, err)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(states)), "ns/flow")
		})
	}
}
