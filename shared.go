package snf

import (
	"fmt"

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

// Table is a read-mostly table of byte values keyed by string.
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

// Scoped is state keyed by a scope coarser than a flow (for instance a source address),
// owned by the unit that the dispatcher sends that scope's traffic to.
type Scoped[K comparable, T any, PT interface {
	*T
	StateCodec
}] struct {
	idx   map[K]int32
	arena arena[T]
}

// NewScoped declares scoped state of type T keyed by K.
func NewScoped[K comparable, T any, PT interface {
	*T
	StateCodec
}](env *Env, name string) *Scoped[K, T, PT] {
	env.declare(name, ScopedAccess)
	return &Scoped[K, T, PT]{idx: map[K]int32{}}
}

// Get returns the value of key, or nil.
func (s *Scoped[K, T, PT]) Get(_ *Context, key K) *T {
	if i, ok := s.idx[key]; ok {
		return s.arena.at(i)
	}
	return nil
}

// GetOrCreate returns the value of key, creating a zero value if needed.
func (s *Scoped[K, T, PT]) GetOrCreate(_ *Context, key K) *T {
	i, ok := s.idx[key]
	if !ok {
		i = s.arena.alloc()
		s.idx[key] = i
	}
	return s.arena.at(i)
}

// Delete removes key's value.
func (s *Scoped[K, T, PT]) Delete(_ *Context, key K) {
	if i, ok := s.idx[key]; ok {
		s.arena.release(i)
		delete(s.idx, key)
	}
}

// Len returns the number of keys.
func (s *Scoped[K, T, PT]) Len() int { return len(s.idx) }
