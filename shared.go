package snf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/snf-dev/snf/store"
)

// Access is a shared state object's declared access pattern; it decides how units reach
// the object (see DESIGN.md, "State").
type Access uint8

const (
	// ReadMostly objects are read on the packet path and changed rarely (a backend
	// table, a blocklist): cached in units, kept coherent by the store.
	ReadMostly Access = iota + 1
	// WriteMostly objects are updated on the packet path and read rarely (counters,
	// sketches): updates are offloaded to the store without waiting.
	WriteMostly
	// ReadWrite objects need a result on the packet path (a NAT's port pool): the
	// operation runs in the store and its result is recorded for replay.
	ReadWrite
	// ScopedAccess objects are keyed by something coarser than a flow (a source address); the
	// unit that the dispatcher sends a key's traffic to owns that key's value.
	ScopedAccess
)

func (a Access) String() string {
	switch a {
	case ReadMostly:
		return "read-mostly"
	case WriteMostly:
		return "write-mostly"
	case ReadWrite:
		return "read-write"
	case ScopedAccess:
		return "scoped"
	}
	return fmt.Sprintf("access(%d)", a)
}

// SharedDecl records a declared shared object, for listings and for the runtime to choose
// a strategy.
type SharedDecl struct {
	Name   string
	Access Access
}

func (e *Env) declare(name string, a Access) {
	e.inst.shared = append(e.inst.shared, SharedDecl{Name: name, Access: a})
}

// Pool is a read-write shared pool of distinct values (a NAT's ports).
type Pool struct {
	p      store.Pool
	errors *Metric
}

// NewPool declares a pool of the values lo..hi shared by every unit running this NF instance.
func NewPool(env *Env, name string, lo, hi uint32) (*Pool, error) {
	p, err := env.chain.store.Pool(env.ns, name, lo, hi)
	if err != nil {
		return nil, err
	}
	env.declare(name, ReadWrite)
	return &Pool{p: p, errors: env.Metric(name+"_store_errors", "failed operations on "+name)}, nil
}

// Take hands out a free value; ok is false when the pool is exhausted or the store failed
// (counted in <name>_store_errors).
func (p *Pool) Take(ctx *Context) (v uint32, ok bool) {
	v, ok, err := p.p.Take(ctx.tag())
	if err != nil {
		p.errors.Inc()
		return 0, false
	}
	return v, ok
}

// Put returns v to the pool.
func (p *Pool) Put(ctx *Context, v uint32) {
	if err := p.p.Put(ctx.tag(), v); err != nil {
		p.errors.Inc()
	}
}

// Free returns the number of free values.
func (p *Pool) Free() int { return p.p.Free() }

// Counters is a write-mostly set of int64 counters keyed by uint64, shared by every unit
// running this NF instance.
type Counters struct{ c store.Counters }

// NewCounters declares a write-mostly counter set.
func NewCounters(env *Env, name string) (*Counters, error) {
	c, err := env.chain.store.Counters(env.ns, name)
	if err != nil {
		return nil, err
	}
	env.declare(name, WriteMostly)
	return &Counters{c: c}, nil
}

// Add adds delta to the counter key, without waiting for the store.
func (c *Counters) Add(ctx *Context, key uint64, delta int64) { c.c.Add(ctx.tag(), key, delta) }

// Get reads a counter (off the packet path: reports, control plane).
func (c *Counters) Get(key uint64) int64 { return c.c.Get(key) }

// Table is a read-mostly table of byte values keyed by string. Reads are served from the
// unit (cached); a change by any unit or the control plane reaches every unit within the
// store's coherence bound. An NF that derives something from the table (a backend list, a
// compiled rule set) checks Changed per packet — an atomic load, no lock, no allocation —
// and rebuilds only when it reports a change:
//
//	if v, changed := nf.backends.Changed(nf.seen); changed {
//		nf.seen = v // taken before the rebuild: a change during it is seen next time
//		nf.rebuild()
//	}
type Table struct{ t store.Table }

// NewTable declares a read-mostly table.
func NewTable(env *Env, name string) (*Table, error) {
	t, err := env.chain.store.Table(env.ns, name)
	if err != nil {
		return nil, err
	}
	env.declare(name, ReadMostly)
	return &Table{t: t}, nil
}

// Get reads key. The returned bytes must not be modified or kept beyond the call.
func (t *Table) Get(_ *Context, key string) ([]byte, bool) { return t.t.Get(key) }

// Set writes key (control plane: configuration, not the packet path).
func (t *Table) Set(key string, v []byte) error { return t.t.Set(key, v) }

// Delete removes key (control plane, like Set).
func (t *Table) Delete(key string) error { return t.t.Delete(key) }

// Version returns the table's change version: a number that increases after any key of
// the table changes (by any unit or the control plane; another unit's change within the
// store's coherence bound). It may also increase without a change (the store lost its
// connection), never decreases, is never 0, and costs an atomic load: it may be read per
// packet.
func (t *Table) Version() uint64 { return t.t.Version() }

// Changed reports whether the table changed since the version since (a value Version or
// Changed returned, or 0: versions are never 0, so a first call with 0 reports a change),
// and returns the current version to keep. Per packet: an atomic load. Rebuild what depends
// on the table after taking the version, not before.
func (t *Table) Changed(since uint64) (now uint64, changed bool) {
	now = t.t.Version()
	return now, now != since
}

// ScopeBy says which address of a packet a Scoped state is keyed by. The elastic runtime
// dispatches a chain's traffic by it, so that one unit owns each key's value.
type ScopeBy uint8

const (
	// ByInitiator: the address that opened the packet's flow (the source of its first
	// packet), for both directions — an inside host for a trojan detector, a scanner for a
	// scan detector.
	ByInitiator ScopeBy = iota + 1
	// BySource: the packet's source address (a rate limiter).
	BySource
	// ByDestination: the packet's destination address.
	ByDestination
)

func (b ScopeBy) String() string {
	switch b {
	case ByInitiator:
		return "initiator"
	case BySource:
		return "source"
	case ByDestination:
		return "destination"
	}
	return fmt.Sprintf("scope(%d)", b)
}

// ScopeOptions declare a Scoped state.
type ScopeOptions struct {
	// By is the address the key derives from (required).
	By ScopeBy
	// MaxKeys bounds the number of keys (default DefaultMaxScopedKeys): a new key beyond it
	// evicts the least recently used one, counted in <name>_evicted.
	MaxKeys int
	// Idle drops a key not used for this long, in packet time, counted in <name>_expired
	// (0: keys stay until evicted or deleted).
	Idle time.Duration
}

// DefaultMaxScopedKeys is the default bound of a Scoped state.
const DefaultMaxScopedKeys = 1 << 20

type scopedItem[K comparable, T any] struct {
	v          T
	key        K
	last       int64
	prev, next int32
	mark       uint32 // the checkpoint epoch the value was last recorded as changed in
}

// Registers is read-write shared state keyed by string: values the store updates atomically
// — compare-and-set, and merges (store.MergeMaxInt64, MergeSetAdd, MergeOr, or an NF's own,
// registered with store.RegisterOp in an init function) — returning the result; a replayed
// operation (same packet clock) gets the result it got the first time.
type Registers struct {
	r      store.Registers
	errors *Metric
}

// NewRegisters declares read-write registers. The store must support them (the embedded
// and Redis stores do).
func NewRegisters(env *Env, name string) (*Registers, error) {
	rs, ok := env.chain.store.(store.RegistersStore)
	if !ok {
		return nil, fmt.Errorf("registers %s: the store does not support them", name)
	}
	r, err := rs.Registers(env.ns, name)
	if err != nil {
		return nil, err
	}
	env.declare(name, ReadWrite)
	return &Registers{r: r, errors: env.Metric(name+"_store_errors", "failed operations on "+name)}, nil
}

// CompareAndSet sets key to new if it holds old (nil: absent) and returns the value now
// stored and whether it swapped; ok is false when the store failed (counted).
func (r *Registers) CompareAndSet(ctx *Context, key string, old, new []byte) (cur []byte, swapped, ok bool) {
	cur, swapped, err := r.r.CompareAndSet(ctx.tag(), key, old, new)
	if err != nil {
		r.errors.Inc()
		return nil, false, false
	}
	return cur, swapped, true
}

// Merge applies the merge op to key with arg and returns the new value; ok is false when
// the store failed or refused (counted).
func (r *Registers) Merge(ctx *Context, key, op string, arg []byte) (v []byte, ok bool) {
	v, err := r.r.Merge(ctx.tag(), key, op, arg)
	if err != nil {
		r.errors.Inc()
		return nil, false
	}
	return v, true
}

// Get reads key (off the packet path or rarely: it may be a round trip).
func (r *Registers) Get(key string) ([]byte, bool, error) { return r.r.Get(key) }

// Scoped is state keyed by a scope coarser than a flow (a source address), owned by the unit
// that the dispatcher sends that scope's traffic to. It is bounded (LRU eviction) and may
// expire idle keys; a *T it returns is valid during the current Process call only.
type Scoped[K comparable, T any, PT interface {
	*T
	StateCodec
}] struct {
	opt              ScopeOptions
	idx              index[K]
	items            arena[scopedItem[K, T]]
	head, tail       int32 // LRU list, most recent at head
	evicted, expired *Metric

	// Checkpoints (ChainOptions.Checkpoints): values reached since the last record, and
	// the keys removed since (encoded).
	name  string
	kc    keyCodec[K]
	ck    bool
	epoch uint32
	dirty []int32
	gone  []byte
	ngone int
}

// NewScoped declares scoped state of type T keyed by K.
func NewScoped[K comparable, T any, PT interface {
	*T
	StateCodec
}](env *Env, name string, opt ScopeOptions) (*Scoped[K, T, PT], error) {
	if opt.By < ByInitiator || opt.By > ByDestination {
		return nil, fmt.Errorf("scoped state %s: ScopeOptions.By is required", name)
	}
	if opt.MaxKeys <= 0 {
		opt.MaxKeys = DefaultMaxScopedKeys
	}
	kc, err := newKeyCodec[K]()
	if err != nil {
		return nil, fmt.Errorf("scoped state %s: %w", name, err)
	}
	env.declare(name, ScopedAccess)
	env.inst.scopes = append(env.inst.scopes, opt.By)
	s := &Scoped[K, T, PT]{
		opt: opt, idx: newIndex[K](), head: -1, tail: -1,
		evicted: env.Metric(name+"_evicted", "keys of "+name+" evicted at the bound"),
		expired: env.Metric(name+"_expired", "keys of "+name+" dropped after being idle"),
		name:    env.name + "." + name, kc: kc, ck: env.chain.ck.on, epoch: 1,
	}
	env.chain.scoped = append(env.chain.scoped, s)
	return s, nil
}

// Get returns the value of key, or nil.
func (s *Scoped[K, T, PT]) Get(ctx *Context, key K) *T {
	s.expire(ctx.now)
	i, ok := s.idx.get(key)
	if !ok {
		return nil
	}
	s.touch(i, ctx.now)
	return &s.items.at(i).v
}

// track records that value i may change (checkpoints).
func (s *Scoped[K, T, PT]) track(i int32) {
	if it := s.items.at(i); s.ck && it.mark != s.epoch {
		it.mark = s.epoch
		s.dirty = append(s.dirty, i)
	}
}

// GetOrCreate returns the value of key, creating a zero value if needed.
func (s *Scoped[K, T, PT]) GetOrCreate(ctx *Context, key K) *T {
	s.expire(ctx.now)
	i, ok := s.idx.get(key)
	if ok {
		s.touch(i, ctx.now)
		return &s.items.at(i).v
	}
	i = s.insert(key, ctx.now)
	return &s.items.at(i).v
}

// insert adds key (absent) as the most recently used value, evicting at the bound.
func (s *Scoped[K, T, PT]) insert(key K, now int64) int32 {
	if s.idx.n >= s.opt.MaxKeys {
		s.remove(s.tail)
		s.evicted.Inc()
	}
	i := s.items.alloc()
	it := s.items.at(i)
	it.key, it.last, it.prev, it.next = key, now, -1, s.head
	if s.head >= 0 {
		s.items.at(s.head).prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
	s.idx.set(key, i)
	s.track(i)
	return i
}

// Delete removes key's value.
func (s *Scoped[K, T, PT]) Delete(_ *Context, key K) {
	if i, ok := s.idx.get(key); ok {
		s.remove(i)
	}
}

// Len returns the number of keys.
func (s *Scoped[K, T, PT]) Len() int { return s.idx.n }

// Range calls fn for every key and value, most recently used first, until fn returns false.
// For reports at the end of a run, not for the packet path.
func (s *Scoped[K, T, PT]) Range(fn func(key K, v *T) bool) {
	for i := s.head; i >= 0; {
		it := s.items.at(i)
		next := it.next
		if !fn(it.key, &it.v) {
			return
		}
		i = next
	}
}

func (s *Scoped[K, T, PT]) expire(now int64) {
	if s.opt.Idle <= 0 {
		return
	}
	for s.tail >= 0 && now-s.items.at(s.tail).last > int64(s.opt.Idle) {
		s.remove(s.tail)
		s.expired.Inc()
	}
}

func (s *Scoped[K, T, PT]) touch(i int32, now int64) {
	s.track(i)
	it := s.items.at(i)
	it.last = max(it.last, now)
	if s.head == i {
		return
	}
	s.unlink(i)
	it.prev, it.next = -1, s.head
	s.items.at(s.head).prev = i
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

func (s *Scoped[K, T, PT]) unlink(i int32) {
	it := s.items.at(i)
	if it.prev >= 0 {
		s.items.at(it.prev).next = it.next
	} else {
		s.head = it.next
	}
	if it.next >= 0 {
		s.items.at(it.next).prev = it.prev
	} else {
		s.tail = it.prev
	}
}

func (s *Scoped[K, T, PT]) remove(i int32) {
	it := s.items.at(i)
	if s.ck {
		if b, err := s.kc.appendKey(s.gone, &it.key); err == nil {
			s.gone = b
			s.ngone++
		}
	}
	s.unlink(i)
	s.idx.del(it.key)
	s.items.release(i)
}

func (s *Scoped[K, T, PT]) ckName() string { return s.name }

// appendChanges writes the keys removed and the values reached since the last call (with
// full: no removals, every value): count and keys, then count and (key, last use, value).
func (s *Scoped[K, T, PT]) appendChanges(b []byte, full bool) ([]byte, error) {
	if full {
		b = binary.BigEndian.AppendUint32(b, 0)
	} else {
		b = binary.BigEndian.AppendUint32(b, uint32(s.ngone))
		b = append(b, s.gone...)
	}
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	n := 0
	var err error
	put := func(i int32) bool {
		it := s.items.at(i)
		if b, err = s.kc.appendKey(b, &it.key); err != nil {
			return false
		}
		b = binary.BigEndian.AppendUint64(b, uint64(it.last))
		lenAt := len(b)
		b = append(b, 0, 0, 0, 0)
		if b, err = PT(&it.v).AppendBinary(b); err != nil {
			return false
		}
		binary.BigEndian.PutUint32(b[lenAt:], uint32(len(b)-lenAt-4))
		n++
		return true
	}
	if full {
		// Oldest first: a restore inserts each value before those of an equal time, so the
		// least recently used order comes back, ties included.
		for i := s.tail; i >= 0 && err == nil; i = s.items.at(i).prev {
			put(i)
		}
	} else {
		for _, i := range s.dirty {
			// A value removed after it changed is among the removed keys; a slot reused by
			// another key since is that key's (and tracked as such).
			if it := s.items.at(i); it.mark == s.epoch && s.live(i) {
				if !put(i) {
					break
				}
			}
		}
	}
	if err != nil {
		return b, err
	}
	binary.BigEndian.PutUint32(b[at:], uint32(n))
	s.dirty, s.gone, s.ngone = s.dirty[:0], s.gone[:0], 0
	s.epoch++
	if s.epoch == 0 {
		for i := s.head; i >= 0; i = s.items.at(i).next {
			s.items.at(i).mark = 0
		}
		s.epoch = 1
	}
	return b, nil
}

// live reports whether slot i holds a value (its key maps to it).
func (s *Scoped[K, T, PT]) live(i int32) bool {
	j, ok := s.idx.get(s.items.at(i).key)
	return ok && j == i
}

// applyChanges applies what appendChanges wrote.
func (s *Scoped[K, T, PT]) applyChanges(b []byte) error {
	if len(b) < 4 {
		return errors.New("truncated")
	}
	n := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	for range n {
		k, rest, err := s.kc.readKey(b)
		if err != nil {
			return err
		}
		b = rest
		if i, ok := s.idx.get(k); ok {
			s.remove(i)
		}
	}
	if len(b) < 4 {
		return errors.New("truncated")
	}
	n = int(binary.BigEndian.Uint32(b))
	b = b[4:]
	for range n {
		k, rest, err := s.kc.readKey(b)
		if err != nil {
			return err
		}
		if len(rest) < 12 {
			return errors.New("truncated")
		}
		last := int64(binary.BigEndian.Uint64(rest))
		vl := int(binary.BigEndian.Uint32(rest[8:]))
		if vl > len(rest)-12 {
			return errors.New("truncated")
		}
		i, ok := s.idx.get(k)
		if ok {
			s.unlink(i)
		} else {
			if s.idx.n >= s.opt.MaxKeys {
				s.remove(s.tail)
				s.evicted.Inc()
			}
			i = s.items.alloc()
			s.idx.set(k, i)
		}
		it := s.items.at(i)
		var zero T
		it.v, it.key, it.last = zero, k, last
		s.linkByLast(i)
		if err := PT(&it.v).UnmarshalBinary(rest[12 : 12+vl]); err != nil {
			return err
		}
		b = rest[12+vl:]
	}
	if len(b) != 0 {
		return fmt.Errorf("%d trailing bytes", len(b))
	}
	s.dirty, s.gone, s.ngone = s.dirty[:0], s.gone[:0], 0
	s.epoch++
	return nil
}

// linkByLast puts the unlinked value i into the LRU list by its last use, so that idle
// expiry (from the tail) stays in time order.
func (s *Scoped[K, T, PT]) linkByLast(i int32) {
	it := s.items.at(i)
	if s.tail < 0 || s.items.at(s.tail).last > it.last {
		// Older than every value: new tail.
		it.next, it.prev = -1, s.tail
		if s.tail >= 0 {
			s.items.at(s.tail).next = i
		} else {
			s.head = i
		}
		s.tail = i
		return
	}
	next := s.head // the first value not more recent than i
	for next >= 0 && s.items.at(next).last > it.last {
		next = s.items.at(next).next
	}
	n := s.items.at(next) // exists: the tail is older than i
	it.next, it.prev = next, n.prev
	if n.prev >= 0 {
		s.items.at(n.prev).next = i
	} else {
		s.head = i
	}
	n.prev = i
}
