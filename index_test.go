package snf

import (
	"math/rand/v2"
	"testing"
)

// TestIndexMatchesMap drives the index and a Go map with the same random operations.
func TestIndexMatchesMap(t *testing.T) {
	x := newIndex[uint32]()
	m := map[uint32]int32{}
	r := rand.New(rand.NewPCG(1, 2))
	for op := range 200000 {
		k := r.Uint32N(5000)
		if _, ok := m[k]; ok && r.IntN(2) == 0 {
			delete(m, k)
			x.del(k)
		} else if !ok {
			m[k] = int32(op)
			x.set(k, int32(op))
		}
		want, in := m[k]
		if v, ok := x.get(k); ok != in || v != want {
			t.Fatalf("op %d key %d: index %d %v, map %d %v", op, k, v, ok, want, in)
		}
	}
	if x.n != len(m) {
		t.Fatalf("index holds %d, map %d", x.n, len(m))
	}
	for k, v := range m {
		if got, ok := x.get(k); !ok || got != v {
			t.Fatalf("key %d: %d %v, want %d", k, got, ok, v)
		}
	}
}

// TestIndexChurnAllocatesNothing: keys coming and going forever, at a steady count, allocate
// nothing once the index has grown (a Go map rehashes away its tombstones now and then).
func TestIndexChurnAllocatesNothing(t *testing.T) {
	x := newIndex[[16]byte]()
	var k [16]byte
	next := uint64(0)
	key := func(i uint64) [16]byte {
		k[0], k[1], k[2], k[3], k[8] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24), byte(i>>32)
		return k
	}
	for ; next < 10000; next++ {
		x.set(key(next), int32(next))
	}
	churn := func() {
		for range 1000 {
			x.del(key(next - 10000))
			x.set(key(next), int32(next))
			next++
		}
	}
	churn()
	if n := testing.AllocsPerRun(50, churn); n != 0 {
		t.Errorf("%v allocations per 1000 replacements", n)
	}
	if x.n != 10000 {
		t.Errorf("%d keys, want 10000", x.n)
	}
}
