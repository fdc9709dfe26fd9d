package lb_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/nf/lb"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/store"
)

// sink collects the chain's alerts (the load balancer raises none).
type sink struct{ got []snf.Alert }

func (s *sink) Alert(a *snf.Alert) { s.got = append(s.got, *a) }

// newLB builds a chain of one load balancer; config is a YAML flow mapping or "". A non-nil
// st is the shared store (two chains on one store are two units of one instance).
func newLB(t testing.TB, config string, st store.Store) (*snf.Chain, *lb.LB) {
	t.Helper()
	y := "nfs:\n  - nf: lb\n"
	if config != "" {
		y += "    config: " + config + "\n"
	}
	spec, err := snf.ParseChain([]byte(y), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	c, err := snf.NewChain(spec, snf.ChainOptions{Alerts: s, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if len(s.got) > 0 {
			t.Errorf("the load balancer raised %d alerts", len(s.got))
		}
	})
	return c, c.NF(0).(*lb.LB)
}

func metric(c *snf.Chain, name string) uint64 {
	for _, m := range c.Report()[0].Metrics {
		if m.Name == name {
			return m.Value
		}
	}
	panic("no metric " + name)
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

// readCapture returns the packets of a real capture, or skips the test when it is absent.
func readCapture(t testing.TB, name string) []packet.Packet {
	t.Helper()
	path, _ := filepath.Abs(filepath.Join("../../../shared/traces", name))
	if _, err := os.Stat(path); err != nil {
		t.Skipf("real capture not found at %s (it sits beside the repository in CI): %v", path, err)
	}
	r, err := pcapfile.Open(path)
	if err != nil {
		t.Fatal(err)
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
		if err != nil {
			return all
		}
	}
}
