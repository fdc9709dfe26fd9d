// Package unit is one serverless compute unit: it runs its own instance of the chain on
// batches the root sends it, owns the state of the flows whose flowlets it holds, and hands
// a flow's state over to another unit peer-to-peer when the root moves the flow (the marker
// protocol of DESIGN.md, "Flowlet move").
//
// A unit talks to the rest of the runtime only through its input channel and a Transport,
// whose messages (Batch, State) are plain data: an in-process transport passes them by
// pointer; a network transport would serialize them.
package unit

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/store"
)

// ControlKind is the kind of a handover control in a batch.
type ControlKind uint8

const (
	// Marker: after the packets before it, ship flow Key's state to unit Peer.
	Marker ControlKind = iota + 1
	// Expect: flow Key's state is coming from unit Peer; hold the flow's packets until it
	// arrives.
	Expect
)

// Control is a handover control placed in a batch before packet At.
type Control struct {
	At   int
	Kind ControlKind
	Key  packet.Key // the flow's key (either direction)
	Flow uint64     // the flow's id, as stamped by the root on its packets
	Peer int
	// Hid identifies the handover (the engine numbers them): a Marker's state carries it,
	// and an Expect takes the state with its Hid, so that a state sent twice (a recovered
	// unit replaying a Marker) cannot be taken for another handover of the flow. Zero
	// matches states in order (the first state still awaited).
	Hid uint64
}

// Batch is a unit's input and, once processed, its output. Batches are recycled: the root
// fills one, the unit processes it, the egress writes its Out and sends it Home.
type Batch struct {
	Unit  int
	Pkts  []packet.Packet // the packets are Pkts[:N]
	N     int
	Ctl   []Control
	Stamp int64 // wall time (Unix ns) the root released the batch, for latency
	// Now is the root's packet time when it released the batch: the unit expires idle
	// flows by it, so that flows expire even on a unit that receives no more packets.
	Now int64
	// Seq numbers the batches the root sends a unit (from 1; 0 for a batch that is not part
	// of the unit's input, such as a checkpoint request): a checkpoint records the Seq of the
	// last batch it reflects, and recovery replays the unit's batches after it.
	Seq uint64
	// Checkpoint asks the unit for a checkpoint record after this batch (when its writer
	// is ready), whatever the interval: the root's packet log needs room.
	Checkpoint bool
	// Replay marks a batch the engine resent from its log to a recovering unit (local to
	// the process: not on the wire).
	Replay bool
	Out    []*packet.Packet
	// OutStamp holds, for each Out packet, the Stamp of the batch it arrived in (packets
	// held for a handover leave in a later batch); OutClock its Clock, which the egress's
	// dedup reads without touching the packets (a line each, written on another core).
	OutStamp []int64
	OutClock []uint64
	Home     chan *Batch

	// Log, if set, is the root's packet log's entry for the batch, which the unit prepares
	// (takes the packets' metadata into) once its chain processed the batch — before, for a
	// chain that writes frames itself or when LogFirst says so — and before it sends it on:
	// on the unit's core, not the root's (replay.Log.Append) — unless LogAtEgress leaves it
	// to the egress. LogTicket says which use of the entry is this batch's.
	Log       Preparer
	LogTicket uint64
	// LogFirst: the unit prepares Log before its chain runs (the log saves the headers the
	// chain may rewrite in frames it lends).
	LogFirst bool
	// LogAtEgress: the unit leaves Log to the egress, which prepares it once it took the
	// batch, before it hands the batch back (an entry that keeps positions: the metadata it
	// takes no NF changes) — off the batch's path to the egress, and off the unit's core.
	LogAtEgress bool

	extra []packet.Packet // copies of emitted packets
}

// Preparer is a packet log's entry for a batch (Batch.Log).
type Preparer interface {
	Prepare(b *Batch)
	// Held tells the entry that the unit holds packet i of the batch for a handover: it
	// leaves in a later batch, after the batch itself went to the egress (a log that forgets
	// a frame's payload once the egress wrote its batch keeps its).
	Held(b *Batch, i int)
}

// NewBatch returns a batch for up to n packets that returns to home when written.
func NewBatch(n int, home chan *Batch) *Batch {
	b := &Batch{Pkts: make([]packet.Packet, n), Out: make([]*packet.Packet, 0, 2*n), OutStamp: make([]int64, 0, 2*n), OutClock: make([]uint64, 0, 2*n), Home: home}
	for i := range b.Pkts {
		b.Pkts[i].Reserve(2048) // packets circulate between the reader and units: no allocation per packet
	}
	return b
}

// Reset empties the batch for refilling.
func (b *Batch) Reset() {
	b.N, b.Ctl, b.Out, b.OutStamp, b.OutClock = 0, b.Ctl[:0], b.Out[:0], b.OutStamp[:0], b.OutClock[:0]
	b.Seq, b.Checkpoint, b.Replay, b.Log, b.LogTicket, b.LogFirst, b.LogAtEgress = 0, false, false, nil, 0, false, false
	b.extra = b.extra[:0] // the copies of emitted packets went out with the batch
}

// State is a flow's state on its way between units. Data is what snf.Chain.MoveOut wrote;
// nil when the sending unit held no state for the flow.
type State struct {
	Key  packet.Key
	Flow uint64
	From int
	Data []byte
	Sent int64  // wall time (Unix ns) it was sent
	Hid  uint64 // the handover's id (the Marker's)
	// Gen is the sending unit's Gen (local to the process: not on the wire): an engine
	// drops states of a unit it replaced, which may still finish the batch it was in.
	Gen uint64
}

// Transport carries a unit's messages.
type Transport interface {
	// SendState delivers a flow's state to unit to.
	SendState(to int, s State)
	// SendOut delivers a processed batch to the egress.
	SendOut(b *Batch)
}

// AliasSink is implemented by transports that carry the reply keys a unit's NFs announce
// (snf.ChainOptions.ReportAliases) to the root, so that replies addressed to a NAT's public
// address reach the unit holding their flow. The unit passes each batch's notes once; the
// slice is reused after the call.
type AliasSink interface {
	SendAliases(notes []snf.AliasNote)
}

// Checkpointer takes a unit's checkpoint records (replay.Writer): the unit asks Ready
// before it builds one, so that its changes stay tracked while the writer is busy.
type Checkpointer interface {
	Ready() bool
	NextFull() bool
	Offer(rec []byte, clock uint64, full bool) bool
}

// Stats counts a unit's work.
type Stats struct {
	Batches, Packets          uint64
	HandoversOut, HandoversIn uint64
	BytesMoved                uint64
	Held                      uint64 // packets held waiting for state
	// StoreReads, StoreWrites and StoreErrors count the flow-store accesses of per-packet
	// mode (KeepFlowsIn).
	StoreReads, StoreWrites, StoreErrors uint64
	// CheckpointErrors counts records the chain could not write (a value that failed to
	// encode).
	CheckpointErrors uint64
	// HeldWaits holds, for the latest handovers that held packets (up to MaxWaits), how
	// long the first held packet waited for the state, from the root's release of its batch.
	HeldWaits []time.Duration
	// Waits holds, for the latest handovers received (up to MaxWaits), the time from the
	// state's send to its arrival.
	Waits []time.Duration
}

// segment is one stay of a flow at this unit that waits for its state: opened by an Expect,
// holding the flow's packets until the state arrives, closed by a Marker that ships the
// flow on. A flow that leaves and comes back before its first state arrived has several.
type segment struct {
	hid     uint64 // the Expect's handover id (0: any)
	from    int    // the Expect's Peer: the unit the state comes from
	state   State
	arrived bool
	held    []packet.Packet
	stamps  []int64
	moveTo  int // -1 until a Marker closes the segment
	moveHid uint64
}

// MaxWaits bounds the handover wait samples a unit keeps.
const MaxWaits = 4096

// pending is a flow whose state this unit is waiting for.
type pending struct {
	key   packet.Key
	segs  []*segment // in the order of their Expects
	early []State    // states that arrived before their Expect
}

type outgoing struct {
	to int
	s  State
}

// Unit is one compute unit.
type Unit struct {
	ID    int
	Gen   uint64 // the engine's generation of the unit in slot ID (copied into its States)
	Chain *snf.Chain
	In    chan *Batch
	State chan State
	tr    Transport
	now   func() int64
	// prepFirst: the chain writes frames itself (snf.FrameWriter), so it may change what the
	// packet log takes from a batch (a frame's length): the log takes it before the chain.
	prepFirst bool

	pending map[uint64]*pending
	inBatch bool // processing a batch whose outputs are not with the egress yet

	flowStore        store.Table // per-packet mode: flow state lives here (KeepFlowsIn)
	keyBuf, stateBuf []byte
	outbox           []outgoing // states to send once the current batch's outputs are with the egress
	aliases          []snf.AliasNote

	ckw      Checkpointer
	ckEvery  int64  // wall time between records (ns)
	ckLast   int64  // wall time of the latest record (Unix ns)
	ckWant   bool   // a record is due (interval passed, or asked for) but could not be taken yet
	pos      uint64 // Seq of the last batch processed
	killed   atomic.Bool
	done     atomic.Uint64 // batches processed
	work     atomic.Uint64 // batches processed, controls carried out, states received (Progress)
	stall    atomic.Int64  // ns to sleep before the next batch (a fault)
	heldHome chan *Batch
	wake     chan struct{}   // closed by Kill: wakes a unit that waits for states, or stalls
	stallEnd <-chan struct{} // closed: stalls end (the run is cancelled; EndStallsOn)
	wakeOnce sync.Once
	stats    Stats
}

// New returns a unit running chain. in carries batches from the root; states from peers
// arrive on the unit's State channel.
func New(id int, chain *snf.Chain, in chan *Batch, tr Transport, now func() int64) *Unit {
	if now == nil {
		now = func() int64 { return time.Now().UnixNano() }
	}
	return &Unit{ID: id, Chain: chain, In: in, State: make(chan State, 4096), tr: tr, now: now,
		pending: map[uint64]*pending{}, heldHome: make(chan *Batch, 64), wake: make(chan struct{}),
		prepFirst: chain.WritesFrames()}
}

// KeepFlowsIn makes the unit keep no flow state of its own: before each packet it reads the
// flow's state from t, after it writes it back (the per-packet policy's model: any unit may
// get any packet, so per-flow state must live in the shared store and is read and written per
// packet, as in today's serverless platforms). Units handling one flow's packets at the same
// time race on its state: that is the model's cost, measured, not hidden.
func (u *Unit) KeepFlowsIn(t store.Table) { u.flowStore = t }

// runStored processes b.Pkts[from:to] one packet at a time around the shared flow store.
func (u *Unit) runStored(b *Batch, from, to int, out []*packet.Packet) []*packet.Packet {
	for i := from; i < to; i++ {
		p := &b.Pkts[i]
		if !p.IP() {
			out = u.Chain.Process(b.Pkts[i:i+1], out)
			continue
		}
		ck, _ := p.Key.Canonical()
		u.keyBuf = appendKey(u.keyBuf[:0], &ck)
		key := string(u.keyBuf)
		if data, ok := u.flowStore.Get(key); ok {
			if err := u.Chain.ImportFlow(data); err != nil {
				u.stats.StoreErrors++
			}
		}
		u.stats.StoreReads++
		k := p.Key // the NFs may rewrite p
		n := len(out)
		out = u.Chain.Process(b.Pkts[i:i+1], out)
		b.Out = out
		u.keepEmitted(b, n) // the next Process call reuses the chain's emit buffer
		out = b.Out
		var found bool
		var err error
		u.stateBuf, found, err = u.Chain.MoveOut(k, u.stateBuf[:0])
		switch {
		case err != nil:
			u.stats.StoreErrors++
		case found:
			if err := u.flowStore.Set(key, u.stateBuf); err != nil {
				u.stats.StoreErrors++
			}
			u.stats.StoreWrites++
		default: // the flow ended during the packet (EndFlow): it must not come back
			if err := u.flowStore.Delete(key); err != nil {
				u.stats.StoreErrors++
			}
			u.stats.StoreWrites++
		}
	}
	return out
}

// appendKey appends a flow key's 38-byte encoding.
func appendKey(b []byte, k *packet.Key) []byte {
	b = append(b, k.Src[:]...)
	b = append(b, k.Dst[:]...)
	b = append(b, byte(k.SrcPort>>8), byte(k.SrcPort), byte(k.DstPort>>8), byte(k.DstPort), k.Proto)
	if k.V6 {
		return append(b, 1)
	}
	return append(b, 0)
}

// Stats returns the unit's counters; read them after Run returned.
func (u *Unit) Stats() Stats { return u.stats }

// CheckpointTo makes the unit hand its chain's checkpoint records (the chain needs
// snf.ChainOptions.Checkpoints) to w: after a batch when every (wall time: a replay at many
// times the capture's pace checkpoints no more often) passed since the last record and w is
// ready, and a last one when Run ends.
func (u *Unit) CheckpointTo(w Checkpointer, every time.Duration) {
	u.ckw, u.ckEvery = w, int64(every)
}

// checkpoint hands a record to the writer: RecordHeader bytes (the unit's position: the
// Seq of the last batch the record reflects), then the chain's record. The caller checked
// that nothing is pending: every packet received was processed, every state expected has
// arrived, so the record covers exactly the batches up to pos.
func (u *Unit) checkpoint() {
	full := u.ckw.NextFull()
	var buf []byte
	if r, ok := u.ckw.(interface{ Buffer() []byte }); ok { // a written record's buffer
		buf = r.Buffer()
	}
	if buf == nil {
		buf = make([]byte, 0, 4096)
	}
	rec := binary.BigEndian.AppendUint64(buf, u.pos)
	rec, _, err := u.Chain.Checkpoint(rec, full)
	if err != nil {
		u.stats.CheckpointErrors++
		return
	}
	// A unit killed (replaced) while it finished its batch sends no record: the states it
	// shipped in that batch were dropped as a replaced unit's, and a record covering the
	// batch would keep its replacement from shipping them again. (Not killed now: the
	// states went before any Kill, so they were delivered.)
	if u.killed.Load() {
		return
	}
	u.ckw.Offer(rec, u.pos, full)
	u.ckWant = false
}

// RecordHeader is the size of the unit's header on a checkpoint record: the position
// (uint64, big-endian: the Seq of the last batch the record reflects).
const RecordHeader = 8

// SplitRecord returns a stored checkpoint record's position and the chain's record.
func SplitRecord(rec []byte) (pos uint64, chain []byte, ok bool) {
	if len(rec) < RecordHeader {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(rec), rec[RecordHeader:], true
}

// SetPosition sets the Seq of the last batch the unit's state reflects (after a restore).
func (u *Unit) SetPosition(pos uint64) { u.pos = pos }

// Position returns the Seq of the last batch processed.
func (u *Unit) Position() uint64 { return u.pos }

// Kill makes the unit stop at its next batch (at once if it waits for states or stalls), as
// if its machine died: it processes nothing more, sends nothing more, and its state is gone. Run
// returns once In is closed (the engine drains it).
func (u *Unit) Kill() {
	u.killed.Store(true)
	u.wakeOnce.Do(func() { close(u.wake) })
}

// Processed returns the number of batches the unit processed (safe from any goroutine: the
// engine watches it to detect a unit that stopped).
func (u *Unit) Processed() uint64 { return u.done.Load() }

// Progress counts the batches processed, the controls carried out, the states received
// and the chain's bulk work (snf.Chain.Work: a checkpoint record's flows exported, flows
// ended, 1,024 at a time): it moves while the unit works through a batch that carries
// thousands of controls (a draining unit moving every idle flow off takes one Marker per
// flow), builds a full record of a hundred thousand flows (tens of ms), or takes the states
// of thousands of handovers after its input ended, which a failure detector must not take
// for a stall.
func (u *Unit) Progress() uint64 { return u.work.Load() + u.Chain.Work() }

// Killed reports whether Kill was called.
func (u *Unit) Killed() bool { return u.killed.Load() }

// Stall makes the unit sleep d before its next batch (a slow or frozen unit). The sleep ends
// early when the unit is killed — it then hands the batch back unprocessed, as it does when
// it wakes after a Kill: a replaced straggler does not hold the run's end for the rest of
// its stall — or when the channel given to EndStallsOn is closed (it then processes the
// batch, as if the stall had ended).
func (u *Unit) Stall(d time.Duration) { u.stall.Store(int64(d)) }

// EndStallsOn makes a stall (Stall) end once done is closed — the run was cancelled, and
// its end must not wait for a sleeping unit — and the stalls after it not sleep. Call it
// before Run.
func (u *Unit) EndStallsOn(done <-chan struct{}) { u.stallEnd = done }

// sleep sleeps d, or until the unit is killed or stalls end (EndStallsOn).
func (u *Unit) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-u.wake:
	case <-u.stallEnd:
	}
}

// Run processes batches until In is closed and every expected state has arrived.
func (u *Unit) Run() {
	defer u.finalCheckpoint()
	in := u.In
	for in != nil || u.awaiting() {
		if u.killed.Load() {
			u.drainKilled(in)
			return
		}
		select {
		case b, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			if d := u.stall.Swap(0); d > 0 {
				u.sleep(time.Duration(d))
			}
			if u.killed.Load() { // (killed while it slept: the sleep ended at once)
				b.Out = b.Out[:0]
				b.Home <- b // the batch's buffers go back; its packets are lost with the unit
				continue
			}
			u.process(b)
		case <-u.wake: // killed (handled at the loop's top)
		case s := <-u.State:
			if !u.killed.Load() {
				u.arrive(s)
				u.arriveQueued()
				// A record that was due while states were awaited can be taken now.
				if u.ckWant && len(u.pending) == 0 && u.ckw.Ready() {
					u.checkpoint()
				}
			}
		}
	}
}

// stateBurst and stateBurstTime bound the states Run takes in a row before it looks at its
// batches again (the time checked every 64 states): the batches waiting behind a peer's
// thousands of states, and their packets' latency, are not left for long.
const (
	stateBurst     = 1024
	stateBurstTime = 2 * time.Millisecond
)

// arriveQueued takes the states already queued, up to stateBurst: a unit that takes one
// state per batch (select's fair choice) falls behind a peer that ships thousands at once —
// a draining unit moving its idle flows off — and the packets held for those states wait
// for a batch's time each.
func (u *Unit) arriveQueued() {
	start := u.now()
	for i := range stateBurst {
		if u.killed.Load() || (i&63 == 63 && u.now()-start > int64(stateBurstTime)) {
			return
		}
		select {
		case s := <-u.State:
			u.arrive(s)
		default:
			return
		}
	}
}

// process runs a batch: runs of packets through the chain, controls between them, packets
// of flows whose state has not arrived held aside.
func (u *Unit) process(b *Batch) {
	first := u.prepFirst || b.LogFirst
	if b.Log != nil && first {
		b.Log.Prepare(b)
	}
	u.inBatch = true
	defer func() { u.inBatch = false }()
	u.stats.Batches++
	if b.Now != 0 {
		u.Chain.Expire(b.Now)
	}
	start, ci := 0, 0
	for i := 0; i <= b.N; i++ {
		for ci < len(b.Ctl) && b.Ctl[ci].At == i {
			u.run(b, start, i)
			start = i
			u.control(&b.Ctl[ci])
			ci++
		}
		if i == b.N {
			break
		}
		if len(u.pending) > 0 {
			p := &b.Pkts[i]
			if pe, ok := u.pending[p.Flow]; ok && len(pe.segs) > 0 {
				u.run(b, start, i)
				start = i + 1
				sg := pe.segs[len(pe.segs)-1]
				sg.held = append(sg.held, packet.Packet{})
				sg.held[len(sg.held)-1].CopyFrom(p)
				if b.Log != nil {
					b.Log.Held(b, i)
				}
				sg.stamps = append(sg.stamps, b.Stamp)
				u.stats.Held++
			}
		}
	}
	u.run(b, start, b.N)
	u.inBatch = false
	if b.Log != nil && !first && !b.LogAtEgress {
		// After the chain, whose reads brought the packets into this core's cache (the
		// fields the log takes, no NF changes: snf.NF), and before the batch is sent on
		// (the root reuses it once the egress is done).
		b.Log.Prepare(b)
	}
	seq, ask := b.Seq, b.Checkpoint // b is the egress's once sent
	u.sendAliases()
	u.tr.SendOut(b)
	u.flushOutbox()
	if seq != 0 {
		u.pos = seq
	}
	u.done.Add(1)
	u.work.Add(1)
	if u.ckw != nil {
		if now := u.now(); now-u.ckLast >= u.ckEvery || ask {
			u.ckWant = true
			u.ckLast = now
		}
		// Only with nothing pending: held packets and awaited states are not in the
		// chain's state, so a record taken now would not cover the batches up to pos.
		if u.ckWant && len(u.pending) == 0 && u.ckw.Ready() {
			u.checkpoint()
		}
	}
}

// awaiting reports whether a flow waits for its state (an Expect without its state). States
// that arrived without an Expect do not count: once In is closed none can come.
func (u *Unit) awaiting() bool {
	for _, pe := range u.pending {
		if len(pe.segs) > 0 {
			return true
		}
	}
	return false
}

// Awaited is a handover whose state a unit waits for.
type Awaited struct {
	Flow, Hid uint64
	From      int // the unit that was to send it
	Held      int // packets held for it
}

// Awaited lists the handovers whose states the unit waits for (Expects without their
// state), the max oldest (by handover id), and how many there are. Only once Run has
// returned: it reads what the unit's goroutine owns (an engine that gave up on a unit names
// what it waited for).
func (u *Unit) Awaited(max int) ([]Awaited, int) {
	var list []Awaited
	for flow, pe := range u.pending {
		for _, sg := range pe.segs {
			if !sg.arrived {
				list = append(list, Awaited{Flow: flow, Hid: sg.hid, From: sg.from, Held: len(sg.held)})
			}
		}
	}
	slices.SortFunc(list, func(a, b Awaited) int { return cmp.Compare(a.Hid, b.Hid) })
	return list[:min(max, len(list))], len(list)
}

// drainKilled returns the batches still coming to a killed unit until In closes, and drops
// the states sent to it.
func (u *Unit) drainKilled(in chan *Batch) {
	for in != nil {
		select {
		case b, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			b.Out = b.Out[:0]
			b.Home <- b
		case <-u.State:
		}
	}
}

// finalCheckpoint hands over a last record once the writer is ready.
func (u *Unit) finalCheckpoint() {
	if u.ckw == nil || u.killed.Load() || len(u.pending) > 0 {
		return
	}
	for i := 0; !u.ckw.Ready(); i++ {
		if i == 200_000 { // 10 s: the writer is stuck or closed
			u.stats.CheckpointErrors++
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	u.checkpoint()
}

// run processes b.Pkts[from:to] through the chain into b.Out.
func (u *Unit) run(b *Batch, from, to int) {
	if from >= to {
		return
	}
	u.stats.Packets += uint64(to - from)
	n := len(b.Out)
	if u.flowStore != nil {
		b.Out = u.runStored(b, from, to, b.Out) // keeps each packet's emitted frames itself
	} else {
		b.Out = u.Chain.Process(b.Pkts[from:to], b.Out)
		u.keepEmitted(b, n)
	}
	b.noteOut(n, b.Stamp)
}

// noteOut records, for each of b.Out[from:], the stamp its latency counts from and its clock
// (OutStamp, OutClock: in step with Out).
func (b *Batch) noteOut(from int, stamp int64) {
	for _, p := range b.Out[from:] {
		b.OutStamp = append(b.OutStamp, stamp)
		b.OutClock = append(b.OutClock, p.Clock)
	}
}

// keepEmitted copies packets the chain emitted (they live in the chain's buffer, reused by
// the next Process call) into the batch.
func (u *Unit) keepEmitted(b *Batch, from int) {
	lo, hi := &b.Pkts[0], &b.Pkts[len(b.Pkts)-1]
	for i := from; i < len(b.Out); i++ {
		p := b.Out[i]
		if inRange(p, lo, hi) {
			continue
		}
		if n := len(b.extra); n < cap(b.extra) {
			b.extra = b.extra[:n+1] // a slot of an earlier use: its buffer is reused
		} else {
			b.extra = append(b.extra, packet.Packet{})
		}
		e := &b.extra[len(b.extra)-1]
		e.CopyFrom(p)
		b.Out[i] = e
	}
}

func (u *Unit) control(c *Control) {
	u.work.Add(1)
	switch c.Kind {
	case Expect:
		pe, ok := u.pending[c.Flow]
		if !ok {
			pe = &pending{key: c.Key}
			u.pending[c.Flow] = pe
		}
		sg := &segment{hid: c.Hid, from: c.Peer, moveTo: -1}
		for i, s := range pe.early {
			if c.Hid == 0 || s.Hid == 0 || s.Hid == c.Hid {
				sg.state, sg.arrived = s, true
				pe.early = append(pe.early[:i], pe.early[i+1:]...)
				break
			}
		}
		pe.segs = append(pe.segs, sg)
		u.advance(c.Flow, pe)
	case Marker:
		if pe, ok := u.pending[c.Flow]; ok && len(pe.segs) > 0 {
			sg := pe.segs[len(pe.segs)-1]
			sg.moveTo, sg.moveHid = c.Peer, c.Hid // ship on once its state has arrived here
			return
		}
		u.ship(c.Key, c.Flow, c.Peer, c.Hid)
	}
}

// ship moves a flow's state out of this unit's chain, to be sent after the current outputs.
func (u *Unit) ship(k packet.Key, flow uint64, to int, hid uint64) {
	data, found, err := u.Chain.MoveOut(k, nil)
	if err != nil || !found {
		data = nil // no state here (the flow sent no IP packet to this unit), or it could not be exported
	}
	u.stats.HandoversOut++
	u.stats.BytesMoved += uint64(len(data))
	u.outbox = append(u.outbox, outgoing{to, State{Key: k, Flow: flow, From: u.ID, Data: data, Hid: hid, Gen: u.Gen}})
}

// flushOutbox sends the states shipped so far. Never while a batch is half processed: a
// flow's state must not overtake the outputs of the flow's last packets here, which leave
// with the batch.
func (u *Unit) flushOutbox() {
	if u.inBatch {
		return
	}
	for _, o := range u.outbox {
		o.s.Sent = u.now()
		u.tr.SendState(o.to, o.s)
	}
	u.outbox = u.outbox[:0]
}

// arrive handles a state from a peer: it belongs to the flow's first segment still
// without one (states of a flow arrive in the order they were shipped).
func (u *Unit) arrive(s State) {
	u.work.Add(1)
	if w := time.Duration(u.now() - s.Sent); len(u.stats.Waits) < MaxWaits {
		u.stats.Waits = append(u.stats.Waits, w)
	} else {
		u.stats.Waits[u.stats.HandoversIn%MaxWaits] = w // a ring: memory stays bounded
	}
	pe, ok := u.pending[s.Flow]
	if !ok {
		pe = &pending{key: s.Key}
		u.pending[s.Flow] = pe
	}
	for _, sg := range pe.segs {
		if !sg.arrived && (sg.hid == 0 || s.Hid == 0 || sg.hid == s.Hid) {
			sg.state, sg.arrived = s, true
			u.advance(s.Flow, pe)
			return
		}
	}
	pe.early = append(pe.early, s)
}

// advance completes the flow's segments whose state has arrived, in order.
func (u *Unit) advance(flow uint64, pe *pending) {
	for len(pe.segs) > 0 && pe.segs[0].arrived {
		sg := pe.segs[0]
		pe.segs = pe.segs[1:]
		u.complete(pe.key, flow, sg)
	}
	if len(pe.segs) == 0 && len(pe.early) == 0 {
		delete(u.pending, flow)
	}
}

// complete installs an arrived state, processes the packets held for it, and ships the flow
// on if a marker closed the segment.
func (u *Unit) complete(k packet.Key, flow uint64, sg *segment) {
	u.stats.HandoversIn++
	if sg.state.Data != nil {
		_ = u.Chain.ImportFlow(sg.state.Data) // a malformed state is dropped; the flow restarts here
	}
	if len(sg.held) > 0 {
		// How long the flow's first held packet waited, from the root's release of its batch.
		if w := time.Duration(u.now() - sg.stamps[0]); len(u.stats.HeldWaits) < MaxWaits {
			u.stats.HeldWaits = append(u.stats.HeldWaits, w)
		} else {
			u.stats.HeldWaits[u.stats.HandoversIn%MaxWaits] = w
		}
		var b *Batch
		select {
		case b = <-u.heldHome:
			b.Reset()
		default:
			b = NewBatch(0, u.heldHome)
		}
		b.Unit = u.ID
		b.Pkts = append(b.Pkts[:0], sg.held...)
		b.N = len(b.Pkts)
		u.stats.Packets += uint64(b.N)
		b.Out = u.Chain.Process(b.Pkts, b.Out[:0])
		u.keepEmittedHeld(b)
		b.noteOut(0, sg.stamps[0]) // latency from the first held packet's arrival
		u.sendAliases()
		u.tr.SendOut(b)
	}
	if sg.moveTo >= 0 {
		u.ship(k, flow, sg.moveTo, sg.moveHid)
	}
	u.flushOutbox()
}

// sendAliases passes the reply keys announced since the last call to the transport, if it
// carries them.
func (u *Unit) sendAliases() {
	u.aliases = u.Chain.TakeAliases(u.aliases[:0])
	if len(u.aliases) == 0 {
		return
	}
	if s, ok := u.tr.(AliasSink); ok {
		s.SendAliases(u.aliases)
	}
}

func (u *Unit) keepEmittedHeld(b *Batch) {
	if len(b.Pkts) > 0 {
		u.keepEmitted(b, 0)
	}
}

// inRange reports whether p points into the array from lo to hi.
func inRange(p, lo, hi *packet.Packet) bool {
	a := uintptr(unsafe.Pointer(p))
	return a >= uintptr(unsafe.Pointer(lo)) && a <= uintptr(unsafe.Pointer(hi))
}
