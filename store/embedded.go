package store

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Embedded is the in-process store, the default. Each object has its own lock: the lock is
// taken per operation, which is per new flow for a pool, not per packet of a flow.
type Embedded struct {
	mu     sync.Mutex
	pools  map[string]*memPool
	counts map[string]*memCounters
	tables map[string]*memTable
	regs   map[string]*memRegisters // created by the first Registers
	closed bool
}

var _ Store = (*Embedded)(nil)

// NewEmbedded returns an empty in-process store.
func NewEmbedded() *Embedded {
	return &Embedded{pools: map[string]*memPool{}, counts: map[string]*memCounters{}, tables: map[string]*memTable{}}
}

func objKey(ns, name string) string { return ns + "/" + name }

// Pool implements Store.
func (s *Embedded) Pool(ns, name string, lo, hi uint32) (Pool, error) {
	if hi < lo {
		return nil, fmt.Errorf("store: pool %s/%s: empty range %d-%d", ns, name, lo, hi)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	k := objKey(ns, name)
	if p, ok := s.pools[k]; ok {
		if p.lo != lo || p.hi != hi {
			return nil, fmt.Errorf("store: pool %s: opened with range %d-%d, exists with %d-%d", k, lo, hi, p.lo, p.hi)
		}
		return p, nil
	}
	p := &memPool{lo: lo, hi: hi, next: lo, taken: map[Tag]uint32{}, used: map[uint32]Tag{}, puts: newTagWindow(DedupWindowOps)}
	s.pools[k] = p
	return p, nil
}

// Counters implements Store.
func (s *Embedded) Counters(ns, name string) (Counters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return opened(s.counts, objKey(ns, name), func() *memCounters {
		return &memCounters{m: map[uint64]int64{}, seen: newTagWindow(DedupWindowOps)}
	}), nil
}

// Table implements Store.
func (s *Embedded) Table(ns, name string) (Table, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return opened(s.tables, objKey(ns, name), func() *memTable {
		t := &memTable{m: map[string][]byte{}}
		t.ver.Store(1) // never 0: a holder starting from 0 sees a change at its first look
		return t
	}), nil
}

// opened returns the object m holds under k, made by mk the first time it is asked for (the
// caller holds the lock that guards m): opening an object twice gives the same object.
func opened[T any](m map[string]T, k string, mk func() T) T {
	v, ok := m[k]
	if !ok {
		v = mk()
		m[k] = v
	}
	return v
}

// Close implements Store.
func (s *Embedded) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// memPool hands out values in order first, then recycles returned ones (FIFO, so that a
// value just returned is the last to be reused).
type memPool struct {
	mu       sync.Mutex
	lo, hi   uint32
	next     uint32 // next never-used value; > hi when all were handed out once
	fresh    bool   // next has wrapped past hi
	returned []uint32
	head     int
	used     map[uint32]Tag // value → the tag of the Take that handed it out
	taken    map[Tag]uint32 // results of Take by tag, so a repeated Take gets the same value
	puts     *tagWindow     // tags of recent Puts, so a replayed Put cannot free a value re-taken since
}

func (p *memPool) Take(t Tag) (uint32, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.taken[t]; ok {
		return v, true, nil
	}
	var v uint32
	switch {
	case !p.fresh:
		v = p.next
		if p.next == p.hi {
			p.fresh = true
		} else {
			p.next++
		}
	case p.head < len(p.returned):
		v = p.returned[p.head]
		p.head++
		if p.head > 1024 && p.head*2 > len(p.returned) {
			p.returned = append(p.returned[:0], p.returned[p.head:]...)
			p.head = 0
		}
	default:
		return 0, false, nil
	}
	p.used[v] = t
	p.taken[t] = v
	return v, true, nil
}

func (p *memPool) Put(t Tag, v uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v < p.lo || v > p.hi {
		return fmt.Errorf("store: pool put %d: outside %d-%d", v, p.lo, p.hi)
	}
	if t != (Tag{}) && p.puts.seen(t) { // a replayed Put: applied (or found nothing to do) before
		return nil
	}
	tag, ok := p.used[v]
	if !ok { // a repeated Put (replay) or a value never taken
		return nil
	}
	delete(p.used, v)
	delete(p.taken, tag) // the take record is not needed for dedup once v is back
	p.returned = append(p.returned, v)
	return nil
}

func (p *memPool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.returned) - p.head
	if !p.fresh {
		n += int(p.hi-p.next) + 1
	}
	return n
}

type memCounters struct {
	mu   sync.Mutex
	m    map[uint64]int64
	seen *tagWindow
}

// Add applies the update at once (the embedded store has nothing to buffer: Flush is a
// no-op), and drops it if an Add with the same non-zero tag was applied among the last
// DedupWindowOps tagged updates of this object.
func (c *memCounters) Add(t Tag, key uint64, delta int64) {
	c.mu.Lock()
	if t == (Tag{}) || !c.seen.seen(t) {
		c.m[key] += delta
	}
	c.mu.Unlock()
}

// Flush implements Flusher: the embedded store's Add is immediate, there is nothing to send.
func (c *memCounters) Flush() error { return nil }

func (c *memCounters) Get(key uint64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

type memTable struct {
	mu  sync.RWMutex
	m   map[string][]byte
	ver atomic.Uint64 // bumped after every Set and Delete
}

// Version implements Table.
func (t *memTable) Version() uint64 { return t.ver.Load() }

func (t *memTable) Get(key string) ([]byte, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	v, ok := t.m[key]
	return v, ok
}

func (t *memTable) Set(key string, v []byte) error {
	t.mu.Lock()
	t.m[key] = append([]byte(nil), v...)
	t.mu.Unlock()
	t.ver.Add(1)
	return nil
}

func (t *memTable) Delete(key string) error {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
	t.ver.Add(1)
	return nil
}

// DedupWindowOps is how many recent tagged operations the embedded store remembers per
// object and unit to drop repeats of Counters.Add and Pool.Put (at least this many in clock
// order, and as many that arrived out of clock order). Take needs no window: its record
// lives until the value is Put back.
const DedupWindowOps = 1 << 14

// tagWindow remembers the tags of recent operations, per unit. A unit's tags mostly arrive
// in increasing (clock, seq) order: those are appended to a sorted ring (the common case
// costs a comparison and an append), the others (packets held for a handover, replays)
// go to a small two-generation set.
type tagWindow struct {
	size  int
	units map[uint32]*unitTags
	last  *unitTags // the unit of the previous call, usually the next one's too
	lastU uint32
}

type clockSeq struct {
	clock uint64
	seq   uint32
}

func (a clockSeq) less(b clockSeq) bool {
	return a.clock < b.clock || a.clock == b.clock && a.seq < b.seq
}

type unitTags struct {
	ring      []clockSeq // increasing; the live part is ring[head:]
	head      int
	cur, prev map[clockSeq]struct{}
}

func newTagWindow(size int) *tagWindow {
	return &tagWindow{size: size, units: map[uint32]*unitTags{}}
}

// seen reports whether t is in the window, and records it.
func (w *tagWindow) seen(t Tag) bool {
	u := w.last
	if u == nil || w.lastU != t.Unit {
		if u = w.units[t.Unit]; u == nil {
			u = &unitTags{}
			w.units[t.Unit] = u
		}
		w.last, w.lastU = u, t.Unit
	}
	k := clockSeq{t.Clock, t.Seq}
	if n := len(u.ring); n == u.head || u.ring[n-1].less(k) { // newer than any in the ring
		if n-u.head >= w.size {
			u.head++
			if u.head >= w.size { // drop the dead half
				u.ring = append(u.ring[:0], u.ring[u.head:]...)
				u.head = 0
			}
		}
		// Not in the side set either: its tags were all older than the ring's newest.
		u.ring = append(u.ring, k)
		return false
	}
	live := u.ring[u.head:]
	lo, hi := 0, len(live)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if live[m].less(k) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(live) && live[lo] == k || u.inSide(k) {
		return true
	}
	if u.cur == nil {
		u.cur, u.prev = map[clockSeq]struct{}{}, map[clockSeq]struct{}{}
	}
	if len(u.cur) >= w.size {
		u.prev, u.cur = u.cur, u.prev
		clear(u.cur)
	}
	u.cur[k] = struct{}{}
	return false
}

func (u *unitTags) inSide(k clockSeq) bool {
	if u.cur == nil {
		return false
	}
	_, a := u.cur[k]
	_, b := u.prev[k]
	return a || b
}

// Flush implements Flusher: the embedded store applies every operation at once.
func (s *Embedded) Flush() error { return nil }
