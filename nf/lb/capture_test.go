package lb_test

import (
	"bytes"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
)

const example = "pcapplusplus_example.pcap"

// TestRealCapture balances every TCP and UDP flow of real browsing traffic (any port, no
// VIP: a transparent balancer) over the 4 default IPv4 backends. Each packet a client sends
// must go to its flow's one backend with valid checksums; each packet the server sent is
// replayed as the backend would send it (from the backend's address) and must come out
// exactly as captured — from the original server. The spread of the flows over the
// backends must be what Maglev promises: the table splits the hash space evenly to one slot
// in 16,384, so each backend's count is binomial(flows, 1/4); the bound is 4 standard
// deviations (for 136 flows: 34 ± 20).
func TestRealCapture(t *testing.T) {
	pkts := testtrace.Packets(t, example)
	c, l := newLB(t, "{ports: [], protocols: [tcp, udp]}", nil)
	backends := l.Backends()[:4]
	type flow struct {
		toService packet.Key // the captured key of the client's direction
		backend   netip.Addr
		packets   int
	}
	flows := map[packet.Key]*flow{} // by canonical captured key
	var toBackend, replies, untouched int
	for i := range pkts {
		p := &pkts[i]
		orig := append([]byte(nil), p.Data...)
		k := p.Key
		ck, _ := k.Canonical()
		wasValid := pkttest.VerifyChecksums(orig) == nil && p.Flags&packet.Truncated == 0
		balanced := p.IP() && p.Flags&packet.HasL4 != 0 && (k.Proto == packet.ProtoTCP || k.Proto == packet.ProtoUDP)
		f := flows[ck]
		if balanced && f != nil && k == f.toService.Reverse() {
			// The server's packet, as the backend sends it.
			p.SetSrcAddr(f.backend)
			res := c.Process(pkts[i:i+1], nil)
			if len(res) != 1 || !bytes.Equal(res[0].Data, orig) {
				t.Fatalf("packet %d: the backend's reply %s did not come out as captured", i, k)
			}
			f.packets++
			replies++
			continue
		}
		res := c.Process(pkts[i:i+1], nil)
		if len(res) != 1 {
			t.Fatalf("packet %d (%s) dropped", i, k)
		}
		if !balanced {
			if !bytes.Equal(res[0].Data, orig) {
				t.Fatalf("packet %d (%s) is not TCP/UDP: it must pass untouched", i, k)
			}
			untouched++
			continue
		}
		out := res[0].Key
		if f == nil {
			f = &flow{toService: k, backend: out.DstAddr()}
			flows[ck] = f
		}
		want := k
		copy(want.Dst[:4], f.backend.AsSlice())
		if out != want || !slices.Contains(backends, out.DstAddr()) {
			t.Fatalf("packet %d: %s became %s; its flow's backend is %s", i, k, out, f.backend)
		}
		if wasValid {
			if err := pkttest.VerifyChecksums(res[0].Data); err != nil {
				t.Fatalf("packet %d: %v after the rewrite", i, err)
			}
		}
		f.packets++
		toBackend++
	}
	if len(flows) != 136 || testtrace.Metric(c, 0, "flows_balanced") != 136 || toBackend < 1000 || replies < 1000 {
		t.Errorf("%d flows (balanced %d), %d packets to backends, %d replies: the capture has 136 flows and thousands of each",
			len(flows), testtrace.Metric(c, 0, "flows_balanced"), toBackend, replies)
	}
	perBackend := map[netip.Addr]int{}
	for _, f := range flows {
		perBackend[f.backend]++
	}
	n := float64(len(flows))
	mean, sd := n/4, math.Sqrt(n*0.25*0.75)
	for _, b := range backends {
		if math.Abs(float64(perBackend[b])-mean) > 4*sd {
			t.Errorf("backend %s has %d of %d flows, want %.0f ± %.0f", b, perBackend[b], len(flows), mean, 4*sd)
		}
	}
	if testtrace.Metric(c, 0, "to_backend") != uint64(toBackend) || testtrace.Metric(c, 0, "to_client") != uint64(replies) {
		t.Errorf("metrics to_backend %d to_client %d, counted %d and %d", testtrace.Metric(c, 0, "to_backend"), testtrace.Metric(c, 0, "to_client"), toBackend, replies)
	}
	t.Logf("%d flows over 4 backends %v; %d packets to backends, %d replies rewritten back, %d other packets untouched",
		len(flows), perBackend, toBackend, replies, untouched)
}

// TestDefaultOnCapture: `--nfs lb` on real browsing: the web connections (TCP to 80 and 443)
// are redirected, nothing else is touched.
func TestDefaultOnCapture(t *testing.T) {
	pkts := testtrace.Packets(t, example)
	c, _ := newLB(t, "", nil)
	rewritten := 0
	for i := range pkts {
		orig := append([]byte(nil), pkts[i].Data...)
		k := pkts[i].Key
		res := c.Process(pkts[i:i+1], nil)
		if len(res) != 1 {
			t.Fatalf("packet %d dropped", i)
		}
		if !bytes.Equal(res[0].Data, orig) {
			if k.Proto != packet.ProtoTCP || k.DstPort != 80 && k.DstPort != 443 {
				t.Fatalf("packet %d (%s) is not to a web port but was rewritten", i, k)
			}
			rewritten++
		}
	}
	if b := testtrace.Metric(c, 0, "flows_balanced"); b < 60 || rewritten < 1000 {
		t.Errorf("default: %d flows balanced, %d packets rewritten", b, rewritten)
	}
	t.Logf("default config: %d web flows balanced, %d packets rewritten of %d", testtrace.Metric(c, 0, "flows_balanced"), rewritten, len(pkts))
}

// newReplay replays the whole batches of a capture pass after pass, each pass a second
// after the previous one's end, restoring the headers the balancer rewrote.
func newReplay(tb testing.TB, name string) *testtrace.Replay {
	pkts := testtrace.Packets(tb, name)
	pkts = pkts[:len(pkts)/testtrace.BatchSize*testtrace.BatchSize]
	return testtrace.NewReplay(pkts, testtrace.Span(pkts)+time.Second).RestoreHeaders()
}

// TestZeroAllocs: after a warm-up pass, a whole pass of the capture (every flow balanced,
// every packet rewritten) allocates nothing.
func TestZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation may allocate")
	}
	r := newReplay(t, example)
	c, _ := newLB(t, "{ports: [], protocols: [tcp, udp]}", nil)
	for range 2 {
		r.RunPass(c)
	}
	if a := testtrace.AllocsPerRun(3, func() { r.RunPass(c) }); a != 0 {
		t.Errorf("%v allocations per pass of %d packets", a, r.Packets())
	}
	if testtrace.Metric(c, 0, "to_backend") == 0 {
		t.Error("nothing was balanced")
	}
}

// BenchmarkLB: the chain over batches of 64 packets of real browsing. "empty-chain" restores
// and parses the headers and runs an empty chain (its flow lookup): subtract it to get the
// balancer's own cost.
func BenchmarkLB(b *testing.B) {
	for _, bc := range []struct{ name, config string }{
		{"empty-chain", ""},
		{"all-flows", "{ports: [], protocols: [tcp, udp]}"},
		{"default", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newReplay(b, example)
			var c *snf.Chain
			if bc.name == "empty-chain" {
				c = testtrace.ChainOf(b, "none", snf.ChainOptions{})
			} else {
				c, _ = newLB(b, bc.config, nil)
			}
			testtrace.BenchBatches(b, r.Batches(), func() { r.Batch(c) })
		})
	}
}

// FuzzLB: any bytes as a frame go through a balancer without a panic; a frame comes out
// (the balancer never drops), and one that is not a TCP/UDP packet comes out unchanged.
func FuzzLB(f *testing.F) {
	for _, fr := range [][]byte{
		pkttest.TCP(client, vip4, 1, 80, "S", nil), pkttest.TCP(netip.MustParseAddr("10.1.0.1"), client, 80, 1, "SA", nil),
		pkttest.UDP(client6, vip6, 5, 80, []byte("q")), pkttest.Echo(client, vip4, 1, false),
		pkttest.TCP(client, vip4, 1, 80, "S", nil)[:14+20+4], {0x45},
	} {
		f.Add(fr)
	}
	c, _ := newLB(f, "{ports: [80, 443], protocols: [tcp, udp], backends: [10.1.0.1, 10.1.0.2, 'fd00::1'], table_size: 251}", nil)
	var p [1]packet.Packet
	f.Fuzz(func(t *testing.T, frame []byte) {
		p[0].SetData(frame, 0, 0)
		tcpUDP := p[0].IP() && p[0].Flags&packet.HasL4 != 0 && (p[0].Proto == packet.ProtoTCP || p[0].Proto == packet.ProtoUDP)
		out := c.Process(p[:], nil)
		if len(out) != 1 {
			t.Fatalf("%d packets out", len(out))
		}
		if !tcpUDP && !bytes.Equal(out[0].Data, frame) {
			t.Fatal("a packet that is not TCP/UDP changed")
		}
		if len(out[0].Data) != len(frame) {
			t.Fatal("the frame's length changed")
		}
	})
}
