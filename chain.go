package snf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/snf-dev/snf/flowtable"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/store"
)

// ChainOptions configure a Chain's runtime side.
type ChainOptions struct {
	// Store holds shared state; nil means a new embedded store owned by the chain.
	Store store.Store
	// Unit identifies the compute unit running this chain instance (store tags).
	Unit uint32
	// Tenant prefixes the store namespace of every NF instance ("default" if empty).
	Tenant string
	// Logger receives construction-time and rare events (default: slog.Default()).
	Logger *slog.Logger
	// MaxFlows bounds the flow table (0: the spec's value, else flowtable.DefaultMaxFlows).
	MaxFlows int
	// Alerts receives the NFs' alerts (nil: counted, then discarded).
	Alerts AlertSink
	// ReportAliases makes the chain keep a note of every reply key an NF announces or
	// withdraws (Context.ExpectReply, ForgetReply), for TakeAliases: the elastic runtime's
	// root learns them, so that a reply addressed to a NAT's public address reaches the unit
	// holding its flow.
	ReportAliases bool
	// Checkpoints makes the chain track the state its packets change, for Checkpoint.
	Checkpoints bool
}

// AliasNote is a reply key an NF announced (or withdrew) for a flow: packets with key Alias
// belong to the flow of the packet with key From, in the direction opposite to it.
type AliasNote struct {
	From, Alias packet.Key
	Forget      bool
}

// NFStats counts one NF instance's packets.
type NFStats struct {
	In, Dropped, Emitted, Alerts uint64
}

// ChainStats counts a chain's packets. In = Out + Dropped; Emitted packets come on top of Out.
type ChainStats struct {
	In, Out, Dropped, Emitted, Alerts uint64
	// EmitLost counts frames FlowEnd hooks emitted for flows that ended outside any packet
	// (Expire, ImportFlow): there is no output to put them in.
	EmitLost uint64
	// NonIP frames passed through untouched; Malformed IP packets were shown to the NFs
	// without a flow (each NF's README says what it does with them).
	NonIP, Malformed uint64
}

type nfInst struct {
	nf        NF
	name      string
	typ       string
	ender     FlowEnder
	metrics   []*Metric
	shared    []SharedDecl
	flowState []string
	scopes    []ScopeBy
	stats     NFStats
}

// Chain runs a list of NF instances fused: each packet of a batch goes through every NF
// (run to completion) before the next packet. A Chain is one unit's: not safe for
// concurrent use.
type Chain struct {
	spec     *ChainSpec
	nfs      []*nfInst
	table    *flowtable.Table
	slots    []flowSlot
	store    store.Store
	ownStore bool
	unit     uint32
	ctx      Context
	stats    ChainStats
	alerts   AlertSink
	clock    uint64 // the last clock this chain stamped on an unstamped packet

	lastClock uint64 // the clock of the latest packet processed
	expireOps uint32 // store operations caused outside packets so far
	inPacket  bool   // processing a packet: emitted frames have a place in its output

	ck     ckTrack    // Checkpoints: what changed since the last record
	scoped []scopedCk // the NFs' Scoped states, in declaration order

	aliases       []AliasNote // ReportAliases: notes not taken yet
	reportAliases bool
	// ReportAliases: the notes taken so far (TakeAliases calls, from 1, never 0), and by
	// flow index, the count when the flow's alias was last noted (noteAlias).
	aliasTakes uint32
	notedAt    []uint32

	emitted []packet.Packet // this batch's emitted packets (reused)
	nEmit   int
	pending int // emitted packets of the current packet not yet placed in out

	work  atomic.Uint64 // Work: chunks of bulk work done (workChunk flows each)
	ended uint64        // flows ended (their FlowEnd hooks run), for work
}

// workChunk is how many flows a chunk of Work is: a checkpoint's flows exported, flows ended.
const workChunk = 1024

// Work counts the chunks of bulk work the chain has done — workChunk flows exported to a
// checkpoint record, or ended (their FlowEnd hooks run), each — plus each Scoped state a
// record took (one chunk, however large the state: a NAT's port table is one). It may be
// read from any goroutine while the chain works: a unit building a full record of a hundred
// thousand flows, or expiring them, in one call is busy, not stalled, and an engine
// watching for stalled units reads this to tell the two apart.
func (c *Chain) Work() uint64 { return c.work.Load() }

// NewChain builds one instance of every NF of spec.
func NewChain(spec *ChainSpec, opt ChainOptions) (*Chain, error) {
	c := &Chain{spec: spec, store: opt.Store, unit: opt.Unit, alerts: opt.Alerts, reportAliases: opt.ReportAliases, aliasTakes: 1}
	c.ck.on, c.ck.epoch = opt.Checkpoints, 1
	if c.store == nil {
		c.store, c.ownStore = store.NewEmbedded(), true
	}
	if opt.Tenant == "" {
		opt.Tenant = "default"
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	timeouts := flowtable.Timeouts{}
	for i, s := range spec.NFs {
		inst := &nfInst{name: s.Name, typ: s.Type}
		env := &Env{chain: c, index: i, name: s.Name, typ: s.Type, ns: opt.Tenant + "/" + s.Name,
			log: opt.Logger.With("nf", s.Name), inst: inst}
		nf, err := s.factory.build(env, s.config)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", s.where(spec), err)
		}
		inst.nf = nf
		inst.ender, _ = nf.(FlowEnder)
		if ft, ok := nf.(FlowTimeouter); ok {
			timeouts = timeouts.Max(ft.FlowTimeouts())
		}
		c.nfs = append(c.nfs, inst)
	}
	maxFlows := opt.MaxFlows
	if maxFlows == 0 {
		maxFlows = spec.MaxFlows
	}
	c.table = flowtable.New(flowtable.Config{
		MaxFlows: maxFlows,
		Timeouts: flowtable.DefaultTimeouts.Max(timeouts),
		Slots:    len(c.slots),
		OnRemove: c.flowRemoved,
	})
	c.ctx.chain = c
	return c, nil
}

// Process runs the batch through the chain and appends the packets that leave it to out, in
// order: each forwarded packet followed by what the NFs emitted while handling it. Emitted
// packets are owned by the chain and valid until the next Process call.
func (c *Chain) Process(pkts []packet.Packet, out []*packet.Packet) []*packet.Packet {
	c.nEmit = 0
	for i := range pkts {
		out = c.process(&pkts[i], out)
	}
	return out
}

func (c *Chain) process(p *packet.Packet, out []*packet.Packet) []*packet.Packet {
	c.stats.In++
	if p.Flags&packet.NonIP != 0 {
		c.stats.NonIP++
		c.stats.Out++
		return append(out, p)
	}
	if p.Clock == 0 {
		// Unstamped (a test, or a chain fed directly): stamp from the chain's own counter so
		// that clocks stay unique; the root stamps packets in the elastic runtime.
		c.clock++
		p.Clock = c.clock
	}
	ctx := &c.ctx
	ctx.p, ctx.now, ctx.clock = p, p.Time, p.Clock
	c.lastClock = max(c.lastClock, p.Clock)
	ctx.flow, ctx.dir, ctx.draws, ctx.ops, ctx.end = -1, Orig, 0, 0, false
	c.pending, c.inPacket = 0, true // FlowEnd hooks of flows this packet expires may emit too
	if p.Flags&packet.Malformed == 0 {
		c.table.Expire(ctx.now)
		f, dir, _ := c.table.LookupRef(&p.Key, ctx.now)
		ctx.flow, ctx.dir = f.Index(), dir
		if c.ck.on {
			c.trackFlow(ctx.flow)
		}
	} else {
		c.stats.Malformed++
	}
	verdict := Forward
	for j, n := range c.nfs {
		ctx.nf = j
		n.stats.In++
		if n.nf.Process(ctx, p) == Drop {
			n.stats.Dropped++
			verdict = Drop
			break
		}
	}
	if ctx.end && ctx.flow >= 0 {
		c.table.Remove(c.table.Flow(ctx.flow), ctx.now)
	}
	if verdict == Forward {
		c.stats.Out++
		out = append(out, p)
	} else {
		c.stats.Dropped++
	}
	for k := c.nEmit - c.pending; k < c.nEmit; k++ {
		out = append(out, &c.emitted[k])
	}
	c.inPacket = false
	return out
}

func (c *Chain) emit(ctx *Context, frame []byte) {
	if !c.inPacket {
		c.stats.EmitLost++ // a FlowEnd hook outside any packet (Expire, ImportFlow): nowhere to go
		return
	}
	if c.nEmit == len(c.emitted) {
		c.emitted = append(c.emitted, packet.Packet{})
	}
	e := &c.emitted[c.nEmit]
	e.SetData(frame, ctx.now, 0)
	e.Clock = ctx.clock
	c.nEmit++
	c.pending++
	c.nfs[ctx.nf].stats.Emitted++
	c.stats.Emitted++
}

// flowRemoved runs the NFs' FlowEnd hooks for a flow leaving the table and frees its state.
func (c *Chain) flowRemoved(f *flowtable.Flow, now int64, _ bool) {
	if c.ck.on {
		c.ck.gone = append(c.ck.gone, f.Key)
	}
	if c.ended++; c.ended%workChunk == 0 {
		c.work.Add(1)
	}
	saved := c.ctx
	ctx := &c.ctx
	ctx.p = nil // hooks see the ending flow, not the packet whose arrival ended it
	ctx.now, ctx.flow, ctx.dir, ctx.draws, ctx.ops = now, f.Index(), Orig, 0, saved.ops
	for j, n := range c.nfs {
		if n.ender != nil {
			ctx.nf = j
			n.ender.FlowEnd(ctx)
		}
	}
	ops := ctx.ops
	slots := c.table.Slots(f.Index())
	for s, i := range slots {
		if i >= 0 {
			c.slots[s].release(i)
			slots[s] = -1
		}
	}
	c.ctx = saved
	c.ctx.ops = ops // keep store tags unique within the packet
}

// Expire removes flows idle past their timeouts as of now (for instance at the end of a
// run, or when a unit receives a batch), running the NFs' FlowEnd hooks. Their store
// operations are tagged with the last clock the chain processed and sequence numbers of
// their own (high bit set, never reused), so no two collide with each other or with a
// packet's operations — a store that drops repeated tags keeps them all.
func (c *Chain) Expire(now int64) int {
	var n int
	c.outsidePacket(func() { n = c.table.Expire(now) })
	return n
}

// outsidePacket runs fn, which may end flows (FlowEnd hooks), outside any packet: the
// hooks' store operations are tagged with the last clock processed and sequence numbers of
// their own, never reused.
func (c *Chain) outsidePacket(fn func()) {
	c.ctx.p = nil
	c.ctx.clock, c.ctx.ops = c.lastClock, expireSeq|c.expireOps
	fn()
	c.expireOps = c.ctx.ops &^ expireSeq
	c.ctx.ops = 0
}

// expireSeq marks the sequence numbers of store operations that Expire causes.
const expireSeq = 1 << 31

// Stats returns the chain's packet counters.
func (c *Chain) Stats() ChainStats { return c.stats }

// noteAlias keeps a note of an announced or withdrawn reply key (ReportAliases).
// The note names the flow by the key of the current packet's direction as the flow table
// saw it (an NF may have rewritten the packet since).
//
// A withdrawal is always noted, and so is the flow's next announcement. An announcement that
// changed nothing (changed false: the alias was in place, as for every packet a NAT
// translates after a flow's first) is noted once per flow between two TakeAliases: the notes
// taken together are applied together (the root applies them between two of its reads), so
// a second such note would repeat the first — nothing since changed the flow's alias, or the
// flow table would have changed. Once per take, not once per flow: a root that forgot the
// flow since (its table's idle timeout or bound) learns the alias again from the flow's next
// packet.
func (c *Chain) noteAlias(f *flowtable.Flow, dir Dir, k packet.Key, forget, changed bool) {
	if !c.reportAliases {
		return
	}
	i := int(f.Index())
	if i >= len(c.notedAt) {
		c.notedAt = append(c.notedAt, make([]uint32, i+1-len(c.notedAt))...)
		c.notedAt = c.notedAt[:cap(c.notedAt)]
	}
	switch {
	case forget:
		// (Noted always: it may have changed nothing here — a key the flow no longer holds —
		// and still change the root's table, so the flow's next announcement is noted too.)
		c.notedAt[i] = 0
	case !changed && c.notedAt[i] == c.aliasTakes:
		return
	default:
		c.notedAt[i] = c.aliasTakes
	}
	from := f.Key
	if dir != flowtable.Orig {
		from = from.Reverse()
	}
	c.aliases = append(c.aliases, AliasNote{From: from, Alias: k, Forget: forget})
}

// TakeAliases appends the alias notes kept since the last call to dst (ReportAliases) and
// forgets them.
func (c *Chain) TakeAliases(dst []AliasNote) []AliasNote {
	dst = append(dst, c.aliases...)
	c.aliases = c.aliases[:0]
	if c.aliasTakes++; c.aliasTakes == 0 { // (wrapped: no flow's count may match a later one)
		clear(c.notedAt)
		c.aliasTakes = 1
	}
	return dst
}

// Scopes returns the scopes of the Scoped state the chain's NFs declared (one entry per
// declaration, in chain order).
func (c *Chain) Scopes() []ScopeBy {
	var s []ScopeBy
	for _, n := range c.nfs {
		s = append(s, n.scopes...)
	}
	return s
}

// WritesFrames reports whether one of the chain's NFs writes its packets' bytes itself
// (FrameWriter): then it must not be lent the packet log's frames.
func (c *Chain) WritesFrames() bool {
	for _, n := range c.nfs {
		if w, ok := n.nf.(FrameWriter); ok && w.WritesFrames() {
			return true
		}
	}
	return false
}

// HeadersOnly reports whether every NF of the chain reads only its packets' headers
// (HeaderReader) and none writes frames (FrameWriter): a replay may then zero the payloads
// of packets whose outputs were written.
func (c *Chain) HeadersOnly() bool {
	for _, n := range c.nfs {
		if h, ok := n.nf.(HeaderReader); !ok || !h.HeadersOnly() {
			return false
		}
	}
	return !c.WritesFrames()
}

// FlowTimeouts returns the idle timeouts of the chain's flow table (the defaults raised to
// what its NFs asked for).
func (c *Chain) FlowTimeouts() flowtable.Timeouts { return c.table.Timeouts() }

// FlowStats returns the flow table's counters.
func (c *Chain) FlowStats() flowtable.Stats { return c.table.Stats() }

// NFReport describes one NF instance's counters.
type NFReport struct {
	Name, Type string
	Stats      NFStats
	Metrics    []MetricValue
	Shared     []SharedDecl
	// FlowState names the per-flow state the NF declared.
	FlowState []string
}

// MetricValue is a metric's value at report time.
type MetricValue struct {
	Name, Help string
	Value      uint64
}

// Report returns every NF instance's counters, in chain order.
func (c *Chain) Report() []NFReport {
	r := make([]NFReport, len(c.nfs))
	for i, n := range c.nfs {
		r[i] = NFReport{Name: n.name, Type: n.typ, Stats: n.stats, Shared: n.shared, FlowState: n.flowState}
		for _, m := range n.metrics {
			r[i].Metrics = append(r[i].Metrics, MetricValue{m.Name, m.Help, m.v})
		}
	}
	return r
}

// NF returns the i-th NF instance (for tests and reports).
func (c *Chain) NF(i int) NF { return c.nfs[i].nf }

// Len returns the number of NFs.
func (c *Chain) Len() int { return len(c.nfs) }

// ExportFlow appends the flow with key k (either direction) to b: its key, history and
// reply alias, then for each declared flow state a presence byte and a length-prefixed
// value. The runtime uses it to move a flow to another unit (MoveOut) and to checkpoint it.
func (c *Chain) ExportFlow(k packet.Key, b []byte) ([]byte, error) {
	f, _, ok := c.table.Find(k)
	if !ok {
		return b, fmt.Errorf("snf: export %s: no such flow", k)
	}
	return c.exportFlow(f, b)
}

func (c *Chain) exportFlow(f *flowtable.Flow, b []byte) ([]byte, error) {
	b = appendKey(b, &f.Key)
	b = binary.BigEndian.AppendUint64(b, uint64(f.First))
	b = binary.BigEndian.AppendUint64(b, uint64(f.Last))
	b = binary.BigEndian.AppendUint64(b, f.Packets)
	b = binary.BigEndian.AppendUint32(b, f.Flowlets)
	if ak, dir, ok := f.AliasKey(); ok {
		b = append(b, 1, byte(dir))
		b = appendKey(b, &ak)
	} else {
		b = append(b, 0)
	}
	for s, i := range c.table.Slots(f.Index()) {
		if i < 0 {
			b = append(b, 0)
			continue
		}
		b = append(b, 1, 0, 0, 0, 0)
		at := len(b)
		var err error
		if b, err = c.slots[s].appendState(b, i); err != nil {
			return b, fmt.Errorf("snf: export %s: %s: %w", f.Key, c.slots[s].stateName(), err)
		}
		binary.BigEndian.PutUint32(b[at-4:], uint32(len(b)-at))
	}
	return b, nil
}

// Flows calls fn with the key and the exported state (as ExportFlow) of every flow of the
// chain, until fn returns false. For checkpoints, tests and reports; not the packet path.
func (c *Chain) Flows(fn func(k packet.Key, state []byte) bool) error {
	var err error
	c.table.Range(func(f *flowtable.Flow) bool {
		var b []byte
		if b, err = c.exportFlow(f, nil); err != nil {
			return false
		}
		return fn(f.Key, b)
	})
	return err
}

// MoveOut exports the flow with key k (either direction) to b, as ExportFlow, and removes it
// from this chain without running FlowEnd hooks: the flow lives on in another unit. found is
// false (and b unchanged) when this chain has no such flow.
func (c *Chain) MoveOut(k packet.Key, b []byte) (_ []byte, found bool, err error) {
	f, _, ok := c.table.Find(k)
	if !ok {
		return b, false, nil
	}
	if b, err = c.exportFlow(f, b); err != nil {
		return b, true, err
	}
	if c.ck.on {
		c.ck.gone = append(c.ck.gone, f.Key)
	}
	slots := c.table.Slots(f.Index())
	for s, i := range slots {
		if i >= 0 {
			c.slots[s].release(i)
			slots[s] = -1
		}
	}
	c.table.Detach(f)
	return b, true, nil
}

const keyLen = 16 + 16 + 2 + 2 + 1 + 1

func appendKey(b []byte, k *packet.Key) []byte {
	b = append(b, k.Src[:]...)
	b = append(b, k.Dst[:]...)
	b = binary.BigEndian.AppendUint16(b, k.SrcPort)
	b = binary.BigEndian.AppendUint16(b, k.DstPort)
	v6 := byte(0)
	if k.V6 {
		v6 = 1
	}
	return append(b, k.Proto, v6)
}

// exportedAlias returns the alias key of a flow as exportFlow wrote it, from rest, what
// follows the flow's key (first, last, packets, flowlets, then the alias flag, direction
// and key, as importFlow reads them); false when it has none or it is malformed.
func exportedAlias(rest []byte) (packet.Key, bool) {
	if len(rest) < 30 || rest[28] != 1 {
		return packet.Key{}, false
	}
	alias, _, ok := readKey(rest[30:])
	return alias, ok
}

func readKey(b []byte) (k packet.Key, rest []byte, ok bool) {
	if len(b) < keyLen {
		return k, b, false
	}
	copy(k.Src[:], b)
	copy(k.Dst[:], b[16:])
	k.SrcPort = binary.BigEndian.Uint16(b[32:])
	k.DstPort = binary.BigEndian.Uint16(b[34:])
	k.Proto, k.V6 = b[36], b[37] == 1
	return k, b[keyLen:], b[37] <= 1
}

// errStateTruncated is made once: ImportFlow runs per handover, and per packet under the
// per-packet policy.
var errStateTruncated = errors.New("state truncated")

// ImportFlow creates a flow from what ExportFlow or MoveOut wrote, in a chain built from
// the same spec. A flow with the same key already here is an older incarnation (it went
// idle here while the flow lived on elsewhere): it ends first, with its FlowEnd hooks. On
// malformed input ImportFlow fails and changes nothing.
func (c *Chain) ImportFlow(b []byte) error { return c.importFlow(b, false) }

// importFlow is ImportFlow; with restore (Chain.Restore: the record is the state, not
// events) no flow here ends: the flow takes its keys over from the flows that hold them.
func (c *Chain) importFlow(b []byte, restore bool) error {
	errTrunc := errStateTruncated
	k, b, ok := readKey(b)
	if !ok {
		return fmt.Errorf("snf: import: bad flow key")
	}
	if len(b) < 8+8+8+4+1 {
		return fmt.Errorf("snf: import %s: %w", k, errTrunc)
	}
	first, last := int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))
	packets, flowlets := binary.BigEndian.Uint64(b[16:]), binary.BigEndian.Uint32(b[24:])
	hasAlias, b := b[28] == 1, b[29:]
	var alias packet.Key
	var aliasDir Dir
	if hasAlias {
		if len(b) < 1 {
			return fmt.Errorf("snf: import %s: %w", k, errTrunc)
		}
		aliasDir = Dir(b[0] & 1)
		if alias, b, ok = readKey(b[1:]); !ok {
			return fmt.Errorf("snf: import %s: bad alias key", k)
		}
	}
	vals := make([]int32, len(c.slots))
	for s := range vals {
		vals[s] = -1
	}
	fail := func(err error) error {
		for s, i := range vals {
			if i >= 0 {
				c.slots[s].release(i)
			}
		}
		return fmt.Errorf("snf: import %s: %w", k, err)
	}
	for s := range c.slots {
		if len(b) < 1 {
			return fail(errTrunc)
		}
		if b[0] == 0 {
			b = b[1:]
			continue
		}
		if len(b) < 5 {
			return fail(errTrunc)
		}
		n := int(binary.BigEndian.Uint32(b[1:]))
		if n > len(b)-5 {
			return fail(errTrunc)
		}
		i, err := c.slots[s].loadState(b[5 : 5+n])
		if err != nil {
			return fail(err)
		}
		vals[s] = i
		b = b[5+n:]
	}
	if len(b) != 0 {
		return fail(fmt.Errorf("%d trailing bytes", len(b)))
	}
	var f *flowtable.Flow
	c.outsidePacket(func() { // ending an old incarnation, or an eviction, runs FlowEnd hooks
		if restore {
			// Restore dropped the flow's older version. A flow that holds k now took it
			// over (k is its alias or reply key, or the Key of a flow made after k's was
			// taken, listed later in the record): the restored flow takes it, the other
			// keeps what else it has — the keys as they were when the record was written,
			// had the record listed the flows in the order they were made.
			f = c.table.RestoreOver(k, first, last, packets, flowlets, alias, aliasDir, hasAlias)
			return
		}
		if old, _, exists := c.table.Find(k); exists {
			// An older incarnation of the flow that ended (idle) here while the flow lived on
			// elsewhere: the incoming state is the flow's; the old one ends now.
			c.table.Remove(old, last)
		}
		f = c.table.Restore(k, first, last, packets, flowlets, alias, aliasDir, hasAlias)
	})
	if f == nil {
		return fail(errors.New("flow exists"))
	}
	copy(c.table.Slots(f.Index()), vals)
	if c.ck.on {
		c.trackFlow(f.Index())
	}
	if i := int(f.Index()); i < len(c.notedAt) {
		c.notedAt[i] = 0 // (its alias came in place here unnoted: its next announcement is noted)
	}
	return nil
}

// Close closes every NF that implements io.Closer, and the store if the chain owns it.
func (c *Chain) Close() error {
	var errs []error
	for _, n := range c.nfs {
		if cl, ok := n.nf.(io.Closer); ok {
			if err := cl.Close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: close: %w", n.name, err))
			}
		}
	}
	if c.ownStore {
		errs = append(errs, c.store.Close())
	}
	return errors.Join(errs...)
}
