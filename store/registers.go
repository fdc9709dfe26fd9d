package store

import (
	"bytes"
	"fmt"
	"sync"
)

// Registers are read-write objects keyed by string holding byte values, updated in the store
// by operations that return a result; each op is applied once per Tag, and a repeated op (same
// tag) gets the result it got the first time.
//
// The zero Tag means untagged (control plane, tools): such an operation is never taken for a
// repeat. A repeat is recognised by its tag alone (within the object), on any client, within
// the store's dedup window (the embedded store: the last DedupWindowOps tagged operations of
// the object; Redis: DedupWindow of server time); after that it is applied again.
type Registers interface {
	// CompareAndSet sets key to new if its current value equals old (nil old: the key is
	// absent); it returns the value now stored and whether it swapped. A nil new deletes
	// the key (a non-nil empty slice stores an empty value); cur is nil when the key is
	// absent.
	CompareAndSet(t Tag, key string, old, new []byte) (cur []byte, swapped bool, err error)
	// Merge applies a registered merge operation (by name, see RegisterOp) to key with arg
	// and returns the new value: built in "max-int64" (8-byte big-endian), "set-add" (the
	// value is a sorted set of 8-byte members; arg a member), "or" (bytewise OR, for bitmap
	// sketches). An unknown name fails (wrapping ErrUnknownMerge) and so does the op itself
	// (its Go function or Lua body); a failed Merge changes nothing and records nothing.
	Merge(t Tag, key, op string, arg []byte) ([]byte, error)
	// Get returns the value of key (read from the store: no cache).
	Get(key string) ([]byte, bool, error)
}

// RegistersStore is implemented by stores that have Registers (the embedded and the Redis
// store): callers type-assert a Store to it.
type RegistersStore interface {
	Registers(ns, name string) (Registers, error)
}

// ---- embedded ----

var _ RegistersStore = (*Embedded)(nil)

// Registers implements RegistersStore.
func (s *Embedded) Registers(ns, name string) (Registers, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	freezeOps()
	if s.regs == nil {
		s.regs = map[string]*memRegisters{}
	}
	k := objKey(ns, name)
	return opened(s.regs, k, func() *memRegisters {
		return &memRegisters{name: k, m: map[string][]byte{}, done: map[Tag]regResult{}}
	}), nil
}

// regResult is the result of a tagged register operation, kept to answer a repeat.
type regResult struct {
	val     []byte // nil: the key was absent
	swapped bool
}

type memRegisters struct {
	name string
	mu   sync.Mutex
	m    map[string][]byte
	done map[Tag]regResult // results of recent tagged operations
	ring []Tag             // the tags in done, oldest at ring[next] once full
	next int
}

// record remembers the result of a tagged operation, forgetting the oldest beyond
// DedupWindowOps.
func (r *memRegisters) record(t Tag, res regResult) {
	if t == (Tag{}) {
		return
	}
	if len(r.ring) < DedupWindowOps {
		r.ring = append(r.ring, t)
	} else {
		delete(r.done, r.ring[r.next])
		r.ring[r.next] = t
		r.next = (r.next + 1) % DedupWindowOps
	}
	r.done[t] = res
}

func (r *memRegisters) repeat(t Tag) (regResult, bool) {
	if t == (Tag{}) {
		return regResult{}, false
	}
	res, ok := r.done[t]
	return res, ok
}

func (r *memRegisters) CompareAndSet(t Tag, key string, old, new []byte) ([]byte, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if res, ok := r.repeat(t); ok {
		return bytes.Clone(res.val), res.swapped, nil
	}
	cur, present := r.m[key]
	var res regResult
	if old == nil && !present || old != nil && present && bytes.Equal(cur, old) {
		res.swapped = true
		if new == nil {
			delete(r.m, key)
		} else {
			res.val = append([]byte{}, new...)
			r.m[key] = res.val
		}
	} else {
		res.val = cur // stored values are never modified in place
	}
	r.record(t, res)
	return bytes.Clone(res.val), res.swapped, nil
}

func (r *memRegisters) Merge(t Tag, key, op string, arg []byte) ([]byte, error) {
	o, err := lookupOp(op, arg)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if res, ok := r.repeat(t); ok {
		return bytes.Clone(res.val), nil
	}
	cur, present := r.m[key]
	v, err := o.apply(cur, present, arg)
	if err != nil {
		return nil, fmt.Errorf("store: registers merge %s %s key %q: %s", op, r.name, key, oneLine(err.Error()))
	}
	v = append([]byte{}, v...) // the op may return cur or arg; stored values are never modified in place
	r.m[key] = v
	r.record(t, regResult{val: v, swapped: true})
	return bytes.Clone(v), nil
}

func (r *memRegisters) Get(key string) ([]byte, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[key]
	return bytes.Clone(v), ok, nil
}
