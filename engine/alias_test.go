package engine_test

import (
	"context"
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
)

// lockedOut is a writer the test reads while the run writes.
type lockedOut struct {
	mu  sync.Mutex
	out [][]byte
}

func (w *lockedOut) Write(ps []*packet.Packet) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range ps {
		w.out = append(w.out, append([]byte(nil), p.Data...))
	}
	return nil
}
func (w *lockedOut) Close() error { return nil }

func (w *lockedOut) frames() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.out...)
}

// echoReader sends n flows' first packets from inside hosts, waits until the chain output
// them, then answers each from the server to the address and port it came out with (the
// NAT's public ones), as the Internet would.
type echoReader struct {
	n     int
	out   *lockedOut
	stage int
}

var (
	natServer = netip.MustParseAddr("198.51.100.9")
	natPublic = netip.MustParseAddr("192.0.2.1") // nat's default public address
)

func insideHost(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}) }

func (r *echoReader) Read(pkts []packet.Packet) (int, error) {
	switch r.stage {
	case 0:
		r.stage++
		for i := range r.n {
			pkts[i].SetData(pkttest.UDP(insideHost(i), natServer, 40000, 53, []byte("q")), int64(i)*1000, 0)
		}
		return r.n, nil
	case 1:
		r.stage++
		deadline := time.Now().Add(10 * time.Second)
		var out [][]byte
		for len(out) < r.n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			out = r.out.frames()
		}
		for i, f := range out {
			var p packet.Packet
			p.SetData(f, 0, 0)
			pkts[i].SetData(pkttest.UDP(natServer, p.Key.SrcAddr(), 53, p.Key.SrcPort, []byte("a")), int64(time.Second)+int64(i)*1000, 0)
		}
		return len(out), nil
	}
	return 0, io.EOF
}
func (r *echoReader) Close() error { return nil }

// TestNATRepliesReachTheirUnit: in an elastic NAT (four units, flows spread by hashing),
// replies addressed to the NAT's public address go to the unit holding their flow — units
// report the reply keys the NAT announces and the root learns them — and are translated
// back to the inside host. Without that, they would be hashed as new flows to any unit and
// dropped there as inbound_unmatched.
func TestNATRepliesReachTheirUnit(t *testing.T) {
	spec, err := snf.ChainFromNames("nat")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New("static", policy.Options{StaticUnits: 4})
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	out := &lockedOut{}
	s, err := engine.RunLive(context.Background(), engine.LiveConfig{
		Spec: spec, In: &echoReader{n: n, out: out}, Out: out, Policy: pol, MinUnits: 4, MaxUnits: 4,
		Batch: 2 * n, Capacity: 1e6, Tick: time.Millisecond, // a short read flushes the units at once
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Packets != 2*n || s.Chain.Dropped != 0 || s.Written != 2*n {
		t.Fatalf("%d packets in, %d written, %d dropped; want %d, %d, 0", s.Packets, s.Written, s.Chain.Dropped, 2*n, 2*n)
	}
	got := map[netip.Addr]bool{}
	for _, f := range out.frames()[n:] {
		var p packet.Packet
		p.SetData(f, 0, 0)
		if p.Key.SrcAddr() != natServer || p.Key.DstPort != 40000 {
			t.Fatalf("reply %s: want it from the server to an inside host's port 40000", p.Key)
		}
		got[p.Key.DstAddr()] = true
	}
	for i := range n {
		if !got[insideHost(i)] {
			t.Errorf("no reply reached inside host %s", insideHost(i))
		}
	}
	if s.Flows != n {
		t.Errorf("%d flows at the root, want %d (a reply is its flow's, not a new one)", s.Flows, n)
	}
	_ = natPublic
}
