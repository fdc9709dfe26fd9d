// Package ratelimit limits the packet rate of each source address, or of each source
// prefix, with a token bucket per source refilled in packet time; packets over the limit are
// dropped and counted. See README.md.
package ratelimit

import (
	"cmp"
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

// Config is the rate limiter's configuration.
type Config struct {
	Rate       float64        `json:"rate" doc:"packets per second a source (or source prefix) may send, sustained"`
	Burst      uint32         `json:"burst" doc:"packets a source may send at once: the bucket's size"`
	PrefixV4   int            `json:"prefix_v4" doc:"IPv4 sources share one bucket per prefix of this length (32: one per address, 0: one for all)"`
	PrefixV6   int            `json:"prefix_v6" doc:"IPv6 sources share one bucket per prefix of this length (64: one per subnet, 128: per address)"`
	Exempt     []netip.Prefix `json:"exempt" doc:"sources in these prefixes are never limited"`
	MaxSources int            `json:"max_sources" doc:"bound on the buckets kept; beyond it the least recently used source is forgotten"`
}

// DefaultConfig limits each IPv4 address and each IPv6 /64 to 1000 packets/s with bursts of
// 2000: floods from one source are cut, ordinary traffic (a busy web client peaks at a few
// hundred packets in 100 ms) is not touched.
func DefaultConfig() *Config {
	return &Config{Rate: 1000, Burst: 2000, PrefixV4: 32, PrefixV6: 64, MaxSources: 1 << 20}
}

// maxWindow bounds burst/rate (the time an empty bucket takes to fill) so that the
// arithmetic in nanoseconds cannot overflow.
const maxWindow = 100 * 365 * 24 * time.Hour

// Validate checks the config.
func (c *Config) Validate() error {
	if !(c.Rate > 0) || c.Rate > 1e9 || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("rate: want packets per second in (0, 1e9], have %v", c.Rate)
	}
	if c.Burst == 0 {
		return errors.New("burst: must be >= 1 packet")
	}
	if float64(c.Burst)/c.Rate*1e9 > float64(maxWindow) {
		return fmt.Errorf("burst: %d packets at rate %v take longer than %v to refill", c.Burst, c.Rate, maxWindow)
	}
	if c.PrefixV4 < 0 || c.PrefixV4 > 32 {
		return fmt.Errorf("prefix_v4: want 0-32, have %d", c.PrefixV4)
	}
	if c.PrefixV6 < 0 || c.PrefixV6 > 128 {
		return fmt.Errorf("prefix_v6: want 0-128, have %d", c.PrefixV6)
	}
	for i, p := range c.Exempt {
		if !p.IsValid() {
			return fmt.Errorf("exempt[%d]: not a prefix", i)
		}
	}
	if c.MaxSources <= 0 {
		return fmt.Errorf("max_sources: must be > 0, have %d", c.MaxSources)
	}
	return nil
}

func init() {
	snf.Register("ratelimit", "token-bucket rate limit per source address or source prefix, in packet time",
		DefaultConfig, New)
}

// srcKey is a (masked) source address: IPv4 in the top 32 bits of hi.
type srcKey struct {
	hi, lo uint64
	v6     bool
}

func (k srcKey) prefix(bits int) netip.Prefix {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	if !k.v6 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(b[:4])), bits)
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), bits)
}

// mask returns the masks of a prefix length over a srcKey's words.
func mask(bits int, v6 bool) (hi, lo uint64) {
	if !v6 {
		return ^uint64(0) << (64 - bits) & 0xffffffff00000000, 0
	}
	switch {
	case bits >= 128:
		return ^uint64(0), ^uint64(0)
	case bits > 64:
		return ^uint64(0), ^uint64(0) << (128 - bits)
	case bits == 0:
		return 0, 0
	}
	return ^uint64(0) << (64 - bits), 0
}

// bucket is a source's token bucket, kept as its theoretical arrival time (the GCRA, or
// virtual-scheduling, form of a token bucket): the bucket holds (now + window - tat)/interval
// tokens, it is full when tat <= now, and a packet that passes moves tat one interval on.
type bucket struct {
	tat     int64  // Unix ns
	drops   uint32 // packets dropped since the source was first seen (saturating)
	limited bool   // dropping since the bucket was last full (an alert was raised)
}

const bucketSize = 8 + 4 + 1

func (b *bucket) AppendBinary(buf []byte) ([]byte, error) {
	buf = binary.BigEndian.AppendUint64(buf, uint64(b.tat))
	buf = binary.BigEndian.AppendUint32(buf, b.drops)
	var f byte
	if b.limited {
		f = 1
	}
	return append(buf, f), nil
}

func (b *bucket) UnmarshalBinary(buf []byte) error {
	if len(buf) != bucketSize || buf[12] > 1 {
		return fmt.Errorf("ratelimit: bucket state: %d bytes, want %d", len(buf), bucketSize)
	}
	b.tat = int64(binary.BigEndian.Uint64(buf))
	b.drops = binary.BigEndian.Uint32(buf[8:])
	b.limited = buf[12] == 1
	return nil
}

// exemptNet is an exempt prefix over srcKey words.
type exemptNet struct {
	hi, lo, mhi, mlo uint64
	v6               bool
}

// RateLimit is one rate-limiter instance.
type RateLimit struct {
	cfg        Config
	interval   int64 // ns per token
	window     int64 // burst × interval: the time an empty bucket takes to fill
	m4hi       uint64
	m6hi, m6lo uint64
	exempt     []exemptNet
	buckets    *snf.Scoped[srcKey, bucket, *bucket]
	passed     *snf.Metric
	dropped    *snf.Metric
	exempted   *snf.Metric
	episodes   *snf.Metric
	malformed  *snf.Metric
	unreadable *snf.Metric
}

// New builds a rate limiter from a validated config.
func New(env *snf.Env, cfg *Config) (snf.NF, error) {
	interval := max(int64(math.Round(1e9/cfg.Rate)), 1)
	r := &RateLimit{
		cfg:        *cfg,
		interval:   interval,
		window:     int64(cfg.Burst) * interval,
		passed:     env.Metric("passed", "packets within their source's rate"),
		dropped:    env.Metric("dropped", "packets over their source's rate, dropped"),
		exempted:   env.Metric("exempt", "packets from exempt prefixes, passed unlimited"),
		episodes:   env.Metric("limited", "times a source started being limited (each raised an alert)"),
		malformed:  env.Metric("malformed", "malformed IP packets, limited by the source address in their IP header"),
		unreadable: env.Metric("unreadable", "IP packets too short to read a source address from, passed"),
	}
	r.m4hi, _ = mask(cfg.PrefixV4, false)
	r.m6hi, r.m6lo = mask(cfg.PrefixV6, true)
	for _, p := range cfg.Exempt {
		p = p.Masked()
		a := p.Addr()
		bits := p.Bits()
		if a.Is4In6() {
			a, bits = a.Unmap(), max(bits-96, 0)
		}
		k := keyOf(a)
		e := exemptNet{hi: k.hi, lo: k.lo, v6: k.v6}
		e.mhi, e.mlo = mask(bits, k.v6)
		r.exempt = append(r.exempt, e)
	}
	var err error
	// A source idle for one window has a full bucket again: forgetting it changes nothing.
	r.buckets, err = snf.NewScoped[srcKey, bucket](env, "buckets", snf.ScopeOptions{
		By: snf.BySource, MaxKeys: cfg.MaxSources, Idle: time.Duration(r.window),
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func keyOf(a netip.Addr) srcKey {
	if a.Is4() {
		b := a.As4()
		return srcKey{hi: uint64(binary.BigEndian.Uint32(b[:])) << 32}
	}
	b := a.As16()
	return srcKey{hi: binary.BigEndian.Uint64(b[:]), lo: binary.BigEndian.Uint64(b[8:]), v6: true}
}

// source reads the packet's source address: from the parsed key, or, for a malformed
// packet, from its IP header when that is complete enough.
func (r *RateLimit) source(p *packet.Packet) (k srcKey, ok bool) {
	if p.IP() {
		if p.Key.V6 {
			return srcKey{hi: binary.BigEndian.Uint64(p.Key.Src[:]), lo: binary.BigEndian.Uint64(p.Key.Src[8:]), v6: true}, true
		}
		return srcKey{hi: uint64(binary.BigEndian.Uint32(p.Key.Src[:])) << 32}, true
	}
	d, l3 := p.Data, int(p.L3Off)
	if l3 <= 0 || len(d) <= l3 {
		return k, false
	}
	switch {
	case p.EtherType == packet.EtherTypeIPv4 && d[l3]>>4 == 4 && len(d) >= l3+20:
		r.malformed.Inc()
		return srcKey{hi: uint64(binary.BigEndian.Uint32(d[l3+12:])) << 32}, true
	case p.EtherType == packet.EtherTypeIPv6 && d[l3]>>4 == 6 && len(d) >= l3+40:
		r.malformed.Inc()
		return srcKey{hi: binary.BigEndian.Uint64(d[l3+8:]), lo: binary.BigEndian.Uint64(d[l3+16:]), v6: true}, true
	}
	return k, false
}

// HeadersOnly implements snf.HeaderReader: RateLimit reads only packets' headers.
func (r *RateLimit) HeadersOnly() bool { return true }

// Process implements snf.NF.
func (r *RateLimit) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	k, ok := r.source(p)
	if !ok {
		r.unreadable.Inc()
		return snf.Forward
	}
	for i := range r.exempt {
		e := &r.exempt[i]
		if e.v6 == k.v6 && k.hi&e.mhi == e.hi && k.lo&e.mlo == e.lo {
			r.exempted.Inc()
			return snf.Forward
		}
	}
	if k.v6 {
		k.hi, k.lo = k.hi&r.m6hi, k.lo&r.m6lo
	} else {
		k.hi &= r.m4hi
	}
	b := r.buckets.GetOrCreate(ctx, k)
	now := ctx.Now()
	tat := b.tat
	if tat <= now { // the bucket is full
		tat = now
		b.limited = false
	}
	if tat+r.interval-now > r.window { // no token left
		if b.drops != math.MaxUint32 {
			b.drops++
		}
		r.dropped.Inc()
		if !b.limited {
			b.limited = true
			r.episodes.Inc()
			r.alert(ctx, k)
		}
		return snf.Drop
	}
	b.tat = tat + r.interval
	r.passed.Inc()
	return snf.Forward
}

// alert reports a source that starts being limited (once until its bucket is full again).
func (r *RateLimit) alert(ctx *snf.Context, k srcKey) {
	ctx.Alert("rate_exceeded", "source", r.prefixOf(k).String(), "rate", r.cfg.Rate, "burst", r.cfg.Burst)
}

func (r *RateLimit) prefixOf(k srcKey) netip.Prefix {
	if k.v6 {
		return k.prefix(r.cfg.PrefixV6)
	}
	return k.prefix(r.cfg.PrefixV4)
}

// Report implements snf.Reporter: the sources kept and those that dropped most.
func (r *RateLimit) Report(w io.Writer) error {
	type row struct {
		p     netip.Prefix
		drops uint32
	}
	var rows []row
	r.buckets.Range(func(k srcKey, b *bucket) bool {
		if b.drops > 0 {
			rows = append(rows, row{r.prefixOf(k), b.drops})
		}
		return true
	})
	slices.SortFunc(rows, func(a, b row) int {
		if c := cmp.Compare(b.drops, a.drops); c != 0 {
			return c
		}
		return a.p.Addr().Compare(b.p.Addr())
	})
	if _, err := fmt.Fprintf(w, "  %d sources kept, %d with drops\n", r.buckets.Len(), len(rows)); err != nil {
		return err
	}
	for _, x := range rows[:min(len(rows), 10)] {
		if _, err := fmt.Fprintf(w, "  %-44s %10d dropped\n", x.p, x.drops); err != nil {
			return err
		}
	}
	return nil
}
