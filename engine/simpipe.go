package engine

// The simulator's model of the live engine's pipeline (SimConfig.Pipeline): the root's reads
// and per-unit batches, the hand-offs between goroutines, a unit's cost per batch.

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/root"
	"github.com/snf-dev/snf/trace"
	"github.com/snf-dev/snf/unit"
)

// Pipeline models the live engine's pipeline (RunLive: goroutines passing batches over
// channels), for comparing the simulator with it. The zero value leaves it out: a packet
// joins its unit's queue as it arrives and leaves as its service ends. With any field set:
//
//   - the root reads the packets that arrived while it was busy (up to Batch), or, if it
//     was waiting for input, those that arrived by its wake-up (ReadWake); it dispatches
//     them (RootCost each), then flushes each unit's batch, as the live root does at the end
//     of a reader's batch: the packets of a read leave the root together (a unit's batch
//     also leaves when it holds Batch packets);
//   - a batch reaches its unit one hand-off later; the unit serves one batch at a time
//     (BatchCost, then each packet's service time), and the batch's outputs reach the egress
//     one hand-off after it ends; the states the unit shipped leave after the batch too and
//     take two hand-offs (to the destination's mailbox forwarder, then to the unit) on top of
//     TransferBase + bytes/Bandwidth. Packets held for a state are served as their own batch
//     when it arrives;
//   - a hand-off is the receiver's wake-up: messages on one channel keep their order (the
//     batches to a unit, the states to a unit, the batches to the egress: one channel for
//     all units), a message sent before the channel's last one arrived rides with it, and a
//     batch sent to a busy unit waits for it with no hand-off.
//
// SimSummary.LatencyFromRoot then measures what RunLive's Latency does: from the root's
// release of a packet's batch to the egress (and HeldWait, as RunLive's, counts from the
// release of the first held packet). CalibratePipeline measures a Pipeline on this machine.
type Pipeline struct {
	// RootCost is the root's time to dispatch one packet (0: the root is instant, and a read
	// is the packets that arrive at one instant).
	RootCost time.Duration
	// Handoff is the mean time a message takes from one goroutine to another: the channel
	// send, the receiver's wake-up and its scheduling on a core. Each hand-off is drawn from
	// a lognormal distribution with coefficient of variation HandoffCV (0: always Handoff).
	Handoff   time.Duration
	HandoffCV float64
	// ReadWake is the granularity of the root's wake-ups when it waits for input (a paced
	// replay's sleep; Go's timers on this machine: about 1ms): an idle root reads again at
	// the first multiple of ReadWake since it began to wait at which a packet has arrived,
	// and takes every packet arrived by then. 0: it reads each packet as it arrives.
	ReadWake time.Duration
	// BatchCost is a unit's fixed cost per batch (expiring idle flows, sending the batch on),
	// on top of its packets' service times.
	BatchCost time.Duration
}

// On reports whether the model is on (any field set).
func (p Pipeline) On() bool {
	return p.RootCost > 0 || p.ReadWake > 0 || p.Handoff > 0 || p.BatchCost > 0
}

// The root's states.
const (
	rootIdle    = iota // waiting for input
	rootWaking         // a packet arrived: its timer fires at the next multiple of ReadWake
	rootReading        // dispatching a read (RootCost per packet)
)

// batchEnd, in a unit's queue, ends a batch the root flushed (controls are ^index > MinInt32).
const batchEnd int32 = math.MinInt32

// Pipeline event kinds (after evDone and evState).
const (
	evRoot  = iota + 16 // the root's read ends: flush the units' batches, read again
	evBatch             // a flushed batch reaches its unit
	evOut               // a unit's served batch reaches the egress (arg: its outputs)
)

// transit is a batch the root flushed, on its way to the unit: its entries (at the front of
// the unit's tq) and when it left the root.
type transit struct {
	n  int32
	at int64
}

// pipeUnit is a unit's side of the pipeline.
type pipeUnit struct {
	tq           ring          // the entries of the batches in transit, then of the open batch
	tb           fifo[transit] // the batches in transit
	openE, openN int           // entries and packets of the open batch (the last of tq)
	stage        outq          // outputs of served batches on their way to the egress (dep: extra delay)
	// lastIn and lastSt are when the last batch and the last state sent to the unit arrive
	// (its channels keep their order).
	lastIn, lastSt int64
}

type shipment struct {
	st, to int32
	delay  int64
}

// simPipe is the simulator's pipeline state.
type simPipe struct {
	Pipeline
	rng       *rand.Rand
	mu, sigma float64
	rq        fifo[int32] // packets that arrived while the root was busy
	root      uint8       // rootIdle, rootWaking or rootReading
	idleSince int64       // when the root last began to wait for input
	readAt    int64       // when the current read started
	readN     int         // its packets
	slot      int32       // the packet being dispatched (its Send takes it)
	dirty     []int32     // units with an open batch
	outbox    []shipment
	lastEg    int64
	rel       []int64 // by slot: when the root released the packet
	latRel    durations
}

func newSimPipe(p Pipeline, seed uint64) *simPipe {
	pl := &simPipe{Pipeline: p, rng: rand.New(rand.NewPCG(seed, 0x4a4d0ff)), slot: -1}
	if p.Handoff > 0 && p.HandoffCV > 0 {
		pl.sigma = math.Sqrt(math.Log1p(p.HandoffCV * p.HandoffCV))
		pl.mu = math.Log(float64(p.Handoff)) - pl.sigma*pl.sigma/2
	}
	return pl
}

// handoff returns when a message sent at time at reaches a receiver whose last message
// arrives at last (a channel keeps its order). A hand-off is the receiver's wake-up: a
// message sent before the last one arrived rides with it, and a busy receiver takes it
// when it is free, with no hand-off.
func (s *sim) handoff(at, last int64, busy bool) int64 {
	switch {
	case at <= last:
		return last
	case busy:
		return at
	}
	return at + s.hop()
}

// hop draws a hand-off delay (ns).
func (s *sim) hop() int64 {
	pl := s.pl
	switch {
	case pl.Handoff <= 0:
		return 0
	case pl.sigma > 0:
		return int64(math.Exp(pl.mu+pl.sigma*pl.rng.NormFloat64()) + 0.5)
	default:
		return int64(pl.Handoff)
	}
}

func (s *sim) pipeUnit(u *simUnit) *pipeUnit {
	if u.pu == nil {
		u.pu = &pipeUnit{}
	}
	return u.pu
}

// pipeArrive: packet p arrived at the root, now. An idle root wakes for it (ReadWake); a
// busy one reads it next, unless the read started as it arrived (it was there to be read).
func (s *sim) pipeArrive(p *packet.Packet) {
	idx := s.alloc()
	s.pkts[idx], *p = *p, s.pkts[idx] // take p's buffer; p gets the slot's old one
	s.arr[idx] = s.now
	pl := s.pl
	switch pl.root {
	case rootReading:
		if s.now == pl.readAt && pl.readN < s.cfg.Batch && pl.rq.Len() == 0 {
			s.pipeDispatch(idx)
			pl.readN++ // the read ends later (evRoot checks)
			return
		}
	case rootIdle:
		if rw := int64(pl.ReadWake); rw > 0 && s.now > pl.idleSince {
			// The root's timer fires at a multiple of ReadWake after it started waiting.
			pl.root = rootWaking
			s.schedule(pl.idleSince+(s.now-pl.idleSince+rw-1)/rw*rw, evRoot, 0, 0)
		} else {
			pl.rq.Push(idx)
			s.pipeRead()
			return
		}
	}
	pl.rq.Push(idx)
}

// pipeRead starts a read now: the root dispatches the packets waiting (up to Batch) and
// flushes the units' batches when it is done.
func (s *sim) pipeRead() {
	pl := s.pl
	pl.root, pl.readAt, pl.readN = rootReading, s.now, 0
	for pl.rq.Len() > 0 && pl.readN < s.cfg.Batch {
		s.pipeDispatch(pl.rq.Pop())
		pl.readN++
	}
	if pl.RootCost <= 0 {
		s.pipeEndRead()
		return
	}
	s.schedule(s.now+int64(pl.readN)*int64(pl.RootCost), evRoot, 0, 0)
}

// pipeDispatch runs the root on packet slot e (its Send takes the slot).
func (s *sim) pipeDispatch(e int32) {
	pl := s.pl
	pl.slot = e
	s.r.Dispatch(&s.pkts[e], s)
	if pl.slot >= 0 { // not sent (the root sends every packet: defensive)
		s.free = append(s.free, pl.slot)
		pl.slot = -1
	}
}

// pipeEndRead ends the root's read now: every open batch leaves; the root reads again if
// packets wait (they are due: no wake-up), else it waits for input.
func (s *sim) pipeEndRead() {
	pl := s.pl
	if pl.root == rootReading {
		if end := pl.readAt + int64(pl.readN)*int64(pl.RootCost); end > s.now {
			s.schedule(end, evRoot, 0, 0) // packets joined the read after it was scheduled
			return
		}
	}
	for _, u := range pl.dirty {
		s.pipeFlush(s.units[u], s.now)
	}
	pl.dirty = pl.dirty[:0]
	if pl.rq.Len() > 0 {
		s.pipeRead()
		return
	}
	pl.root, pl.idleSince = rootIdle, s.now
}

// pipeSend implements Send with the pipeline: the packet being dispatched joins unit ui's
// open batch.
func (s *sim) pipeSend(ui int) {
	u := s.unit(ui)
	pl := s.pl
	e := pl.slot
	pl.slot = -1
	if u.queued >= s.cfg.QueueLimit {
		s.dropped++
		s.free = append(s.free, e)
		return
	}
	u.queued++
	s.pool.Units[ui].Backlog = float64(u.queued) // the batches in transit count: they are sent
	s.pipeEntry(u, e)
	if u.pu.openN >= s.cfg.Batch {
		s.pipeFlush(u, s.now) // a full batch leaves at once
	}
}

// pipeEntry adds an entry (a packet slot, or ^control) to u's open batch.
func (s *sim) pipeEntry(u *simUnit, e int32) {
	pu := s.pipeUnit(u)
	if pu.openE == 0 {
		s.pl.dirty = append(s.pl.dirty, int32(u.id))
	}
	pu.tq.Push(e)
	pu.openE++
	if e >= 0 {
		pu.openN++
	}
}

// pipeFlush sends u's open batch, released by the root at time at.
func (s *sim) pipeFlush(u *simUnit, at int64) {
	pu := u.pu
	if pu == nil || pu.openE == 0 {
		return
	}
	pu.lastIn = s.handoff(at, pu.lastIn, u.busyUntil > at)
	arrive := pu.lastIn
	pu.tb.Push(transit{n: int32(pu.openE), at: at})
	pu.openE, pu.openN = 0, 0
	s.schedule(arrive, evBatch, int32(u.id), 0)
}

// pipeEvent handles the pipeline's events.
func (s *sim) pipeEvent(e event) {
	switch e.kind {
	case evRoot:
		if s.pl.root == rootWaking {
			s.pipeRead()
		} else {
			s.pipeEndRead()
		}
	case evBatch:
		u := s.units[e.unit]
		pu := u.pu
		b := pu.tb.Pop()
		for range b.n {
			x := pu.tq.Pop()
			if x >= 0 {
				s.pl.rel[x] = b.at
			}
			u.q.Push(x)
		}
		u.q.Push(batchEnd)
		s.kick(u)
	case evOut:
		u := s.units[e.unit]
		pl := s.pl
		// One channel to the egress: batches reach it in the order they were sent, one after
		// the other (a batch riding with the previous one comes 1ns after it, so that the
		// egress, which breaks ties by unit, keeps that order).
		pl.lastEg = max(s.handoff(s.now, pl.lastEg, false), pl.lastEg+1)
		for range e.arg {
			o := u.pu.stage.Pop()
			u.outs.Push(output{slot: o.slot, dep: pl.lastEg + o.dep})
		}
		if u.outs.Len() > 0 && u.heapPos < 0 {
			s.eheapPush(u)
		}
	}
}

// pipeServe serves one batch of u now: the packets a state released (prio), else the next
// batch of its queue. Its outputs and the states it shipped leave when it ends.
func (s *sim) pipeServe(u *simUnit) {
	pl := s.pl
	pu := s.pipeUnit(u)
	cursor := s.now + int64(pl.BatchCost)
	n0 := pu.stage.Len()
	if u.prio.Len() > 0 {
		for u.prio.Len() > 0 {
			e := u.prio.Pop()
			if e < 0 {
				s.control(u, ^e, cursor)
				continue
			}
			cursor += s.draw()
			s.process(u, e, 0)
		}
	} else {
		for {
			e := u.q.Pop()
			if e == batchEnd {
				break
			}
			if e < 0 {
				s.control(u, ^e, cursor)
				continue
			}
			u.queued--
			if s.hold(u, e) {
				continue
			}
			cursor += s.draw()
			s.process(u, e, 0)
		}
	}
	u.busyUntil = cursor
	s.pool.Units[u.id].Backlog = float64(u.queued)
	if n := pu.stage.Len() - n0; n > 0 {
		s.schedule(cursor, evOut, int32(u.id), int32(n))
	}
	for _, sh := range pl.outbox {
		to := s.pipeUnit(s.units[sh.to])
		if at := cursor + sh.delay; at > to.lastSt {
			to.lastSt = at + s.hop() + s.hop() // to the forwarder, then to the unit
		}
		s.schedule(to.lastSt, evState, sh.to, sh.st)
	}
	pl.outbox = pl.outbox[:0]
}

// CalibratePipeline measures a Pipeline for spec on this machine, with the live engine's
// own code:
//
//   - RootCost: the root's time per packet (root.Dispatch and the copy into a unit's batch)
//     on generated traffic, the median of 3;
//   - BatchCost: the extra time of spec's chain per batch: one packet per batch against
//     batches of DefaultBatch, the median of 3;
//   - ReadWake: how long a sleep of 50µs takes (a paced replay's reader sleeps until its next
//     packet is due), the median of 21;
//   - Handoff and HandoffCV: RunLive with spec's chain on one unit, generated traffic paced
//     at rate packets/s (low enough that nothing queues), five runs of d/5. A packet's
//     latency there is one batch of its own between two hand-offs (root → unit, unit →
//     egress): the median over the runs of the p50 and of the p99 (a run's tail on a shared
//     machine swings with the other processes' load), less the batch's work measured hot
//     (BatchCost and a packet's service, Calibrate), are fitted with the sum of two
//     independent lognormal hand-offs of one distribution. The hand-off thus also carries
//     what the chain costs on cold caches after an idle gap.
//
// It also returns the live latency it fitted (the median of each percentile over the runs).
// It takes about d (the live runs are paced).
func CalibratePipeline(spec *snf.ChainSpec, rate float64, d time.Duration) (Pipeline, Percentiles, error) {
	var p Pipeline
	if !(rate > 0) || d <= 0 {
		return p, Percentiles{}, errors.New("engine: CalibratePipeline: rate and duration must be > 0")
	}
	var roots, batches, speeds []float64
	for range 3 {
		r, err := rootCost(spec, 20000)
		if err != nil {
			return p, Percentiles{}, err
		}
		b, err := batchCost(spec, 20000)
		if err != nil {
			return p, Percentiles{}, err
		}
		c, err := Calibrate(spec, 20000)
		if err != nil {
			return p, Percentiles{}, err
		}
		roots, batches, speeds = append(roots, float64(r)), append(batches, float64(b)), append(speeds, c)
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	p.RootCost, p.BatchCost = time.Duration(median(roots)), time.Duration(median(batches))
	var sleeps []float64
	for range 21 {
		t := time.Now()
		time.Sleep(50 * time.Microsecond)
		sleeps = append(sleeps, float64(time.Since(t)))
	}
	p.ReadWake = time.Duration(median(sleeps))
	work := float64(p.BatchCost) + 1e9/median(speeds) // a batch of one packet, hot

	var p50s, p99s, p999s []float64
	for range 5 {
		pol, err := policy.New("static", policy.Options{StaticUnits: 1, Seed: 1})
		if err != nil {
			return p, Percentiles{}, err
		}
		gc := trace.DefaultGenConfig()
		gc.Packets, gc.Flows, gc.Rate = max(1, int(rate*d.Seconds()/5)), 200, rate
		g, err := trace.NewGenerator(gc)
		if err != nil {
			return p, Percentiles{}, err
		}
		s, err := RunLive(context.Background(), LiveConfig{Spec: spec, In: port.Paced(g, 1, nil, nil), Policy: pol,
			MinUnits: 1, MaxUnits: 1, Capacity: 1e9, FlowletGap: 5 * time.Millisecond})
		if err != nil {
			return p, Percentiles{}, err
		}
		p50s, p99s, p999s = append(p50s, float64(s.Latency.P50)), append(p99s, float64(s.Latency.P99)), append(p999s, float64(s.Latency.P999))
	}
	lat := Percentiles{time.Duration(median(p50s)), time.Duration(median(p99s)), time.Duration(median(p999s))}
	// The percentiles are their histogram buckets' lower bounds: take the buckets' middles.
	mid := func(v time.Duration) float64 { return (float64(v) + float64(bucketValue(bucketOf(v)+1))) / 2 }
	p.Handoff, p.HandoffCV = fitHandoff(mid(lat.P50)-work, mid(lat.P99)-work)
	return p, lat, nil
}

// fitHandoff returns the mean and coefficient of variation of a lognormal hand-off such
// that the sum of two independent ones has median p50 and 99th percentile p99 (ns).
func fitHandoff(p50, p99 float64) (time.Duration, float64) {
	if !(p50 > 0) {
		return 0, 0
	}
	p99 = max(p99, p50)
	const n = 4000
	rng := rand.New(rand.NewPCG(1, 2))
	z := make([]float64, 2*n)
	for i := range z {
		z[i] = rng.NormFloat64()
	}
	sum := make([]float64, n)
	quantiles := func(sigma float64) (q50, q99 float64) {
		for i := range sum {
			sum[i] = math.Exp(sigma*z[2*i]) + math.Exp(sigma*z[2*i+1])
		}
		slices.Sort(sum)
		return sum[n/2], sum[n*99/100]
	}
	lo, hi := 0.0, 4.0
	for range 40 {
		sigma := (lo + hi) / 2
		if q50, q99 := quantiles(sigma); q99/q50 < p99/p50 {
			lo = sigma
		} else {
			hi = sigma
		}
	}
	sigma := (lo + hi) / 2
	q50, _ := quantiles(sigma)
	median := p50 / q50 // one hand-off's median, exp(mu)
	return time.Duration(median*math.Exp(sigma*sigma/2) + 0.5), math.Sqrt(math.Expm1(sigma * sigma))
}

// rootCost measures the root's time per packet: Dispatch to one unit and the copy into its
// batch, as RunLive's root goroutine does.
func rootCost(spec *snf.ChainSpec, packets int) (time.Duration, error) {
	chain, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		return 0, err
	}
	defer chain.Close()
	pol, err := policy.New("perflow", policy.Options{Seed: 1})
	if err != nil {
		return 0, err
	}
	pool := &policy.Pool{Target: 0.8, Units: []policy.UnitView{{ID: 0, Active: true, Capacity: 1e9}}}
	r := root.New(root.Config{Policy: pol, Pool: pool, FlowletGap: 5 * time.Millisecond, Timeouts: chain.FlowTimeouts(),
		ByInitiator: len(chain.Scopes()) > 0})
	frames := calibrationFrames(packets)
	batch := make([]packet.Packet, DefaultBatch)
	t := &copyTarget{b: unit.NewBatch(DefaultBatch, nil).Pkts}
	start := time.Now()
	for i := 0; i < len(frames); i += len(batch) {
		n := min(len(batch), len(frames)-i)
		for j := range n {
			batch[j].SetData(frames[i+j], int64(i+j)*1000, 0)
			r.Dispatch(&batch[j], t)
		}
	}
	return time.Since(start) / time.Duration(max(1, len(frames))), nil
}

// copyTarget takes the root's packets into a batch, as RunLive's Send does.
type copyTarget struct {
	b []packet.Packet
	n int
}

func (t *copyTarget) Send(_ int, p *packet.Packet) {
	t.b[t.n].CopyFrom(p)
	if t.n++; t.n == len(t.b) {
		t.n = 0
	}
}
func (t *copyTarget) Handover(packet.Key, uint64, int, int) {}
func (t *copyTarget) ScaleOut() int                         { return -1 }

// batchCost measures spec's chain's extra time per batch (expiring idle flows, entering and
// leaving Process): packets one per batch against DefaultBatch per batch, on a warm chain.
func batchCost(spec *snf.ChainSpec, packets int) (time.Duration, error) {
	chain, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		return 0, err
	}
	defer chain.Close()
	c := newCalibration(chain, packets)
	c.pass(DefaultBatch, true) // warm: the flows exist
	one, full := c.pass(1, true), c.pass(DefaultBatch, true)
	extra := float64(one-full) / float64(len(c.frames)) * DefaultBatch / (DefaultBatch - 1)
	return time.Duration(max(0, extra) + 0.5), nil
}
