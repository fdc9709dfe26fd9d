package lb_test

import (
	"net/netip"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/lb"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/store"
)

// newLB builds a chain of one load balancer; config is a YAML flow mapping or "". A non-nil
// st is the shared store (two chains on one store are two units of one instance). The test
// fails if the balancer raises an alert.
func newLB(t testing.TB, config string, st store.Store) (*snf.Chain, *lb.LB) {
	t.Helper()
	alerts := &testtrace.Alerts{}
	t.Cleanup(func() { // registered before the chain's Close, so it runs after it
		if n := alerts.Len(); n > 0 {
			t.Errorf("the load balancer raised %d alerts", n)
		}
	})
	c := testtrace.Chain(t, testtrace.OneNF("lb", config), snf.ChainOptions{Alerts: alerts, Store: st})
	return c, c.NF(0).(*lb.LB)
}

// send processes one frame at time ts and returns a copy of what came out (nil: dropped).
func send(c *snf.Chain, frame []byte, ts int64) []byte {
	var p [1]packet.Packet
	p[0].SetData(frame, ts, 0)
	out := c.Process(p[:], nil)
	if len(out) != 1 {
		return nil
	}
	return append([]byte(nil), out[0].Data...)
}

// keyOf parses a frame that came out, checking its checksums.
func keyOf(t testing.TB, frame []byte) packet.Key {
	t.Helper()
	if frame == nil {
		t.Fatal("packet was dropped")
	}
	if err := pkttest.VerifyChecksums(frame); err != nil {
		t.Fatalf("checksums after the rewrite: %v", err)
	}
	var p packet.Packet
	p.SetData(frame, 0, 0)
	return p.Key
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// nBackends returns n IPv4 backends 10.1.x.y.
func nBackends(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i + 1)})
	}
	return out
}
