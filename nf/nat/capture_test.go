package nat_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
)

var private = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16")}

func isPrivate(a netip.Addr) bool {
	for _, p := range private {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// TestRealCapture runs real browsing traffic captured inside a LAN through the NAT. Every
// packet from a private host to the outside must leave from the public address with valid
// checksums. Then the same capture is replayed as the outside world sees it — replies
// addressed to the public address and the port the NAT handed out — through a fresh NAT:
// every reply must come out exactly as it was captured inside, addressed to the host.
func TestRealCapture(t *testing.T) {
	pkts := testtrace.Packets(t, "pcapplusplus_example.pcap")
	type inner struct {
		addr netip.Addr
		port uint16
		k    packet.Key
	}
	mapped := map[packet.Key]uint16{} // inside→outside key → public port
	c := newNAT(t, "")
	var out, in int
	for i := range pkts {
		p := &pkts[i]
		orig := append([]byte(nil), p.Data...)
		origKey, wasValid := p.Key, pkttest.VerifyChecksums(orig) == nil
		res := c.Process(pkts[i:i+1], nil)
		outbound := p.Flags&packet.IPv4 != 0 && isPrivate(origKey.SrcAddr()) && !isPrivate(origKey.DstAddr())
		if !outbound {
			if len(res) != 1 || !bytes.Equal(res[0].Data, orig) {
				t.Fatalf("packet %d (%s) is not outbound: it must pass untouched", i, origKey)
			}
			continue
		}
		if len(res) != 1 {
			t.Fatalf("outbound packet %d (%s) dropped", i, origKey)
		}
		k := res[0].Key
		if k.SrcAddr() != public || k.DstAddr() != origKey.DstAddr() || k.DstPort != origKey.DstPort {
			t.Fatalf("packet %d: %s became %s", i, origKey, k)
		}
		if wasValid && p.Flags&packet.Truncated == 0 {
			if err := pkttest.VerifyChecksums(res[0].Data); err != nil {
				t.Fatalf("packet %d: %v after translation", i, err)
			}
		}
		if prev, ok := mapped[origKey]; ok && prev != k.SrcPort {
			t.Fatalf("flow %s moved from public port %d to %d", origKey, prev, k.SrcPort)
		}
		mapped[origKey] = k.SrcPort
		out++
	}

	// The outside view: replies go to the public address and mapped port.
	pkts = testtrace.Packets(t, "pcapplusplus_example.pcap")
	c2 := newNAT(t, "")
	for i := range pkts {
		p := &pkts[i]
		k := p.Key
		reply := p.Flags&packet.IPv4 != 0 && p.Flags&packet.HasL4 != 0 && !isPrivate(k.SrcAddr()) && isPrivate(k.DstAddr())
		pub, ok := mapped[k.Reverse()]
		if !reply || !ok {
			c2.Process(pkts[i:i+1], nil)
			continue
		}
		inside := append([]byte(nil), p.Data...)
		p.SetDstAddr(public)
		if p.IsEcho() {
			p.SetEchoID(pub)
		} else {
			p.SetDstPort(pub)
		}
		res := c2.Process(pkts[i:i+1], nil)
		if len(res) != 1 {
			t.Fatalf("reply %d (%s) to the public port %d dropped", i, k, pub)
		}
		if !bytes.Equal(res[0].Data, inside) {
			t.Fatalf("reply %d: translated back to %s, captured inside as %s", i, res[0].Key, k)
		}
		in++
	}
	if out < 1000 || in < 1000 {
		t.Errorf("only %d outbound and %d replies checked", out, in)
	}
	t.Logf("%d outbound packets translated, %d replies translated back, %d mappings", out, in, len(mapped))
}
