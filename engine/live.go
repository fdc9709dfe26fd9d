package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/control"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/replay"
	"github.com/snf-dev/snf/root"
	"github.com/snf-dev/snf/store"
	"github.com/snf-dev/snf/trace"
	"github.com/snf-dev/snf/unit"
)

// LiveConfig configures an elastic run: a root dispatching to goroutine units.
type LiveConfig struct {
	Spec   *snf.ChainSpec
	In     port.Reader
	Out    port.Writer // nil discards
	Policy policy.Policy
	// MinUnits and MaxUnits bound the pool (static runs all MaxUnits).
	MinUnits, MaxUnits int
	FlowletGap         time.Duration
	Batch              int     // packets per batch (DefaultBatch if 0)
	Capacity           float64 // packets/s one unit sustains for this chain; 0 calibrates
	Target             float64 // utilisation a unit is filled to (default 0.8)
	Tick               time.Duration
	// MaxBacklog: a unit with more than this much work queued (batches waiting in its
	// channel, in time at Capacity) takes no new flowlet, and the pool may grow when every
	// unit is so (policy.Pool.MaxBacklog). 0: off.
	MaxBacklog time.Duration
	// BusyAfter: a unit draining for this many ticks has its running flowlets moved too
	// (control.Config.BusyAfter; 0: only idle flows move).
	BusyAfter int
	Store     store.Store
	Alerts    snf.AlertSink
	MaxFlows  int
	// Checkpoint, if positive, makes every unit write its state (flows and Scoped values) to
	// the store in the background at this interval (wall time), and once more at the end
	// (replay.Writer; table "runtime"/CheckpointTable).
	Checkpoint time.Duration
	// Recovery turns on the packet log, checkpoints (every Checkpoint, default 10 ms) and the
	// recovery of failed units (see recovery.go). LogBytes and LogPackets bound the log
	// (defaults 64 MiB of frames and 262,144 packets): at the bound the root waits for
	// checkpoints to free room (back-pressure, never loss); the log may exceed a bound by one
	// batch per unit (batches sent on while the root waits: they may carry a Marker a unit
	// awaits). From an input that can read its packets again (port.Rereader: memory, a
	// capture file opened by its path, a Rereadable generator, paced or not) the log keeps
	// their positions in it, and metadata — a generator keeps what builds each frame again
	// until the engine releases it (port.Releaser: at each tick, below the lowest position a
	// replay may need); from any other, the root reads packets into the log's arena (no copy
	// into the log), which takes memory as the log grows, up to 2×LogBytes + 1 MiB.
	// (port.Copied makes an input be taken as one read once.) Either way, and without
	// recovery, the units' batches borrow the frames where the root read them (the log's
	// arena, or the lender's: lend.go) — copies for a chain with a snf.FrameWriter.
	Recovery             bool
	LogBytes, LogPackets int
	// FailTimeout is how long a unit with work waiting may make no progress before it is
	// declared failed and replaced (default 100 ms; with Recovery only).
	FailTimeout time.Duration
	// Faults are failures to inject (they need Recovery).
	Faults []Fault
	// OnDone, if set, is called with every unit's chain after the run, before they close.
	OnDone func(chains []*snf.Chain)
	// KeepTimerSlack leaves the process's timer slack as it is. RunLive otherwise sets it
	// to 1 ns on Linux, for the threads it may (all of them with CAP_SYS_NICE, else the one
	// it runs on and those made from it), once per process: with the default 50 µs, a unit
	// woken by the root's batch runs tens of µs late (tightenTimerSlack).
	KeepTimerSlack bool
	// Progress, if set, is called from the root about every ProgressEvery (default 2 s) of
	// wall time while the input runs (a run's end is its summary).
	Progress      func(LiveProgress)
	ProgressEvery time.Duration
}

// slackOnce tightens the process's timer slack once (LiveConfig.KeepTimerSlack).
var slackOnce sync.Once

// LiveSummary is what an elastic run did.
type LiveSummary struct {
	Packets, Written, Flows, Flowlets, Handovers, Reorders uint64
	// Evacuated counts the handovers (among Handovers) that moved idle flows off draining
	// units (and flows moved by forced scale events and moves: FaultScale, FaultMove).
	Evacuated uint64
	// Settled counts the handovers whose state the new unit installed (a run without
	// failures settles every one of Handovers; a failed unit's count is lost with it).
	Settled uint64
	Chain   snf.ChainStats // summed over units
	// Billed counts each packet once per NF it reached, as one chain does: a replacement
	// unit restores the failed one's counters with its state, and the packets replayed to
	// it are counted there, not twice.
	Billed             []NFBill
	UnitsMin, UnitsMax int
	UnitsMean          float64
	UnitSeconds        float64
	Elapsed            time.Duration
	Latency            Percentiles
	BytesMoved         uint64
	// Batches counts the batches the units processed, replayed ones and ones of controls
	// only too (a failed unit's count is lost with it): without failures, about
	// Packets/Batches packets went to a unit at once.
	Batches      uint64
	HandoverWait Percentiles // from state sent to state received
	// HeldWait is how long packets held for a handover waited for their flow's state.
	HeldWait Percentiles
	Held     uint64 // packets held for a handover
	Capacity float64
	// Checkpoints counts the records written to the store, their bytes, and failed writes.
	Checkpoints, CheckpointBytes, CheckpointErrors uint64
	// Failures counts units declared failed and replaced; Replayed the packets resent to
	// their replacements; Duplicates the outputs the egress dropped as already written;
	// StateDuplicates the handover states dropped as delivered before.
	Failures, Replayed, Duplicates, StateDuplicates uint64
	// AlertDuplicates counts alerts raised again by replayed packets (not passed on);
	// ZombieStates the states sent by units after they were replaced (dropped).
	AlertDuplicates, ZombieStates uint64
	// RecoveryTime is the time from a unit's failure to its replacement's first replayed
	// batch processed (written at the egress).
	RecoveryTime Percentiles
	// FaultsMissed are the Faults never injected: the run ended before their packet or
	// capture time (an input shorter than asked for, or a run stopped by an error).
	FaultsMissed []Fault
	// FaultsIdle are the kills and stalls injected into a unit the pool had not started
	// (not active): it held no flows, and the fault tested nothing.
	FaultsIdle []Fault
	// LogMaxBytes and LogMaxPackets are the packet log's high-water marks; LogWaits counts
	// the times the root waited for room in it.
	LogMaxBytes, LogMaxPackets int
	LogWaits                   uint64
	// LogArenaBytes is the memory of the log's arena (the root reads packets into it);
	// LogOverflows counts frames read while it was full (given memory of their own).
	LogArenaBytes int
	LogOverflows  uint64
	// LogPositions: the log kept the packets' positions in the input (port.Rereader), not
	// their frames.
	LogPositions bool
	// LogShortened counts the batches whose frames the log forgot once the egress wrote
	// them, keeping their headers (a chain that reads only headers: snf.HeaderReader, from
	// an input read once); LogTailed those of them some of whose payloads it kept, and
	// LogTailedPackets the packets whose payloads it kept: held for a handover, replayed, or
	// not lent (replay.LogStats).
	LogShortened, LogTailed, LogTailedPackets uint64
	// LendBytes is the memory of the arena the root read packets into to lend their frames to
	// the units' batches until the egress was done with them (0: it did not lend; see
	// lender); LendOverflows counts frames read while it was full (given memory of their own).
	LendBytes     int
	LendOverflows uint64
	LendFrames    uint64 // frames lent (the others were copied into the batches)
	// StoreReads and StoreWrites count per-packet flow-state accesses (perpacket policy).
	StoreReads, StoreWrites uint64
	Timeline                []Sample
	InputErr                error
}

// addChain adds a unit's chain's counters and billing to the summary.
func (s *LiveSummary) addChain(c *snf.Chain) {
	cs := c.Stats()
	s.Chain.In += cs.In
	s.Chain.Out += cs.Out
	s.Chain.Dropped += cs.Dropped
	s.Chain.Emitted += cs.Emitted
	s.Chain.Alerts += cs.Alerts
	s.Chain.NonIP += cs.NonIP
	s.Chain.Malformed += cs.Malformed
	s.bill(c)
}

// bill adds the packets c's NFs handled to the summary's billing.
func (s *LiveSummary) bill(c *snf.Chain) {
	for j, rep := range c.Report() {
		if j >= len(s.Billed) {
			s.Billed = append(s.Billed, NFBill{Name: rep.Name})
		}
		s.Billed[j].Packets += rep.Stats.In
	}
}

// setControl copies what the controller recorded.
func (s *LiveSummary) setControl(cs control.Summary) {
	s.UnitSeconds, s.UnitsMin, s.UnitsMax, s.UnitsMean, s.Timeline = cs.UnitSeconds, cs.UnitsMin, cs.UnitsMax, cs.UnitsMean, cs.Timeline
}

// NFBill is the packets billed to one NF instance (summed over units).
type NFBill struct {
	Name    string
	Packets uint64
}

// Sample is the pool at one controller tick.
type Sample = control.Sample

// Percentiles of a latency distribution.
type Percentiles struct{ P50, P99, P999 time.Duration }

// PPS returns packets per second of wall time.
func (s LiveSummary) PPS() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Packets) / s.Elapsed.Seconds()
}

const batchesPerUnit = 16

// yieldReads is how often, in reads of the input, the root looks for a starving unit
// (live.starving).
const yieldReads = 8

type liveUnit struct {
	u      *unit.Unit
	free   chan *unit.Batch
	cur    *unit.Batch
	chain  *snf.Chain
	closed bool // In is closed (the run's end, or the unit was replaced)
	ended  atomic.Bool
}

// live is one elastic run's engine state, driven by the root's goroutine.
type live struct {
	cfg  LiveConfig
	now  int64           // the latest packet time dispatched
	done <-chan struct{} // the run's context's: closed, it ends the units' stalls
	ctl  *control.Controller

	aliasMu      sync.Mutex
	aliases      []snf.AliasNote // reported by units, not yet applied
	learning     []snf.AliasNote // the root goroutine's copy
	hasAliases   atomic.Bool
	units        []*liveUnit
	pool         *policy.Pool
	egress       chan *unit.Batch
	start        time.Time
	st           store.Store
	running      atomic.Int64    // unit goroutines not ended (replaced ones too): goUnit
	unitEnded    chan struct{}   // a unit goroutine ended (a wake-up: running says how many run)
	mail         []*mailbox      // by slot, for the whole run
	quit         []chan struct{} // by slot: stops the current forwarder
	fwdDone      []chan struct{}
	hid          uint64 // handover ids
	genMu        sync.RWMutex
	gen          []uint64 // by slot: the generation of the unit in it (recovery)
	zombieStates atomic.Uint64
	closing      bool   // the run is ending: units' inputs are being closed
	fatal        error  // a recovery that failed: the run stops
	mover        bool   // the policy moves flows between units (root.Mover)
	marked       []bool // by slot: the batch being filled holds a Marker (flushMarked)
	// allReads counts the input's reads, tickReads them at the last tick; shortReads the
	// reads since that returned less than a full batch or waited for their packets
	// (port.Waiter) — none: the input had more waiting at every read,
	// policy.Pool.Saturated. opened is, by slot, the read at which the batch being filled
	// got its first packet (stale).
	allReads, tickReads uint64
	shortReads          int
	opened              []uint64
	yieldProg           []uint64 // by slot: the unit's Progress at the last starving check

	// Recovery (nil log: off).
	log        *replay.Log
	ckTable    store.Table
	writers    []*replay.Writer
	seqs       []uint64 // by slot: the last batch sequence number sent (Batch.Seq)
	sentB      []uint64 // by slot: batches sent to the current unit
	lastProg   []uint64 // by slot: the unit's Progress at the last check
	stuckSince []time.Time
	ckAsked    []time.Time
	failAt     []atomic.Int64  // by slot: Unix ns of a failure whose replay has not reached the egress yet
	replaced   []atomic.Bool   // by slot: a unit of it failed (its outputs may repeat: the egress checks them)
	egressed   []atomic.Uint64 // by slot: the highest Seq the egress is done with (its frames read)
	// egressTaken counts the batches the egress is done with, whatever their unit (zombie).
	egressTaken atomic.Uint64
	zombies     []zombie      // failed units that may still rewrite frames lent to them
	src         port.Rereader // the input, when the log keeps positions in it (packet.Packet.Pos)
	lastPos     uint64        // with src: the Pos of the last packet read (if posSeen)
	posSeen     bool          // with src: a packet was read
	rel         port.Releaser // src, if it keeps what reads its frames again until released
	released    uint64        // with rel: the position below which its frames were released
	lend        *lender       // nil: the root copies packets into batches, or the log lends
	faults      []Fault
	faultsIdle  []Fault // kills and stalls of units not active (LiveSummary.FaultsIdle)
	oldChains   []*snf.Chain
	failures    uint64
	replayed    uint64
	logWaits    uint64
	recTimes    durations // recoveries with nothing to replay
	head        struct {  // the log's head: its unit and that unit's covered position, since when
		unit  int
		cov   uint64
		since time.Time
	}
}

// SendState implements unit.Transport. It never blocks: two units that ship many flows to
// each other at once would otherwise wait on each other's full queues.
func (l *live) SendState(to int, s unit.State) {
	if l.log == nil {
		l.mail[to].put(s)
		return
	}
	// A unit replaced while it finished a batch must not send on: its replacement replays
	// that batch, and a state arriving after its handover was settled would wait for ever.
	l.genMu.RLock()
	if s.Gen == l.gen[s.From] {
		l.mail[to].put(s)
	} else {
		l.zombieStates.Add(1)
	}
	l.genMu.RUnlock()
}

// SendAliases implements unit.AliasSink: the notes wait for the root's goroutine, which
// applies them before it dispatches its next input batch.
func (l *live) SendAliases(notes []snf.AliasNote) {
	l.aliasMu.Lock()
	l.aliases = append(l.aliases, notes...)
	l.aliasMu.Unlock()
	l.hasAliases.Store(true)
}

// learnAliases gives the root the reply keys units reported (one atomic load per input batch
// when there are none).
func (l *live) learnAliases(r *root.Root) {
	if !l.hasAliases.Load() {
		return
	}
	l.aliasMu.Lock()
	l.hasAliases.Store(false)
	l.learning, l.aliases = l.aliases, l.learning[:0]
	l.aliasMu.Unlock()
	for _, n := range l.learning {
		r.LearnAlias(n.From, n.Alias, n.Forget)
	}
}

// SendOut implements unit.Transport.
func (l *live) SendOut(b *unit.Batch) { l.egress <- b }

// batch returns unit u's batch being filled.
func (l *live) batch(u int) *unit.Batch {
	if l.units[u].cur == nil {
		b := l.freeBatch(u) // back-pressure: waits for the egress to return a batch
		lu := l.units[u]    // (a wait may have replaced the unit)
		lu.cur = b
		lu.cur.Reset()
		lu.cur.Unit = u
		// The unit expires idle flows as of the packet being dispatched, before it: what a
		// single chain does on each packet.
		lu.cur.Now = l.now
	}
	return l.units[u].cur
}

// freeBatch takes one of unit u's free batches, waiting for one. With recovery on, a wait
// watches for failed units (a stalled unit keeps its batches), and may replace unit u.
func (l *live) freeBatch(u int) *unit.Batch {
	select {
	case b := <-l.units[u].free:
		return b
	default:
	}
	if l.log == nil {
		return <-l.units[u].free
	}
	t := time.NewTimer(l.cfg.FailTimeout / 4)
	defer t.Stop()
	for {
		select {
		case b := <-l.units[u].free:
			return b
		case now := <-t.C:
			if l.fatal == nil {
				l.fatal = l.checkFailures(now)
			}
			t.Reset(l.cfg.FailTimeout / 4)
		}
	}
}

// checkPos checks, per read, that the input gives its packets increasing positions
// (port.Rereader), else a replay would read the wrong frames. Per read, not per packet: it
// catches an input that sets none, and positions that repeat or go back across reads or
// within one as a whole, for no cost per packet.
func (l *live) checkPos(pkts []packet.Packet) error {
	first, last := pkts[0].Pos, pkts[len(pkts)-1].Pos
	if (l.posSeen && first <= l.lastPos) || last < first || last-first < uint64(len(pkts)-1) {
		return fmt.Errorf("engine: the input's packets do not give increasing positions (%d to %d in a read of %d packets, after %d): it cannot be read again (port.Rereader)", first, last, len(pkts), l.lastPos)
	}
	l.lastPos, l.posSeen = last, true
	return nil
}

// Send implements root.Target.
func (l *live) Send(u int, p *packet.Packet) {
	b := l.batch(u)
	if b.N == 0 {
		l.opened[u] = l.allReads
	}
	var f []byte
	switch {
	case l.src != nil:
		// The input can read p again: the log keeps where p is in it (p.Pos, which the
		// batch's packet takes along), no frame.
		f = l.lend.take(u, p)
	case l.log != nil:
		f = l.log.Keep(u, p)
	default:
		f = l.lend.take(u, p)
	}
	if f != nil {
		// p's frame stays where the root read it — the lender's arena, or the log's — and
		// the batch borrows it: the unit rewrites it in place, the egress writes it out.
		// The root writes each frame once, and nothing copies it again.
		b.Pkts[b.N].Borrow(p, f)
	} else {
		// Copy into the unit's batch. (Swapping the packets' buffers instead moves no bytes
		// here, but the reader then fills buffers last touched on another core: measured
		// 40% slower end to end with BenchmarkEndToEnd.)
		b.Pkts[b.N].CopyFrom(p)
	}
	b.N++
	if b.N == len(b.Pkts) {
		l.flush(u)
	}
}

// stale reports whether unit u's batch being filled has been open for staleReads reads
// (about 1,000 packets) holding frames of an arena, whose memory is not reused from the
// batch's first frame on until the batch leaves: frames lent (lender.lending), or kept in
// the log's (an input read once: the log's arena grew by 12–21 MB over 100,000 packets
// without this, TestLendIdleUnit). A unit that gets few packets while the input runs at full
// speed would otherwise have the arena grow by all the frames read meanwhile.
func (l *live) stale(u int) bool {
	cur := l.units[u].cur
	holds := l.lend.lending(u) || (l.log != nil && l.src == nil)
	return holds && cur != nil && cur.N > 0 && l.allReads-l.opened[u] >= staleReads
}

// starving reports whether a unit has batches waiting and did no work since the last call
// (every yieldReads reads): the root then yields its processor. The root never blocks while
// the input has packets waiting, and a unit its send woke waits in the next slot of the
// root's processor, where the other processors take it only once they run out of work: a
// unit that gets a batch now and then, beside one always busy, waited until the runtime
// preempted the root (10 ms), holding its batches' frames all along (TestLendIdleUnit).
func (l *live) starving() bool {
	starved := false
	for u, lu := range l.units {
		p := lu.u.Progress()
		if len(lu.u.In) > 0 && p == l.yieldProg[u] {
			starved = true
		}
		l.yieldProg[u] = p
	}
	return starved
}

// flushMarked sends the batches being filled that hold a Marker: a handover's new unit holds
// the flow's packets until the state comes, and the unit the flow leaves may get no more
// packets to fill its batch (a draining unit) — with full reads, the batch would otherwise
// wait for the input's end. Not while the unit has no free batch left: the next Marker for
// it would then wait for one, and the root with it (a straggler holds its batches); the
// batch goes at a later read, once one came back.
func (l *live) flushMarked() {
	for u, lu := range l.units {
		if l.marked[u] && len(lu.free) > 0 {
			l.flush(u)
		}
	}
}

// number gives unit u's batch being filled, which leaves now, its Seq (the egress reports the
// batches it is done with by it), tells the lender it left, and clears its Marker flag
// (flushMarked).
func (l *live) number(u int, b *unit.Batch) {
	l.marked[u] = false
	l.seqs[u]++
	b.Seq = l.seqs[u]
	l.lend.sentBatch(u, b.Seq)
}

// release tells an input that keeps what reads its frames again (port.Releaser: a generator)
// which frames no replay can need any more: those before the lowest position of the packets
// the log holds, of the batches being filled (none right after a tick's flush), and of the
// next packet to read. A batch logged later that starts below it would be a bug here: the
// root checks (logged).
func (l *live) release() {
	if l.rel == nil || !l.posSeen {
		return
	}
	low := min(l.log.LowPos(), l.lastPos+1)
	for _, lu := range l.units {
		if lu.cur != nil && lu.cur.N > 0 {
			low = min(low, lu.cur.Pkts[0].Pos)
		}
	}
	l.released = max(l.released, low)
	l.rel.Release(l.released)
}

// logged checks, for an input that forgets the frames released (release), that batch b,
// logged now, holds none of them: a replay would fail to read them again.
func (l *live) logged(b *unit.Batch) {
	if l.rel != nil && b.N > 0 && b.Pkts[0].Pos < l.released && l.fatal == nil {
		l.fatal = fmt.Errorf("engine: bug: unit %d's batch %d holds input position %d, but the input was told that no frame before %d would be read again", b.Unit, b.Seq, b.Pkts[0].Pos, l.released)
	}
}

// Handover implements root.Target.
func (l *live) Handover(k packet.Key, flow uint64, from, to int) {
	l.hid++
	bf := l.batch(from)
	bf.Ctl = append(bf.Ctl, unit.Control{At: bf.N, Kind: unit.Marker, Key: k, Flow: flow, Peer: to, Hid: l.hid})
	l.marked[from] = true
	bt := l.batch(to)
	bt.Ctl = append(bt.Ctl, unit.Control{At: bt.N, Kind: unit.Expect, Key: k, Flow: flow, Peer: from, Hid: l.hid})
}

// ScaleOut implements root.Target.
func (l *live) ScaleOut() int { return l.ctl.ScaleOut(l.pool) }

func (l *live) flush(u int) {
	lu := l.units[u]
	if lu.cur == nil {
		return
	}
	if lu.closed || l.fatal != nil {
		// A run that failed for good (a recovery that could not restore): the batch is not
		// sent; the run stops and reports why.
		lu.cur, l.marked[u] = nil, false
		l.lend.drop(u)
		if l.log != nil {
			l.log.Drop(u)
		}
		return
	}
	full := false
	l.number(u, lu.cur)
	if l.log != nil {
		full = l.logBatch(lu.cur)
		l.sentB[u]++
	}
	lu.cur.Stamp = time.Now().UnixNano()
	lu.u.In <- lu.cur
	lu.cur = nil
	// What the unit has not taken yet (len of a channel: no lock), for Pool.MaxBacklog.
	l.pool.Units[u].Backlog = float64(len(lu.u.In) * l.cfg.Batch)
	if full && !l.closing {
		if err := l.waitRoom(); err != nil && l.fatal == nil {
			l.fatal = err
		}
	}
}

// unitsStuckAfter is how long the units may make no progress, once their inputs are closed,
// before the ones still running are declared stuck (plus the longest stall injected).
var unitsStuckAfter = 10 * time.Second

// waitUnits waits for the units to end, once their inputs are closed. A unit waits for the
// states of the handovers it expects; if none of them makes progress (unit.Unit.Progress:
// batches, controls, states received, the chain's bulk work) for unitsStuckAfter, the ones
// still running are stopped and the run fails with an error that names them and what they
// waited for: a state that never comes is a bug, and a run must end rather than hang.
//
// With recovery, it goes on watching for failed units meanwhile (checkFailures): a unit that
// stalls with batches waiting after the input ended is replaced as it would be before — its
// replacement gets the replay, then its input closed — rather than hold the run's end (and
// the outputs of its batches) for as long as it stalls.
func (l *live) waitUnits() error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var failTick <-chan time.Time
	if l.log != nil && l.fatal == nil {
		ft := time.NewTicker(max(l.cfg.FailTimeout/4, time.Millisecond))
		defer ft.Stop()
		failTick = ft.C
	}
	limit := unitsStuckAfter
	for _, f := range l.cfg.Faults {
		if f.Kind == FaultStall {
			limit = max(limit, unitsStuckAfter+f.For)
		}
	}
	var last uint64
	since := time.Now()
	// (Only this goroutine starts units: once none runs, none will.)
	for l.running.Load() > 0 {
		select {
		case <-l.unitEnded:
		case now := <-failTick:
			if err := l.checkFailures(now); err != nil {
				// A unit could not be recovered: states it owed the others never come.
				for _, lu := range l.units {
					lu.u.Kill()
				}
				l.waitEnded()
				return err
			}
		case now := <-t.C:
			var p uint64
			for _, lu := range l.units {
				p += lu.u.Progress()
			}
			if p != last {
				last, since = p, now
				continue
			}
			if now.Sub(since) < limit {
				continue
			}
			var stuck []int
			for u, lu := range l.units {
				if !lu.ended.Load() {
					stuck = append(stuck, u)
				}
			}
			for _, lu := range l.units {
				lu.u.Kill()
			}
			l.waitEnded()
			return fmt.Errorf("units %v did not end %s after the input did: they wait for handover states that never came (a bug; the output is short): %s", stuck, limit, l.awaited(stuck))
		}
	}
	return nil
}

// goUnit runs lu's unit on a goroutine of its own (counted in running: waitUnits).
func (l *live) goUnit(lu *liveUnit) {
	if l.unitEnded == nil {
		l.unitEnded = make(chan struct{}, 1)
	}
	l.running.Add(1)
	go func() {
		defer func() {
			lu.ended.Store(true)
			l.running.Add(-1)
			select {
			case l.unitEnded <- struct{}{}:
			default: // a wake-up is pending: it sees this end too
			}
		}()
		lu.u.Run()
	}()
}

// waitEnded waits until no unit goroutine runs.
func (l *live) waitEnded() {
	for l.running.Load() > 0 {
		<-l.unitEnded
	}
}

// awaited says what the given units, ended, waited for: the handovers whose states did
// not come (each unit's oldest few).
func (l *live) awaited(units []int) string {
	var b strings.Builder
	for i, u := range units {
		if i > 0 {
			b.WriteString("; ")
		}
		list, n := l.units[u].u.Awaited(3)
		if n == 0 {
			fmt.Fprintf(&b, "unit %d waited for no state", u)
			continue
		}
		fmt.Fprintf(&b, "unit %d waited for %d state(s), the oldest:", u, n)
		for _, a := range list {
			fmt.Fprintf(&b, " flow %d's (handover %d, from unit %d, %d packets held)", a.Flow, a.Hid, a.From, a.Held)
		}
	}
	return b.String()
}

// newUnit makes the unit of slot u running chain, with its checkpoint writer.
func (l *live) newUnit(u int, chain *snf.Chain) (*liveUnit, error) {
	lu := &liveUnit{chain: chain}
	lu.u = unit.New(u, chain, make(chan *unit.Batch, batchesPerUnit), l, nil)
	lu.u.EndStallsOn(l.done) // a cancelled run does not wait for a stalled unit
	if l.ckTable != nil {
		w := replay.NewWriter(l.ckTable, u, fullEvery(l.cfg.Checkpoint))
		if u < len(l.writers) {
			l.writers[u] = w
		} else {
			l.writers = append(l.writers, w)
		}
		lu.u.CheckpointTo(w, l.cfg.Checkpoint)
	}
	if l.cfg.Policy.PerPacket() {
		// Any unit may get any packet: flow state lives in the store, read and written
		// per packet.
		t, err := l.st.Table("runtime", "perpacket-flows")
		if err != nil {
			return nil, err
		}
		lu.u.KeepFlowsIn(t)
	}
	return lu, nil
}

// fullRecordEvery is how often, at most, a unit writes a full checkpoint record (all its
// flows) rather than the changes since its last record.
const fullRecordEvery = 640 * time.Millisecond

// fullEvery is the number of records between two full ones for records every interval:
// replay.DefaultFullEvery, or more for short intervals, so that the full records — the costly
// ones — stay at most one per fullRecordEvery; at most 4×DefaultFullEvery (a restore reads
// every record since the last full one).
func fullEvery(interval time.Duration) int {
	if interval <= 0 {
		return replay.DefaultFullEvery
	}
	return min(4*replay.DefaultFullEvery, max(replay.DefaultFullEvery, int(fullRecordEvery/interval)))
}

// startUnit starts slot u's unit and the forwarder of its mailbox.
func (l *live) startUnit(u int) {
	lu := l.units[u]
	l.quit[u], l.fwdDone[u] = make(chan struct{}), make(chan struct{})
	l.goUnit(lu)
	go func(quit, done chan struct{}) { defer close(done); l.mail[u].forward(lu.u.State, quit) }(l.quit[u], l.fwdDone[u])
}

// CheckpointTable is the store table (namespace "runtime") of the units' checkpoints.
const CheckpointTable = "checkpoints"

// LiveProgress is how far a run has come (LiveConfig.Progress).
type LiveProgress struct {
	Packets uint64        // read and sent to units
	Elapsed time.Duration // since the units started
	Units   int           // active now
}

// RunLive runs cfg.In through the chain on an elastic pool of goroutine units.
func RunLive(ctx context.Context, cfg LiveConfig) (LiveSummary, error) {
	if !cfg.KeepTimerSlack {
		slackOnce.Do(func() {
			set, threads := tightenTimerSlack()
			slog.Debug("engine: timer slack set to 1 ns", "threads", set, "of", threads)
		})
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.MaxUnits < 1 {
		cfg.MaxUnits = 1
	}
	cfg.MinUnits = min(max(cfg.MinUnits, 1), cfg.MaxUnits)
	if cfg.Target <= 0 || cfg.Target > 1 {
		cfg.Target = 0.8
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 2 * time.Second
	}
	if cfg.Policy == nil {
		return LiveSummary{}, errors.New("engine: no policy")
	}
	st := cfg.Store
	if st == nil {
		st = store.NewEmbedded()
		defer st.Close()
	}
	if cfg.Capacity <= 0 {
		c, err := Calibrate(cfg.Spec, 20000)
		if err != nil {
			return LiveSummary{}, err
		}
		cfg.Capacity = c
	}
	if len(cfg.Faults) > 0 && !cfg.Recovery {
		return LiveSummary{}, errNoRecovery
	}
	if cfg.Recovery && cfg.Policy.PerPacket() {
		// Its flow state lives in the store, written back per packet untagged: a replay
		// would apply packets twice.
		return LiveSummary{}, errors.New("recovery does not support the perpacket policy (its flow state is written per packet without tags)")
	}
	if cfg.Recovery {
		if cfg.Checkpoint <= 0 {
			// (Shorter intervals free the copying log's frames sooner: its cost fell on
			// generated traffic at 4 ms, but not on a real capture, whose long flows are
			// exported in every record — BENCHMARKS.md, eighth session.)
			cfg.Checkpoint = 10 * time.Millisecond
		}
		if cfg.LogBytes <= 0 {
			cfg.LogBytes = 64 << 20
		}
		if cfg.LogPackets <= 0 {
			cfg.LogPackets = 1 << 18
		}
		if cfg.FailTimeout <= 0 {
			cfg.FailTimeout = 100 * time.Millisecond
		}
		if h, ok := cfg.In.(port.Holder); ok && h.Rereadable() {
			// The log keeps positions in the input, which holds a fixed number of frames
			// (a live interface's ring): the log's bound, half of them, leaves the other
			// half for the frames read between two of the root's releases (a tick) and
			// the batches being filled. (The input releases in order: it holds every frame
			// from the oldest one the log keeps, more than the log's count while one unit's
			// checkpoint lags — a unit stalled until declared failed. Then the input fills
			// first, and a live interface's kernel drops what comes, counted.)
			need := 4 * (cfg.MaxUnits + 2) * cfg.Batch
			if h.Holds() < need {
				return LiveSummary{}, fmt.Errorf("engine: the input holds %d frames for replays, too few for the packet log of %d units with batches of %d: it needs at least %d (a larger receive ring: afpacket.Options.Frames, snf run --ring)", h.Holds(), cfg.MaxUnits, cfg.Batch, need)
			}
			cfg.LogPackets = min(cfg.LogPackets, h.Holds()/2)
		}
	}
	var alerts *alertDedup
	if cfg.Recovery {
		alerts = &alertDedup{next: cfg.Alerts, cur: map[alertKey]struct{}{},
			gen: max(1<<16, 2*(cfg.LogPackets+cfg.MaxUnits*batchesPerUnit*cfg.Batch))}
		cfg.Alerts = alerts
	}
	n := cfg.MaxUnits
	l := &live{cfg: cfg, done: ctx.Done(), st: st, pool: &policy.Pool{Target: cfg.Target, MaxBacklog: cfg.MaxBacklog.Seconds() * cfg.Capacity}, egress: make(chan *unit.Batch, n*batchesPerUnit),
		mail: make([]*mailbox, n), marked: make([]bool, n), quit: make([]chan struct{}, n), fwdDone: make([]chan struct{}, n),
		faults: append([]Fault(nil), cfg.Faults...)}
	if cfg.Checkpoint > 0 {
		t, err := st.Table("runtime", CheckpointTable)
		if err != nil {
			return LiveSummary{}, err
		}
		for u := range n {
			// Another run's records (a store shared, its namespace reused) would be
			// restored by a replacement as this run's, and the log would replay from
			// their clocks: packets lost.
			if replay.Written(t, u) {
				return LiveSummary{}, fmt.Errorf("engine: the store already holds checkpoints of unit %d (table runtime/%s), another run's: give each run a store, or a namespace, of its own (store.Namespaced)", u, CheckpointTable)
			}
		}
		l.ckTable = t
	}
	l.seqs, l.egressed, l.yieldProg, l.opened = make([]uint64, n), make([]atomic.Uint64, n), make([]uint64, n), make([]uint64, n)
	if cfg.Recovery {
		l.log = replay.NewLog(cfg.LogBytes, cfg.LogPackets, n)
		l.log.OnTrim = l.onTrim
		l.sentB, l.lastProg, l.gen = make([]uint64, n), make([]uint64, n), make([]uint64, n)
		l.stuckSince, l.ckAsked, l.failAt = make([]time.Time, n), make([]time.Time, n), make([]atomic.Int64, n)
		l.replaced = make([]atomic.Bool, n)
	}
	l.ctl = control.New(control.Config{MinUnits: cfg.MinUnits, MaxUnits: cfg.MaxUnits, Target: cfg.Target,
		Capacity: cfg.Capacity, Elastic: cfg.Policy.Elastic(), Stateless: cfg.Policy.PerPacket(), BusyAfter: cfg.BusyAfter})
	for i := range n {
		chain, err := l.newChain(i)
		if err == nil {
			var lu *liveUnit
			if lu, err = l.newUnit(i, chain); err != nil {
				chain.Close()
			} else {
				l.units = append(l.units, lu)
			}
		}
		if err != nil {
			// Nothing runs yet: close what the units made so far (chains, checkpoint
			// writers and their goroutines).
			for _, w := range l.writers {
				_ = w.Close()
			}
			for _, lu := range l.units {
				lu.chain.Close()
			}
			return LiveSummary{}, err
		}
		lu := l.units[i]
		lu.free = make(chan *unit.Batch, batchesPerUnit)
		for range batchesPerUnit {
			lu.free <- unit.NewBatch(cfg.Batch, lu.free)
		}
		l.mail[i] = newMailbox(cfg.Recovery)
		l.pool.Units = append(l.pool.Units, policy.UnitView{ID: i, Active: l.ctl.Initial(i), Capacity: cfg.Capacity})
	}
	defer func() {
		for _, lu := range l.units {
			lu.chain.Close()
		}
		for _, c := range l.oldChains {
			c.Close()
		}
	}()
	r := root.New(root.Config{Policy: cfg.Policy, Pool: l.pool, FlowletGap: cfg.FlowletGap,
		MaxFlows: cfg.MaxFlows, Timeouts: l.units[0].chain.FlowTimeouts(),
		ByInitiator: len(l.units[0].chain.Scopes()) > 0, MaxFlowRate: cfg.Target * cfg.Capacity})

	eg := &egress{out: cfg.Out, failAt: l.failAt, replaced: l.replaced, done: l.egressed, taken: &l.egressTaken, order: newFlowOrder(1 << 16)}
	if cfg.Recovery {
		eg.dedupOn(cfg.LogPackets + n*batchesPerUnit*cfg.Batch)
	}
	egDone := make(chan error, 1)
	go func() { egDone <- eg.run(l.egress) }()
	for i := range l.units {
		l.startUnit(i)
	}

	var (
		s        LiveSummary
		batch    = make([]packet.Packet, cfg.Batch)
		runErr   error
		lastTick = time.Now()
		lastProg = lastTick
	)
	lend := !l.units[0].chain.WritesFrames() // an NF that writes frames gets copies
	if rr, ok := cfg.In.(port.Rereader); ok && l.log != nil && rr.Rereadable() {
		// The input can read its frames again: the log keeps their positions in it.
		l.src, l.log.Src = rr, rr
		l.rel, _ = rr.(port.Releaser) // (released as the log trims: release)
	} else {
		port.ReleaseAll(cfg.In) // nothing reads its frames again: it need not keep them
	}
	var arena *packet.Arena // the root reads into it (packet.Packet.UseArena; nil: no arena)
	switch {
	case l.log != nil && l.src == nil:
		// The root reads into the log's arena: the log keeps each frame where it was read,
		// and lends it.
		l.log.Lend = lend
		if lend && l.units[0].chain.HeadersOnly() {
			// Its NFs read only headers: once the egress wrote a batch, the log keeps
			// its frames' headers only, and reuses their memory while in cache.
			l.log.HeadersOnly(l.egressed)
		}
		arena = l.log.Arena()
	case lend:
		// The root reads into the lender's arena, and lends the frames until the egress is
		// done with them.
		l.lend = newLender(n, cfg.Batch, l.egressed)
		arena = l.lend.arena
		// A log of positions takes no frame and nothing an NF changes: the egress fills its
		// entries, off the batches' path (a chain whose NFs write frames may change their
		// lengths: its units fill the entries first).
		if l.log != nil {
			l.log.AtEgress = true
		}
	}
	defer l.lend.close() // (after the units and the egress ended: deferred before their wait)
	if m, ok := cfg.Policy.(root.Mover); ok {
		l.mover = m.MovesFlows()
	}
	l.start = time.Now()
	// tick runs the controller; with final (the run's end: the units ended), it only takes
	// its last sample — a handover now would never happen.
	tick := func(now time.Time, final bool) {
		dt := now.Sub(lastTick)
		if dt <= 0 {
			return
		}
		lastTick = now
		if l.pool.MaxBacklog > 0 { // a unit nothing was flushed to since: refresh its backlog
			for u, lu := range l.units {
				l.pool.Units[u].Backlog = float64(len(lu.u.In) * l.cfg.Batch)
			}
		}
		l.pool.Saturated = l.allReads > l.tickReads && l.shortReads == 0
		l.tickReads, l.shortReads = l.allReads, 0
		l.ctl.Tick(now.Sub(l.start), dt, l.pool, r.Stats().Sent, r.Held)
		if final {
			return
		}
		if l.mover {
			l.ctl.Draining(l.pool, func(u int, busy bool) { r.Evacuate(u, l.now, l, busy) })
		}
		if l.log != nil && l.fatal == nil {
			// A batch left open since the last tick (a unit that gets few packets while the
			// reader runs at full speed) goes now: it would hold the log's arena memory
			// from its first packet on.
			for u := range l.units {
				l.flush(u)
			}
			l.updateCovered()
			l.release()
			l.nudgeHead(now)
			if err := l.checkFailures(now); err != nil && l.fatal == nil {
				// (not over an error a flush above met: a recovery that failed while the
				// root waited for room — the units' batches since are dropped, not sent)
				l.fatal = err
			}
		}
	}
	// An input that may wait for its packets (a paced replay, a pipe) says whether a read
	// did: a full read after a wait does not make the pool saturated.
	waiter, _ := cfg.In.(port.Waiter)
	var (
		idx   uint64 // packets dispatched
		first int64  // the first packet's time
	)
	for {
		if err := ctx.Err(); err != nil {
			runErr = err
			break
		}
		if l.allReads++; l.allReads%yieldReads == 0 && l.starving() {
			runtime.Gosched()
		}
		if arena != nil {
			// Every read: an input that reads ahead (port.Paced) hands the root packets of
			// its own in exchange for these, which must read into the arena too.
			for i := range batch {
				batch[i].UseArena(arena)
			}
		}
		n, err := cfg.In.Read(batch)
		short := n < len(batch) || (waiter != nil && waiter.Waited())
		if short {
			l.shortReads++
		}
		if l.src != nil && n > 0 {
			if runErr = l.checkPos(batch[:n]); runErr != nil {
				break
			}
		}
		l.learnAliases(r)
		if l.log != nil {
			l.updateCovered()
			if n == 0 {
				// An input with nothing to read may be holding all it can for replays (a
				// live interface's ring, port.Holder): release what the log let go of.
				l.release()
			}
		}
		for i := range batch[:n] {
			l.now = max(l.now, batch[i].Time)
			if idx++; idx == 1 {
				first = batch[i].Time
			}
			if len(l.faults) > 0 && l.fatal == nil {
				l.fatal = l.applyFaults(idx, time.Duration(batch[i].Time-first), r)
			}
			if l.fatal != nil {
				break
			}
			r.Dispatch(&batch[i], l)
		}
		if l.fatal != nil {
			runErr = l.fatal
			break
		}
		// A reader that returned a full batch has more waiting (replay at full speed): let
		// the units' batches fill. One that returned less, or waited for its packets (a
		// pipe that blocked until it filled the batch), is paced or drained: send what
		// there is now, so that latency stays low.
		if short {
			for u := range l.units {
				l.flush(u)
			}
		} else {
			l.flushMarked()
			// A batch open for many reads (a unit that gets few packets) goes too: it
			// holds the lender's memory, or the log's arena, from its first frame on.
			for u := range l.units {
				if l.stale(u) {
					l.flush(u)
				}
			}
		}
		if now := time.Now(); now.Sub(lastTick) >= cfg.Tick {
			tick(now, false)
			l.flushMarked() // (the Markers of a draining unit's idle flows)
			if cfg.Progress != nil && now.Sub(lastProg) >= cfg.ProgressEvery {
				lastProg = now
				cfg.Progress(LiveProgress{Packets: idx, Elapsed: now.Sub(l.start), Units: l.ctl.Active()})
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				if cerr := ctx.Err(); cerr != nil {
					runErr = cerr // an input that ends with the run's cancel (port.PacedWith)
				} else {
					s.InputErr = err
				}
			}
			break
		}
	}
	// Flush every unit before closing any: a flush may wait for room in the log, which
	// needs the other units' checkpoints.
	for u := range l.units {
		l.flush(u)
	}
	l.closing = true
	for _, lu := range l.units {
		if l.fatal != nil {
			// A unit could not be recovered: states it owed the others never come; stop
			// them all (the error says why the output is short).
			lu.u.Kill()
		}
		if !lu.closed {
			close(lu.u.In)
			lu.closed = true
		}
	}
	if err := l.waitUnits(); err != nil && l.fatal == nil {
		l.fatal = err
	}
	// Every unit ended (waitUnits waits for all, replaced ones too): once the egress is done
	// too, nothing reads the log's frames — its memory goes to the next run's log.
	defer func() {
		if l.log != nil {
			l.log.Close()
		}
	}()
	if l.fatal != nil && runErr == nil {
		runErr = l.fatal
	}
	for u := range l.units {
		l.stopForwarder(u)
	}
	for _, w := range l.writers {
		_ = w.Close() // a failed write is counted in CheckpointErrors; the run's output is whole
		ws := w.Stats()
		s.Checkpoints += ws.Records
		s.CheckpointBytes += ws.Bytes
		s.CheckpointErrors += ws.Errors
	}
	close(l.egress)
	if err := <-egDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("write output: %w", err)
	}
	tick(time.Now(), true)
	s.Elapsed = time.Since(l.start)
	if cfg.OnDone != nil {
		chains := make([]*snf.Chain, len(l.units))
		for i, lu := range l.units {
			chains[i] = lu.chain
		}
		cfg.OnDone(chains)
	}

	rs := r.Stats()
	s.Packets, s.Flows, s.Flowlets, s.Handovers = rs.Packets, rs.Flows, rs.Flowlets, rs.Handovers
	s.Written, s.Reorders, s.Latency = eg.written, eg.order.reorders, eg.lat.percentiles()
	s.Capacity = cfg.Capacity
	var waits, held durations
	// Failed units' chains are not counted: a replacement restored their counters as of its
	// checkpoint and counted the replayed packets again itself (billed once, as one chain).
	for _, lu := range l.units {
		us := lu.u.Stats()
		s.Batches += us.Batches
		s.BytesMoved += us.BytesMoved
		s.StoreReads += us.StoreReads
		s.StoreWrites += us.StoreWrites
		for _, w := range us.Waits {
			waits.add(w)
		}
		for _, w := range us.HeldWaits {
			held.add(w)
		}
		s.Held += us.Held
		s.Settled += us.HandoversIn
		s.addChain(lu.chain)
	}
	s.HandoverWait, s.HeldWait = waits.percentiles(), held.percentiles()
	s.setControl(l.ctl.Summary())
	s.Evacuated = rs.Evacuated
	if l.log != nil {
		ls := l.log.Stats()
		s.LogMaxBytes, s.LogMaxPackets, s.LogWaits = ls.MaxBytes, ls.MaxPackets, l.logWaits
		s.LogArenaBytes, s.LogOverflows = ls.Arena.Bytes, ls.Arena.Overflows
		s.LogPositions = l.src != nil
		s.LogShortened, s.LogTailed, s.LogTailedPackets = ls.Shortened, ls.Tailed, ls.TailedPackets
	}
	if l.lend != nil {
		as := l.lend.arena.Stats()
		s.LendBytes, s.LendOverflows, s.LendFrames = as.Bytes, as.Overflows, l.lend.lent
	}
	s.Failures, s.Replayed, s.Duplicates = l.failures, l.replayed, eg.dups
	s.FaultsMissed = slices.Clone(l.faults)
	s.FaultsIdle = l.faultsIdle
	if alerts != nil {
		s.AlertDuplicates = alerts.dups
	}
	s.ZombieStates = l.zombieStates.Load()
	for _, m := range l.mail {
		s.StateDuplicates += m.dups
	}
	l.recTimes.merge(&eg.recTimes)
	s.RecoveryTime = l.recTimes.percentiles()
	return s, runErr
}

// flowOrder counts packets that leave before an earlier packet of their flow (by clock). It
// keeps, per flow id (direct-mapped, so memory stays fixed under a flood of flows), the
// clock of the flow's last packet out; a flow whose slot another flow took loses its
// history, so a reordering can go uncounted but is never invented.
type flowOrder struct {
	last     []struct{ flow, clock uint64 }
	reorders uint64
}

// newFlowOrder returns a flowOrder of slots slots (a power of two).
func newFlowOrder(slots int) flowOrder {
	return flowOrder{last: make([]struct{ flow, clock uint64 }, slots)}
}

// see accounts p leaving (a packet without a flow id is not checked).
func (o *flowOrder) see(p *packet.Packet) {
	if p.Flow == 0 {
		return
	}
	sl := &o.last[p.Flow&(uint64(len(o.last))-1)]
	switch {
	case sl.flow != p.Flow:
		sl.flow, sl.clock = p.Flow, p.Clock
	case p.Clock < sl.clock:
		o.reorders++
	default:
		sl.clock = p.Clock
	}
}

// egress writes the units' outputs, measures latency and checks each flow's order.
type egress struct {
	out     port.Writer
	written uint64
	order   flowOrder
	lat     durations

	// Recovery: seen has a bit per clock of the packets whose outputs were written, over a
	// window wider than the packets that can be replayed (a ring: bits of clocks that left
	// the window are cleared as it moves); outputs of packets seen before are dropped.
	seen     []uint64
	hi       uint64 // highest clock marked
	clean    uint64 // the bits of clocks hi+1..clean are clear (mark clears ahead of hi)
	dups     uint64
	failAt   []atomic.Int64
	replaced []atomic.Bool   // by slot (live.replaced)
	done     []atomic.Uint64 // by slot: the highest Seq of a batch written (live.egressed)
	taken    *atomic.Uint64  // the batches it is done with (live.egressTaken)
	recTimes durations
	fresh    []bool // scratch: per output of a batch, not seen before
}

// dedupAhead is how many clocks ahead of the highest marked mark clears at once.
const dedupAhead = 4096

// dedupOn turns on the dropping of outputs written before, for a window of at least
// window packets' clocks.
func (e *egress) dedupOn(window int) {
	n := 2 * dedupAhead
	for n < 2*window+dedupAhead { // (the window kept: at least twice the one asked for)
		n *= 2
	}
	e.seen = make([]uint64, n/64)
}

// window is how far behind the highest clock marked a clock's mark is kept: the ring's
// clocks but those mark cleared ahead.
func (e *egress) window() uint64 { return uint64(len(e.seen)*64) - dedupAhead }

func (e *egress) bit(c uint64) (word *uint64, mask uint64) {
	i := c & uint64(len(e.seen)*64-1)
	return &e.seen[i/64], 1 << (i % 64)
}

// clear clears the bits of clocks lo to hi (a word at a time).
func (e *egress) clear(lo, hi uint64) {
	n := uint64(len(e.seen) * 64)
	if hi-lo >= n {
		clear(e.seen)
		return
	}
	for lo <= hi {
		i := lo & (n - 1)
		span := min(64-i%64, hi-lo+1)
		e.seen[i/64] &^= (^uint64(0) >> (64 - span)) << (i % 64)
		lo += span
	}
}

// clocks makes b.OutClock its outputs' clocks (a unit fills it; a batch may come without).
func (e *egress) clocks(b *unit.Batch) {
	if len(b.OutClock) != len(b.Out) {
		b.OutClock = b.OutClock[:0]
		for _, p := range b.Out {
			b.OutClock = append(b.OutClock, p.Clock)
		}
	}
}

// markAll marks b's outputs written, dropping none: a batch of a slot whose unit never
// failed. Only a slot's units write its packets' outputs (a replay goes to the failed
// unit's replacement, in its slot), and a unit writes each once: until one failed, nothing
// the slot sends was written before. The marks are kept for the replay of a later failure.
func (e *egress) markAll(b *unit.Batch) {
	e.clocks(b)
	e.markClocks(b.OutClock)
}

// markClocks marks clocks written, in order.
func (e *egress) markClocks(clocks []uint64) {
	seen, window := e.seen, e.window()
	mask := uint64(len(seen)*64 - 1)
	hi, clean := e.hi, e.clean
	for _, c := range clocks {
		if c > hi {
			if c > clean {
				// Clear the bits of the clocks the window leaves (they map to the new ones), a
				// few thousand at once rather than a bit or two per output.
				e.clear(clean+1, c+dedupAhead)
				clean = c + dedupAhead
			}
			hi = c
		} else if c+window <= hi {
			// Behind the window already (an output of a batch whose clocks fall back by more
			// than the window, judged against where it stood before the batch): its bit is a
			// clock's ahead, which must stay clear.
			continue
		}
		i := c & mask
		seen[i/64] |= 1 << (i % 64)
	}
	e.hi, e.clean = hi, clean
}

// dedup drops from b the outputs of packets written before, and marks the others. All of a
// packet's outputs (the packet, the frames NFs emitted with it) are in one batch: they are
// judged together, against the marks of earlier batches.
func (e *egress) dedup(b *unit.Batch) {
	window := e.window()
	e.fresh = e.fresh[:0]
	e.clocks(b)
	seen := func(c uint64) bool { // written before b (b's own marks are not set yet)
		if c > e.hi {
			return false
		}
		if c+window <= e.hi {
			return true // left the window: written long ago
		}
		w, m := e.bit(c)
		return *w&m != 0
	}
	// Mostly (no replay, no zombie) nothing in b was written before: one read-only pass
	// says so, and one marks them, dropping nothing.
	i := 0
	for i < len(b.OutClock) && !seen(b.OutClock[i]) {
		i++
	}
	if i == len(b.OutClock) {
		e.markClocks(b.OutClock)
		return
	}
	for _, c := range b.OutClock {
		e.fresh = append(e.fresh, !seen(c))
	}
	k := 0
	for i, p := range b.Out {
		if !e.fresh[i] {
			e.dups++
			continue
		}
		b.Out[k], b.OutStamp[k], b.OutClock[k] = p, b.OutStamp[i], b.OutClock[i]
		k++
	}
	b.Out, b.OutStamp, b.OutClock = b.Out[:k], b.OutStamp[:k], b.OutClock[:k]
	e.markClocks(b.OutClock) // (the fresh ones, judged above against the marks before b)
}

func (e *egress) run(in chan *unit.Batch) error {
	var err error
	for b := range in {
		now := time.Now().UnixNano()
		if e.seen != nil {
			if e.replaced[b.Unit].Load() {
				e.dedup(b)
			} else {
				e.markAll(b)
			}
			if b.Replay {
				if at := e.failAt[b.Unit].Swap(0); at != 0 {
					e.recTimes.add(time.Duration(now - at))
				}
			}
		}
		if e.out != nil && err == nil && len(b.Out) > 0 {
			err = e.out.Write(b.Out)
		}
		for i, p := range b.Out {
			e.written++
			e.order.see(p)
			e.lat.add(time.Duration(now - b.OutStamp[i]))
		}
		if b.LogAtEgress && b.Log != nil {
			// The log's entry of b takes its packets' metadata now, after b's outputs went
			// out, before the done mark below lets the log trim it (replay.Entry.Prepare).
			b.Log.Prepare(b)
		}
		if e.done != nil && b.Seq > e.done[b.Unit].Load() {
			// Done with b's frames (the outputs of packets written before, dropped above,
			// were not read): the log, or the lender, may reuse memory it lent b.
			e.done[b.Unit].Store(b.Seq)
		}
		if e.taken != nil {
			e.taken.Add(1) // (after b's frames were read: zombie)
		}
		select {
		case b.Home <- b:
		default: // a home that is full (held-packet batches) lets the batch go
		}
	}
	return err
}

// durations is a log-scale histogram of durations (no allocation per sample): subBuckets
// per power of two, so a value is known within 1/subBuckets of itself (3 %: a median of
// 90 µs to ±3 µs, where 8 sub-buckets gave 90 or 98 µs).
type durations struct {
	n      uint64
	bucket [64 * subBuckets]uint64
}

const (
	subBits    = 5
	subBuckets = 1 << subBits
)

func (d *durations) merge(o *durations) {
	d.n += o.n
	for i, c := range o.bucket {
		d.bucket[i] += c
	}
}

func (d *durations) add(v time.Duration) {
	if v < 1 {
		v = 1
	}
	d.n++
	d.bucket[bucketOf(v)]++
}

// bucketOf returns v's bucket: its power of two, then which of subBuckets equal parts of it.
func bucketOf(v time.Duration) int {
	x := uint64(v)
	e := 63 - bits.LeadingZeros64(x)
	sub := 0
	if e >= subBits {
		sub = int((x >> (e - subBits)) & (subBuckets - 1))
	}
	return e*subBuckets + sub
}

// bucketValue returns the lowest value of bucket b. (Below 2^subBits ns a power of two is
// one bucket, its first: the others hold nothing and start where the next power does.)
func bucketValue(b int) time.Duration {
	e, sub := b/subBuckets, b%subBuckets
	if e < subBits {
		if sub > 0 {
			e++
		}
		return time.Duration(1 << e)
	}
	return time.Duration((uint64(subBuckets+sub) << (e - subBits)))
}

func (d *durations) quantile(q float64) time.Duration {
	if d.n == 0 {
		return 0
	}
	target := uint64(math.Ceil(q * float64(d.n)))
	var c uint64
	for i, n := range d.bucket {
		c += n
		if c >= target {
			return bucketValue(i)
		}
	}
	return bucketValue(len(d.bucket) - 1)
}

func (d *durations) percentiles() Percentiles {
	return Percentiles{d.quantile(0.5), d.quantile(0.99), d.quantile(0.999)}
}

// Calibrate measures the packets/s one unit sustains for spec on generated traffic.
func Calibrate(spec *snf.ChainSpec, packets int) (float64, error) {
	chain, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		return 0, err
	}
	defer chain.Close()
	c := newCalibration(chain, packets)
	el := c.pass(DefaultBatch, false)
	if el <= 0 {
		el = time.Microsecond
	}
	return float64(len(c.frames)) / el.Seconds(), nil
}

// calibration runs generated frames through a chain and times it (Calibrate, batchCost).
type calibration struct {
	chain  *snf.Chain
	frames [][]byte
	batch  []packet.Packet
	out    []*packet.Packet
	clock  int64 // the packets' time: 1 µs apart, on from pass to pass
}

func newCalibration(chain *snf.Chain, packets int) *calibration {
	return &calibration{chain: chain, frames: calibrationFrames(packets),
		batch: make([]packet.Packet, DefaultBatch), out: make([]*packet.Packet, 0, 2*DefaultBatch)}
}

// pass runs every frame through the chain in batches of size (at most DefaultBatch), with
// the chain expiring idle flows before each batch if expire, and returns the time it took.
func (c *calibration) pass(size int, expire bool) time.Duration {
	start := time.Now()
	for i := 0; i < len(c.frames); i += size {
		n := min(size, len(c.frames)-i)
		for j := range n {
			c.clock += 1000
			c.batch[j].SetData(c.frames[i+j], c.clock, 0)
		}
		if expire {
			c.chain.Expire(c.clock)
		}
		c.out = c.chain.Process(c.batch[:n], c.out[:0])
	}
	return time.Since(start)
}

// calibrationFrames returns generated frames for Calibrate.
func calibrationFrames(n int) [][]byte {
	cfg := trace.DefaultGenConfig()
	cfg.Packets = n
	g, err := trace.NewGenerator(cfg)
	if err != nil {
		panic("engine: default generator config rejected: " + err.Error())
	}
	var frames [][]byte
	batch := make([]packet.Packet, DefaultBatch)
	for {
		k, err := g.Read(batch)
		for i := range batch[:k] {
			frames = append(frames, append([]byte(nil), batch[i].Data...))
		}
		if err != nil {
			return frames
		}
	}
}
