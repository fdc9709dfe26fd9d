package replay

import (
	"slices"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/unit"
)

// Log is the root's packet log: a copy of every batch the root sent a unit — its packets,
// with their clocks, its handover controls and its time — kept until a checkpoint of that
// unit covers it. When a unit fails, its batches after its latest checkpoint are replayed,
// in order, to its replacement.
//
// The log is bounded (bytes of packet data, and packets): Append refuses a batch that does
// not fit, and the engine then waits (back-pressure) and asks the units whose batches hold
// the log's head for a checkpoint; it never drops a batch. Memory is reused: in steady state
// Append allocates nothing.
//
// A Log is used by one goroutine (the root's).
type Log struct {
	maxBytes, maxPackets int
	bytes, packets       int

	q    []*Entry // ring: q[head], q[head+1], … (mod len) are live
	head int
	n    int
	free []*Entry

	covered []uint64 // by unit: the position its latest durable checkpoint reflects

	// OnTrim, if set, is called with every entry leaving the log (covered by a checkpoint).
	OnTrim func(e *Entry)

	stats LogStats
}

// LogStats counts a log's work.
type LogStats struct {
	Appended, Trimmed, Refused uint64 // batches
	MaxBytes, MaxPackets       int    // high-water marks
}

// Entry is one logged batch.
type Entry struct {
	Unit int
	Seq  uint64
	Now  int64
	Ctl  []unit.Control
	Pkts []Meta
	Data []byte // the frames, one after another
}

// Meta is a logged packet's metadata; its frame is Data[Off:Off+Len].
type Meta struct {
	Time     int64
	WireLen  int
	Clock    uint64
	Flow     uint64
	Off, Len int32
}

// NewLog returns a log bounded by maxBytes of packet data and maxPackets packets, for units
// numbered below units.
func NewLog(maxBytes, maxPackets, units int) *Log {
	return &Log{maxBytes: maxBytes, maxPackets: maxPackets, covered: make([]uint64, units), q: make([]*Entry, 64)}
}

// Append logs batch b (b.Seq must be set). It returns false, logging nothing, when b does not
// fit in the bounds until older entries are trimmed; a batch larger than the bounds on its own
// is logged when the log is empty (so that it cannot block forever).
func (l *Log) Append(b *unit.Batch) bool {
	size := 0
	for i := range b.N {
		size += len(b.Pkts[i].Data)
	}
	if l.n > 0 && (l.bytes+size > l.maxBytes || l.packets+b.N > l.maxPackets) {
		l.stats.Refused++
		return false
	}
	l.force(b, size)
	return true
}

// Force logs b even beyond the bounds (Over then reports it). The engine logs a refused
// batch so, sends it on — it may carry the handover Marker a unit waits for, and a unit
// waiting for a state cannot checkpoint — and then waits until the log is back within its
// bounds before it dispatches more: the log exceeds them by at most one batch per unit.
func (l *Log) Force(b *unit.Batch) {
	size := 0
	for i := range b.N {
		size += len(b.Pkts[i].Data)
	}
	l.force(b, size)
}

func (l *Log) force(b *unit.Batch, size int) {
	e := l.alloc(size, b.N)
	e.Unit, e.Seq, e.Now = b.Unit, b.Seq, b.Now
	e.Ctl = append(e.Ctl[:0], b.Ctl...)
	e.Pkts, e.Data = slices.Grow(e.Pkts[:0], b.N)[:b.N], slices.Grow(e.Data[:0], size)[:size]
	off := 0
	for i := range b.N {
		p := &b.Pkts[i]
		e.Pkts[i] = Meta{Time: p.Time, WireLen: p.WireLen, Clock: p.Clock, Flow: p.Flow, Off: int32(off), Len: int32(len(p.Data))}
		off += copy(e.Data[off:], p.Data)
	}
	if l.n == len(l.q) {
		q := make([]*Entry, 2*len(l.q))
		for i := range l.n {
			q[i] = l.q[(l.head+i)%len(l.q)]
		}
		l.q, l.head = q, 0
	}
	l.q[(l.head+l.n)%len(l.q)] = e
	l.n++
	l.bytes += size
	l.packets += b.N
	l.stats.Appended++
	l.stats.MaxBytes = max(l.stats.MaxBytes, l.bytes)
	l.stats.MaxPackets = max(l.stats.MaxPackets, l.packets)
}

// alloc returns an entry for size bytes of n packets: a free one, else a new one sized for
// a full batch of that size (entries are reused, so sizes even out).
func (l *Log) alloc(size, n int) *Entry {
	if k := len(l.free); k > 0 {
		e := l.free[k-1]
		l.free = l.free[:k-1]
		return e
	}
	return &Entry{Data: make([]byte, 0, 2*size), Pkts: make([]Meta, 0, 2*n)}
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
	for l.n > 0 {
		e := l.q[l.head]
		if e.Seq > l.covered[e.Unit] {
			return
		}
		if l.OnTrim != nil {
			l.OnTrim(e)
		}
		l.q[l.head] = nil
		l.head = (l.head + 1) % len(l.q)
		l.n--
		l.bytes -= len(e.Data)
		l.packets -= len(e.Pkts)
		l.stats.Trimmed++
		l.free = append(l.free, e)
	}
}

// Over reports whether the log holds more than its bounds (after Force).
func (l *Log) Over() bool {
	return l.n > 1 && (l.bytes > l.maxBytes || l.packets > l.maxPackets)
}

// CoveredAt returns the position unit's checkpoints are known to cover (Covered).
func (l *Log) CoveredAt(unit int) uint64 { return l.covered[unit] }

// Blocking returns the unit whose uncovered batch is at the log's head (the one to ask for
// a checkpoint when the log is full), or -1 when the log is empty.
func (l *Log) Blocking() int {
	if l.n == 0 {
		return -1
	}
	return l.q[l.head].Unit
}

// Since calls fn, in order, for every logged batch of unit with a Seq above pos.
func (l *Log) Since(unit int, pos uint64, fn func(e *Entry)) {
	for i := range l.n {
		if e := l.q[(l.head+i)%len(l.q)]; e.Unit == unit && e.Seq > pos {
			fn(e)
		}
	}
}

// Until calls fn, in order, for every logged batch of unit with a Seq up to pos (batches a
// checkpoint covers that are still logged because an older batch of another unit is not).
func (l *Log) Until(unit int, pos uint64, fn func(e *Entry)) {
	for i := range l.n {
		if e := l.q[(l.head+i)%len(l.q)]; e.Unit == unit && e.Seq <= pos {
			fn(e)
		}
	}
}

// Fill makes b a copy of the logged batch e (its packets parsed afresh).
func (e *Entry) Fill(b *unit.Batch) {
	b.Reset()
	b.Unit, b.Seq, b.Now = e.Unit, e.Seq, e.Now
	b.Ctl = append(b.Ctl[:0], e.Ctl...)
	if len(b.Pkts) < len(e.Pkts) {
		b.Pkts = append(b.Pkts, make([]packet.Packet, len(e.Pkts)-len(b.Pkts))...)
	}
	for i := range e.Pkts {
		m := &e.Pkts[i]
		p := &b.Pkts[i]
		p.SetData(e.Data[m.Off:m.Off+m.Len], m.Time, m.WireLen)
		p.Clock, p.Flow = m.Clock, m.Flow
	}
	b.N = len(e.Pkts)
}

// Bytes and Packets return what the log holds.
func (l *Log) Bytes() int   { return l.bytes }
func (l *Log) Packets() int { return l.packets }

// Len returns the number of batches logged.
func (l *Log) Len() int { return l.n }

// Stats returns the log's counters.
func (l *Log) Stats() LogStats { return l.stats }
