// Package portscan detects scanners with Threshold Random Walk (TRW): Jung, Paxson, Berger
// and Balakrishnan, "Fast Portscan Detection Using Sequential Hypothesis Testing", IEEE S&P
// 2004. Each source that initiates connections is tested sequentially on the outcomes of
// its first-contact connection attempts; a source whose likelihood ratio reaches η1 is a
// scanner (one alert, optionally blocked), one that reaches η0 is benign (its walk restarts).
// See README.md.
package portscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// Config is the detector's configuration.
type Config struct {
	Unit         string       `json:"unit" doc:"what a first contact is: service (a destination host, protocol and port not contacted before by the source) or host (a destination host not contacted before, as in the paper)"`
	Theta0       float64      `json:"theta0" doc:"P[a first-contact attempt succeeds | the source is benign] (paper: 0.8)"`
	Theta1       float64      `json:"theta1" doc:"P[a first-contact attempt succeeds | the source is a scanner] (paper: 0.2); must be < theta0"`
	PD           float64      `json:"pd" doc:"desired detection probability P_D; η1 = pd/pf"`
	PF           float64      `json:"pf" doc:"tolerated false-positive probability P_F; η0 = (1-pd)/(1-pf)"`
	ReplyTimeout snf.Duration `json:"reply_timeout" doc:"an attempt without a reply after this long (packet time) is a failure"`
	Block        bool         `json:"block" doc:"drop the later packets of connections opened by a source once it is flagged"`
	MaxSources   int          `json:"max_sources" doc:"bound on sources tracked (least recently seen evicted)"`
	MaxContacts  int          `json:"max_contacts" doc:"bound on (source, destination) first contacts remembered (least recently seen evicted)"`
	Idle         snf.Duration `json:"idle" doc:"a source or contact not seen for this long (packet time) is forgotten"`
}

// DefaultConfig holds the paper's parameters, with service-level first contacts.
func DefaultConfig() *Config {
	return &Config{
		Unit:         "service",
		Theta0:       0.8,
		Theta1:       0.2,
		PD:           0.99,
		PF:           0.01,
		ReplyTimeout: snf.Duration(3 * time.Second),
		MaxSources:   1 << 16,
		MaxContacts:  1 << 18,
		Idle:         snf.Duration(10 * time.Minute),
	}
}

// Validate checks the config.
func (c *Config) Validate() error {
	if c.Unit != "service" && c.Unit != "host" {
		return fmt.Errorf("unit: %q is not service or host", c.Unit)
	}
	if !(c.Theta0 > 0 && c.Theta0 < 1) {
		return fmt.Errorf("theta0: %v is not in (0, 1)", c.Theta0)
	}
	if !(c.Theta1 > 0 && c.Theta1 < c.Theta0) {
		return fmt.Errorf("theta1: %v is not in (0, theta0=%v)", c.Theta1, c.Theta0)
	}
	if !(c.PF > 0 && c.PF < 1) {
		return fmt.Errorf("pf: %v is not in (0, 1)", c.PF)
	}
	if !(c.PD > c.PF && c.PD < 1) {
		return fmt.Errorf("pd: %v is not in (pf=%v, 1)", c.PD, c.PF)
	}
	if c.ReplyTimeout <= 0 {
		return errors.New("reply_timeout: must be > 0")
	}
	if c.MaxSources <= 0 {
		return errors.New("max_sources: must be > 0")
	}
	if c.MaxContacts <= 0 {
		return errors.New("max_contacts: must be > 0")
	}
	if c.Idle <= c.ReplyTimeout {
		return fmt.Errorf("idle: %s must be longer than reply_timeout (%s)", c.Idle.D(), c.ReplyTimeout.D())
	}
	return nil
}

func init() {
	snf.Register("portscan", "scan detection by Threshold Random Walk over first-contact connection outcomes (Jung et al. 2004)",
		DefaultConfig, New)
}

// addrKey is an address as a map key.
type addrKey struct {
	a  [16]byte
	v6 bool
}

// contactKey is a first contact: a source and a destination (host, or host and service).
type contactKey struct {
	src, dst [16]byte
	port     uint16
	proto    uint8
	v6       bool
}

// window is how many attempts of one source may be outstanding (without an outcome). An
// attempt pushed out of the window by a newer one counts as a failure.
const window = 64

// source is the scoped state of one initiator: its random walk and its outstanding
// attempts. Attempts are numbered per source; attempt s is outstanding when it is one of
// the last `window` numbers handed out and bit s%window of pending is set.
type source struct {
	llr        float64 // ln Λ, the log likelihood ratio of the current walk
	next       uint32  // the number of the next attempt
	low        uint32  // no attempt below low is outstanding
	pending    uint64
	deadline   [window]int64
	attempts   uint32 // first-contact attempts
	successes  uint32
	failures   uint32
	flagged    bool
	started    bool
	flaggedAt  int64
	flaggedLLR float64
}

func (s *source) outstanding(seq uint32) bool {
	return s.next-seq-1 < window && s.pending&(1<<(seq%window)) != 0
}

const sourceFixed = 8 + 4 + 4 + 8 + 4*3 + 1 + 8 + 8

// AppendBinary serializes the walk and the outstanding attempts' deadlines.
func (s *source) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(s.llr))
	b = binary.BigEndian.AppendUint32(b, s.next)
	b = binary.BigEndian.AppendUint32(b, s.low)
	b = binary.BigEndian.AppendUint64(b, s.pending)
	b = binary.BigEndian.AppendUint32(b, s.attempts)
	b = binary.BigEndian.AppendUint32(b, s.successes)
	b = binary.BigEndian.AppendUint32(b, s.failures)
	var f byte
	if s.flagged {
		f |= 1
	}
	if s.started {
		f |= 2
	}
	b = append(b, f)
	b = binary.BigEndian.AppendUint64(b, uint64(s.flaggedAt))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(s.flaggedLLR))
	for i := range window {
		if s.pending&(1<<i) != 0 {
			b = binary.BigEndian.AppendUint64(b, uint64(s.deadline[i]))
		}
	}
	return b, nil
}

// UnmarshalBinary restores what AppendBinary wrote.
func (s *source) UnmarshalBinary(b []byte) error {
	if len(b) < sourceFixed {
		return fmt.Errorf("portscan: source state: %d bytes, want >= %d", len(b), sourceFixed)
	}
	*s = source{}
	s.llr = math.Float64frombits(binary.BigEndian.Uint64(b))
	s.next = binary.BigEndian.Uint32(b[8:])
	s.low = binary.BigEndian.Uint32(b[12:])
	s.pending = binary.BigEndian.Uint64(b[16:])
	s.attempts = binary.BigEndian.Uint32(b[24:])
	s.successes = binary.BigEndian.Uint32(b[28:])
	s.failures = binary.BigEndian.Uint32(b[32:])
	s.flagged, s.started = b[36]&1 != 0, b[36]&2 != 0
	s.flaggedAt = int64(binary.BigEndian.Uint64(b[37:]))
	s.flaggedLLR = math.Float64frombits(binary.BigEndian.Uint64(b[45:]))
	rest := b[sourceFixed:]
	for i := range window {
		if s.pending&(1<<i) == 0 {
			continue
		}
		if len(rest) < 8 {
			return errors.New("portscan: source state: deadlines truncated")
		}
		s.deadline[i] = int64(binary.BigEndian.Uint64(rest))
		rest = rest[8:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("portscan: source state: %d trailing bytes", len(rest))
	}
	return nil
}

// contact is the scoped state of one first contact: the attempt it opened.
type contact struct{ seq uint32 }

func (c *contact) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint32(b, c.seq), nil
}

func (c *contact) UnmarshalBinary(b []byte) error {
	if len(b) != 4 {
		return fmt.Errorf("portscan: contact state: %d bytes, want 4", len(b))
	}
	c.seq = binary.BigEndian.Uint32(b)
	return nil
}

// Attempt states of a flow.
const (
	flowOther   = iota + 1 // not a first-contact attempt (or its outcome is known)
	flowPending            // a first-contact attempt waiting for its outcome
)

// attempt is the per-flow state: whether the flow is a first-contact attempt whose outcome
// is still open, and its number in its source's walk.
type attempt struct {
	state uint8
	seq   uint32
}

func (a *attempt) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, a.state)
	return binary.BigEndian.AppendUint32(b, a.seq), nil
}

func (a *attempt) UnmarshalBinary(b []byte) error {
	if len(b) != 5 || b[0] > flowPending {
		return fmt.Errorf("portscan: attempt state: bad encoding (%d bytes)", len(b))
	}
	a.state, a.seq = b[0], binary.BigEndian.Uint32(b[1:])
	return nil
}

// Portscan is one detector instance.
type Portscan struct {
	cfg      Config
	host     bool    // unit: host
	lnEta1   float64 // ln(pd/pf)
	lnEta0   float64 // ln((1-pd)/(1-pf))
	lnSucc   float64 // ln(theta1/theta0), added on a success
	lnFail   float64 // ln((1-theta1)/(1-theta0)), added on a failure
	timeout  int64
	flows    *snf.FlowState[attempt, *attempt]
	sources  *snf.Scoped[addrKey, source, *source]
	contacts *snf.Scoped[contactKey, contact, *contact]

	attempts, successes, failures, timeouts, overflows *snf.Metric
	icmpFailures, lateReplies, repeats, multicast      *snf.Metric
	benign, scanners, blocked, malformed               *snf.Metric
}

// New builds a detector from a validated config.
func New(env *snf.Env, cfg *Config) (snf.NF, error) {
	idle := cfg.Idle.D()
	sources, err := snf.NewScoped[addrKey, source](env, "sources",
		snf.ScopeOptions{By: snf.ByInitiator, MaxKeys: cfg.MaxSources, Idle: idle})
	if err != nil {
		return nil, err
	}
	contacts, err := snf.NewScoped[contactKey, contact](env, "contacts",
		snf.ScopeOptions{By: snf.ByInitiator, MaxKeys: cfg.MaxContacts, Idle: idle})
	if err != nil {
		return nil, err
	}
	ps := &Portscan{
		cfg:      *cfg,
		host:     cfg.Unit == "host",
		lnEta1:   math.Log(cfg.PD / cfg.PF),
		lnEta0:   math.Log((1 - cfg.PD) / (1 - cfg.PF)),
		lnSucc:   math.Log(cfg.Theta1 / cfg.Theta0),
		lnFail:   math.Log((1 - cfg.Theta1) / (1 - cfg.Theta0)),
		timeout:  int64(cfg.ReplyTimeout),
		flows:    snf.NewFlowState[attempt](env, "attempt"),
		sources:  sources,
		contacts: contacts,

		attempts:     env.Metric("attempts", "first-contact connection attempts"),
		successes:    env.Metric("successes", "attempts answered (SYN-ACK, a UDP reply, an echo reply)"),
		failures:     env.Metric("failures", "attempts failed (RST, ICMP unreachable, no reply in time, pushed out of the window)"),
		timeouts:     env.Metric("timeouts", "failures by no reply within reply_timeout"),
		overflows:    env.Metric("window_overflows", "failures by more than 64 attempts of one source outstanding"),
		icmpFailures: env.Metric("icmp_failures", "failures by an ICMP destination unreachable"),
		lateReplies:  env.Metric("late_replies", "replies to attempts already resolved (timed out), ignored"),
		repeats:      env.Metric("repeat_contacts", "connections to a destination the source contacted before (not attempts)"),
		multicast:    env.Metric("multicast", "connections to multicast or broadcast addresses (not attempts)"),
		benign:       env.Metric("benign", "walks that reached η0 (source benign, walk restarted)"),
		scanners:     env.Metric("scanners", "sources that reached η1 (alerted)"),
		blocked:      env.Metric("blocked", "packets of flagged sources' connections dropped (block: true)"),
		malformed:    env.Metric("malformed", "malformed IP packets, passed"),
	}
	return ps, nil
}

func srcKey(k *packet.Key) addrKey { return addrKey{a: k.Src, v6: k.V6} }

func (ps *Portscan) contactKey(src, dst *[16]byte, v6 bool, proto uint8, port uint16) contactKey {
	c := contactKey{src: *src, dst: *dst, v6: v6}
	if !ps.host {
		c.proto, c.port = proto, port
		if proto == packet.ProtoICMP || proto == packet.ProtoICMPv6 {
			c.port = 0 // an echo id names no service
		}
	}
	return c
}

// Process implements snf.NF.
func (ps *Portscan) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if !p.IP() {
		ps.malformed.Inc()
		return snf.Forward
	}
	if p.Flags&packet.HasL4 != 0 && (p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6) {
		ps.icmpError(ctx, p)
	}
	fk := ctx.FlowKey()
	sk := srcKey(&fk)
	src := ps.sources.Get(ctx, sk)
	if src != nil {
		if src.flagged && ps.cfg.Block {
			ps.blocked.Inc()
			return snf.Drop
		}
		ps.expire(ctx, src, sk)
	}
	st := ps.flows.GetOrCreate(ctx)
	switch {
	case st.state == 0: // the flow's first packet
		st.state = flowOther
		if ctx.Dir() == snf.Orig && opensConnection(p) {
			ps.open(ctx, p, st, src, sk)
		}
	case st.state == flowPending && ctx.Dir() == snf.Reply:
		ps.reply(ctx, p, st, src, sk)
	}
	return snf.Forward
}

// opensConnection reports whether p, the first packet of its flow, is a connection
// attempt: a TCP SYN, a UDP datagram, an ICMP echo request, to a unicast address.
func opensConnection(p *packet.Packet) bool {
	if p.Flags&packet.HasL4 == 0 {
		return false
	}
	switch p.Proto {
	case packet.ProtoTCP:
		return p.TCPFlags()&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn
	case packet.ProtoUDP:
		return true
	case packet.ProtoICMP:
		return p.ICMPType() == 8
	case packet.ProtoICMPv6:
		return p.ICMPType() == 128
	}
	return false
}

// groupAddr reports a multicast or broadcast destination: nobody in particular answers it.
func groupAddr(a *[16]byte, v6 bool) bool {
	if v6 {
		return a[0] == 0xff
	}
	return a[0] >= 224 // 224/4 multicast, 240/4 reserved, 255.255.255.255
}

func (ps *Portscan) open(ctx *snf.Context, p *packet.Packet, st *attempt, src *source, sk addrKey) {
	k := &p.Key
	if groupAddr(&k.Dst, k.V6) {
		ps.multicast.Inc()
		return
	}
	ck := ps.contactKey(&k.Src, &k.Dst, k.V6, k.Proto, k.DstPort)
	if ps.contacts.Get(ctx, ck) != nil {
		ps.repeats.Inc()
		return
	}
	if src == nil {
		src = ps.sources.GetOrCreate(ctx, sk)
	}
	if !src.started {
		// Numbers start from the clock, so that attempts of an earlier life of this source
		// (evicted, then back) are not taken for this life's.
		src.started = true
		src.next = uint32(ctx.Clock()) << 7
		src.low = src.next
	}
	seq := src.next
	bit := uint64(1) << (seq % window)
	if src.pending&bit != 0 { // attempt seq-window never resolved: it failed
		src.pending &^= bit
		ps.overflows.Inc()
		ps.outcome(ctx, src, sk, false)
	}
	src.pending |= bit
	src.deadline[seq%window] = ctx.Now() + ps.timeout
	src.next++
	src.attempts++
	ps.attempts.Inc()
	ps.contacts.GetOrCreate(ctx, ck).seq = seq
	st.state, st.seq = flowPending, seq
}

func (ps *Portscan) reply(ctx *snf.Context, p *packet.Packet, st *attempt, src *source, sk addrKey) {
	var success bool
	switch p.Proto {
	case packet.ProtoTCP:
		f := p.TCPFlags()
		switch {
		case f&packet.TCPRst != 0:
			success = false
		case f&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn|packet.TCPAck:
			success = true
		default:
			return // not an answer to a SYN: keep waiting
		}
	case packet.ProtoUDP:
		success = true
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if !p.IsEcho() {
			return
		}
		success = true
	default:
		return
	}
	st.state = flowOther
	if src == nil || !src.outstanding(st.seq) {
		ps.lateReplies.Inc()
		return
	}
	src.pending &^= 1 << (st.seq % window)
	ps.outcome(ctx, src, sk, success)
}

// expire resolves the source's attempts whose reply_timeout has passed, oldest first.
func (ps *Portscan) expire(ctx *snf.Context, src *source, sk addrKey) {
	now := ctx.Now()
	for src.low != src.next {
		if src.next-src.low > window {
			src.low = src.next - window
		}
		b := src.low % window
		if src.pending&(1<<b) != 0 {
			if src.deadline[b] > now {
				return
			}
			src.pending &^= 1 << b
			ps.timeouts.Inc()
			ps.outcome(ctx, src, sk, false)
		}
		src.low++
	}
}

// outcome takes one step of the source's random walk.
func (ps *Portscan) outcome(ctx *snf.Context, src *source, sk addrKey, success bool) {
	if success {
		src.successes++
		ps.successes.Inc()
	} else {
		src.failures++
		ps.failures.Inc()
	}
	if src.flagged {
		return // decided: the walk has stopped
	}
	if success {
		src.llr += ps.lnSucc
	} else {
		src.llr += ps.lnFail
	}
	switch {
	case src.llr >= ps.lnEta1-1e-9:
		src.flagged, src.flaggedAt, src.flaggedLLR = true, ctx.Now(), src.llr
		ps.scanners.Inc()
		ctx.Alert("scanner",
			"source", addrOf(sk).String(),
			"likelihood", math.Exp(src.llr),
			"attempts", src.attempts,
			"successes", src.successes,
			"failures", src.failures,
			"unit", ps.cfg.Unit)
	case src.llr <= ps.lnEta0+1e-9:
		src.llr = 0
		ps.benign.Inc()
	}
}

func addrOf(k addrKey) netip.Addr {
	if k.v6 {
		return netip.AddrFrom16(k.a)
	}
	return netip.AddrFrom4([4]byte(k.a[:4]))
}

// icmpError resolves, as a failure, the attempt that an ICMP destination unreachable quotes.
func (ps *Portscan) icmpError(ctx *snf.Context, p *packet.Packet) {
	orig, ok := quoted(p)
	if !ok {
		return
	}
	c := ps.contacts.Get(ctx, ps.contactKey(&orig.Src, &orig.Dst, orig.V6, orig.Proto, orig.DstPort))
	if c == nil {
		return
	}
	seq := c.seq
	sk := srcKey(&orig)
	src := ps.sources.Get(ctx, sk)
	if src == nil || !src.outstanding(seq) {
		return
	}
	src.pending &^= 1 << (seq % window)
	ps.icmpFailures.Inc()
	ps.outcome(ctx, src, sk, false)
}

// quoted returns the key of the packet that an ICMP or ICMPv6 destination unreachable
// quotes (RFC 792: the original IP header and at least 8 bytes of its payload; RFC 4443: as
// much of the original packet as fits). Only the fields the detector needs are set.
func quoted(p *packet.Packet) (k packet.Key, ok bool) {
	typ := p.ICMPType()
	d := p.Payload() // what follows the 8-byte ICMP header, up to the end of the IP packet
	var l4 int
	switch {
	case p.Proto == packet.ProtoICMP && typ == 3:
		if len(d) < 20 || d[0]>>4 != 4 {
			return k, false
		}
		ihl := int(d[0]&0xf) * 4
		if ihl < 20 || binary.BigEndian.Uint16(d[6:])&0x1fff != 0 { // a non-first fragment quotes no ports
			return k, false
		}
		k.Proto = d[9]
		copy(k.Src[:4], d[12:16])
		copy(k.Dst[:4], d[16:20])
		l4 = ihl
	case p.Proto == packet.ProtoICMPv6 && typ == 1:
		if len(d) < 40 || d[0]>>4 != 6 {
			return k, false
		}
		k.V6 = true
		k.Proto = d[6]
		copy(k.Src[:], d[8:24])
		copy(k.Dst[:], d[24:40])
		l4 = 40
	default:
		return k, false
	}
	switch k.Proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		if l4+4 > len(d) {
			return k, false
		}
		k.SrcPort = binary.BigEndian.Uint16(d[l4:])
		k.DstPort = binary.BigEndian.Uint16(d[l4+2:])
	case packet.ProtoICMP, packet.ProtoICMPv6:
	default:
		return k, false
	}
	return k, true
}

// FlowEnd implements snf.FlowEnder: a flow leaving the table resolves its source's
// attempts that are due; an attempt still within reply_timeout stays outstanding in the
// source until its deadline or a reply.
func (ps *Portscan) FlowEnd(ctx *snf.Context) {
	st := ps.flows.Get(ctx)
	if st == nil || st.state != flowPending {
		return
	}
	fk := ctx.FlowKey()
	sk := srcKey(&fk)
	if src := ps.sources.Get(ctx, sk); src != nil {
		ps.expire(ctx, src, sk)
	}
}

// Scanner describes a source the detector flagged.
type Scanner struct {
	Source                        netip.Addr
	At                            int64   // packet time of the alert
	Likelihood                    float64 // Λ when it crossed η1
	Attempts, Successes, Failures uint32  // first-contact attempts and outcomes so far
}

// Scanners returns the flagged sources still tracked, sorted by address (for reports and
// tests, not the packet path).
func (ps *Portscan) Scanners() []Scanner {
	var out []Scanner
	ps.sources.Range(func(k addrKey, s *source) bool {
		if s.flagged {
			out = append(out, Scanner{addrOf(k), s.flaggedAt, math.Exp(s.flaggedLLR), s.attempts, s.successes, s.failures})
		}
		return true
	})
	slices.SortFunc(out, func(a, b Scanner) int { return a.Source.Compare(b.Source) })
	return out
}

// Likelihood returns the current likelihood ratio Λ of a tracked source and whether it is
// tracked (for tests and reports).
func (ps *Portscan) Likelihood(a netip.Addr) (float64, bool) {
	k := addrKey{v6: a.Is6() && !a.Is4In6()}
	if k.v6 {
		k.a = a.As16()
	} else {
		a4 := a.Unmap().As4()
		copy(k.a[:], a4[:])
	}
	var l float64
	found := false
	ps.sources.Range(func(key addrKey, s *source) bool {
		if key == k {
			l, found = math.Exp(s.llr), true
			return false
		}
		return true
	})
	return l, found
}

// Report implements snf.Reporter: the flagged sources.
func (ps *Portscan) Report(w io.Writer) error {
	sc := ps.Scanners()
	if _, err := fmt.Fprintf(w, "  %d sources tracked, %d flagged as scanners (η1 = %.4g, η0 = %.4g, unit %s)\n",
		ps.sources.Len(), len(sc), math.Exp(ps.lnEta1), math.Exp(ps.lnEta0), ps.cfg.Unit); err != nil {
		return err
	}
	for _, s := range sc {
		if _, err := fmt.Fprintf(w, "  %-40s flagged at %s  Λ=%.4g  attempts %d (%d succeeded, %d failed)\n",
			s.Source, time.Unix(0, s.At).UTC().Format(time.RFC3339Nano), s.Likelihood, s.Attempts, s.Successes, s.Failures); err != nil {
			return err
		}
	}
	return nil
}
