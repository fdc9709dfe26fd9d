package replay

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/snf-dev/snf/internal/queue"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/unit"
)

// Log is the root's packet log: every batch the root sent a unit — its packets, with their
// clocks, its handover controls and its time — kept until a checkpoint of that unit covers
// it. When a unit fails, its batches after its latest checkpoint are replayed, in order, to
// its replacement.
//
// From an input that can read its packets again (Src: memory, a capture file), the log
// keeps where each packet is in it (packet.Packet.Pos) and its metadata, no frame: a replay
// reads the frames again; the units get the frames as without a log (the live engine lends
// them from an arena of its own, reused as soon as the egress wrote them: engine/lend.go).
// The metadata is taken from the batch once its unit processed it (Entry.Prepare), not by
// the root: by the unit, or by the engine's egress once it wrote the batch's outputs (off the
// batch's path: unit.Batch.LogAtEgress).
//
// From any other input, frames are not copied into the log either: the root reads its
// packets into the log's arena (Arena: packet.Packet.UseArena), one after another, and
// hands each packet over as it dispatches it (Keep), which lends the frame to the unit's
// batch (Lend): the unit rewrites it in place, and the log keeps a copy of the headers
// rewrites change, to replay the frame as it was read. Append then logs the batch those
// packets went into. The root writes nothing else per packet but a few counters of the
// batch being filled (keptRun: in cache, where an entry is memory a unit wrote last, and
// Append or Force folds them into the batch's entry): the unit fills the entry —
// the packets' metadata and that copy of their headers — before its chain runs
// (Entry.Prepare; unit.Batch.LogFirst), on its core. The arena's memory is freed as entries
// leave the log (Covered) and nothing holds it (Hold) — for a chain whose NFs read only
// headers, as soon as the egress wrote the batch (HeadersOnly: the log then keeps the
// headers) — and reused while it is still in cache. (A batch whose packets were not kept is
// copied.)
//
// The log is bounded (bytes of frames, and packets): Append refuses a batch that does not
// fit, and the engine then waits (back-pressure) and asks the units whose batches hold the
// log's head for a checkpoint; it never drops a batch. Memory is reused: in steady state the
// log allocates nothing, and a closed log's memory goes to the next (Close).
//
// A Log is used by one goroutine (the root's).
type Log struct {
	maxBytes, maxPackets int
	bytes, packets       int

	q    queue.FIFO[*Entry] // the logged batches, oldest first
	free []*Entry
	bufs [][]byte // free buffers for copied frames (length 0)
	pend []*Entry // by unit: the frames kept for the batch being filled
	run  []keptRun

	arena   *packet.Arena
	keptEnd uint64 // the arena position after the last frame kept: the root is done below it

	// Src, if set, is the input the root reads, which can read its frames again: Append
	// then keeps where each packet is in it (its Pos), not its frame.
	Src  Source
	hold uint64 // Hold's position (noPos: none)

	covered []uint64 // by unit: the position its latest durable checkpoint reflects

	// With Src: the entries whose first packet's position is below every later entry's,
	// oldest first (a monotonic queue: its front is LowPos), and the entries pushed so far.
	lows   queue.FIFO[lowMark]
	pushes uint64

	// HeadersOnly (Short): by unit, the highest Seq of a batch the egress wrote; and by
	// unit, the entries of frames Keep kept whose batch it had not written yet, oldest first.
	done     []atomic.Uint64
	flight   []queue.FIFO[flightMark]
	tailBufs [][]byte // free buffers for payloads kept (Entry.tails; length 0)

	// OnTrim, if set, is called with every entry leaving the log (covered by a checkpoint);
	// it may read the entry's Unit, Seq and Ctl.
	OnTrim func(e *Entry)
	// AtEgress (with Src) leaves the filling of the batches' entries to whoever takes a
	// batch after its unit (the engine's egress), not the unit: unit.Batch.LogAtEgress.
	AtEgress bool
	// Lend makes Keep lend the frames it keeps (true from NewLog). Off, the batches get
	// copies (a chain whose NFs write frames themselves: snf.FrameWriter) and the log saves
	// no headers.
	Lend bool

	stats   LogStats
	tickets uint64 // the last ticket given to an entry (newTicket)
}

// flightMark is an entry of Log.flight: an entry (in its use ticket) of unit's batch seq, and
// its frames' lowest arena position.
type flightMark struct {
	e                *Entry
	ticket, seq, low uint64
}

// lowMark is an entry of Log.lows: the entry pushed pushed-th, and its first packet's
// position in the input.
type lowMark struct{ pushed, pos uint64 }

// LogStats counts a log's work.
type LogStats struct {
	Appended, Trimmed, Refused uint64 // batches
	Copied                     uint64 // batches whose frames were copied (not kept)
	// With HeadersOnly: batches whose frames the log forgot once the egress wrote them
	// (Shortened), and of those, the batches some of whose payloads it copied first
	// (Tailed), and the packets whose payloads it copied (TailedPackets: a unit held them,
	// their batch was replayed, or the frame was not lent).
	Shortened, Tailed, TailedPackets uint64
	MaxBytes, MaxPackets             int // high-water marks
	Arena                            packet.ArenaStats
}

// Source is an input that can read a frame again (port.Rereader).
type Source interface {
	// Reread appends the n-byte frame at pos to dst.
	Reread(dst []byte, pos uint64, n int) ([]byte, error)
}

// Entry is one logged batch.
type Entry struct {
	Unit   int
	Seq    uint64
	Now    int64
	Ctl    []unit.Control
	pkts   []Meta   // its packets (Len, Meta) — or, filled compactly, at
	at     []atMeta // (positions, or frames Keep kept: compact, each relative to at0)
	at0    Meta     // at's base: Clock, Time and pos
	tunit  int64    // at's unit of time: 1 ns, or 1 µs (times seconds apart)
	mem    int      // bytes of its frames (and saved headers)
	low    uint64   // the lowest arena position of its frames (noPos: none there)
	own    [][]byte // frames not in the arena (Meta.own indexes them)
	hdrs   []byte   // the saved headers of the frames lent (Meta.hoff, Meta.hlen)
	arena  *packet.Arena
	src    Source
	n      int    // packets (set when pushed: the log's count)
	pushed uint64 // (with Src) which push logged it (Log.lows), from 1; 0: none

	// Frames Keep kept, before the entry is filled (from Keep's run, folded in at Append or
	// Force): how many, the first's and the last's clocks and Pos (holds), whether Keep lent
	// (Lend at its first Keep); and,
	// filled compactly (at), where each packet's saved headers are in hdrs (hoffs[i] to
	// hoffs[i+1]).
	kept           int
	clock0, clockN uint64
	pos0, posN     uint64
	lend           bool
	hoffs          []uint32

	// With HeadersOnly: short (at its first Keep; folded in as kept) makes a frame not
	// parsed to its L4 header save whole; abytes counts its frames' bytes in the arena (in
	// mem until gone); whole says a frame in the arena is not lent (no headers saved). Once
	// the egress wrote the batch the entry is gone: its frames in the arena are forgotten, a
	// replay takes the
	// saved headers and zeroes (HeaderReader) — or its frames' tails past them (tails, at
	// toffs by packet), copied as it went for the packets whose outputs may not all be
	// written: those a unit held for a handover (held: a bit per packet, bit 63 for any
	// from the 64th on), all of them when the batch was replayed, a frame not lent.
	short, whole, gone, replayed bool
	abytes                       int
	held                         atomic.Uint64
	tails                        []byte
	toffs                        []uint32

	// An entry is filled lazily (Prepare): made with Src, by the unit once its chain
	// processed the batch (or the egress once it took it); of frames Keep kept, by the unit
	// before its chain runs (it saves the headers the chain may rewrite:
	// unit.Batch.LogFirst) — or by the log when it needs the entry first (a replay). st is
	// the entry's ticket << 2 | its state (0 to fill, 1 being filled, 2 filled): a unit that
	// holds a batch of an entry since reused (a failed unit waking up) has another ticket.
	lazy   bool
	st     atomic.Uint64
	ticket uint64
	batch  *unit.Batch // (lazy) the batch to fill it from
}

// Meta is a logged packet's metadata (Entry.Meta); Entry.Frame returns its frame. (No
// pointer: the log's thousands of entries cost the garbage collector nothing to scan.)
type Meta struct {
	Time    int64
	Clock   uint64
	Flow    uint64
	pos     uint64 // the frame's arena position, or its index in Entry.own
	WireLen int32
	len     int32
	hoff    uint32 // the frame's saved headers: Entry.hdrs[hoff:hoff+hlen] (lent frames)
	hlen    uint8
	where   uint8 // inOwn, inArena (pos: its position) or inSource (pos: its Source position)
}

// atMeta is a packet kept by its position (in the input, or in the log's arena: frames
// Keep kept), compactly: half a Meta. The log holds
// a packet's metadata for a checkpoint interval, milliseconds, long out of the cache when
// it is reused: what the root pays for it is the cache lines it writes (measured: 48 bytes
// a packet cost the root ~7 ns of its ~60 in BenchmarkRecoveryPath). Times are in ns, or in
// µs when more than 2.1 s apart (a sparse capture read at full speed; a classic pcap's are
// whole µs). A batch whose packets do not fit (lengths ≥ 64 KiB; times more than 2.1 s apart
// and not whole µs, or more than 35 minutes apart; 4 GiB of input) is kept in Metas.
type atMeta struct {
	flow       uint64
	pos, clock uint32 // - at0's
	time       int32  // (time - at0's) / Entry.tunit
	wire, len  uint16
}

// Len returns the number of packets of the batch.
func (e *Entry) Len() int { return len(e.pkts) + len(e.at) }

// Meta returns the i-th packet's metadata.
func (e *Entry) Meta(i int) Meta {
	if len(e.at) == 0 {
		return e.pkts[i]
	}
	a := &e.at[i]
	m := Meta{Time: e.at0.Time + int64(a.time)*e.tunit, Clock: e.at0.Clock + uint64(a.clock),
		Flow: a.flow, pos: e.at0.pos + uint64(a.pos), WireLen: int32(a.wire), len: int32(a.len),
		where: inSource}
	if len(e.hoffs) > 0 { // frames Keep kept, in the arena
		m.where, m.hoff, m.hlen = inArena, e.hoffs[i], uint8(e.hoffs[i+1]-e.hoffs[i])
	}
	return m
}

// Where a logged packet's frame is (Meta.where).
const (
	inOwn = iota
	inArena
	inSource
)

// Frame returns the i-th packet's frame as the log holds it: a frame Keep lent may have had
// its headers rewritten in place since (Original returns it as it was read); nil for a
// frame left in the input (Src). (Not once the entry is gone: HeadersOnly.)
func (e *Entry) Frame(i int) []byte {
	m := e.Meta(i)
	switch m.where {
	case inArena:
		return e.arena.Frame(m.pos, int(m.len))
	case inSource:
		return nil
	}
	return e.own[m.pos]
}

// Original appends the i-th packet's frame as the root read it to dst: the headers saved
// when the entry was filled (before the unit's chain ran), then the rest of the frame
// (which no rewrite touches) — it does not read the saved part of the frame itself, which
// the unit it was lent to may be rewriting still; or the frame read again from the input
// (Src), which fails when the input no longer holds it.
func (e *Entry) Original(dst []byte, i int) ([]byte, error) {
	m := e.Meta(i)
	if m.where == inSource {
		if e.src == nil {
			return dst, errors.New("replay: a packet kept by its position, but the log has no input to read it again (Log.Src)")
		}
		return e.src.Reread(dst, m.pos, int(m.len))
	}
	dst = append(dst, e.hdrs[m.hoff:m.hoff+uint32(m.hlen)]...)
	if m.where == inArena && e.gone {
		// Its payload, if kept (Held; those not kept have none), else zeroes.
		if len(e.toffs) > 0 {
			if t := e.tails[e.toffs[i]:e.toffs[i+1]]; len(t) == int(m.len)-int(m.hlen) {
				return append(dst, t...), nil
			}
		}
		// Forgotten once the egress wrote the packet's outputs: the chain reads no
		// payload (HeaderReader), and the egress drops the outputs again.
		return append(dst, make([]byte, int(m.len)-int(m.hlen))...), nil
	}
	return append(dst, e.Frame(i)[m.hlen:]...), nil
}

const (
	// MaxHeader is the longest header (packet.Packet.Rewritable) Keep saves: a frame whose
	// rewritable headers are longer is not lent (IPv6 with long extension headers).
	MaxHeader = 255

	noPos = ^uint64(0)
	// bufSize is the size of the buffers of copied frames (a larger frame gets a larger one).
	bufSize = 2048
	// arenaBlock is the size of the arena's blocks: a few hundred frames.
	arenaBlock = 256 << 10
)

// NewLog returns a log bounded by maxBytes of frames and maxPackets packets, for units
// numbered below units. Its arena holds maxBytes, and as much again for what the bounds let
// past them (a batch per unit) and for frames the root read but dropped.
func NewLog(maxBytes, maxPackets, units int) *Log {
	l := &Log{maxBytes: maxBytes, maxPackets: maxPackets, covered: make([]uint64, units),
		pend: make([]*Entry, units), run: make([]keptRun, units), hold: noPos, Lend: true,
		tickets: logTickets.Add(1<<40) - 1<<40}
	for u := range l.run {
		l.run[u].low = noPos
	}
	l.arena = packet.NewArena(2*maxBytes+4*arenaBlock, arenaBlock)
	l.arena.OnNeed = l.release
	return l
}

// logTickets gives each log its own range of 2^40 entry tickets (Log.newTicket): an entry a
// closed log gave to the next (entryPool) never takes again a ticket a batch of the closed
// log holds (a goroutine of a finished run calling Prepare late — which Close's caller must
// rule out — finds the entry's ticket another and leaves it alone). 2^40 batches is
// 70 × 10^12 packets; 2^22 logs fit in a ticket (st holds ticket << 2).
var logTickets atomic.Uint64

// Close gives the log's arena memory, and its entries, to the logs made after it
// (packet.Arena.Close): call it once nothing reads a frame the log kept or lent, nor any
// entry, any more.
func (l *Log) Close() {
	l.arena.Close()
	for l.q.Len() > 0 {
		l.recycle(*l.q.Front())
		l.q.Drop()
	}
	for u, e := range l.pend {
		if e != nil {
			l.recycle(e)
			l.pend[u] = nil
		}
	}
	entryPool.mu.Lock()
	defer entryPool.mu.Unlock()
	for _, e := range l.free {
		n := e.footprint()
		if entryPool.bytes+n > maxPooledBytes {
			break
		}
		e.batch, e.arena, e.src = nil, nil, nil
		entryPool.free = append(entryPool.free, e)
		entryPool.bytes += n
	}
	l.free = nil
}

// entryPool holds the entries of closed logs. A log at full speed grows to a few hundred
// entries, each with room for a batch's metadata and headers (~6 KiB): made anew, they cost
// a run's first checkpoint interval allocations, zeroing and garbage collection — 3 points
// of the copying log's cost in the 250,000-packet benchmark (BENCHMARKS.md, issue 6,
// twentieth session).
var entryPool struct {
	mu    sync.Mutex
	free  []*Entry
	bytes int // their footprints
}

// maxPooledBytes bounds entryPool: a few thousand entries of batches of 64.
const maxPooledBytes = 32 << 20

// footprint returns the bytes of e's buffers (roughly: the slices it keeps for reuse).
func (e *Entry) footprint() int {
	return int(unsafe.Sizeof(*e)) + cap(e.at)*int(unsafe.Sizeof(atMeta{})) + cap(e.pkts)*int(unsafe.Sizeof(Meta{})) +
		cap(e.hdrs) + 4*(cap(e.hoffs)+cap(e.toffs)) + cap(e.Ctl)*int(unsafe.Sizeof(unit.Control{})) + 24*cap(e.own)
}

// Arena returns the arena the root reads packets into (packet.Packet.UseArena), so that
// Keep takes their frames without a copy.
func (l *Log) Arena() *packet.Arena { return l.arena }

// Keep takes p's frame into the log as the next packet of the batch being filled for unit
// u (the batch Append logs next for u), once the root set p's clock and flow, before it puts
// p in that batch. The root keeps its packets in the order it read them. p's frame, read into
// the log's arena, stays where it is (p's next SetData puts its next frame elsewhere); a
// frame read elsewhere changes hands (p.Data stays readable) or, when it is not p's own
// buffer, is copied. Drop forgets what was kept for a batch that is not sent.
//
// Keep returns the frame, in the arena, for the batch's packet to borrow
// (packet.Packet.Borrow) instead of copying it — nil when it is not lent (Lend off, not in
// the arena, or headers longer than MaxHeader): the unit then rewrites the frame in place,
// having saved a copy of the headers the rewrites may change (packet.Packet.Rewritable)
// into the entry before its chain ran (Prepare), from which a replay restores the frame as
// read (Entry.Original). The frame's memory stays the frame's until its entry leaves the
// log (with HeadersOnly, until the egress wrote its batch), and past that as long as Hold
// says. Keep sets p's Pos to where the log holds its frame: the batch's packet must be made
// from p after Keep (Borrow, CopyFrom), and take it to the unit, which fills the entry from
// it. (Not with Src: Pos is then the input's.)
func (l *Log) Keep(u int, p *packet.Packet) []byte {
	// Per packet, the root writes p's Pos and its run's counters (run: a few words, in
	// cache, where the entry is memory a unit filled last), and takes a frame not in the
	// arena: the unit takes the metadata and copies the headers, on its core (fillKept).
	// entry folds the run into the batch's entry.
	r := &l.run[u]
	if r.n == 0 {
		r.clock0, r.lend, r.short = p.Clock, l.Lend, l.done != nil
	}
	r.n++
	r.clockN = p.Clock
	pos, arena := p.ArenaPos()
	if arena {
		n := (len(p.Data) + 63) &^ 63
		r.mem += n
		r.abytes += n
		r.low = min(r.low, pos)
		l.keptEnd = max(l.keptEnd, pos+uint64(len(p.Data)))
		p.Pos = pos // (the batch's packet takes it along)
	} else {
		e := l.pending(u)
		d := p.SwapBuf(nil)
		if d == nil { // p.Data is not p's own buffer
			d = append(l.buf(), p.Data...)
		}
		p.Pos = ownPos | uint64(len(e.own))
		e.own = append(e.own, d)
		r.mem += cap(d)
	}
	if r.n == 1 {
		r.pos0 = p.Pos
	}
	r.posN = p.Pos
	if w, ok := lends(r.lend, r.short, p); ok { // the unit copies its headers before its chain rewrites it
		r.mem += w
		return p.Data
	}
	r.whole = r.whole || arena
	return nil // not lent: the batch takes a copy (Lend off, long headers, or not in the arena)
}

// keptRun is what Keep kept for a unit's batch being filled, until entry folds it into the
// batch's entry (Entry's fields of the same names; n is Entry.kept).
type keptRun struct {
	n                          int
	clock0, clockN, pos0, posN uint64
	low                        uint64
	mem, abytes                int
	lend, short, whole         bool
}

// fold moves unit u's run into its pending entry.
func (l *Log) fold(u int) {
	r := &l.run[u]
	if r.n == 0 {
		return
	}
	e := l.pending(u)
	e.kept, e.clock0, e.clockN, e.pos0, e.posN = r.n, r.clock0, r.clockN, r.pos0, r.posN
	e.lend, e.short, e.whole = r.lend, r.short, e.whole || r.whole
	e.low = min(e.low, r.low)
	e.mem += r.mem
	e.abytes += r.abytes
	*r = keptRun{low: noPos}
}

// lends reports whether e's kept packet p (its Pos Keep's) is lent, and its headers'
// length, as Keep decided (lends, with its run's lend and short, which fold gave e).
func (e *Entry) lends(p *packet.Packet) (w int, ok bool) { return lends(e.lend, e.short, p) }

// lends reports whether a kept packet p (its Pos Keep's) is lent, with Lend lend and
// HeadersOnly short, and its headers' length: Keep and fillKept decide alike (the same
// Lend, the same parse). With HeadersOnly, the headers saved are also all a replay gives the
// chain once the entry is gone: a frame not parsed to its L4 header (an NF may read any of
// it) is saved whole.
func lends(lend, short bool, p *packet.Packet) (w int, ok bool) {
	w = p.Rewritable()
	if short && p.Flags&packet.HasL4 == 0 {
		w = len(p.Data)
	}
	return w, lend && p.Pos&ownPos == 0 && w <= MaxHeader
}

// ownPos marks a kept packet's Pos as an index in Entry.own (a frame not in the arena).
const ownPos = 1 << 63

// Prepare fills the entry Append made for batch b from b's packets, unless it was filled
// already or is another batch's now (unit.Preparer). With Src, the unit calls it once its
// chain processed b, before it sends b on — or the egress once it took b, before it hands b
// back (b.LogAtEgress) and says it is done with it: it reads only what no NF rewrites (Time,
// Clock, Flow, Pos, WireLen, the frame's length), so the log may fill the entry from b while
// a unit declared failed still processes b. Of frames Keep kept (b.LogFirst), the unit calls
// it before its chain runs: it also copies the headers of the frames lent, which the chain
// rewrites next — and a unit whose entry the log fills first waits here until the log has
// copied them. If the log is filling it, Prepare returns once the log is done.
func (e *Entry) Prepare(b *unit.Batch) {
	t := b.LogTicket
	if !e.claim(t, b) {
		for e.st.Load() == t<<2|1 { // (another ticket's: nothing to wait for)
			runtime.Gosched()
		}
	}
}

// Held records that the unit holds packet i of batch b for a handover (unit.Preparer): it
// leaves after b went to the egress, so the log keeps its payload (HeadersOnly). Marks are
// only ever added until the entry leaves the log: a failed unit's late call for an earlier
// use of the entry, landing in a later use, makes the log keep a payload it did not need,
// never forget one it does.
func (e *Entry) Held(b *unit.Batch, i int) {
	e.held.Or(1 << min(i, 63))
}

// ready makes sure a lazy entry is filled (the log's goroutine, before it reads the entry's
// packets): it fills it from its batch if no unit started to, else waits for the unit to
// finish (a loop over the batch's packets, microseconds).
func (e *Entry) ready() {
	if !e.lazy {
		return
	}
	t := e.ticket
	if !e.claim(t, e.batch) {
		for e.st.Load() != t<<2|2 {
			runtime.Gosched()
		}
	}
}

// claim fills e from b if e's use is ticket t's and no one started to fill it (the unit or
// the log: whichever comes first), and reports whether it did.
func (e *Entry) claim(t uint64, b *unit.Batch) bool {
	if !e.st.CompareAndSwap(t<<2, t<<2|1) {
		return false
	}
	e.fill(b)
	e.st.Store(t<<2 | 2)
	return true
}

// fill keeps b's packets, at their Pos (in Src; or frames Keep kept: fillKept), compactly
// when they fit (fillAt), else in Metas.
func (e *Entry) fill(b *unit.Batch) {
	if e.kept > 0 {
		e.fillKept(b)
		return
	}
	if !e.fillAt(b) {
		for i := range b.N {
			p := &b.Pkts[i]
			m := e.add(p)
			m.pos, m.where = p.Pos, inSource
		}
	}
}

// fillKept fills an entry of frames Keep kept from b, before b's chain runs: each packet's
// metadata, its frame's place (its Pos: Keep's), and a copy of the headers the chain may
// rewrite in a frame lent to it — compactly (at, hoffs) when they fit, else in Metas.
func (e *Entry) fillKept(b *unit.Batch) {
	compact := len(e.own) == 0 && e.fillAt(b)
	if compact {
		e.hoffs = slices.Grow(e.hoffs[:0], b.N+1)[:b.N+1]
	}
	for i := range b.N {
		p := &b.Pkts[i]
		hoff := len(e.hdrs)
		if w, ok := e.lends(p); ok { // the chain rewrites it in place
			e.hdrs = append(e.hdrs, p.Data[:w]...)
		}
		if compact {
			e.hoffs[i] = uint32(hoff)
			continue
		}
		m := e.add(p)
		m.pos, m.where = p.Pos, inArena
		if p.Pos&ownPos != 0 {
			m.pos, m.where = p.Pos&^ownPos, inOwn
		}
		m.hoff, m.hlen = uint32(hoff), uint8(len(e.hdrs)-hoff)
	}
	if compact {
		e.hoffs[b.N] = uint32(len(e.hdrs))
	}
}

// fillAt keeps b's packets, at their Pos, in e.at, and reports whether they fit
// it: times in ns, or in µs when they are more than 2.1 s apart (a sparse capture at full speed,
// whose batches span seconds of its time; a classic pcap's times are whole µs).
func (e *Entry) fillAt(b *unit.Batch) bool {
	if b.N == 0 {
		return false
	}
	// µs straight away when the first and last packets are too far apart for ns (the
	// sparse capture's every batch), so its batches are not filled twice.
	span := b.Pkts[b.N-1].Time - b.Pkts[0].Time
	micro := span != int64(int32(span))
	ok, far := e.fillIn(b, micro)
	if !ok && far && !micro {
		ok, _ = e.fillIn(b, true)
	}
	if !ok {
		e.at = e.at[:0]
	}
	return ok
}

// fillIn is fillAt with times in ns, or in µs if micro; far reports times too far apart for
// it.
func (e *Entry) fillIn(b *unit.Batch, micro bool) (ok, far bool) {
	p0 := &b.Pkts[0]
	e.at0.Time, e.at0.Clock, e.at0.pos, e.tunit = p0.Time, p0.Clock, p0.Pos, 1
	if micro {
		e.tunit = 1000
	}
	e.at = slices.Grow(e.at[:0], b.N)[:b.N]
	for i := range e.at {
		p := &b.Pkts[i]
		dp, dc, dt := p.Pos-p0.Pos, p.Clock-p0.Clock, p.Time-p0.Time
		if micro { // (by a constant: a multiplication, not a 64-bit division)
			if dt%1000 != 0 {
				return false, false
			}
			dt /= 1000
		}
		if dt != int64(int32(dt)) {
			return false, true
		}
		if dp > math.MaxUint32 || dc > math.MaxUint32 || uint(p.WireLen) > math.MaxUint16 || uint(len(p.Data)) > math.MaxUint16 {
			return false, false
		}
		a := &e.at[i]
		a.flow, a.pos, a.clock, a.time, a.wire, a.len = p.Flow, uint32(dp), uint32(dc), int32(dt), uint16(p.WireLen), uint16(len(p.Data))
	}
	return true, false
}

// holds reports whether e was made for batch b: the same batch (lazy), or the same packets
// by their clocks (frames Keep kept).
func (e *Entry) holds(b *unit.Batch) bool {
	if e.lazy {
		return e.batch == b && b.Log == e && b.LogTicket == e.ticket
	}
	if e.kept > 0 {
		return e.kept == b.N && e.clock0 == b.Pkts[0].Clock && e.clockN == b.Pkts[b.N-1].Clock &&
			e.pos0 == b.Pkts[0].Pos && e.posN == b.Pkts[b.N-1].Pos
	}
	n := len(e.pkts)
	return n == b.N && (n == 0 || e.pkts[0].Clock == b.Pkts[0].Clock && e.pkts[n-1].Clock == b.Pkts[n-1].Clock)
}

// pending returns the entry of unit u's batch being filled, starting one if need be.
func (l *Log) pending(u int) *Entry {
	e := l.pend[u]
	if e == nil {
		e = l.alloc()
		l.pend[u] = e
	}
	return e
}

// add appends p's metadata (field by field: a struct literal appended goes through a
// temporary on the stack, measured 2× slower); the caller says where its frame is.
func (e *Entry) add(p *packet.Packet) *Meta {
	n := len(e.pkts)
	if n < cap(e.pkts) {
		e.pkts = e.pkts[:n+1]
	} else {
		e.pkts = append(e.pkts, Meta{})
	}
	m := &e.pkts[n]
	m.Time, m.WireLen, m.Clock, m.Flow, m.len = p.Time, int32(p.WireLen), p.Clock, p.Flow, int32(len(p.Data))
	m.hoff, m.hlen = 0, 0
	return m
}

// addOwn appends p with its frame d, a buffer of the log's own.
func (e *Entry) addOwn(p *packet.Packet, d []byte) {
	m := e.add(p)
	m.pos, m.where = uint64(len(e.own)), inOwn
	e.own = append(e.own, d)
	e.mem += cap(d)
}

// Drop forgets the frames kept for unit u's batch being filled (it will not be sent).
func (l *Log) Drop(u int) {
	l.run[u] = keptRun{low: noPos}
	if e := l.pend[u]; e != nil {
		l.pend[u] = nil
		l.recycle(e)
	}
}

// Hold keeps the arena's memory from position pos on (noPos, or Hold(^uint64(0)): none held)
// even once the entries holding it leave the log: the engine holds the frames lent to a unit
// that failed while it may still be rewriting them.
func (l *Log) Hold(pos uint64) { l.hold = pos }

// LowSince returns the lowest arena position of unit's logged batches above pos (^uint64(0):
// none), what a failed unit may still be rewriting — not of those the egress wrote already
// and the log forgot (HeadersOnly: their memory may be another frame's; a unit that fails now
// is done with them, and a zombie of an earlier failure holds what it may still rewrite).
func (l *Log) LowSince(unit int, pos uint64) uint64 {
	low := noPos
	for i := range l.q.Len() { // (e.low is the root's: no entry need be filled)
		if e := *l.q.At(i); e.Unit == unit && e.Seq > pos && !e.gone {
			low = min(low, e.low)
		}
	}
	return low
}

// release frees the arena below the frames the log still holds (the arena's OnNeed).
func (l *Log) release() {
	low := min(l.keptEnd, l.hold)
	if l.done != nil {
		low = min(low, l.inFlight())
	} else {
		for i := range l.q.Len() {
			low = min(low, (*l.q.At(i)).low)
		}
	}
	for u, e := range l.pend {
		if e != nil {
			low = min(low, e.low)
		}
		low = min(low, l.run[u].low)
	}
	l.arena.Free(low)
}

// HeadersOnly makes the log forget the frames Keep kept once the egress wrote their batch
// (done: by unit, the highest Seq of a batch it wrote, which the engine's egress stores),
// and keep their headers only (Entry.Original), for a chain whose NFs read nothing else
// (snf.HeaderReader): the arena then holds the frames in flight, not a checkpoint
// interval's, and reuses their memory while it is still in cache. The payloads of a batch
// whose outputs may not all have been written when the egress wrote it — a unit held some of
// its packets for a handover (Entry.Held), it was replayed, or a frame was not lent — are
// copied before the frames are forgotten. Call it before the first Keep, with Lend on.
func (l *Log) HeadersOnly(done []atomic.Uint64) {
	l.done, l.flight = done, make([]queue.FIFO[flightMark], len(l.covered))
}

// maxTailBufs bounds the free buffers of payloads kept (HeadersOnly) the log keeps for reuse:
// the others go to the garbage collector (payloads are kept for a few batches, those held
// for handovers or replayed; the log counts a buffer's capacity while an entry holds it).
const maxTailBufs = 64

// inFlight forgets the frames of the entries whose batch the egress wrote (shorten), and
// returns the lowest arena position of the others' (HeadersOnly). A unit's batches borrow
// frames in the order the root read them: the front of its queue has its lowest.
func (l *Log) inFlight() uint64 {
	low := noPos
	for u := range l.flight {
		q := &l.flight[u]
		done := l.done[u].Load()
		for q.Len() > 0 && q.Front().seq <= done && l.shorten(q.Front()) {
			q.Drop()
		}
		if q.Len() > 0 {
			low = min(low, q.Front().low)
		}
	}
	return low
}

// shorten forgets the frames of m's entry, whose batch the egress wrote, copying their
// payloads first when a replay may need them (Entry.gone), and reports whether it did — not
// while the entry is not filled (an entry of frames Keep kept is filled before its batch
// reaches the egress — its unit filled it before its chain ran, or a replay did; the
// frames stay if not).
func (l *Log) shorten(m *flightMark) bool {
	e := m.e
	if e.ticket != m.ticket {
		return true // it left the log since: nothing replays it
	}
	if e.st.Load() != e.ticket<<2|2 {
		return false
	}
	if held := e.held.Load(); e.whole || e.replayed || held != 0 {
		n := e.Len()
		e.toffs = slices.Grow(e.toffs[:0], n+1)[:n+1]
		if k := len(l.tailBufs); k > 0 {
			e.tails, l.tailBufs = l.tailBufs[k-1], l.tailBufs[:k-1]
		}
		kept := 0
		for i := range n {
			e.toffs[i] = uint32(len(e.tails))
			// Held, replayed, or not lent (no headers saved: hlen 0).
			if pm := e.Meta(i); pm.where == inArena && (e.replayed || pm.hlen == 0 || held&(1<<min(i, 63)) != 0) {
				e.tails = append(e.tails, e.arena.Frame(pm.pos, int(pm.len))[pm.hlen:]...)
				kept++
			}
		}
		e.toffs[n] = uint32(len(e.tails))
		if kept == 0 { // (a failed unit's late marks past the batch, or frames not in the arena)
			if cap(e.tails) > 0 && len(l.tailBufs) < maxTailBufs {
				l.tailBufs = append(l.tailBufs, e.tails[:0])
			}
			e.tails, e.toffs = nil, e.toffs[:0]
		} else {
			l.stats.Tailed++
			l.stats.TailedPackets += uint64(kept)
		}
	}
	e.gone = true
	d := cap(e.tails) - e.abytes
	e.mem += d
	l.bytes += d
	l.stats.Shortened++
	return true
}

// buf returns a free buffer for a copied frame.
func (l *Log) buf() []byte {
	if k := len(l.bufs); k > 0 {
		b := l.bufs[k-1]
		l.bufs = l.bufs[:k-1]
		return b
	}
	return make([]byte, 0, bufSize)
}

// entry returns the entry for batch b: with Src, one that keeps its packets' positions
// (filled lazily: Prepare); else the frames kept for it (filled lazily too, by the unit
// before its chain runs: b.LogFirst), or (when they are not b's packets) a copy of b's. It
// stays pending until it is pushed.
func (l *Log) entry(b *unit.Batch) *Entry {
	l.fold(b.Unit)
	e := l.pend[b.Unit]
	if e != nil && e.holds(b) {
		if e.kept > 0 && !e.lazy {
			// Frames Keep kept for b: the unit fills the entry before its chain runs.
			e.lazy, e.batch = true, b
			b.Log, b.LogTicket, b.LogFirst = e, e.ticket, true
		}
		return e // (or refused before: the same batch)
	}
	if e != nil {
		if !e.lazy || e.kept > 0 {
			// b's packets may borrow frames e kept, which go with e: they take copies first.
			for i := range b.N {
				b.Pkts[i].Own()
			}
		}
		l.recycle(e)
	}
	e = l.alloc()
	if l.Src != nil {
		e.lazy, e.batch = true, b
		b.Log, b.LogTicket, b.LogAtEgress = e, e.ticket, l.AtEgress // (its ticket is new: given when it was made or freed)
		l.pend[b.Unit] = e
		return e
	}
	for i := range b.N {
		p := &b.Pkts[i]
		e.addOwn(p, append(l.buf(), p.Data...))
	}
	if b.N > 0 {
		l.stats.Copied++
	}
	l.pend[b.Unit] = e
	return e
}

// Append logs batch b (b.Seq must be set). It returns false, logging nothing, when b does not
// fit in the bounds until older entries are trimmed; a batch larger than the bounds on its own
// is logged when the log is empty (so that it cannot block forever).
//
// With Src, the log keeps each packet's position in it (its Pos) and metadata, no frame,
// and lends nothing (the caller gives the batch the frames). It does not even take the
// metadata: b.Log.Prepare does, which the unit calls once its chain processed b (the
// packets in its core's cache), on its own core, or the egress once it wrote b's outputs
// (b.LogAtEgress) — the root, which reads and dispatches every packet, is the pipeline's
// busiest stage — or, for a batch no unit finished (its unit failed first), the log when a
// replay needs it. Until then — until the egress wrote b, with b.LogAtEgress — b's
// packets' Time, Clock, Flow, Pos, WireLen and frame lengths must stay as the root sent
// them (no NF rewrites those: it rewrites headers in place; nor does an output's Write).
// Of frames Keep kept, the same, and the unit calls b.Log.Prepare before its chain runs
// (b.LogFirst): nothing may write the frames lent before, as the entry copies their headers
// then.
func (l *Log) Append(b *unit.Batch) bool { return l.appendEntry(l.entry(b), b) }

func (l *Log) appendEntry(e *Entry, b *unit.Batch) bool {
	if l.q.Len() > 0 && l.exceeds(e.mem, b.N) {
		l.stats.Refused++
		return false
	}
	l.push(e, b)
	return true
}

// exceeds reports whether the log would exceed its bounds with n more bytes and k more
// packets — after forgetting the frames of the batches the egress wrote (HeadersOnly), if it
// would otherwise: the arena does so only when it needs memory.
func (l *Log) exceeds(n, k int) bool {
	over := func() bool { return l.bytes+n > l.maxBytes || l.packets+k > l.maxPackets }
	if over() && l.done != nil {
		l.inFlight()
	}
	return over()
}

// Force logs b even beyond the bounds (Over then reports it). The engine logs a refused
// batch so, sends it on — it may carry the handover Marker a unit waits for, and a unit
// waiting for a state cannot checkpoint — and then waits until the log is back within its
// bounds before it dispatches more: the log exceeds them by at most one batch per unit.
func (l *Log) Force(b *unit.Batch) { l.push(l.entry(b), b) }

func (l *Log) push(e *Entry, b *unit.Batch) {
	l.pend[b.Unit] = nil
	e.Unit, e.Seq, e.Now = b.Unit, b.Seq, b.Now
	e.Ctl = append(e.Ctl[:0], b.Ctl...)
	l.q.Push(e)
	e.n = b.N
	if l.done != nil && e.kept > 0 && e.low != noPos {
		l.flight[b.Unit].Push(flightMark{e, e.ticket, b.Seq, e.low})
	}
	if l.Src != nil && b.N > 0 {
		// A unit's packets go into its batches in the order they were read, so a batch's
		// first packet is its lowest position; entries of different units interleave.
		l.pushes++
		e.pushed = l.pushes
		first := b.Pkts[0].Pos
		for l.lows.Len() > 0 && l.lows.Back().pos >= first {
			l.lows.DropBack()
		}
		l.lows.Push(lowMark{e.pushed, first})
	}
	l.bytes += e.mem
	l.packets += e.n
	l.stats.Appended++
	l.stats.MaxBytes = max(l.stats.MaxBytes, l.bytes)
	l.stats.MaxPackets = max(l.stats.MaxPackets, l.packets)
}

// alloc returns an empty entry.
func (l *Log) alloc() *Entry {
	if k := len(l.free); k > 0 {
		e := l.free[k-1]
		l.free = l.free[:k-1]
		e.src = l.Src
		return e
	}
	var e *Entry
	entryPool.mu.Lock()
	if k := len(entryPool.free); k > 0 {
		e = entryPool.free[k-1]
		entryPool.free = entryPool.free[:k-1]
		entryPool.bytes -= e.footprint()
	}
	entryPool.mu.Unlock()
	if e == nil {
		// (What a batch of 64 fills: positions, or frames kept, compactly — Metas grow
		// when used, for frames copied or kept but not compact.)
		e = &Entry{low: noPos, at: make([]atMeta, 0, 64)}
	}
	e.arena, e.src = l.arena, l.Src
	l.newTicket(e)
	if l.Src == nil && cap(e.hdrs) == 0 {
		// (And the headers of 64 frames: grown in the unit's fill, they would be grown
		// again by every entry made as the log grows to its peak, hundreds a run.)
		e.hoffs, e.hdrs = make([]uint32, 0, 65), make([]byte, 0, 64*80)
	}
	return e
}

// recycle returns e (and the buffers of its copied frames) to the free lists; its arena
// frames are freed by the next release.
func (l *Log) recycle(e *Entry) {
	for i, d := range e.own { // (arena frames need nothing: the arena frees its memory)
		if cap(d) >= bufSize {
			l.bufs = append(l.bufs, d[:0])
		}
		e.own[i] = nil
	}
	e.pkts, e.at, e.Ctl, e.mem, e.low, e.own, e.hdrs = e.pkts[:0], e.at[:0], e.Ctl[:0], 0, noPos, e.own[:0], e.hdrs[:0]
	e.lazy, e.batch, e.pushed, e.kept, e.hoffs = false, nil, 0, 0, e.hoffs[:0]
	if cap(e.tails) > 0 && len(l.tailBufs) < maxTailBufs {
		l.tailBufs = append(l.tailBufs, e.tails[:0])
	}
	e.short, e.whole, e.gone, e.replayed, e.abytes, e.tails, e.toffs = false, false, false, false, 0, nil, e.toffs[:0]
	if e.held.Load() != 0 { // (a store is a fence: only when a unit held packets of it)
		e.held.Store(0)
	}
	l.newTicket(e) // (a unit still holding e's batch — one that failed — has the old one)
	l.free = append(l.free, e)
}

// newTicket gives e its next use's ticket, state 0 (an atomic store, a fence: here, when e
// is made or freed, not on the root's path as it logs a batch).
func (l *Log) newTicket(e *Entry) {
	l.tickets++
	e.ticket = l.tickets
	e.st.Store(e.ticket << 2)
}

// Covered records that unit's state up to position pos (the Seq of the last batch a durable
// checkpoint reflects) is in the store, and trims the entries no longer needed: from the
// head, while the head entry's unit is covered past it.
func (l *Log) Covered(unit int, pos uint64) {
	if pos > l.covered[unit] {
		l.covered[unit] = pos
		l.trim()
	}
}

func (l *Log) trim() {
	for l.q.Len() > 0 {
		e := *l.q.Front()
		if e.Seq > l.covered[e.Unit] {
			return
		}
		if l.OnTrim != nil {
			l.OnTrim(e)
		}
		l.q.Drop()
		if l.lows.Len() > 0 && l.lows.Front().pushed == e.pushed {
			l.lows.Drop()
		}
		l.bytes -= e.mem
		l.packets -= e.n
		l.stats.Trimmed++
		l.recycle(e)
	}
}

// LowPos returns the lowest input position (Src) of the packets the log holds (^uint64(0):
// none): a replay may read any frame from there on again, none before it. (In O(1): a
// monotonic queue of the entries' first positions.)
func (l *Log) LowPos() uint64 {
	if l.lows.Len() == 0 {
		return noPos
	}
	return l.lows.Front().pos
}

// Over reports whether the log holds more than its bounds (after Force).
func (l *Log) Over() bool { return l.q.Len() > 1 && l.exceeds(0, 0) }

// CoveredAt returns the position unit's checkpoints are known to cover (Covered).
func (l *Log) CoveredAt(unit int) uint64 { return l.covered[unit] }

// Blocking returns the unit whose uncovered batch is at the log's head (the one to ask for
// a checkpoint when the log is full), or -1 when the log is empty.
func (l *Log) Blocking() int {
	if l.q.Len() == 0 {
		return -1
	}
	return (*l.q.Front()).Unit
}

// Since calls fn, in order, for every logged batch of unit with a Seq above pos.
func (l *Log) Since(unit int, pos uint64, fn func(e *Entry)) {
	for i := range l.q.Len() {
		if e := *l.q.At(i); e.Unit == unit && e.Seq > pos {
			e.ready()
			e.replayed = true // (its payloads are kept once the egress wrote it: HeadersOnly)
			fn(e)
		}
	}
}

// Until calls fn, in order, for every logged batch of unit with a Seq up to pos (batches a
// checkpoint covers that are still logged because an older batch of another unit is not).
// fn may read the entries' Unit, Seq and Ctl (their packets are not made ready: Since).
func (l *Log) Until(unit int, pos uint64, fn func(e *Entry)) {
	for i := range l.q.Len() {
		if e := *l.q.At(i); e.Unit == unit && e.Seq <= pos {
			fn(e)
		}
	}
}

// Fill makes b the batch e logged, its packets as the root read them (Original). It fails
// when a frame cannot be read again from the input.
func (e *Entry) Fill(b *unit.Batch) error {
	b.Reset()
	b.Unit, b.Seq, b.Now = e.Unit, e.Seq, e.Now
	b.Ctl = append(b.Ctl[:0], e.Ctl...)
	n := e.Len()
	if len(b.Pkts) < n {
		b.Pkts = append(b.Pkts, make([]packet.Packet, n-len(b.Pkts))...)
	}
	var tmp []byte
	for i := range n {
		m := e.Meta(i)
		p := &b.Pkts[i]
		var err error
		if tmp, err = e.Original(tmp[:0], i); err != nil { // the frame as read
			b.Reset()
			return fmt.Errorf("replay: packet %d (clock %d) of unit %d's batch %d: %w", i, m.Clock, e.Unit, e.Seq, err)
		}
		p.SetData(tmp, m.Time, int(m.WireLen))
		p.Clock, p.Flow = m.Clock, m.Flow
		if m.where == inSource {
			p.Pos = m.pos // (as read: the packet as the root sent it)
		}
	}
	b.N = n
	return nil
}

// Bytes and Packets return what the log holds (Bytes: its frames' buffers).
func (l *Log) Bytes() int   { return l.bytes }
func (l *Log) Packets() int { return l.packets }

// Len returns the number of batches logged.
func (l *Log) Len() int { return l.q.Len() }

// Stats returns the log's counters.
func (l *Log) Stats() LogStats {
	s := l.stats
	s.Arena = l.arena.Stats()
	return s
}
