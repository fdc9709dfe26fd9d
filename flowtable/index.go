package flowtable

import (
	"encoding/binary"
	"math/bits"
	"slices"

	"github.com/snf-dev/snf/packet"
)

// keyIndex maps directional keys to flows: a chained hash table over an entry arena, with a
// seeded hash of the key's five words. It replaces a Go map keyed by the 40-byte Key, whose
// generic hashing and probing cost about twice as much per lookup (see BenchmarkLookup).
// The seed keeps an attacker from choosing 5-tuples that collide.
//
// Each bucket also holds a signature of its chain: one bit, of 32, per entry, chosen by the
// top bits of its hash. A look-up whose bit is clear misses without reading an entry: a
// restore's look-ups are mostly misses (a new flow's keys), and each entry read is a cache
// miss in a table of thousands of flows, where the buckets, 8 bytes each, stay in cache.
type keyIndex struct {
	seed  [3]uint64
	heads []bucket // len is a power of two
	ents  []entry
	free  []int32
	n     int
}

// bucket is a chain's first entry (-1 for none) and the signature of its entries' hashes:
// the OR of their sigBits (insert adds a bit, a deletion recomputes it from what is left).
type bucket struct {
	first int32
	sig   uint32
}

// sigBit is the bit of hash h in a bucket's signature: from its top bits, where the bucket
// index takes the low ones.
func sigBit(h uint64) uint32 { return 1 << (h >> 59) }

// emptyHeads returns n empty buckets.
func emptyHeads(n int) []bucket {
	heads := make([]bucket, n)
	for i := range heads {
		heads[i].first = -1
	}
	return heads
}

type entry struct {
	k    packet.Key
	h    uint64
	r    ref
	next int32
}

func newKeyIndex(seed uint64) keyIndex {
	x := keyIndex{heads: emptyHeads(64)}
	for i := range x.seed {
		seed += 0x9e3779b97f4a7c15
		x.seed[i] = mix64(seed)
	}
	return x
}

func mix64(x uint64) uint64 {
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// mum is the multiply-fold step of wyhash.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func (x *keyIndex) hash(k *packet.Key) uint64 {
	a := binary.LittleEndian.Uint64(k.Src[0:])
	b := binary.LittleEndian.Uint64(k.Src[8:])
	c := binary.LittleEndian.Uint64(k.Dst[0:])
	d := binary.LittleEndian.Uint64(k.Dst[8:])
	e := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	if k.V6 {
		e |= 1 << 40
	}
	h := mum(a^x.seed[0], b^x.seed[1])
	h = mum(h^c, d^x.seed[2])
	return mum(h^e, 0x2d358dccaa6c78a5^x.seed[0])
}

func (x *keyIndex) len() int { return x.n }

// find returns k's hash and its entry, -1 when the index does not hold k.
func (x *keyIndex) find(k *packet.Key) (uint64, int32) {
	h := x.hash(k)
	b := &x.heads[h&uint64(len(x.heads)-1)]
	if b.sig&sigBit(h) == 0 {
		return h, -1
	}
	for i := b.first; i >= 0; {
		e := &x.ents[i]
		if e.h == h && e.k == *k {
			return h, i
		}
		i = e.next
	}
	return h, -1
}

func (x *keyIndex) get(k *packet.Key) (ref, bool) {
	_, i := x.find(k)
	if i < 0 {
		return ref{}, false
	}
	return x.ents[i].r, true
}

// set maps k to r, replacing an existing mapping.
func (x *keyIndex) set(k *packet.Key, r ref) {
	h, i := x.find(k)
	if i >= 0 {
		x.ents[i].r = r
		return
	}
	x.insert(k, h, r)
}

// insert maps k, of hash h, to r; the index must not hold k (find said so, and no key was
// added since: deletions and growth keep a hash valid).
func (x *keyIndex) insert(k *packet.Key, h uint64, r ref) {
	var i int32
	if n := len(x.free); n > 0 {
		i = x.free[n-1]
		x.free = x.free[:n-1]
	} else {
		i = int32(len(x.ents))
		x.ents = append(x.ents, entry{})
	}
	b := &x.heads[h&uint64(len(x.heads)-1)]
	x.ents[i] = entry{k: *k, h: h, r: r, next: b.first}
	b.first = i
	b.sig |= sigBit(h)
	x.n++
	if x.n > len(x.heads) {
		x.grow()
	}
}

// delIf deletes k's mapping if it maps to flow idx, in one walk, and reports whether it did.
func (x *keyIndex) delIf(k *packet.Key, idx int32) bool {
	h := x.hash(k)
	b := &x.heads[h&uint64(len(x.heads)-1)]
	if b.sig&sigBit(h) == 0 {
		return false
	}
	for p, i := int32(-1), b.first; i >= 0; p, i = i, x.ents[i].next {
		e := &x.ents[i]
		if e.h != h || e.k != *k {
			continue
		}
		if e.r.idx != idx {
			return false
		}
		if p < 0 {
			b.first = e.next
		} else {
			x.ents[p].next = e.next
		}
		e.next = -1
		// The signature of what is left, so that bits of deleted keys do not pile up (a
		// chain is short: its load is at most one entry per bucket on average).
		b.sig = 0
		for j := b.first; j >= 0; j = x.ents[j].next {
			b.sig |= sigBit(x.ents[j].h)
		}
		x.free = append(x.free, i)
		x.n--
		return true
	}
	return false
}

// reserve makes room for k more keys: entries, and buckets for them (set doubles the buckets
// as keys come; this sizes them once).
func (x *keyIndex) reserve(k int) {
	if k <= 0 {
		return
	}
	if more := k - len(x.free); more > 0 { // (freed entries are reused first)
		x.ents = slices.Grow(x.ents, more)
	}
	n := len(x.heads)
	for n < x.n+k {
		n *= 2
	}
	if n > len(x.heads) {
		x.rehash(n)
	}
}

// grow doubles the buckets (growth allocates; a table at its flow bound stops growing).
func (x *keyIndex) grow() { x.rehash(2 * len(x.heads)) }

// rehash spreads the entries over n buckets (a power of two).
func (x *keyIndex) rehash(n int) {
	heads := emptyHeads(n)
	mask := uint64(len(heads) - 1)
	for b := range x.heads {
		for i := x.heads[b].first; i >= 0; {
			e := &x.ents[i]
			next := e.next
			nb := &heads[e.h&mask]
			e.next = nb.first
			nb.first = i
			nb.sig |= sigBit(e.h)
			i = next
		}
	}
	x.heads = heads
}

// each calls fn for every mapping (tests).
func (x *keyIndex) each(fn func(k packet.Key, r ref)) {
	for b := range x.heads {
		for i := x.heads[b].first; i >= 0; i = x.ents[i].next {
			fn(x.ents[i].k, x.ents[i].r)
		}
	}
}
