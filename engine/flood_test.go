package engine_test

import (
	"context"
	"encoding/binary"
	"io"
	"net/netip"
	"runtime"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
)

// flood is a port.Reader of n UDP packets, each with a new 5-tuple (spoofed sources), made on
// the fly so the test holds no capture in memory.
type flood struct {
	n, i  int
	frame []byte
}

func newFlood(n int) *flood {
	f := pkttest.UDP(netipA, netipB, 1, 53, []byte("flood"))
	return &flood{n: n, frame: f}
}

func (f *flood) Read(pkts []packet.Packet) (int, error) {
	k := 0
	for ; k < len(pkts) && f.i < f.n; k++ {
		// Source address and port from the counter: every packet its own flow. The
		// checksums are not fixed: the NFs under test do not check them.
		binary.BigEndian.PutUint32(f.frame[14+12:], 0x0a000000|uint32(f.i>>8))
		binary.BigEndian.PutUint16(f.frame[14+20:], uint16(1024+f.i&0xff))
		pkts[k].SetData(f.frame, int64(f.i)*1000, 0) // 1 µs apart
		f.i++
	}
	if k == 0 {
		return 0, io.EOF
	}
	return k, nil
}

func (f *flood) Close() error { return nil }

// TestFlood: two million distinct 5-tuples through the runtime keep every flow table at its
// bound and the heap bounded; the process stays alive and every packet is accounted for.
func TestFlood(t *testing.T) {
	const packets = 2_000_000
	const maxFlows = 50_000
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := policy.New("perflow", policy.Options{})
	var active []int
	var heap uint64
	s, err := engine.RunLive(context.Background(), engine.LiveConfig{
		Spec: spec, In: newFlood(packets), Policy: pol, MinUnits: 2, MaxUnits: 2, MaxFlows: maxFlows,
		Capacity: 1e9,
		OnDone: func(chains []*snf.Chain) {
			for _, c := range chains {
				active = append(active, c.FlowStats().Active)
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heap = ms.HeapInuse
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Packets != packets || s.Written != packets || s.Flows != packets {
		t.Errorf("packets %d written %d flows %d, want %d each", s.Packets, s.Written, s.Flows, packets)
	}
	for u, a := range active {
		if a > maxFlows {
			t.Errorf("unit %d holds %d flows, bound %d", u, a, maxFlows)
		}
	}
	// 2 units × 50k flows plus the root's table and tombstones: far below what 2M flows
	// would take (≥ 600 MB).
	if heap > 128<<20 {
		t.Errorf("heap in use %d MB after the flood", heap>>20)
	}
	t.Logf("%d packets, flows per unit %v, heap %d MB, %.0f packets/s", s.Packets, active, heap>>20, s.PPS())
}

var netipA, netipB = mustAddr("10.0.0.1"), mustAddr("198.51.100.1")

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
