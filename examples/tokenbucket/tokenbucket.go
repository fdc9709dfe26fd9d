// Package tokenbucket is the example NF of docs/writing-an-nf.md: it limits the packet rate
// of each source address with a token bucket refilled in packet time. It is a deliberately
// small version of nf/ratelimit, which adds prefix buckets, exemptions, the limiting of
// malformed packets and an end-of-run report.
package tokenbucket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// Config is decoded strictly from the chain file: an unknown field is an error.
type Config struct {
	Rate  float64 `json:"rate" doc:"packets per second a source may send, sustained"`
	Burst uint32  `json:"burst" doc:"packets a source may send at once: the bucket's size"`
}

// DefaultConfig is the config of an instance whose chain file gives none, and the base
// that the fields it gives overlay.
func DefaultConfig() *Config { return &Config{Rate: 1000, Burst: 2000} }

// Validate runs after decoding; an error names the field.
func (c *Config) Validate() error {
	if !(c.Rate > 0 && c.Rate <= 1e9) {
		return fmt.Errorf("rate: want packets per second in (0, 1e9], have %v", c.Rate)
	}
	if c.Burst == 0 {
		return errors.New("burst: must be >= 1 packet")
	}
	if float64(c.Burst)/c.Rate > 24*3600 {
		return fmt.Errorf("burst: %d packets at %v/s take more than a day to refill", c.Burst, c.Rate)
	}
	return nil
}

// bucket is one source's token bucket. It keeps how far the bucket is from full, in
// nanoseconds of refill, so that its zero value is a full bucket: a new source, or one
// forgotten after being idle, starts full.
type bucket struct {
	deficit int64 // ns of refill missing as of last (0: full; one token is interval ns)
	last    int64 // the timestamp of the source's last packet (Unix ns)
	limited bool  // dropping since the bucket was last full (an alert was raised)
}

const bucketSize = 8 + 8 + 1

// AppendBinary and UnmarshalBinary implement snf.StateCodec: the runtime moves a bucket to
// another unit, and checkpoints it, through them.
func (b *bucket) AppendBinary(buf []byte) ([]byte, error) {
	buf = binary.BigEndian.AppendUint64(buf, uint64(b.deficit))
	buf = binary.BigEndian.AppendUint64(buf, uint64(b.last))
	if b.limited {
		return append(buf, 1), nil
	}
	return append(buf, 0), nil
}

func (b *bucket) UnmarshalBinary(buf []byte) error {
	if len(buf) != bucketSize || buf[16] > 1 {
		return fmt.Errorf("tokenbucket: bad bucket state (%d bytes, want %d)", len(buf), bucketSize)
	}
	b.deficit = int64(binary.BigEndian.Uint64(buf))
	b.last = int64(binary.BigEndian.Uint64(buf[8:]))
	b.limited = buf[16] == 1
	return nil
}

// maxSources bounds the buckets kept: beyond it the least recently used source is
// forgotten, and comes back with a full bucket.
const maxSources = 1 << 16

// TokenBucket is one instance of the NF in a chain.
type TokenBucket struct {
	cfg      Config
	interval int64 // ns per token
	window   int64 // burst × interval: the time an empty bucket takes to fill
	buckets  *snf.Scoped[netip.Addr, bucket, *bucket]
	passed   *snf.Metric
	dropped  *snf.Metric
	limited  *snf.Metric
}

// New builds an instance from a decoded, validated config. Everything the instance keeps
// is declared through env; it has no other side effects.
func New(env *snf.Env, cfg *Config) (snf.NF, error) {
	interval := max(int64(math.Round(1e9/cfg.Rate)), 1)
	t := &TokenBucket{
		cfg:      *cfg,
		interval: interval,
		window:   int64(cfg.Burst) * interval,
		passed:   env.Metric("passed", "packets within their source's rate"),
		dropped:  env.Metric("dropped", "packets over their source's rate, dropped"),
		limited:  env.Metric("limited", "times a source started being limited (one alert each)"),
	}
	var err error
	// A source idle for one window has a full bucket again: forgetting it changes nothing.
	t.buckets, err = snf.NewScoped[netip.Addr, bucket](env, "buckets", snf.ScopeOptions{
		By: snf.BySource, MaxKeys: maxSources, Idle: time.Duration(t.window),
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func init() {
	snf.Register("tokenbucket", "per-source token bucket in packet time (the example of docs/writing-an-nf.md)",
		DefaultConfig, New)
}

// Process implements snf.NF.
func (t *TokenBucket) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if !p.IP() { // a malformed packet has no parsed source: let it pass
		return snf.Forward
	}
	src := p.Key.SrcAddr()
	b := t.buckets.GetOrCreate(ctx, src)
	now := ctx.Now() // the packet's timestamp, never time.Now()
	// Refill for the time since the source's last packet. Time going backwards (a capture
	// out of order) counts as negative refill, as in nf/ratelimit.
	b.deficit = max(b.deficit-(now-b.last), 0)
	b.last = now
	if b.deficit == 0 {
		b.limited = false // full again: the next drop starts a new episode
	}
	if b.deficit+t.interval > t.window { // less than one token left
		t.dropped.Inc()
		if !b.limited {
			b.limited = true
			t.limited.Inc()
			ctx.Alert("rate_exceeded", "source", src.String(), "rate", t.cfg.Rate, "burst", t.cfg.Burst)
		}
		return snf.Drop
	}
	b.deficit += t.interval
	t.passed.Inc()
	return snf.Forward
}
