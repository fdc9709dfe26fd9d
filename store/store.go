// Package store holds state shared across flows and units: NAT port pools, counters,
// read-mostly tables. NFs never call it directly; they use the handles of package snf,
// which fill in each operation's Tag from the packet being processed.
//
// This package defines the interface and two implementations: the embedded (in-process)
// store and a Redis store (Open("redis://HOST:PORT")); see README.md for what each
// guarantees. Every mutating operation carries a Tag — the unit that issued it and the
// logical clock of the packet that caused it — so that a store can apply an operation once
// even when a replay sends it twice: a repeated Take gets the value handed out the first
// time, and a repeated Put or Add is dropped. The zero Tag means "untagged" (control plane,
// tools) for Put and Add: those are never dropped as repeats.
//
// Registers (RegistersStore) are read-write values updated by compare-and-set and by merge
// operations that run in the store: the built-ins (max-int64, set-add, or) and operations an
// NF registers with RegisterOp — a Go function for the embedded store and a Lua body for the
// Redis store, each op one atomic server-side script with the same tag dedup.
//
// A Table's Version tells a holder of values derived from the table that it changed: an
// atomic load per packet instead of polling.
package store

import "errors"

// Tag identifies a mutating operation: the unit that issued it, the clock of the packet
// that caused it, and its sequence among the operations that packet caused (a replay of
// the packet issues the same operations in the same sequence).
type Tag struct {
	Unit  uint32
	Seq   uint32
	Clock uint64
}

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")

// Store opens shared objects by namespace (the tenant and NF instance) and name.
// Opening the same object twice returns handles to the same state.
type Store interface {
	// Pool opens a pool of the integers lo..hi (inclusive), all free when first created.
	Pool(ns, name string, lo, hi uint32) (Pool, error)
	// Counters opens a set of int64 counters keyed by uint64.
	Counters(ns, name string) (Counters, error)
	// Table opens a read-mostly table of byte values keyed by string.
	Table(ns, name string) (Table, error)
	Close() error
}

// Pool hands out distinct values (read-write access, blocking).
type Pool interface {
	// Take removes a free value from the pool; ok is false when the pool is empty.
	Take(t Tag) (v uint32, ok bool, err error)
	// Put returns v to the pool.
	Put(t Tag, v uint32) error
	// Free returns the number of free values.
	Free() int
}

// Counters are write-mostly: Add does not wait for the store. A store may buffer adds in the
// handle (the Redis store does; the embedded store applies them at once): such handles
// implement Flusher, and Get includes the handle's own unflushed adds.
type Counters interface {
	Add(t Tag, key uint64, delta int64)
	Get(key uint64) int64
}

// Flusher is implemented by handles and stores that buffer updates (Redis Counters, and the
// Redis store as a whole): Flush sends what is buffered and waits for the store to apply it.
// The embedded store's handles implement it as a no-op.
type Flusher interface {
	Flush() error
}

// Flush flushes x if it buffers updates (implements Flusher), and is a no-op otherwise.
func Flush(x any) error {
	if f, ok := x.(Flusher); ok {
		return f.Flush()
	}
	return nil
}

// Table is read-mostly: reads are local, writes come from the control plane.
type Table interface {
	Get(key string) ([]byte, bool)
	Set(key string, v []byte) error // keeps no reference to v once it returns
	Delete(key string) error
	// Version returns a number that increases after any key of the table changes, by any
	// client: a holder of values derived from the table (a cache, a backend list) reads it
	// per packet — an atomic load, no lock, no allocation — and rebuilds when it moved.
	// Read the version before rebuilding, so that a change during the rebuild moves it
	// again. It may also increase without a change (a lost connection, the server evicting
	// tracking state); it never decreases and is never 0 (a holder that starts from 0
	// rebuilds at its first look). The embedded store's tables move it at each
	// Set/Delete; the Redis store's within the coherence bound of a change by another
	// client (README.md), at once for this client's own writes.
	Version() uint64
}
