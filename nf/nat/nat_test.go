package nat_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/nat"
	"github.com/snf-dev/snf/packet"
)

var (
	inside  = netip.MustParseAddr("10.1.2.3")
	inside2 = netip.MustParseAddr("192.168.7.7")
	remote  = netip.MustParseAddr("198.51.100.10")
	public  = netip.MustParseAddr("192.0.2.1")
)

// newNAT builds a chain of one NAT; config is a YAML flow mapping or "".
func newNAT(t testing.TB, config string) *snf.Chain {
	t.Helper()
	return testtrace.Chain(t, testtrace.OneNF("nat", config), snf.ChainOptions{})
}

// run processes frames one at a time (timestamps step apart) and returns copies of the
// frames that came out, nil for a dropped packet.
func run(c *snf.Chain, t0 int64, step time.Duration, frames ...[]byte) [][]byte {
	res := make([][]byte, len(frames))
	var p [1]packet.Packet
	for i, f := range frames {
		p[0].SetData(f, t0+int64(i)*int64(step), 0)
		p[0].Clock = uint64(t0) + uint64(i) + 1
		out := c.Process(p[:], nil)
		if len(out) == 1 {
			res[i] = append([]byte(nil), out[0].Data...)
		}
	}
	return res
}

func key(t *testing.T, frame []byte) packet.Key {
	t.Helper()
	if frame == nil {
		t.Fatal("packet was dropped")
	}
	var p packet.Packet
	p.SetData(frame, 0, 0)
	if err := pkttest.VerifyChecksums(frame); err != nil {
		t.Fatalf("%s: %v", p.Key, err)
	}
	return p.Key
}

func TestTranslatesOutboundAndReplies(t *testing.T) {
	for _, proto := range []string{"tcp", "udp", "icmp"} {
		t.Run(proto, func(t *testing.T) {
			c := newNAT(t, "")
			var out, back func(a, b netip.Addr, sp, dp uint16) []byte
			switch proto {
			case "tcp":
				out = func(a, b netip.Addr, sp, dp uint16) []byte { return pkttest.TCP(a, b, sp, dp, pkttest.SYN, nil) }
				back = func(a, b netip.Addr, sp, dp uint16) []byte { return pkttest.TCP(a, b, sp, dp, pkttest.SYNACK, nil) }
			case "udp":
				out = func(a, b netip.Addr, sp, dp uint16) []byte { return pkttest.UDP(a, b, sp, dp, []byte("q")) }
				back = func(a, b netip.Addr, sp, dp uint16) []byte { return pkttest.UDP(a, b, sp, dp, []byte("answer")) }
			case "icmp":
				out = func(a, b netip.Addr, sp, _ uint16) []byte { return pkttest.Echo(a, b, sp, false) }
				back = func(a, b netip.Addr, _, dp uint16) []byte { return pkttest.Echo(a, b, dp, true) }
			}
			res := run(c, 0, time.Millisecond, out(inside, remote, 4000, 80), out(inside2, remote, 4000, 80))
			k1, k2 := key(t, res[0]), key(t, res[1])
			for _, k := range []packet.Key{k1, k2} {
				if k.SrcAddr() != public || k.DstAddr() != remote || k.SrcPort < 1024 {
					t.Fatalf("outbound not translated: %s", k)
				}
			}
			if k1.SrcPort == k2.SrcPort {
				t.Fatalf("two inside hosts share public port %d", k1.SrcPort)
			}
			// Replies to the public address go back to the right inside host.
			res = run(c, 10e6, time.Millisecond, back(remote, public, 80, k2.SrcPort), back(remote, public, 80, k1.SrcPort))
			r2, r1 := key(t, res[0]), key(t, res[1])
			if r1.DstAddr() != inside || r1.DstPort != 4000 || r2.DstAddr() != inside2 || r2.DstPort != 4000 || r1.SrcAddr() != remote {
				t.Fatalf("replies not translated back: %s, %s", r1, r2)
			}
			// A packet to the public address on a port nobody holds is dropped.
			if res := run(c, 20e6, 0, back(remote, public, 80, 9)); res[0] != nil {
				t.Fatal("unmatched inbound packet passed")
			}
			if testtrace.Metric(c, 0, "inbound_unmatched") != 1 || testtrace.Metric(c, 0, "mappings_created") != 2 || testtrace.Metric(c, 0, "translated_in") != 2 {
				t.Errorf("metrics %+v", c.Report()[0].Metrics)
			}
		})
	}
}

func TestSameFlowKeepsItsMapping(t *testing.T) {
	c := newNAT(t, "")
	f := pkttest.UDP(inside, remote, 5000, 53, []byte("x"))
	res := run(c, 0, time.Second, f, f, f)
	if key(t, res[0]) != key(t, res[1]) || key(t, res[1]) != key(t, res[2]) {
		t.Error("one flow got different mappings")
	}
	if testtrace.Metric(c, 0, "mappings_created") != 1 {
		t.Error("mapping created more than once")
	}
}

func TestPassesWhatItDoesNotTranslate(t *testing.T) {
	c := newNAT(t, "")
	v6a, v6b := netip.MustParseAddr("fd00::1"), netip.MustParseAddr("2001:db8::1")
	frames := [][]byte{
		pkttest.UDP(remote, netip.MustParseAddr("203.0.113.5"), 1, 2, nil), // outside to outside
		pkttest.UDP(inside, inside2, 1, 2, nil),                            // inside to inside
		pkttest.UDP(v6a, v6b, 1, 2, nil),                                   // IPv6
	}
	res := run(c, 0, time.Millisecond, frames...)
	for i := range frames {
		if string(res[i]) != string(frames[i]) {
			t.Errorf("frame %d changed or dropped", i)
		}
	}
	// Another protocol from inside cannot be translated: dropped, counted.
	if res := run(c, 1e9, 0, pkttest.IPProto(inside, remote, 47, []byte("gre"))); res[0] != nil || testtrace.Metric(c, 0, "untranslatable") != 1 {
		t.Error("GRE from inside must be dropped as untranslatable")
	}
}

func TestPoolExhaustionAndRelease(t *testing.T) {
	c := newNAT(t, "{port_min: 2000, port_max: 2001, udp_timeout: 30s}")
	res := run(c, 0, time.Millisecond,
		pkttest.UDP(inside, remote, 1, 53, nil),
		pkttest.UDP(inside, remote, 2, 53, nil),
		pkttest.UDP(inside, remote, 3, 53, nil))
	if res[0] == nil || res[1] == nil || res[2] != nil || testtrace.Metric(c, 0, "pool_exhausted") != 1 {
		t.Fatalf("with 2 ports the third flow must be dropped: %v", res)
	}
	// After the idle timeout the first mappings end (flow expiry returns the ports) and a
	// new flow gets a port again.
	res = run(c, int64(2*time.Minute), 0, pkttest.UDP(inside, remote, 4, 53, nil))
	if res[0] == nil {
		t.Fatal("port not returned after the flows expired")
	}
	if k := key(t, res[0]); k.SrcPort != 2000 && k.SrcPort != 2001 {
		t.Errorf("port %d outside the pool", k.SrcPort)
	}
	if testtrace.Metric(c, 0, "mappings_expired") != 2 {
		t.Errorf("mappings_expired = %d, want 2", testtrace.Metric(c, 0, "mappings_expired"))
	}
}

func TestIdleMappingIsRenewed(t *testing.T) {
	// The flow outlives the NAT's UDP timeout because another NF in the chain (here a
	// firewall keeps the default flow timeouts) — simulate with a long flow and short NAT
	// timeout: the NAT must notice the stale mapping itself.
	c := newNAT(t, "{udp_timeout: 1s, port_min: 3000, port_max: 3001}")
	f := pkttest.UDP(inside, remote, 7, 53, nil)
	res := run(c, 0, 1500*time.Millisecond, f, f)
	if testtrace.Metric(c, 0, "mappings_created") != 2 || testtrace.Metric(c, 0, "mappings_expired") != 1 {
		t.Errorf("created %d expired %d, want 2 and 1", testtrace.Metric(c, 0, "mappings_created"), testtrace.Metric(c, 0, "mappings_expired"))
	}
	_ = key(t, res[1])
	// A reply for the stale first port is unmatched.
	k0 := key(t, res[0])
	k1 := key(t, res[1])
	if k0.SrcPort == k1.SrcPort {
		t.Fatalf("renewed mapping reused port %d at once", k0.SrcPort)
	}
	if r := run(c, int64(3*time.Second), 0, pkttest.UDP(remote, public, 53, k0.SrcPort, nil)); r[0] != nil {
		t.Error("reply to an expired mapping passed")
	}
}

func TestFragmentsAndMalformed(t *testing.T) {
	c := newNAT(t, "")
	f := pkttest.UDP(inside, remote, 1, 2, []byte("0123456789abcdef"))
	f[14+6] = 0x00
	f[14+7] = 0x02 // fragment offset 2 (16 bytes): a non-first fragment
	// fix the IPv4 header checksum for the changed offset
	f[14+10], f[14+11] = 0, 0
	cs := packet.Checksum(f[14:34], 0)
	f[14+10], f[14+11] = byte(cs>>8), byte(cs)
	res := run(c, 0, 0, f)
	var p packet.Packet
	p.SetData(res[0], 0, 0)
	if p.Key.SrcAddr() != public || p.Flags&packet.Fragment == 0 || pkttest.VerifyChecksums(res[0]) != nil {
		t.Errorf("non-first fragment: %s flags %b", p.Key, p.Flags)
	}
	bad := append([]byte(nil), pkttest.UDP(inside, remote, 1, 2, nil)[:14+20]...)
	if res := run(c, 1e9, 0, bad); res[0] != nil || testtrace.Metric(c, 0, "malformed") != 1 {
		t.Error("malformed packet must be dropped and counted")
	}
}

func TestConfigValidation(t *testing.T) {
	for cfg, want := range map[string]string{
		"{public: 2001:db8::1}":              "public",
		"{public: 10.0.0.1}":                 "contains the public address",
		"{inside: []}":                       "inside",
		"{port_min: 5000, port_max: 4000}":   "port_min/port_max",
		"{udp_timeout: 0s}":                  "udp_timeout",
		"{udp_timeout: soon}":                "bad duration",
		"{publik: 192.0.2.1}":                `unknown field "publik"`,
		"{inside: [fd00::/8]}":               "not an IPv4 prefix",
		"{public: 192.0.2.1, port_min: 0}":   "port_min",
		"{public: 192.0.2.1, port_max: 1e6}": "port_max",
	} {
		testtrace.ConfigError(t, "nat", cfg, want)
	}
}

func TestMappingStateRoundTrip(t *testing.T) {
	a, b := newNAT(t, ""), newNAT(t, "")
	f := pkttest.UDP(inside, remote, 4242, 53, nil)
	res := run(a, 0, 0, f)
	k := key(t, res[0])
	var p packet.Packet
	p.SetData(f, 0, 0)
	st, err := a.ExportFlow(p.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ImportFlow(st); err != nil {
		t.Fatal(err)
	}
	// The moved flow keeps its public port on the new unit.
	if got := key(t, run(b, 1e6, 0, f)[0]); got != k {
		t.Errorf("after the move %s, before %s", got, k)
	}
}

var _ = fmt.Sprint
var _ = nat.DefaultConfig

// TestExpiryReturnsPortsEveryTime: ports returned by flows that expire outside any packet
// (Chain.Expire, as units do per batch) carry distinct store tags, so a store that drops
// repeated tags still takes every one back.
func TestExpiryReturnsPortsEveryTime(t *testing.T) {
	c := newNAT(t, "{port_min: 5000, port_max: 5001, udp_timeout: 30s}")
	for round := range 3 {
		t0 := int64(round) * int64(time.Hour)
		res := run(c, t0, time.Millisecond, pkttest.UDP(inside, remote, 1, 53, nil), pkttest.UDP(inside, remote, 2, 53, nil))
		if res[0] == nil || res[1] == nil {
			t.Fatalf("round %d: a flow found no free port (ports leaked by an earlier expiry)", round)
		}
		if n := c.Expire(t0 + int64(10*time.Minute)); n != 2 {
			t.Fatalf("round %d: %d flows expired, want 2", round, n)
		}
	}
	if got := testtrace.Metric(c, 0, "mappings_expired"); got != 6 {
		t.Errorf("mappings_expired %d, want 6", got)
	}
}
