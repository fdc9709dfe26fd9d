// Package firewall is a stateful firewall: ordered rules on protocol, CIDRs and ports
// decide each new connection, and connection tracking lets the rest of an allowed
// connection — replies included — pass. See README.md.
package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// Config is the firewall's configuration.
type Config struct {
	Rules         []Rule `json:"rules" doc:"ordered rules; the first that matches a new connection decides"`
	Default       string `json:"default" doc:"action for a new connection that no rule matches: allow or deny"`
	MidStream     string `json:"mid_stream" doc:"TCP connections first seen without a SYN: pickup (allowed if the rules allow either side to open it), deny, or allow"`
	DropMalformed bool   `json:"drop_malformed" doc:"drop IP packets whose headers are cut short or inconsistent"`
}

// Rule matches a new connection by the packet that opens it. Empty fields match anything.
type Rule struct {
	Action   string         `json:"action" doc:"allow or deny"`
	Proto    string         `json:"proto,omitempty" doc:"tcp, udp, icmp, icmpv6, any, or a protocol number"`
	Src      []netip.Prefix `json:"src,omitempty" doc:"source prefixes"`
	Dst      []netip.Prefix `json:"dst,omitempty" doc:"destination prefixes"`
	SrcPorts Ports          `json:"src_ports,omitempty" doc:"source ports: \"53\", \"80,443\", \"1024-65535\""`
	DstPorts Ports          `json:"dst_ports,omitempty" doc:"destination ports"`
}

// Ports is a list of port ranges, written "80,443,8000-8080" (or a number, or a list).
type Ports []PortRange

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// UnmarshalJSON accepts "80,443,1000-2000", 80, or ["80", 443, "1000-2000"].
func (p *Ports) UnmarshalJSON(b []byte) error {
	var items []json.RawMessage
	if len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &items); err != nil {
			return err
		}
	} else {
		items = []json.RawMessage{b}
	}
	*p = nil
	for _, it := range items {
		var s string
		if err := json.Unmarshal(it, &s); err != nil {
			var n json.Number
			if err := json.Unmarshal(it, &n); err != nil {
				return fmt.Errorf("ports: want \"80,443,1000-2000\", a number or a list, have %s", it)
			}
			s = n.String()
		}
		for _, part := range strings.Split(s, ",") {
			r, err := parseRange(strings.TrimSpace(part))
			if err != nil {
				return err
			}
			*p = append(*p, r)
		}
	}
	return nil
}

// MarshalJSON writes the "80,443,1000-2000" form.
func (p Ports) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

func (p Ports) String() string {
	parts := make([]string, len(p))
	for i, r := range p {
		if r.Lo == r.Hi {
			parts[i] = strconv.Itoa(int(r.Lo))
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.Lo, r.Hi)
		}
	}
	return strings.Join(parts, ",")
}

func parseRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return PortRange{}, fmt.Errorf("bad port %q (want 0-65535 or LO-HI)", s)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
			return PortRange{}, fmt.Errorf("bad port range %q (want LO-HI with LO <= HI <= 65535)", s)
		}
	}
	return PortRange{uint16(a), uint16(b)}, nil
}

func (p Ports) match(port uint16) bool {
	if len(p) == 0 {
		return true
	}
	for _, r := range p {
		if port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}

// Private networks: RFC 1918, IPv6 unique-local and link-local.
var private = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// DefaultConfig protects private networks: connections they open are allowed, connections
// from elsewhere into them are denied, everything else is allowed; replies of allowed
// connections pass; TCP connections first seen mid-stream are picked up.
func DefaultConfig() *Config {
	return &Config{
		Rules: []Rule{
			{Action: "allow", Src: private},
			{Action: "deny", Dst: private},
		},
		Default:       "allow",
		MidStream:     "pickup",
		DropMalformed: true,
	}
}

// Validate checks the config.
func (c *Config) Validate() error {
	if err := checkAction(c.Default); err != nil {
		return fmt.Errorf("default: %w", err)
	}
	switch c.MidStream {
	case "pickup", "deny", "allow":
	default:
		return fmt.Errorf("mid_stream: want pickup, deny or allow, have %q", c.MidStream)
	}
	for i, r := range c.Rules {
		if err := checkAction(r.Action); err != nil {
			return fmt.Errorf("rules[%d].action: %w", i, err)
		}
		proto, err := parseProto(r.Proto)
		if err != nil {
			return fmt.Errorf("rules[%d].proto: %w", i, err)
		}
		if (len(r.SrcPorts) > 0 || len(r.DstPorts) > 0) && proto != packet.ProtoTCP && proto != packet.ProtoUDP {
			return fmt.Errorf("rules[%d]: ports need proto tcp or udp", i)
		}
	}
	return nil
}

func checkAction(a string) error {
	if a != "allow" && a != "deny" {
		return fmt.Errorf("want allow or deny, have %q", a)
	}
	return nil
}

// anyProto marks a rule that matches every protocol.
const anyProto = -1

func parseProto(s string) (int, error) {
	switch strings.ToLower(s) {
	case "", "any":
		return anyProto, nil
	case "tcp":
		return packet.ProtoTCP, nil
	case "udp":
		return packet.ProtoUDP, nil
	case "icmp":
		return packet.ProtoICMP, nil
	case "icmpv6":
		return packet.ProtoICMPv6, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("want tcp, udp, icmp, icmpv6, any or 0-255, have %q", s)
	}
	return int(n), nil
}

func init() {
	snf.Register("firewall", "stateful firewall: ordered rules on protocol, CIDRs and ports, connection tracking",
		DefaultConfig, New)
}

// rule is a compiled Rule.
type rule struct {
	allow    bool
	proto    int
	src, dst []netip.Prefix
	sp, dp   Ports
	hits     *snf.Metric
}

func (r *rule) match(k *packet.Key) bool {
	if r.proto != anyProto && int(k.Proto) != r.proto {
		return false
	}
	return matchAddr(r.src, k.SrcAddr()) && matchAddr(r.dst, k.DstAddr()) &&
		r.sp.match(k.SrcPort) && r.dp.match(k.DstPort)
}

func matchAddr(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// conn is the per-flow connection-tracking state.
type conn struct {
	decided bool
	allow   bool
	rule    int16 // index of the deciding rule, -1 for the default or mid-stream policy
}

func (c *conn) AppendBinary(b []byte) ([]byte, error) {
	var f byte
	if c.decided {
		f |= 1
	}
	if c.allow {
		f |= 2
	}
	return append(b, f, byte(uint16(c.rule)>>8), byte(c.rule)), nil
}

func (c *conn) UnmarshalBinary(b []byte) error {
	if len(b) != 3 {
		return errors.New("firewall: conn state: want 3 bytes")
	}
	c.decided, c.allow = b[0]&1 != 0, b[0]&2 != 0
	c.rule = int16(uint16(b[1])<<8 | uint16(b[2]))
	return nil
}

// Firewall is one firewall instance.
type Firewall struct {
	cfg   Config
	rules []rule
	dflt  bool
	conns *snf.FlowState[conn, *conn]

	newAllowed, newDenied, passed, dropped, midStream, malformed *snf.Metric
}

// New builds a firewall from a validated config.
func New(env *snf.Env, cfg *Config) (snf.NF, error) {
	f := &Firewall{
		cfg:        *cfg,
		dflt:       cfg.Default == "allow",
		conns:      snf.NewFlowState[conn](env, "conn"),
		newAllowed: env.Metric("new_allowed", "new connections allowed"),
		newDenied:  env.Metric("new_denied", "new connections denied"),
		passed:     env.Metric("passed", "packets of allowed connections"),
		dropped:    env.Metric("dropped", "packets of denied connections"),
		midStream:  env.Metric("mid_stream", "TCP connections first seen without a SYN"),
		malformed:  env.Metric("malformed_dropped", "malformed IP packets dropped"),
	}
	for i, r := range cfg.Rules {
		proto, _ := parseProto(r.Proto)
		f.rules = append(f.rules, rule{
			allow: r.Action == "allow", proto: proto, src: r.Src, dst: r.Dst, sp: r.SrcPorts, dp: r.DstPorts,
			hits: env.Metric(fmt.Sprintf("rule%d_hits", i), fmt.Sprintf("connections decided by rules[%d]", i)),
		})
	}
	return f, nil
}

// HeadersOnly implements snf.HeaderReader: Firewall reads only packets' headers.
func (f *Firewall) HeadersOnly() bool { return true }

// Process implements snf.NF.
func (f *Firewall) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	c := f.conns.GetOrCreate(ctx)
	if c == nil { // malformed: no flow
		if f.cfg.DropMalformed {
			f.malformed.Inc()
			return snf.Drop
		}
		return snf.Forward
	}
	if !c.decided {
		f.decide(c, p)
	}
	if c.allow {
		f.passed.Inc()
		return snf.Forward
	}
	f.dropped.Inc()
	return snf.Drop
}

// decide classifies a connection by its first packet.
func (f *Firewall) decide(c *conn, p *packet.Packet) {
	c.decided, c.rule = true, -1
	if fl := p.TCPFlags(); p.Proto == packet.ProtoTCP && p.Flags&packet.HasL4 != 0 && fl&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn {
		f.midStream.Inc()
		switch f.cfg.MidStream {
		case "allow":
			c.allow = true
		case "deny":
			c.allow = false
		default: // pickup: either side could have opened it
			c.allow = f.eval(c, &p.Key)
			if !c.allow {
				rev := p.Key.Reverse()
				c.allow = f.eval(c, &rev)
			}
		}
	} else {
		c.allow = f.eval(c, &p.Key)
	}
	if c.allow {
		f.newAllowed.Inc()
	} else {
		f.newDenied.Inc()
	}
}

// eval runs the rules on k, recording the deciding rule in c.
func (f *Firewall) eval(c *conn, k *packet.Key) bool {
	for i := range f.rules {
		r := &f.rules[i]
		if r.match(k) {
			r.hits.Inc()
			c.rule = int16(i)
			return r.allow
		}
	}
	c.rule = -1
	return f.dflt
}
