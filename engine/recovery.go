package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/replay"
	"github.com/snf-dev/snf/root"
	"github.com/snf-dev/snf/unit"
)

// Recovery (LiveConfig.Recovery): the root logs every batch it sends a unit (replay.Log),
// units checkpoint their state to the store in the background (replay.Writer), and a unit
// that fails — killed, or stalled past FailTimeout with work waiting — is replaced by a new
// unit in its slot (same id: its flows stay where the root sent them, and its store tags are
// the same): the new unit restores the failed one's latest checkpoint and the root replays
// the failed unit's batches after it, with their handover controls; the states it expected
// are delivered again. Duplicates are invisible: the store drops operations it applied
// before (same unit, clock and sequence), the egress drops outputs of packets it wrote
// before (by clock), a unit's mailbox drops states of handovers it delivered before.

// FaultKind is what a Fault does.
type FaultKind uint8

const (
	// FaultKill stops the unit at its next batch: its queue and its state are lost.
	FaultKill FaultKind = iota + 1
	// FaultStall makes the unit sleep for Fault.For before its next batch; past the run's
	// FailTimeout it is declared failed and replaced (a straggler's flows move on without it).
	FaultStall
	// FaultCall calls Fault.Do (on the root's goroutine: it must not block long): a test's
	// own failure, such as restarting the store.
	FaultCall
	// FaultScale is a forced scale event: Fault.Scale > 0 makes that many more units take
	// work at once (control.Controller.ForceScaleOut: draining units taken back, then
	// inactive ones activated, up to the pool's size; no per-tick limit, no load gate);
	// Fault.Scale < 0 marks that many units taking work draining at once (ForceScaleIn;
	// one always keeps taking work) and, under a policy that moves flows, moves all their
	// flows away now, running flowlets too (root.Evacuate with busy). Under the other
	// policies the drained units keep their flows and only stop taking new ones.
	FaultScale
	// FaultMove moves every flow of Fault.Unit to the other units taking work now, running
	// flowlets too (a forced flowlet move; the unit keeps taking work). Only under a policy
	// that moves flows (snf); flows of an initiator group (Scoped state) stay.
	FaultMove
)

// Fault is a failure injected into a run (tests, `snf run --fail`).
type Fault struct {
	Kind FaultKind
	Unit int
	// AtPacket: the fault happens just before the root dispatches this packet (1 is the
	// first). Zero: at AtTime of capture time after the first packet.
	AtPacket uint64
	AtTime   time.Duration
	For      time.Duration // FaultStall: how long
	Do       func()        // FaultCall
	Scale    int           // FaultScale: units to activate (> 0) or drain (< 0)
}

func (f Fault) String() string {
	at := strconv.FormatUint(f.AtPacket, 10)
	if f.AtPacket == 0 {
		at = f.AtTime.String()
	}
	switch f.Kind {
	case FaultStall:
		return fmt.Sprintf("stall=%d@%s/%s", f.Unit, at, f.For)
	case FaultCall:
		return "call@" + at
	case FaultScale:
		return fmt.Sprintf("scale=%+d@%s", f.Scale, at)
	case FaultMove:
		return fmt.Sprintf("move=%d@%s", f.Unit, at)
	}
	return fmt.Sprintf("unit=%d@%s", f.Unit, at)
}

// ParseFault parses a fault: "unit=K@N" kills unit K just before packet N (1-based) or, with
// a unit of time ("unit=K@1.5s"), at that capture time after the first packet;
// "stall=K@N/D" stalls unit K for D there; "scale=+K@N" makes K more units take work at
// once, "scale=-K@N" drains K units at once (FaultScale); "move=K@N" moves every flow of
// unit K (FaultMove). Errors are one line.
func ParseFault(s string) (Fault, error) {
	bad := func(why string) (Fault, error) {
		return Fault{}, fmt.Errorf("fault %q: %s (want unit=K@N, unit=K@1.5s, stall=K@N/50ms, scale=+K@N, scale=-K@N or move=K@N)", s, why)
	}
	var f Fault
	kind, rest, ok := strings.Cut(s, "=")
	switch {
	case !ok:
		return bad("no '='")
	case kind == "unit":
		f.Kind = FaultKill
	case kind == "move":
		f.Kind = FaultMove
	case kind == "scale":
		f.Kind = FaultScale
	case kind == "stall":
		f.Kind = FaultStall
		var d string
		if rest, d, ok = strings.Cut(rest, "/"); !ok {
			return bad("a stall needs its duration after '/'")
		}
		v, err := time.ParseDuration(d)
		if err != nil || v <= 0 {
			return bad("bad duration " + strconv.Quote(d))
		}
		f.For = v
	default:
		return bad("unknown kind " + strconv.Quote(kind))
	}
	u, at, ok := strings.Cut(rest, "@")
	if !ok {
		return bad("no '@'")
	}
	if f.Kind == FaultScale {
		if len(u) < 2 || (u[0] != '+' && u[0] != '-') || u[1] < '0' || u[1] > '9' {
			return bad("a scale event is +K or -K units, got " + strconv.Quote(u))
		}
		k, err := strconv.Atoi(u[1:])
		if err != nil || k < 1 || k > 1<<16 {
			return bad("bad scale " + strconv.Quote(u) + ": want +K or -K, K from 1 to 65536")
		}
		if f.Scale = k; u[0] == '-' {
			f.Scale = -k
		}
	} else {
		k, err := strconv.Atoi(u)
		if err != nil || k < 0 || u[0] < '0' || u[0] > '9' {
			return bad("bad unit " + strconv.Quote(u))
		}
		f.Unit = k
	}
	if n, err := strconv.ParseUint(at, 10, 64); err == nil {
		if n == 0 {
			return bad("packets count from 1")
		}
		f.AtPacket = n
		return f, nil
	}
	d, err := time.ParseDuration(at)
	if err != nil || d < 0 {
		return bad("bad position " + strconv.Quote(at) + ": a packet number or a capture time")
	}
	f.AtTime = d
	return f, nil
}

// due reports whether f happens before the packet with index idx (1-based) at capture time
// t since the first packet.
func (f *Fault) due(idx uint64, t time.Duration) bool {
	if f.AtPacket != 0 {
		return idx >= f.AtPacket
	}
	return t >= f.AtTime
}

// applyFaults applies the faults due before packet idx at capture time t; r is the root
// (scale events and moves hand flows over).
func (l *live) applyFaults(idx uint64, t time.Duration, r *root.Root) error {
	for i := 0; i < len(l.faults); i++ {
		f := l.faults[i] // a copy: the slice shifts below
		if !f.due(idx, t) {
			continue
		}
		l.faults = append(l.faults[:i], l.faults[i+1:]...)
		i--
		switch f.Kind {
		case FaultCall:
			if f.Do != nil {
				f.Do()
			}
			continue
		case FaultScale:
			if f.Scale > 0 {
				l.ctl.ForceScaleOut(l.pool, f.Scale)
				continue
			}
			for _, u := range l.ctl.ForceScaleIn(l.pool, -f.Scale) {
				if l.mover {
					r.Evacuate(u, l.now, l, true)
				}
			}
			continue
		}
		if f.Unit >= len(l.units) {
			return fmt.Errorf("fault %s: no unit %d (the pool has %d)", f, f.Unit, len(l.units))
		}
		if (f.Kind == FaultKill || f.Kind == FaultStall) && !l.pool.Units[f.Unit].Active {
			l.faultsIdle = append(l.faultsIdle, f)
		}
		switch f.Kind {
		case FaultKill:
			if err := l.recover(f.Unit, "killed"); err != nil {
				return err
			}
		case FaultStall:
			l.units[f.Unit].u.Stall(f.For)
		case FaultMove:
			// The policy places each flow as for a draining unit: elsewhere, where it fits.
			if v := &l.pool.Units[f.Unit]; l.mover && v.Active && !v.Draining {
				v.Draining = true
				r.Evacuate(f.Unit, l.now, l, true)
				v.Draining = false
			}
		}
	}
	return nil
}

// logBatch logs b (its Seq set). It returns whether the log went past its bound: the caller
// sends b on, then waits for room (waitRoom) before dispatching more. b is logged even then:
// it may carry the handover Marker a unit waits for, and a unit waiting for a state cannot
// checkpoint — holding b back could hold the log full for ever.
func (l *live) logBatch(b *unit.Batch) (full bool) {
	l.logged(b)
	ok := l.log.Append(b)
	if !ok {
		l.log.Force(b)
	}
	return !ok
}

// waitRoom waits until the log is back within its bound: it sends on the other units'
// batches that carry handover controls (once each: the root dispatches nothing meanwhile),
// asks the unit whose batch holds the log's head for a checkpoint, and watches for failed
// units. The log thus exceeds its bound by at most one batch per unit.
func (l *live) waitRoom() error {
	for l.log.Over() {
		l.logWaits++
		for v, lv := range l.units {
			if lv.cur != nil && len(lv.cur.Ctl) > 0 {
				l.number(v, lv.cur)
				l.logged(lv.cur)
				l.log.Force(lv.cur)
				lv.cur.Stamp = time.Now().UnixNano()
				lv.u.In <- lv.cur
				l.sentB[v]++
				lv.cur = nil
			}
		}
		l.updateCovered()
		if !l.log.Over() {
			break
		}
		if v := l.log.Blocking(); v >= 0 && time.Since(l.ckAsked[v]) > time.Millisecond {
			l.requestCheckpoint(v)
		}
		if err := l.checkFailures(time.Now()); err != nil {
			return err
		}
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

// updateCovered trims the log to what the units' durable checkpoints cover.
//
// A batch leaves the log once its unit's durable checkpoints cover it and the egress is done
// with it: the frames the log lent it are read until then (the unit rewrites them, the
// egress writes them out). Frames lent to a failed unit are held until it ended and the
// egress is done with every batch it sent (zombie).
func (l *live) updateCovered() {
	for u, w := range l.writers {
		// (The egress's mark, on a cache line it writes per batch, is read only when the
		// checkpoints moved past what is covered: every few ms, not every batch read.)
		if d := w.Durable(); d > l.log.CoveredAt(u) {
			l.log.Covered(u, min(d, l.egressed[u].Load()))
		}
	}
	if len(l.zombies) > 0 {
		hold := ^uint64(0)
		k := 0
		for _, z := range l.zombies {
			if z.lu.ended.Load() && z.drain == 0 {
				// Its last batches may wait in the egress's queue still, borrowing the
				// frames: they are written once the egress took as many more batches as
				// the queue holds now (and the one it may be writing). (The queue's
				// length first: batches queued meanwhile only raise the mark.)
				q := uint64(len(l.egress))
				z.drain = l.egressTaken.Load() + q + 1
			}
			if z.drain != 0 && l.egressTaken.Load() >= z.drain && l.egressed[z.slot].Load() >= z.sent {
				continue
			}
			l.zombies[k] = z
			k++
			hold = min(hold, z.low)
		}
		l.zombies = l.zombies[:k]
		l.log.Hold(hold)
		if l.lend != nil {
			l.lend.hold = hold
		}
	}
}

// zombie is a failed unit that may still rewrite frames the log lent it: one stalled in the
// middle of a batch goes on with it when it wakes (its outputs are then dropped at the
// egress as duplicates of its replacement's, or written first). Its frames — from low on in
// the log's arena — are held until it ended, the egress is done with every batch it sent
// (drain: the egress's count of batches taken that says so; 0 until it ended) and with
// every batch of its slot up to the last sent to it (Seq ≤ sent).
type zombie struct {
	lu    *liveUnit
	slot  int
	sent  uint64
	low   uint64
	drain uint64
}

// nudgeHead asks the unit whose batch holds the log's head for a checkpoint when its
// checkpoints have not moved for two intervals: a unit takes them as it processes batches,
// so one that went idle (drained, or its flows ended) would hold the log — and its arena —
// growing behind its last batch until the bound.
func (l *live) nudgeHead(now time.Time) {
	v := l.log.Blocking()
	if v < 0 {
		return
	}
	h := &l.head
	if c := l.log.CoveredAt(v); v != h.unit || c != h.cov || h.since.IsZero() {
		h.unit, h.cov, h.since = v, c, now
		return
	}
	if now.Sub(h.since) >= 2*l.cfg.Checkpoint && now.Sub(l.ckAsked[v]) >= l.cfg.Checkpoint {
		l.requestCheckpoint(v)
	}
}

// requestCheckpoint sends unit v an empty batch asking for a checkpoint (if one of its
// batches is free: otherwise it has work queued, and the next try asks again).
func (l *live) requestCheckpoint(v int) {
	lv := l.units[v]
	if lv.closed {
		return
	}
	select {
	case b := <-lv.free:
		b.Reset()
		b.Unit, b.Checkpoint = v, true // Now 0: no expiry (it is not part of the unit's input)
		b.Stamp = time.Now().UnixNano()
		lv.u.In <- b
		l.sentB[v]++
		l.ckAsked[v] = time.Now()
	default:
	}
}

// onTrim forgets the states of handovers a checkpoint now covers.
func (l *live) onTrim(e *replay.Entry) {
	for i := range e.Ctl {
		c := &e.Ctl[i]
		switch c.Kind {
		case unit.Expect:
			l.mail[e.Unit].consumed(c.Hid)
		case unit.Marker:
			l.mail[c.Peer].settled(c.Hid)
		}
	}
}

// checkFailures declares failed the units that have work waiting and made no progress for
// FailTimeout, and recovers them.
func (l *live) checkFailures(now time.Time) error {
	for u, lu := range l.units {
		// Stalled: batches sent it are waiting, and it made no progress — no batch, none of
		// a batch's controls (a drain's batch carries one per idle flow), no state received,
		// none of its chain's bulk work (a full record of many flows) — for FailTimeout.
		p, w := lu.u.Processed(), lu.u.Progress()
		if l.sentB[u] <= p || w != l.lastProg[u] {
			l.lastProg[u], l.stuckSince[u] = w, time.Time{}
			continue
		}
		if l.stuckSince[u].IsZero() {
			l.stuckSince[u] = now
			continue
		}
		if now.Sub(l.stuckSince[u]) > l.cfg.FailTimeout {
			if err := l.recover(u, "stalled"); err != nil {
				return err
			}
		}
	}
	return nil
}

// recover replaces unit u: the old one stops, a new one in its slot restores the latest
// checkpoint and gets the batches logged after it.
func (l *live) recover(u int, why string) error {
	start := time.Now()
	old := l.units[u]
	// From here on the egress checks the slot's outputs against those written before: the
	// replacement's replay, and the old unit's late batches (before any of them exists).
	l.replaced[u].Store(true)
	l.genMu.Lock() // from here on, states the old unit sends are dropped
	l.gen[u]++
	old.u.Kill()
	l.genMu.Unlock()
	l.stopForwarder(u)
	if !old.closed { // (closed already when the input ended: waitUnits)
		close(old.u.In) // the old goroutine hands its queued batches back and ends
		old.closed = true
	}
	_ = l.writers[u].Close()
	// What the store acknowledged: the last writer's records, or what an earlier writer of
	// the slot got covered (a replacement that fails before its first record).
	durable := max(l.writers[u].Stats().Durable, l.log.CoveredAt(u))

	// Load the records; while the store is out of reach a read may serve an older head: load
	// again until the records reach the position the store acknowledged.
	var (
		chain *snf.Chain
		pos   uint64
	)
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		chain, pos, err = l.restore(u)
		if err == nil && pos >= durable {
			break
		}
		if chain != nil {
			chain.Close()
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("the store holds checkpoints up to batch %d, it acknowledged %d", pos, durable)
			}
			return fmt.Errorf("recover unit %d (%s): %w", u, why, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.oldChains = append(l.oldChains, old.chain)
	nu, err := l.newUnit(u, chain)
	if err != nil {
		return err
	}
	nu.u.SetPosition(pos)
	nu.u.Gen = l.gen[u]
	// Fresh batches: the old unit may hold its own for a while (a straggler wakes up later to
	// hand them back), and the replay must not wait for them. The batch being filled goes
	// to the new unit.
	nu.free, nu.cur = make(chan *unit.Batch, batchesPerUnit), old.cur
	for range batchesPerUnit {
		nu.free <- unit.NewBatch(l.cfg.Batch, nu.free)
	}
	l.units[u] = nu
	// The frames lent to the old unit after its checkpoint (by the log, or the lender): it
	// may be rewriting them still.
	if low := min(l.log.LowSince(u, pos), l.lend.abandon(u)); low != ^uint64(0) {
		l.zombies = append(l.zombies, zombie{lu: old, slot: u, sent: l.seqs[u], low: low})
	}
	l.log.Covered(u, min(pos, l.egressed[u].Load()))
	l.updateCovered()
	// The states the restored checkpoint already took in are not needed again.
	l.log.Until(u, pos, func(e *replay.Entry) {
		for i := range e.Ctl {
			if e.Ctl[i].Kind == unit.Expect {
				l.mail[u].consumed(e.Ctl[i].Hid)
			}
		}
	})
	l.mail[u].restart()
	l.startUnit(u)
	l.failAt[u].Store(start.UnixNano())
	l.failures++
	l.sentB[u], l.lastProg[u], l.stuckSince[u] = 0, 0, time.Time{}
	n := 0
	var ferr error
	l.log.Since(u, pos, func(e *replay.Entry) {
		if ferr != nil {
			return
		}
		b := <-nu.free
		if ferr = e.Fill(b); ferr != nil { // the input no longer holds a frame: no replay
			nu.free <- b
			return
		}
		b.Replay = true
		b.Stamp = time.Now().UnixNano()
		nu.u.In <- b
		l.sentB[u]++
		n += b.N
	})
	if l.closing {
		// The input ended (waitUnits): the replacement gets nothing after its replay — nor,
		// when the replay failed, anything at all: its input closed, it ends, and waitUnits,
		// which waits for every unit, returns the error.
		if nu.cur != nil && ferr == nil {
			l.flush(u)
		}
		close(nu.u.In)
		nu.closed = true
	}
	if ferr != nil {
		return fmt.Errorf("unit %d failed and its packets cannot be replayed: %w", u, ferr)
	}
	l.replayed += uint64(n)
	if n == 0 {
		l.failAt[u].Store(0) // nothing to replay: recovered at once
		l.recTimes.add(time.Since(start))
	}
	return nil
}

// restore builds slot u's chain from the checkpoints in the store, and returns it with the
// position (batch Seq) they reflect.
func (l *live) restore(u int) (*snf.Chain, uint64, error) {
	chain, err := l.newChain(u)
	if err != nil {
		return nil, 0, err
	}
	recs, err := replay.Load(l.ckTable, u)
	if err != nil {
		return chain, 0, err
	}
	var pos uint64
	crs := make([][]byte, len(recs))
	for i, r := range recs {
		p, cr, ok := unit.SplitRecord(r)
		if !ok {
			return chain, 0, errors.New("a checkpoint record is truncated")
		}
		crs[i], pos = cr, p
	}
	if err := chain.RestoreAll(crs); err != nil {
		return chain, 0, err
	}
	return chain, pos, nil
}

// stopForwarder stops slot u's mailbox forwarder, if it runs, and waits for it.
func (l *live) stopForwarder(u int) {
	select {
	case <-l.quit[u]:
		return // stopped before
	default:
	}
	close(l.quit[u])
	<-l.fwdDone[u]
}

// newChain builds unit slot u's chain.
func (l *live) newChain(u int) (*snf.Chain, error) {
	return snf.NewChain(l.cfg.Spec, snf.ChainOptions{Store: l.st, Unit: uint32(u), Alerts: l.cfg.Alerts,
		MaxFlows: l.cfg.MaxFlows, ReportAliases: true, Checkpoints: l.cfg.Checkpoint > 0})
}

// errNoRecovery is returned by faults in a run without recovery.
var errNoRecovery = errors.New("faults need LiveConfig.Recovery (snf run --fail turns it on)")

// alertDedup passes each alert on once: a replayed packet raises its alerts again. An alert
// is known by its packet's clock, NF, rule and flow. Memory is bounded: two generations of
// at most gen alerts; a generation holds the alerts of at least as many packets as a replay
// can repeat (the log's bound and the batches in flight), so that nothing a replay repeats
// has left both.
type alertDedup struct {
	next      snf.AlertSink
	mu        sync.Mutex
	cur, prev map[alertKey]struct{}
	gen       int
	dups      uint64
}

type alertKey struct {
	clock    uint64
	nf, rule string
	flow     packet.Key
}

func (d *alertDedup) Alert(a *snf.Alert) {
	k := alertKey{a.Clock, a.NF, a.Rule, a.Flow}
	d.mu.Lock()
	_, seen := d.cur[k]
	if !seen {
		_, seen = d.prev[k]
	}
	if seen {
		d.dups++
		d.mu.Unlock()
		return
	}
	if len(d.cur) >= d.gen {
		d.prev, d.cur = d.cur, make(map[alertKey]struct{})
	}
	d.cur[k] = struct{}{}
	d.mu.Unlock()
	if d.next != nil {
		d.next.Alert(a)
	}
}
