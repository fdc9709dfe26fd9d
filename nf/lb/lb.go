// Package lb is an L4 load balancer: new TCP/UDP flows to a virtual IP (or, with none set,
// to any destination) on the service's ports are spread over backends with Maglev
// consistent hashing, each flow keeps its backend for its life (per-flow affinity), its
// packets are rewritten to the backend and the backend's replies rewritten back to come from
// the virtual IP. See README.md.
package lb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// Config is the load balancer's configuration.
type Config struct {
	VIP       netip.Addr   `json:"vip" doc:"virtual IP of the service; unset: flows to any destination on the ports are balanced (a transparent balancer)"`
	Ports     []uint16     `json:"ports" doc:"destination ports of the service (empty: every port)"`
	Protocols []string     `json:"protocols" doc:"transport protocols balanced: tcp, udp"`
	Backends  []netip.Addr `json:"backends" doc:"backend addresses (IPv4 and IPv6; a flow goes to a backend of its own family); the shared table's list, once set, overrides this"`
	TableSize int          `json:"table_size" doc:"Maglev lookup table size: a prime, much larger than the number of backends (at 650x, a change of one backend moves under 1% of the other backends' flows)"`
	Refresh   snf.Duration `json:"refresh" doc:"how often (packet time, checked at new flows) an instance re-reads the backend table for changes made elsewhere; 0: never"`
}

// DefaultConfig balances new TCP connections to ports 80 and 443, whatever their
// destination, over four IPv4 and four IPv6 documentation addresses: `--nfs lb` visibly
// redirects the web flows of any capture.
func DefaultConfig() *Config {
	return &Config{
		Ports:     []uint16{80, 443},
		Protocols: []string{"tcp"},
		Backends: []netip.Addr{
			netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11"),
			netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("192.0.2.13"),
			netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::11"),
			netip.MustParseAddr("2001:db8::12"), netip.MustParseAddr("2001:db8::13"),
		},
		TableSize: 65537,
		Refresh:   snf.Duration(time.Second),
	}
}

// maxTableSize bounds table_size (the table is rebuilt, and each unit holds one per family).
const maxTableSize = 1 << 24

// Validate checks the config.
func (c *Config) Validate() error {
	if c.VIP.IsValid() && c.VIP.Zone() != "" {
		return fmt.Errorf("vip: %s: an address with a zone cannot be balanced", c.VIP)
	}
	for i, p := range c.Protocols {
		if p != "tcp" && p != "udp" {
			return fmt.Errorf("protocols[%d]: want tcp or udp, have %q", i, p)
		}
	}
	if len(c.Protocols) == 0 {
		return errors.New("protocols: at least one of tcp, udp is needed")
	}
	if c.TableSize > maxTableSize || !isPrime(c.TableSize) {
		return fmt.Errorf("table_size: %d is not a prime between 2 and %d (65537 is one)", c.TableSize, maxTableSize)
	}
	if err := checkBackends(c.Backends, c.VIP.Unmap(), c.TableSize); err != nil {
		return fmt.Errorf("backends%w", err)
	}
	if c.Refresh < 0 {
		return errors.New("refresh: must be >= 0")
	}
	return nil
}

// checkBackends validates a backend list; its error starts with "[i]: " or ": ".
func checkBackends(addrs []netip.Addr, vip netip.Addr, tableSize int) error {
	if len(addrs) == 0 {
		return errors.New(": at least one backend is needed")
	}
	seen := map[netip.Addr]int{}
	var n4, n6 int
	for i, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("[%d]: not an address", i)
		}
		if a.Zone() != "" {
			return fmt.Errorf("[%d]: %s: an address with a zone cannot be a backend", i, a)
		}
		a = a.Unmap()
		if j, dup := seen[a]; dup {
			return fmt.Errorf("[%d]: %s is backends[%d] again", i, a, j)
		}
		seen[a] = i
		if a == vip {
			return fmt.Errorf("[%d]: %s is the vip", i, a)
		}
		if a.Is4() {
			n4++
		} else {
			n6++
		}
	}
	if n4 > maxBackends || n6 > maxBackends {
		return fmt.Errorf(": more than %d backends of one family", maxBackends)
	}
	if max(n4, n6) > tableSize {
		return fmt.Errorf(": %d backends of one family need table_size >= %d (have %d)", max(n4, n6), max(n4, n6), tableSize)
	}
	if vip.IsValid() && (vip.Is4() && n4 == 0 || !vip.Is4() && n6 == 0) {
		return fmt.Errorf(": none of the vip's family (vip %s)", vip)
	}
	return nil
}

func init() {
	snf.Register("lb", "L4 load balancer: Maglev consistent hashing of new flows to backends, per-flow affinity, destination rewrite",
		DefaultConfig, New)
}

// affinity is the per-flow state: where the flow goes and what it was addressed to.
type affinity struct {
	backend [16]byte // the backend (IPv4 in the first 4 bytes)
	vip     [16]byte // the original destination, that replies must come from
	v6      bool
	toDir   snf.Dir // the flow direction of client→service packets
}

func (a *affinity) AppendBinary(b []byte) ([]byte, error) {
	n := 4
	var f byte
	if a.v6 {
		n, f = 16, 1
	}
	b = append(b, f, byte(a.toDir))
	b = append(b, a.backend[:n]...)
	return append(b, a.vip[:n]...), nil
}

func (a *affinity) UnmarshalBinary(b []byte) error {
	if len(b) < 2 || b[0] > 1 || b[1] > 1 {
		return errors.New("lb: affinity state: bad header")
	}
	n := 4
	if b[0] == 1 {
		n = 16
	}
	if len(b) != 2+2*n {
		return fmt.Errorf("lb: affinity state: %d bytes, want %d", len(b), 2+2*n)
	}
	*a = affinity{v6: b[0] == 1, toDir: snf.Dir(b[1])}
	copy(a.backend[:], b[2:2+n])
	copy(a.vip[:], b[2+n:])
	return nil
}

func (a *affinity) addr(b *[16]byte) netip.Addr {
	if a.v6 {
		return netip.AddrFrom16(*b)
	}
	return netip.AddrFrom4([4]byte(b[:4]))
}

// backendSet is one version of the backend list with its lookup tables.
type backendSet struct {
	enc    []byte // as stored in the shared table
	v4, v6 *table
}

// tableKey is the key of the backend list in the shared table.
const tableKey = "backends"

// LB is one load-balancer instance.
type LB struct {
	cfg       Config
	vip       [16]byte
	vipSet    bool
	vip6      bool
	tcp, udp  bool
	ports     [1024]uint64 // bit set of the service's ports
	allPorts  bool
	flows     *snf.FlowState[affinity, *affinity]
	shared    *snf.Table
	set       atomic.Pointer[backendSet]
	inUse     *backendSet // the set new flows last used (chain goroutine only)
	refresh   int64
	lastPoll  int64
	polled    bool
	seen      uint64 // the table's version at the last re-read
	tableSize int

	balanced, toBackend, toClient, passed, noBackend, malformed, changes *snf.Metric
}

// New builds a load balancer from a validated config.
func New(env *snf.Env, cfg *Config) (snf.NF, error) {
	shared, err := snf.NewTable(env, tableKey)
	if err != nil {
		return nil, err
	}
	l := &LB{
		cfg:       *cfg,
		flows:     snf.NewFlowState[affinity](env, "affinity"),
		shared:    shared,
		refresh:   int64(cfg.Refresh),
		tableSize: cfg.TableSize,

		balanced:  env.Metric("flows_balanced", "new flows given a backend"),
		toBackend: env.Metric("to_backend", "client→service packets rewritten to their flow's backend"),
		toClient:  env.Metric("to_client", "backend→client packets rewritten to come from the service address"),
		passed:    env.Metric("passed", "packets of flows not for the service, passed untouched"),
		noBackend: env.Metric("no_backend", "new flows for the service of a family without backends, passed untouched"),
		malformed: env.Metric("malformed", "malformed IP packets, passed untouched"),
		changes:   env.Metric("backend_changes", "backend lists taken into use by new flows (the first one included)"),
	}
	if vip := cfg.VIP.Unmap(); vip.IsValid() {
		l.vipSet, l.vip6 = true, vip.Is6()
		copy(l.vip[:], vip.AsSlice())
	}
	for _, p := range cfg.Protocols {
		l.tcp = l.tcp || p == "tcp"
		l.udp = l.udp || p == "udp"
	}
	l.allPorts = len(cfg.Ports) == 0
	for _, p := range cfg.Ports {
		l.ports[p>>6] |= 1 << (p & 63)
	}
	// The shared table is the truth once someone set it (the control plane, or another unit
	// running this instance); the config seeds it.
	if b, ok := shared.Get(nil, tableKey); ok {
		if addrs, ok := decode(b); ok && checkBackends(addrs, cfg.VIP.Unmap(), cfg.TableSize) == nil {
			l.install(addrs)
			l.current()
			return l, nil
		}
	}
	if err := l.SetBackends(cfg.Backends); err != nil {
		return nil, err
	}
	l.current()
	return l, nil
}

// SetBackends replaces the backend list (the control plane): it is validated, written to the
// shared table — other units running this instance pick it up within `refresh` — and this
// instance's lookup tables are rebuilt. Existing flows keep their backends; only new flows
// see the new list. It is safe to call from another goroutine than the one running the chain.
func (l *LB) SetBackends(addrs []netip.Addr) error {
	if err := checkBackends(addrs, l.vipAddr(), l.tableSize); err != nil {
		return fmt.Errorf("lb: backends%w", err)
	}
	s := l.build(addrs)
	if err := l.shared.Set(tableKey, s.enc); err != nil {
		return err
	}
	l.set.Store(s)
	return nil
}

// Backends returns the backend list in use, sorted.
func (l *LB) Backends() []netip.Addr {
	s := l.set.Load()
	return append(slices.Clone(s.v4.backends), s.v6.backends...)
}

func (l *LB) install(addrs []netip.Addr) { l.set.Store(l.build(addrs)) }

// current returns the backend set in use, counting a change (on the chain's goroutine: the
// control plane only swaps the pointer).
func (l *LB) current() *backendSet {
	s := l.set.Load()
	if s != l.inUse {
		l.inUse = s
		l.changes.Inc()
	}
	return s
}

// build makes the lookup tables of a (validated) backend list.
func (l *LB) build(addrs []netip.Addr) *backendSet {
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	slices.SortFunc(v4, netip.Addr.Compare)
	slices.SortFunc(v6, netip.Addr.Compare)
	return &backendSet{
		enc: encode(append(slices.Clone(v4), v6...)),
		v4:  newTable(v4, l.tableSize),
		v6:  newTable(v6, l.tableSize),
	}
}

// poll re-reads the shared backend list when the table changed (its version moved: one
// atomic load), at most once per refresh interval of packet time.
func (l *LB) poll(ctx *snf.Context) {
	if l.refresh <= 0 {
		return
	}
	v, changed := l.shared.Changed(l.seen)
	if !changed {
		return
	}
	now := ctx.Now()
	if l.polled && now-l.lastPoll < l.refresh && now >= l.lastPoll {
		return
	}
	l.polled, l.lastPoll, l.seen = true, now, v // the version before the read: a change during it moves it again
	b, ok := l.shared.Get(ctx, tableKey)
	if !ok || bytes.Equal(b, l.set.Load().enc) {
		return
	}
	if addrs, ok := decode(b); ok && checkBackends(addrs, l.vipAddr(), l.tableSize) == nil {
		l.install(addrs) // rare: a change made elsewhere
	}
}

func (l *LB) vipAddr() netip.Addr {
	if !l.vipSet {
		return netip.Addr{}
	}
	if l.vip6 {
		return netip.AddrFrom16(l.vip)
	}
	return netip.AddrFrom4([4]byte(l.vip[:4]))
}

// forService reports whether a packet that opens a flow is for the balanced service.
func (l *LB) forService(p *packet.Packet) bool {
	if p.Flags&packet.HasL4 == 0 {
		return false // no ports: ICMP, another protocol, a non-first fragment
	}
	switch p.Proto {
	case packet.ProtoTCP:
		if !l.tcp {
			return false
		}
	case packet.ProtoUDP:
		if !l.udp {
			return false
		}
	default:
		return false
	}
	port := p.Key.DstPort
	if !l.allPorts && l.ports[port>>6]&(1<<(port&63)) == 0 {
		return false
	}
	return !l.vipSet || p.Key.V6 == l.vip6 && p.Key.Dst == l.vip
}

// HeadersOnly implements snf.HeaderReader: LB reads only packets' headers.
func (l *LB) HeadersOnly() bool { return true }

// Process implements snf.NF.
func (l *LB) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if !p.IP() {
		l.malformed.Inc()
		return snf.Forward
	}
	a := l.flows.Get(ctx)
	if a == nil {
		if !l.forService(p) {
			l.passed.Inc()
			return snf.Forward
		}
		l.poll(ctx)
		s := l.current()
		t := s.v4
		if p.Key.V6 {
			t = s.v6
		}
		if len(t.backends) == 0 {
			l.noBackend.Inc()
			return snf.Forward
		}
		i := t.lookup(p.Key.Hash())
		t.flows[i]++
		a = l.flows.GetOrCreate(ctx)
		a.v6, a.toDir, a.vip = p.Key.V6, ctx.Dir(), p.Key.Dst
		if a.v6 {
			a.backend = t.backends[i].As16()
		} else {
			b4 := t.backends[i].As4()
			copy(a.backend[:4], b4[:])
		}
		l.balanced.Inc()
	}
	if ctx.Dir() == a.toDir {
		p.SetDstAddr(a.addr(&a.backend))
		// The backend's replies come from its address: they belong to this flow.
		ctx.ExpectReply(p.Key.Reverse())
		l.toBackend.Inc()
		return snf.Forward
	}
	p.SetSrcAddr(a.addr(&a.vip))
	l.toClient.Inc()
	return snf.Forward
}

// Report implements snf.Reporter: the backends and the new flows each was given since the
// current list was installed.
func (l *LB) Report(w io.Writer) error {
	s := l.set.Load()
	for _, t := range []*table{s.v4, s.v6} {
		for i, a := range t.backends {
			if _, err := fmt.Fprintf(w, "  %-40s %8d flows\n", a, t.flows[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
