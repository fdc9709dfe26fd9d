package store

import (
	"bytes"
	"encoding/binary"
	"errors"
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
	// Merge applies a registered merge operation (by name) to key with arg and returns the
	// new value: built in "max-int64" (8-byte big-endian), "set-add" (the value is a sorted
	// set of 8-byte members; arg a member), "or" (bytewise OR, for bitmap sketches).
	Merge(t Tag, key, op string, arg []byte) ([]byte, error)
	// Get returns the value of key (read from the store: no cache).
	Get(key string) ([]byte, bool, error)
}

// RegistersStore is implemented by stores that have Registers (the embedded and the Redis
// store): callers type-assert a Store to it.
type RegistersStore interface {
	Registers(ns, name string) (Registers, error)
}

// The merge operations built in (both stores implement each: the Redis store in its
// server-side script).
const (
	MergeMaxInt64 = "max-int64" // value and arg: int64, 8 bytes big-endian; absent = arg
	MergeSetAdd   = "set-add"   // value: sorted (bytewise) distinct 8-byte members; arg: a member
	MergeOr       = "or"        // bytewise OR; the result is as long as the longer operand
)

// ErrUnknownMerge is wrapped by the error of a Merge naming an operation that is not built in.
var ErrUnknownMerge = errors.New("unknown merge operation")

// checkMerge validates op and arg before anything is sent or changed.
func checkMerge(op string, arg []byte) error {
	switch op {
	case MergeMaxInt64, MergeSetAdd:
		if len(arg) != 8 {
			return fmt.Errorf("store: registers merge %s: arg is %d bytes, want 8", op, len(arg))
		}
	case MergeOr:
	default:
		return fmt.Errorf("store: registers merge: %w %q (built in: %s, %s, %s)", ErrUnknownMerge, op, MergeMaxInt64, MergeSetAdd, MergeOr)
	}
	return nil
}

// merge computes the new value of a key (cur, present) under op with arg (checked by
// checkMerge). It never modifies cur or arg.
func merge(op string, cur []byte, present bool, arg []byte) ([]byte, error) {
	if !present {
		return append([]byte{}, arg...), nil
	}
	switch op {
	case MergeMaxInt64:
		if len(cur) != 8 {
			return nil, fmt.Errorf("stored value is %d bytes, want 8 for %s", len(cur), op)
		}
		if int64(binary.BigEndian.Uint64(arg)) > int64(binary.BigEndian.Uint64(cur)) {
			return bytes.Clone(arg), nil
		}
		return bytes.Clone(cur), nil
	case MergeSetAdd:
		if len(cur)%8 != 0 {
			return nil, fmt.Errorf("stored value is %d bytes, not a multiple of 8 for %s", len(cur), op)
		}
		lo, hi := 0, len(cur)/8
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if bytes.Compare(cur[m*8:m*8+8], arg) < 0 {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo*8 < len(cur) && bytes.Equal(cur[lo*8:lo*8+8], arg) {
			return bytes.Clone(cur), nil
		}
		v := make([]byte, 0, len(cur)+8)
		v = append(v, cur[:lo*8]...)
		v = append(v, arg...)
		return append(v, cur[lo*8:]...), nil
	case MergeOr:
		v := make([]byte, max(len(cur), len(arg)))
		copy(v, cur)
		for i, b := range arg {
			v[i] |= b
		}
		return v, nil
	}
	return nil, checkMerge(op, arg)
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
	if s.regs == nil {
		s.regs = map[string]*memRegisters{}
	}
	k := objKey(ns, name)
	r, ok := s.regs[k]
	if !ok {
		r = &memRegisters{name: k, m: map[string][]byte{}, done: map[Tag]regResult{}}
		s.regs[k] = r
	}
	return r, nil
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
	if err := checkMerge(op, arg); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if res, ok := r.repeat(t); ok {
		return bytes.Clone(res.val), nil
	}
	cur, present := r.m[key]
	v, err := merge(op, cur, present, arg)
	if err != nil {
		return nil, fmt.Errorf("store: registers merge %s %s key %q: %v", op, r.name, key, err)
	}
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
