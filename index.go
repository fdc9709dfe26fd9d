package snf

import "hash/maphash"

// index maps keys to int32 values: a chained hash table over an entry arena that, unlike a
// Go map, never allocates once it has grown to its working size, even when keys come and go
// all the time (a Go map's deletions leave tombstones it cleans by rehashing into a new
// table). Scoped state uses it: a flood of spoofed sources must not allocate per packet.
type index[K comparable] struct {
	seed  maphash.Seed
	heads []int32 // bucket → first entry, -1 for none; len is a power of two
	ents  []indexEntry[K]
	free  []int32
	n     int
}

type indexEntry[K comparable] struct {
	k    K
	v    int32
	next int32
}

func newIndex[K comparable]() index[K] {
	x := index[K]{seed: maphash.MakeSeed(), heads: make([]int32, 16)}
	for i := range x.heads {
		x.heads[i] = -1
	}
	return x
}

func (x *index[K]) bucket(k K) int {
	return int(maphash.Comparable(x.seed, k) & uint64(len(x.heads)-1))
}

func (x *index[K]) get(k K) (int32, bool) {
	for i := x.heads[x.bucket(k)]; i >= 0; i = x.ents[i].next {
		if x.ents[i].k == k {
			return x.ents[i].v, true
		}
	}
	return 0, false
}

// set adds k (which must be absent) with value v.
func (x *index[K]) set(k K, v int32) {
	var i int32
	if n := len(x.free); n > 0 {
		i = x.free[n-1]
		x.free = x.free[:n-1]
	} else {
		i = int32(len(x.ents))
		x.ents = append(x.ents, indexEntry[K]{})
	}
	b := x.bucket(k)
	x.ents[i] = indexEntry[K]{k: k, v: v, next: x.heads[b]}
	x.heads[b] = i
	x.n++
	if x.n > len(x.heads) {
		x.grow()
	}
}

func (x *index[K]) del(k K) {
	b := x.bucket(k)
	for p, i := int32(-1), x.heads[b]; i >= 0; p, i = i, x.ents[i].next {
		if x.ents[i].k != k {
			continue
		}
		if p < 0 {
			x.heads[b] = x.ents[i].next
		} else {
			x.ents[p].next = x.ents[i].next
		}
		var zero K
		x.ents[i].k = zero
		x.free = append(x.free, i)
		x.n--
		return
	}
}

func (x *index[K]) grow() {
	heads := make([]int32, 2*len(x.heads))
	for i := range heads {
		heads[i] = -1
	}
	old := x.heads
	x.heads = heads
	for b := range old {
		for i := old[b]; i >= 0; {
			next := x.ents[i].next
			nb := x.bucket(x.ents[i].k)
			x.ents[i].next = x.heads[nb]
			x.heads[nb] = i
			i = next
		}
	}
}
