package monitor_test

import (
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/monitor"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/store"
)

// newChain builds a chain of one monitor; st and unit place it in a shared store (nil:
// its own).
func newChain(tb testing.TB, config string, st store.Store, unit uint32) (*snf.Chain, *monitor.Monitor, *testtrace.Alerts) {
	tb.Helper()
	alerts := &testtrace.Alerts{}
	c := testtrace.Chain(tb, testtrace.OneNF("monitor", config), snf.ChainOptions{Alerts: alerts, Store: st, Unit: unit})
	return c, c.NF(0).(*monitor.Monitor), alerts
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
