package firewall_test

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/firewall"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
)

var (
	lan  = netip.MustParseAddr("192.168.1.10")
	wan  = netip.MustParseAddr("198.51.100.7")
	wan2 = netip.MustParseAddr("203.0.113.9")
)

// newFW builds a chain of one firewall; config is the lines of its config block (indented
// by six spaces) or "".
func newFW(t testing.TB, config string) *snf.Chain {
	t.Helper()
	y := "nfs:\n  - nf: firewall\n"
	if config != "" {
		y += "    config:\n" + config
	}
	return testtrace.Chain(t, y, snf.ChainOptions{})
}

// verdicts runs frames through c one by one and reports which passed.
func verdicts(c *snf.Chain, frames ...[]byte) []bool {
	res := make([]bool, len(frames))
	var p [1]packet.Packet
	for i, f := range frames {
		p[0].SetData(f, int64(i)*1e6, 0)
		res[i] = len(c.Process(p[:], nil)) == 1
	}
	return res
}

func TestDefaultProtectsPrivateNetworks(t *testing.T) {
	c := newFW(t, "")
	got := verdicts(c,
		pkttest.TCP(lan, wan, 40000, 443, "S", nil),  // inside opens: allowed
		pkttest.TCP(wan, lan, 443, 40000, "SA", nil), // its reply: passes
		pkttest.TCP(lan, wan, 40000, 443, "A", nil),
		pkttest.TCP(wan, lan, 5555, 22, "S", nil),                     // outside opens into the LAN: denied
		pkttest.TCP(wan, lan, 5555, 22, "A", nil),                     // and stays denied
		pkttest.UDP(wan, wan2, 53, 53, nil),                           // neither side private: allowed
		pkttest.TCP(wan, lan, 443, 40001, "PA", nil),                  // mid-stream, LAN side could open it: picked up
		pkttest.TCP(lan, wan, 40001, 443, "A", nil),                   // the same connection
		pkttest.Echo(wan, lan, 9, false),                              // ping into the LAN: denied
		append([]byte(nil), pkttest.UDP(lan, wan, 1, 2, nil)[:30]...), // malformed: dropped
	)
	want := []bool{true, true, true, false, false, true, true, true, false, false}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("packet %d: passed=%v, want %v", i, got[i], want[i])
		}
	}
}

const rules = `      default: deny
      mid_stream: deny
      rules:
        - {action: deny, proto: tcp, src: [192.168.1.66/32]}
        - {action: allow, proto: tcp, dst_ports: "80,443,8000-8080"}
        - {action: allow, proto: udp, dst_ports: 53}
        - {action: allow, proto: icmp, src: [192.168.0.0/16]}
`

func TestRulesFirstMatchWins(t *testing.T) {
	c := newFW(t, rules)
	bad := netip.MustParseAddr("192.168.1.66")
	got := verdicts(c,
		pkttest.TCP(lan, wan, 1000, 443, "S", nil),  // rule 1
		pkttest.TCP(lan, wan, 1001, 8080, "S", nil), // rule 1 range
		pkttest.TCP(lan, wan, 1002, 8081, "S", nil), // no rule: default deny
		pkttest.TCP(bad, wan, 1003, 443, "S", nil),  // rule 0 denies before rule 1 allows
		pkttest.UDP(lan, wan, 1004, 53, nil),        // rule 2
		pkttest.UDP(wan, lan, 53, 1004, nil),        // its reply
		pkttest.UDP(lan, wan, 1005, 123, nil),       // default deny
		pkttest.Echo(lan, wan, 1, false),            // rule 3
		pkttest.Echo(wan, lan, 1, true),             // reply
		pkttest.Echo(wan, lan, 2, false),            // not from 192.168/16
		pkttest.TCP(lan, wan, 1006, 443, "A", nil),  // mid-stream: deny
	)
	want := []bool{true, true, false, false, true, true, false, true, true, false, false}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("packet %d: passed=%v, want %v", i, got[i], want[i])
		}
	}
	hits := testtrace.Metrics(c, 0)
	if hits["rule0_hits"] != 1 || hits["rule1_hits"] != 2 || hits["rule2_hits"] != 1 || hits["rule3_hits"] != 1 ||
		hits["new_allowed"] != 4 || hits["new_denied"] != 5 || hits["mid_stream"] != 1 {
		t.Errorf("metrics %v", hits)
	}
}

func TestMidStreamPolicies(t *testing.T) {
	for policy, want := range map[string]bool{"allow": true, "deny": false, "pickup": true} {
		c := newFW(t, "      mid_stream: "+policy+"\n")
		if got := verdicts(c, pkttest.TCP(wan, lan, 443, 5000, "A", nil))[0]; got != want {
			t.Errorf("mid_stream %s: passed=%v, want %v", policy, got, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for cfg, want := range map[string]string{
		"      default: maybe\n":                                         "default: want allow or deny",
		"      mid_stream: sometimes\n":                                  "mid_stream",
		"      rules: [{action: alow}]\n":                                "rules[0].action",
		"      rules: [{action: allow, proto: sctpx}]\n":                 "rules[0].proto",
		"      rules: [{action: allow, dst_ports: 80}]\n":                "rules[0]: ports need proto tcp or udp",
		"      rules: [{action: allow, proto: tcp, dst_ports: 90-80}]\n": "bad port range",
		"      rules: [{action: allow, proto: tcp, dst_ports: 70000}]\n": "bad port",
		"      rules: [{action: allow, src: [10.0.0.0/33]}]\n":           "10.0.0.0/33",
		"      rules: [{action: allow, srcs: []}]\n":                     `unknown field "srcs"`,
	} {
		_, err := snf.ParseChain([]byte("nfs:\n  - nf: firewall\n    config:\n"+cfg), "fw.yaml")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "fw.yaml: nfs[0] (firewall): config:") {
			t.Errorf("%q: %v, want an error naming the file, NF and %q", cfg, err, want)
		}
	}
}

func TestPortsSyntax(t *testing.T) {
	var p firewall.Ports
	for in, want := range map[string]string{`"80,443, 1000-2000"`: "80,443,1000-2000", `53`: "53", `["80", 81, "90-91"]`: "80,81,90-91"} {
		if err := p.UnmarshalJSON([]byte(in)); err != nil || p.String() != want {
			t.Errorf("%s: %v %q", in, err, p.String())
		}
	}
}

// TestDecisionsOnRealCapture runs a real capture through the firewall and checks every
// packet's verdict against an independent reading of the rules: the first packet of each
// connection decides, by first-match over the rules, or by the mid-stream policy.
func TestDecisionsOnRealCapture(t *testing.T) {
	dir := testtrace.Dir(t)
	for name, mid := range map[string]string{"pcapplusplus_example.pcap": "deny", "tcpreplay_test.pcap": "deny", "pcapplusplus_tls2.pcap": "pickup"} {
		t.Run(name, func(t *testing.T) {
			c := newFW(t, `      default: deny
      mid_stream: `+mid+`
      rules:
        - {action: deny, proto: tcp, dst_ports: 443, dst: [0.0.0.0/1]}
        - {action: allow, proto: tcp, dst_ports: "80,443"}
        - {action: allow, proto: udp, dst_ports: "53,5353,1900"}
        - {action: allow, proto: udp, src_ports: "53"}
        - {action: allow, proto: icmp}
        - {action: allow, src: [10.0.0.0/8]}
`)
			r, err := pcapfile.Open(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			decided := map[packet.Key]bool{}
			batch := make([]packet.Packet, 32)
			var passed, dropped int
			for {
				n, err := r.Read(batch)
				for i := range batch[:n] {
					p := &batch[i]
					want := true
					if p.IP() {
						ck, _ := p.Key.Canonical()
						d, ok := decided[ck]
						if !ok {
							d = oracle(p, mid == "pickup")
							decided[ck] = d
						}
						want = d
					} else if p.Flags&packet.Malformed != 0 {
						want = false
					}
					got := len(c.Process(batch[i:i+1], nil)) == 1
					if got != want {
						t.Fatalf("packet %s: passed=%v, rules say %v", p.Key, got, want)
					}
					if got {
						passed++
					} else {
						dropped++
					}
				}
				if err != nil {
					break
				}
			}
			if passed == 0 || dropped == 0 {
				t.Errorf("passed %d dropped %d: the rules should both pass and drop traffic in this capture", passed, dropped)
			}
			t.Logf("%s: %d connections, %d packets passed, %d dropped", name, len(decided), passed, dropped)
		})
	}
}

// oracle reads the test's rules directly: the first packet of a connection decides; a TCP
// connection first seen without a SYN is denied, or with pickup allowed if either side
// could have opened it.
func oracle(p *packet.Packet, pickup bool) bool {
	if p.Key.Proto == packet.ProtoTCP && p.TCPFlags()&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn {
		return pickup && (rulesAllow(p.Key) || rulesAllow(p.Key.Reverse()))
	}
	return rulesAllow(p.Key)
}

func rulesAllow(k packet.Key) bool {
	in := func(port uint16, ports ...uint16) bool {
		for _, x := range ports {
			if x == port {
				return true
			}
		}
		return false
	}
	switch {
	case k.Proto == packet.ProtoTCP && k.DstPort == 443 && !k.V6 && k.Dst[0] < 128:
		return false
	case k.Proto == packet.ProtoTCP && in(k.DstPort, 80, 443):
		return true
	case k.Proto == packet.ProtoUDP && in(k.DstPort, 53, 5353, 1900):
		return true
	case k.Proto == packet.ProtoUDP && k.SrcPort == 53:
		return true
	case k.Proto == packet.ProtoICMP:
		return true
	case !k.V6 && k.Src[0] == 10:
		return true
	}
	return false
}
