package monitor_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/nf/monitor"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/store"
)

// sink collects alerts (the monitor raises none).
type sink struct{ alerts []*snf.Alert }

func (s *sink) Alert(a *snf.Alert) { s.alerts = append(s.alerts, a) }

// newChain builds a chain of one monitor; st and unit place it in a shared store (nil:
// its own).
func newChain(tb testing.TB, config string, st store.Store, unit uint32) (*snf.Chain, *monitor.Monitor, *sink) {
	tb.Helper()
	y := "nfs:\n  - nf: monitor\n"
	if config != "" {
		y += "    config: " + config + "\n"
	}
	spec, err := snf.ParseChain([]byte(y), "x.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	s := &sink{}
	c, err := snf.NewChain(spec, snf.ChainOptions{Alerts: s, Store: st, Unit: unit})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c, c.NF(0).(*monitor.Monitor), s
}

func metric(tb testing.TB, c *snf.Chain, name string) uint64 {
	for _, m := range c.Report()[0].Metrics {
		if m.Name == name {
			return m.Value
		}
	}
	tb.Fatalf("no metric %s", name)
	return 0
}

// process runs packets through c in batches of 64.
func process(c *snf.Chain, pkts []packet.Packet) {
	out := make([]*packet.Packet, 0, 128)
	for i := 0; i < len(pkts); i += 64 {
		out = c.Process(pkts[i:min(i+64, len(pkts))], out[:0])
	}
}

func capturePath(tb testing.TB, name string) string {
	tb.Helper()
	path, _ := filepath.Abs(filepath.Join("../../../shared/traces", name))
	if _, err := os.Stat(path); err != nil {
		tb.Skipf("real capture not found at %s (it sits beside the repository in CI): %v", path, err)
	}
	return path
}

// readCapture returns every packet of a real capture, each with its own buffer.
func readCapture(tb testing.TB, name string) []packet.Packet {
	tb.Helper()
	r, err := pcapfile.Open(capturePath(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	var all []packet.Packet
	batch := make([]packet.Packet, 64)
	for {
		n, err := r.Read(batch)
		for i := range batch[:n] {
			var p packet.Packet
			p.SetData(batch[i].Data, batch[i].Time, batch[i].WireLen)
			all = append(all, p)
		}
		if err == io.EOF {
			return all
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// exact holds a capture's true per-flow counts, by canonical key, computed directly.
type exact struct {
	bytes, packets map[packet.Key]uint64
	totalBytes     uint64
	totalPackets   uint64
}

func exactCounts(pkts []packet.Packet) exact {
	e := exact{bytes: map[packet.Key]uint64{}, packets: map[packet.Key]uint64{}}
	for i := range pkts {
		p := &pkts[i]
		if !p.IP() {
			continue
		}
		k, _ := p.Key.Canonical()
		e.bytes[k] += uint64(p.WireLen)
		e.packets[k]++
		e.totalBytes += uint64(p.WireLen)
		e.totalPackets++
	}
	return e
}

func canon(k packet.Key) packet.Key { c, _ := k.Canonical(); return c }
