package snf

import "fmt"

// StateCodec is what per-flow and per-scope state types implement (on their pointer) so
// the runtime can move them between units and checkpoint them without reflection.
type StateCodec interface {
	AppendBinary(b []byte) ([]byte, error)
	UnmarshalBinary(b []byte) error
}

// arena stores values of T in fixed chunks (pointers stay valid while the arena grows) with
// a free list, so that steady state allocates nothing.
type arena[T any] struct {
	chunks [][]T
	free   []int32
	n      int32
}

const chunkBits = 8

func (a *arena[T]) at(i int32) *T { return &a.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

func (a *arena[T]) alloc() int32 {
	if n := len(a.free); n > 0 {
		i := a.free[n-1]
		a.free = a.free[:n-1]
		var zero T
		*a.at(i) = zero
		return i
	}
	if int(a.n) == len(a.chunks)<<chunkBits {
		a.chunks = append(a.chunks, make([]T, 1<<chunkBits))
	}
	a.n++
	return a.n - 1
}

func (a *arena[T]) release(i int32) { a.free = append(a.free, i) }

func (a *arena[T]) live() int { return int(a.n) - len(a.free) }

// flowSlot is the runtime's untyped view of a FlowState.
type flowSlot interface {
	stateName() string
	release(i int32)
	appendState(b []byte, i int32) ([]byte, error)
	loadState(b []byte) (int32, error)
}

// FlowState is a typed per-flow value of one NF. The runtime owns the values: it creates
// them on demand, frees them when the flow ends, and serializes them (through PT's
// StateCodec methods) when the flow moves to another unit or is checkpointed.
//
// Declare it at construction, keep the handle in the NF, and reach the value through the
// packet's Context:
//
//	st := snf.NewFlowState[connState](env, "conn") // *FlowState[connState, *connState]
//	...
//	if c := st.Get(ctx); c != nil { … }
//
// A *T returned by Get or GetOrCreate is valid during the current Process call only.
type FlowState[T any, PT interface {
	*T
	StateCodec
}] struct {
	name  string
	slot  int
	chain *Chain
	arena arena[T]
}

// NewFlowState declares a per-flow state of type T for the NF being built.
func NewFlowState[T any, PT interface {
	*T
	StateCodec
}](env *Env, name string) *FlowState[T, PT] {
	s := &FlowState[T, PT]{name: env.name + "." + name, slot: len(env.chain.slots), chain: env.chain}
	env.chain.slots = append(env.chain.slots, s)
	env.inst.flowState = append(env.inst.flowState, name)
	return s
}

func (s *FlowState[T, PT]) idx(ctx *Context) *int32 {
	if ctx.flow < 0 {
		return nil
	}
	return &s.chain.table.Slots(ctx.flow)[s.slot]
}

// Get returns the packet's flow's value, or nil when it has none (or the packet has no flow).
func (s *FlowState[T, PT]) Get(ctx *Context) *T {
	i := s.idx(ctx)
	if i == nil || *i < 0 {
		return nil
	}
	return s.arena.at(*i)
}

// GetOrCreate returns the flow's value, creating a zero value when there is none. It
// returns nil only when the packet has no flow (a malformed packet).
func (s *FlowState[T, PT]) GetOrCreate(ctx *Context) *T {
	i := s.idx(ctx)
	if i == nil {
		return nil
	}
	if *i < 0 {
		*i = s.arena.alloc()
	}
	return s.arena.at(*i)
}

// Delete frees the flow's value (the flow itself lives on).
func (s *FlowState[T, PT]) Delete(ctx *Context) {
	if i := s.idx(ctx); i != nil && *i >= 0 {
		s.arena.release(*i)
		*i = -1
	}
}

// Len returns the number of live values.
func (s *FlowState[T, PT]) Len() int { return s.arena.live() }

func (s *FlowState[T, PT]) stateName() string { return s.name }
func (s *FlowState[T, PT]) release(i int32)   { s.arena.release(i) }

func (s *FlowState[T, PT]) appendState(b []byte, i int32) ([]byte, error) {
	return PT(s.arena.at(i)).AppendBinary(b)
}

func (s *FlowState[T, PT]) loadState(b []byte) (int32, error) {
	i := s.arena.alloc()
	if err := PT(s.arena.at(i)).UnmarshalBinary(b); err != nil {
		s.arena.release(i)
		return -1, fmt.Errorf("flow state %s: %w", s.name, err)
	}
	return i, nil
}
