// Package nat is a source NAT (NAPT): it translates the source address and port of
// connections opened from inside networks to one public IPv4 address and a port taken from
// a shared pool, and translates replies back. See README.md.
package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/flowtable"
	"github.com/snf-dev/snf/packet"
)

// Config is the NAT's configuration.
type Config struct {
	Public           netip.Addr     `json:"public" doc:"public IPv4 address that inside sources are translated to"`
	Inside           []netip.Prefix `json:"inside" doc:"IPv4 source prefixes that are translated"`
	PortMin          uint16         `json:"port_min" doc:"lowest public port (and ICMP echo id) handed out"`
	PortMax          uint16         `json:"port_max" doc:"highest public port handed out"`
	TCPTimeout       snf.Duration   `json:"tcp_timeout" doc:"idle timeout of an established TCP mapping (RFC 5382: >= 2h4m)"`
	TCPClosedTimeout snf.Duration   `json:"tcp_closed_timeout" doc:"idle timeout after a RST or FINs both ways (RFC 5382 transitory: 4m)"`
	UDPTimeout       snf.Duration   `json:"udp_timeout" doc:"idle timeout of a UDP mapping (RFC 4787: >= 2m, 5m recommended)"`
	ICMPTimeout      snf.Duration   `json:"icmp_timeout" doc:"idle timeout of an ICMP echo mapping (RFC 5508: >= 60s)"`
}

// DefaultConfig translates private (RFC 1918) sources to a documentation address.
func DefaultConfig() *Config {
	return &Config{
		Public: netip.MustParseAddr("192.0.2.1"),
		Inside: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("172.16.0.0/12"),
			netip.MustParsePrefix("192.168.0.0/16"),
		},
		PortMin:          1024,
		PortMax:          65535,
		TCPTimeout:       snf.Duration(2*time.Hour + 4*time.Minute),
		TCPClosedTimeout: snf.Duration(4 * time.Minute),
		UDPTimeout:       snf.Duration(5 * time.Minute),
		ICMPTimeout:      snf.Duration(60 * time.Second),
	}
}

// Validate checks the config.
func (c *Config) Validate() error {
	if !c.Public.Is4() {
		return fmt.Errorf("public: %q is not an IPv4 address", c.Public)
	}
	if len(c.Inside) == 0 {
		return errors.New("inside: at least one prefix is needed")
	}
	for i, p := range c.Inside {
		if !p.Addr().Is4() {
			return fmt.Errorf("inside[%d]: %s is not an IPv4 prefix", i, p)
		}
		if p.Contains(c.Public) {
			return fmt.Errorf("inside[%d]: %s contains the public address %s", i, p, c.Public)
		}
	}
	if c.PortMin == 0 || c.PortMax < c.PortMin {
		return fmt.Errorf("port_min/port_max: need 1 <= port_min <= port_max, have %d-%d", c.PortMin, c.PortMax)
	}
	for _, d := range []struct {
		name string
		v    snf.Duration
	}{{"tcp_timeout", c.TCPTimeout}, {"tcp_closed_timeout", c.TCPClosedTimeout}, {"udp_timeout", c.UDPTimeout}, {"icmp_timeout", c.ICMPTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s: must be > 0", d.name)
		}
	}
	return nil
}

func init() {
	snf.Register("nat", "source NAT of inside IPv4 networks to a public address (TCP, UDP, ICMP echo)",
		DefaultConfig, New)
}

// mapping is the per-flow state: one translation.
type mapping struct {
	inAddr   [4]byte // the inside host's address
	inPort   uint16  // its port (or echo id)
	pubPort  uint16  // the public port (or echo id) handed out
	last     int64   // last translated packet (ns)
	finOut   bool    // FIN seen from inside
	finIn    bool    // FIN seen from outside
	closed   bool    // RST, or FINs both ways
	outbound Dir     // the flow direction of inside→outside packets
}

// Dir re-exports snf.Dir for the state's encoding.
type Dir = snf.Dir

const mappingSize = 4 + 2 + 2 + 8 + 1 + 1

func (m *mapping) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, m.inAddr[:]...)
	b = binary.BigEndian.AppendUint16(b, m.inPort)
	b = binary.BigEndian.AppendUint16(b, m.pubPort)
	b = binary.BigEndian.AppendUint64(b, uint64(m.last))
	var f byte
	if m.finOut {
		f |= 1
	}
	if m.finIn {
		f |= 2
	}
	if m.closed {
		f |= 4
	}
	return append(b, f, byte(m.outbound)), nil
}

func (m *mapping) UnmarshalBinary(b []byte) error {
	if len(b) != mappingSize {
		return fmt.Errorf("nat: mapping state: %d bytes, want %d", len(b), mappingSize)
	}
	copy(m.inAddr[:], b)
	m.inPort = binary.BigEndian.Uint16(b[4:])
	m.pubPort = binary.BigEndian.Uint16(b[6:])
	m.last = int64(binary.BigEndian.Uint64(b[8:]))
	m.finOut, m.finIn, m.closed = b[16]&1 != 0, b[16]&2 != 0, b[16]&4 != 0
	m.outbound = Dir(b[17])
	return nil
}

// NAT is one NAT instance.
type NAT struct {
	cfg     Config
	public  [4]byte
	inside  []v4net // the inside prefixes as masks: a packet's check is a few integer ops
	flows   *snf.FlowState[mapping, *mapping]
	ports   *snf.Pool
	timeout [3]int64 // by flowtable.Class

	translatedOut, translatedIn, created, expired *snf.Metric
	exhausted, unmatched, untranslatable          *snf.Metric
	malformed, passed, fragments                  *snf.Metric
}

// New builds a NAT from a validated config.
func New(env *snf.Env, cfg *Config) (snf.NF, error) {
	ports, err := snf.NewPool(env, "ports", uint32(cfg.PortMin), uint32(cfg.PortMax))
	if err != nil {
		return nil, err
	}
	n := &NAT{
		cfg:    *cfg,
		public: cfg.Public.As4(),
		flows:  snf.NewFlowState[mapping](env, "mapping"),
		ports:  ports,

		translatedOut:  env.Metric("translated_out", "inside→outside packets translated"),
		translatedIn:   env.Metric("translated_in", "replies to the public address translated back"),
		created:        env.Metric("mappings_created", "mappings created"),
		expired:        env.Metric("mappings_expired", "mappings ended (idle timeout or flow end); their ports returned"),
		exhausted:      env.Metric("pool_exhausted", "new connections dropped: no free public port"),
		unmatched:      env.Metric("inbound_unmatched", "packets to the public address without a mapping, dropped"),
		untranslatable: env.Metric("untranslatable", "inside→outside packets of protocols it cannot translate (not TCP, UDP or ICMP echo), dropped"),
		malformed:      env.Metric("malformed", "malformed IP packets, dropped"),
		passed:         env.Metric("passed", "packets not crossing from inside to outside or to the public address, passed untouched"),
		fragments:      env.Metric("fragments", "non-first IPv4 fragments from inside, source address translated"),
	}
	for _, p := range cfg.Inside {
		p = p.Masked()
		n.inside = append(n.inside, v4net{binary.BigEndian.Uint32(p.Addr().AsSlice()), ^uint32(0) << (32 - p.Bits())})
	}
	n.timeout[flowtable.ClassTCP] = int64(cfg.TCPTimeout)
	n.timeout[flowtable.ClassUDP] = int64(cfg.UDPTimeout)
	n.timeout[flowtable.ClassOther] = int64(cfg.ICMPTimeout)
	return n, nil
}

// FlowTimeouts implements snf.FlowTimeouter: flows live at least as long as mappings.
func (n *NAT) FlowTimeouts() flowtable.Timeouts {
	return flowtable.Timeouts{
		flowtable.ClassTCP:   time.Duration(n.timeout[flowtable.ClassTCP]),
		flowtable.ClassUDP:   time.Duration(n.timeout[flowtable.ClassUDP]),
		flowtable.ClassOther: time.Duration(n.timeout[flowtable.ClassOther]),
	}
}

// v4net is an IPv4 prefix as a network and a mask.
type v4net struct{ net, mask uint32 }

func (n *NAT) isInside(b []byte) bool {
	a := binary.BigEndian.Uint32(b)
	for _, p := range n.inside {
		if a&p.mask == p.net {
			return true
		}
	}
	return false
}

// HeadersOnly implements snf.HeaderReader: NAT reads only packets' headers.
func (n *NAT) HeadersOnly() bool { return true }

// Process implements snf.NF.
func (n *NAT) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if !p.IP() {
		n.malformed.Inc()
		return snf.Drop
	}
	if p.Flags&packet.IPv4 == 0 {
		n.passed.Inc()
		return snf.Forward
	}
	k := &p.Key
	srcIn, dstIn := n.isInside(k.Src[:]), n.isInside(k.Dst[:])
	switch {
	case srcIn && !dstIn:
		return n.outbound(ctx, p)
	case [4]byte(k.Dst[:4]) == n.public:
		return n.inbound(ctx, p)
	}
	n.passed.Inc()
	return snf.Forward
}

func (n *NAT) outbound(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if p.Flags&packet.Fragment != 0 {
		// A non-first fragment has no ports: its first fragment carried them. Only the
		// address changes, and every mapping shares the one public address.
		p.SetSrcAddr(netip.AddrFrom4(n.public))
		n.fragments.Inc()
		return snf.Forward
	}
	translatable := p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP || p.IsEcho()
	if !translatable || p.Flags&packet.HasL4 == 0 {
		n.untranslatable.Inc()
		return snf.Drop
	}
	m := n.flows.Get(ctx)
	if m != nil && n.stale(m, ctx.Now(), p.Proto) {
		n.end(ctx, m)
		m = nil
	}
	if m == nil {
		port, ok := n.ports.Take(ctx)
		if !ok {
			n.exhausted.Inc()
			return snf.Drop
		}
		m = n.flows.GetOrCreate(ctx)
		copy(m.inAddr[:], p.Key.Src[:4])
		m.inPort = p.Key.SrcPort
		m.pubPort = uint16(port)
		m.outbound = ctx.Dir()
		n.created.Inc()
	}
	m.last = ctx.Now()
	n.trackTCP(m, p, true)
	p.SetSrcAddr(netip.AddrFrom4(n.public))
	if p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP {
		p.SetSrcPort(m.pubPort)
	} else {
		p.SetEchoID(m.pubPort)
	}
	ctx.ExpectReply(p.Key.Reverse())
	n.translatedOut.Inc()
	return snf.Forward
}

func (n *NAT) inbound(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	m := n.flows.Get(ctx)
	if m == nil || ctx.Dir() == m.outbound || p.Flags&packet.HasL4 == 0 || p.Key.DstPort != m.pubPort {
		n.unmatched.Inc()
		return snf.Drop
	}
	if n.stale(m, ctx.Now(), p.Proto) {
		n.end(ctx, m)
		n.unmatched.Inc()
		return snf.Drop
	}
	m.last = ctx.Now()
	n.trackTCP(m, p, false)
	p.SetDstAddr(netip.AddrFrom4(m.inAddr))
	if p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP {
		p.SetDstPort(m.inPort)
	} else {
		p.SetEchoID(m.inPort)
	}
	n.translatedIn.Inc()
	return snf.Forward
}

func (n *NAT) stale(m *mapping, now int64, proto uint8) bool {
	to := n.timeout[flowtable.ClassOf(proto)]
	if m.closed {
		to = int64(n.cfg.TCPClosedTimeout)
	}
	return now-m.last > to
}

func (n *NAT) trackTCP(m *mapping, p *packet.Packet, out bool) {
	f := p.TCPFlags()
	if f == 0 {
		return
	}
	if f&packet.TCPRst != 0 {
		m.closed = true
	}
	if f&packet.TCPFin != 0 {
		if out {
			m.finOut = true
		} else {
			m.finIn = true
		}
		m.closed = m.closed || m.finOut && m.finIn
	}
}

// end releases a mapping: its port goes back to the pool. The flow's reply key stays until
// the flow ends or another mapping takes the port over (flowtable.Alias moves it); until
// then a reply finds no mapping and is dropped as unmatched.
func (n *NAT) end(ctx *snf.Context, m *mapping) {
	n.ports.Put(ctx, uint32(m.pubPort))
	n.flows.Delete(ctx)
	n.expired.Inc()
}

// FlowEnd implements snf.FlowEnder: a flow leaving the table returns its port.
func (n *NAT) FlowEnd(ctx *snf.Context) {
	if m := n.flows.Get(ctx); m != nil {
		n.end(ctx, m)
	}
}
