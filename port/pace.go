package port

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/snf-dev/snf/packet"
)

// Paced returns a Reader that releases the packets of r at the pace of their timestamps:
// at capture pace for speed 1, k times as fast for speed k (2 = twice as fast, 0.5 = half
// as fast). Speed 0 means as fast as possible: Paced returns r itself (as it does for a
// negative, NaN or infinite speed).
//
// Timing is relative to the first packet: it is released at once, and a packet whose
// timestamp is d after the first one's is released no earlier than d/speed after the first
// packet was. Deadlines are absolute, so a consumer that falls behind catches up (packets
// already due are released at once) instead of accumulating drift; a packet whose
// timestamp is before the first packet's is due at once.
//
// A Read never releases a packet before its time. It waits (with sleep) only for the first
// packet it returns, then adds the packets that are already due and returns a partial
// batch rather than hold them back until the batch fills; the next Read waits for the next
// packet.
//
// sleep must block for at least its argument (time.Sleep does) and now must return the
// current time; nil means time.Sleep and time.Now. Tests pass a fake clock. Such a sleep
// cannot be cut short: a replay that is to end at once (a cancelled run) takes PacedWith's.
//
// The paced Reader reads r's packets into its own batch and hands them out by exchanging
// Packet values with the caller's slice (no copy): the caller still owns one Packet per
// slot and may reuse them as the Reader contract says. If r is a LinkTyper, so is the
// result; if r can read its packets again (a Rereader: memory, a capture file), so can the
// result — a packet log then keeps where each packet is in r, not a copy. Close closes r.
func Paced(r Reader, speed float64, sleep func(time.Duration), now func() time.Time) Reader {
	if sleep == nil {
		sleep = time.Sleep
	}
	return PacedWith(r, speed, func(d time.Duration) error { sleep(d); return nil }, now)
}

// PacedWith is Paced with a sleep that may be cut short: it returns nil once it blocked for
// at least its argument, or an error when it ended early (SleepContext: the context's, once
// it is done). The Read that waited then returns 0 and that error, and so does every Read
// after it: the replay ended, and the packets not released yet are not (an engine that reads
// it ends its run as cancelled, with what it read before processed). nil means
// SleepContext(context.Background()).
func PacedWith(r Reader, speed float64, sleep func(time.Duration) error, now func() time.Time) Reader {
	if !(speed > 0) || math.IsInf(speed, 1) {
		return r
	}
	if sleep == nil {
		sleep = SleepContext(context.Background())
	}
	if now == nil {
		now = time.Now
	}
	p := &paced{r: r, speed: speed, sleep: sleep, now: now}
	if rr, ok := r.(Rereader); ok && rr.Rereadable() {
		p.rr = rr // (a capture read from a pipe is not: nothing to record)
	}
	if lt, ok := r.(LinkTyper); ok {
		return &pacedLinkTyper{paced: p, lt: lt}
	}
	return p
}

// SleepContext returns a sleep for PacedWith that ends early, returning ctx's error, once
// ctx is done.
func SleepContext(ctx context.Context) func(time.Duration) error {
	return func(d time.Duration) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type paced struct {
	r     Reader
	speed float64
	sleep func(time.Duration) error
	now   func() time.Time
	ended error // the error of a sleep cut short: every Read returns it

	buf        []packet.Packet // packets read from r; buf[head:n] are not yet released
	head, n    int
	rr         Rereader // r, if it can read its packets again (their Pos travel with them)
	err        error    // r's error, returned once buf is drained
	started    bool
	waited     bool      // the last Read slept, or r's last read waited (Waited)
	firstTime  int64     // timestamp of the first packet
	firstClock time.Time // when the first packet was released
}

type pacedLinkTyper struct {
	*paced
	lt LinkTyper
}

func (p *pacedLinkTyper) LinkType() uint32 { return p.lt.LinkType() }

// due returns when the packet with timestamp ts may be released.
func (p *paced) due(ts int64) time.Time {
	d := float64(ts-p.firstTime) / p.speed
	if d <= 0 {
		return p.firstClock
	}
	if d >= math.MaxInt64 {
		d = math.MaxInt64
	}
	return p.firstClock.Add(time.Duration(d))
}

func (p *paced) Read(pkts []packet.Packet) (int, error) {
	p.waited = false
	if p.ended != nil {
		return 0, p.ended
	}
	if len(pkts) == 0 {
		return 0, nil
	}
	if p.head == p.n && !p.fill(len(pkts)) {
		return 0, p.err
	}

	// Wait for the first packet to release.
	var t time.Time
	if !p.started {
		p.started = true
		p.firstTime = p.buf[p.head].Time
		p.firstClock = p.now()
		t = p.firstClock
	} else {
		due := p.due(p.buf[p.head].Time)
		t = p.now()
		if d := due.Sub(t); d > 0 {
			p.waited = true
			if err := p.sleep(d); err != nil {
				p.ended = err // (the packet stays unreleased)
				return 0, err
			}
			t = due // sleep blocked for at least d: it is at least due now
		}
	}

	// Release it and those already due at t, reading more from r when the batch runs dry;
	// look at the clock again before giving up on a packet that is not due.
	i := 0
	for i < len(pkts) {
		if p.head == p.n && !p.fill(len(pkts)-i) {
			break // r's error, if any, is returned by the next Read
		}
		if due := p.due(p.buf[p.head].Time); due.After(t) {
			if t = p.now(); due.After(t) {
				break
			}
		}
		pkts[i], p.buf[p.head] = p.buf[p.head], pkts[i]
		i++
		p.head++
	}
	return i, nil
}

// fill reads up to n packets from r into the (drained) batch. It reports whether it got
// any; if not, p.err says why.
func (p *paced) fill(n int) bool {
	if p.err != nil {
		return false
	}
	if len(p.buf) < n {
		p.buf = make([]packet.Packet, n)
	}
	k, err := p.r.Read(p.buf[:n])
	p.waited = p.waited || Waited(p.r)
	k = max(0, min(k, n))
	p.head, p.n, p.err = 0, k, err
	if k == 0 && err == nil {
		return false // r broke the Reader contract: nothing and no error; try again next Read
	}
	return k > 0
}

func (p *paced) Close() error { return p.r.Close() }

// Waited reports whether the last Read slept until its first packet was due, or read from
// an input that waited (port.Waiter).
func (p *paced) Waited() bool { return p.waited }

// Rereadable reports whether r can read its packets again (Rereader).
func (p *paced) Rereadable() bool { return p.rr != nil && p.rr.Rereadable() }

// Reread reads a packet of r again (Rereader).
func (p *paced) Reread(dst []byte, pos uint64, n int) ([]byte, error) {
	if p.rr == nil {
		return dst, errors.New("port: the paced input cannot read its packets again")
	}
	return p.rr.Reread(dst, pos, n)
}

// Release passes to r, if it is a Releaser (Releaser). (The packets read ahead, not handed
// out yet, are after the positions a caller that reads them again may release: those of
// packets it has.)
func (p *paced) Release(pos uint64) {
	if rl, ok := p.rr.(Releaser); ok {
		rl.Release(pos)
	}
}
