package flowtable

import (
	"cmp"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/snf-dev/snf/packet"
)

// TestRestoreOrder: flows restored from another table with a latest packet older than the
// flows busy here, mixed with lookups, detaches and expiry, are ranged and expired exactly
// in the order of their latest packet within each class, as if each class had one list.
func TestRestoreOrder(t *testing.T) {
	for seed := range uint64(4) {
		r := rand.New(rand.NewPCG(seed, 7))
		to := Timeouts{ClassTCP: time.Duration(400), ClassUDP: time.Duration(150), ClassOther: time.Duration(60)}
		var removed []*Flow
		tb := New(Config{Timeouts: to, OnRemove: func(f *Flow, now int64, evicted bool) {
			c := *f
			removed = append(removed, &c)
		}})
		key := func() packet.Key {
			proto := []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP}[r.IntN(3)]
			a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(256))})
			return packet.KeyFrom(a, netip.MustParseAddr("198.18.0.1"), uint16(1+r.IntN(8)), 80, proto)
		}
		now := int64(1000)
		restored := 0
		for op := range 30000 {
			now += int64(r.IntN(3))
			switch x := r.IntN(20); {
			case x < 11:
				tb.Lookup(key(), now)
			case x < 15:
				last := now - int64(r.IntN(100))
				if f := tb.Restore(key(), last-10, last, 5, 2, packet.Key{}, 0, false); f != nil {
					restored++
					if f.Last != last || f.Packets != 5 || f.NewFlowlet() {
						t.Fatalf("restored flow: last %d packets %d", f.Last, f.Packets)
					}
				}
			case x < 17:
				var all []*Flow
				tb.Range(func(f *Flow) bool { all = append(all, f); return true })
				if len(all) > 0 {
					tb.Detach(all[r.IntN(len(all))])
				}
			default:
				removed = removed[:0]
				n := tb.Expire(now)
				if n != len(removed) {
					t.Fatalf("Expire returned %d, removed %d", n, len(removed))
				}
				for i, f := range removed {
					if now-f.Last <= int64(to[f.class]) {
						t.Fatalf("seed %d op %d: expired flow %s idle %d, timeout %d", seed, op, f.Key, now-f.Last, to[f.class])
					}
					if i > 0 && removed[i-1].class == f.class && removed[i-1].Last > f.Last {
						t.Fatalf("seed %d op %d: expired out of time order", seed, op)
					}
				}
				tb.Range(func(f *Flow) bool {
					if now-f.Last > int64(to[f.class]) {
						t.Fatalf("seed %d op %d: flow %s idle %d past its timeout %d left in", seed, op, f.Key, now-f.Last, to[f.class])
					}
					return true
				})
			}
			var prev *Flow
			tb.Range(func(f *Flow) bool {
				if prev != nil && prev.class == f.class && prev.Last > f.Last {
					t.Fatalf("seed %d op %d: Range: last %d after %d", seed, op, f.Last, prev.Last)
				}
				if prev != nil && prev.class > f.class {
					t.Fatalf("seed %d op %d: Range: class %d after %d", seed, op, f.class, prev.class)
				}
				prev = f
				return true
			})
			if op%256 == 0 {
				checkInvariants(t, tb)
			}
		}
		checkInvariants(t, tb)
		if restored < 1000 {
			t.Fatalf("only %d restores", restored)
		}
	}
}

// TestBulk: a table that restores flows in runs of Bulk — with restores outside Bulk,
// lookups, detaches and evictions (at its bound) in between — ranges, expires and evicts
// exactly as one that restores each flow in time order as it comes: the same flows in the
// same order, ties included. Its lists are sorted only when needed.
func TestBulk(t *testing.T) {
	sorted, compared, evicted := 0, 0, uint64(0)
	for seed := range uint64(4) {
		bound := []int{400, 1 << 20}[seed%2] // (evictions, or none)
		r := rand.New(rand.NewPCG(seed, 11))
		to := Timeouts{ClassTCP: time.Duration(400), ClassUDP: time.Duration(150), ClassOther: time.Duration(60)}
		var goneA, goneB []packet.Key
		mk := func(gone *[]packet.Key) *Table {
			return New(Config{MaxFlows: bound, Timeouts: to, OnRemove: func(f *Flow, now int64, evicted bool) {
				*gone = append(*gone, f.Key)
			}})
		}
		a, b := mk(&goneA), mk(&goneB)
		key := func() packet.Key {
			proto := []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP}[r.IntN(3)]
			ad := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(256))})
			return packet.KeyFrom(ad, netip.MustParseAddr("198.18.0.1"), uint16(1+r.IntN(8)), 80, proto)
		}
		flows := func(tb *Table) (s []Flow) {
			tb.Range(func(f *Flow) bool { s = append(s, *f); return true })
			return s
		}
		now := int64(1000)
		for op := range 2500 {
			now += int64(r.IntN(3))
			switch x := r.IntN(20); {
			case x < 8:
				k := key()
				a.Lookup(k, now)
				b.Lookup(k, now)
			case x < 15:
				// A run of restores, times out of order and some equal: in Bulk on a, one by
				// one on b (a restores some outside Bulk too).
				n, bulk := 1+r.IntN(40), r.IntN(4) > 0
				run := func() {
					for range n {
						k, last := key(), now-int64(r.IntN(100))
						fa := a.Restore(k, last-10, last, 5, 2, packet.Key{}, 0, false)
						fb := b.Restore(k, last-10, last, 5, 2, packet.Key{}, 0, false)
						if (fa == nil) != (fb == nil) {
							t.Fatalf("seed %d op %d: restore of %s: %v in bulk, %v in order", seed, op, k, fa != nil, fb != nil)
						}
					}
				}
				if bulk {
					a.Bulk(run)
				} else {
					run()
				}
			case x < 17:
				k := key()
				if f, _, ok := a.Find(k); ok {
					a.Detach(f)
				}
				if f, _, ok := b.Find(k); ok {
					b.Detach(f)
				}
			case x == 17 && r.IntN(8) == 0:
				// Every flow leaves (a list Bulk left unsorted may empty before its sort).
				for _, tb := range []*Table{a, b} {
					for i := range tb.flows { // (not Range: it would sort them first)
						tb.Detach(&tb.flows[i])
					}
				}
			default:
				if a.unsorted != 0 {
					sorted++
				}
				na, nb := a.Expire(now), b.Expire(now)
				fa, fb := flows(a), flows(b)
				compared++
				if na != nb || !slices.Equal(goneA, goneB) || !slices.Equal(fa, fb) {
					t.Fatalf("seed %d op %d: expired %d and %d, gone %d and %d, ranged %d and %d flows: they differ", seed, op, na, nb, len(goneA), len(goneB), len(fa), len(fb))
				}
				if a.unsorted != 0 {
					t.Fatalf("seed %d op %d: lists still out of order after Range", seed, op)
				}
			}
			if !slices.Equal(goneA, goneB) {
				t.Fatalf("seed %d op %d: removed (expired or evicted) %v, in order %v", seed, op, goneA, goneB)
			}
			goneA, goneB = goneA[:0], goneB[:0]
			if op%128 == 0 {
				checkInvariants(t, a)
				checkInvariants(t, b)
			}
		}
		evicted += b.Stats().Evicted
	}
	t.Logf("%d sorts, %d comparisons, %d evictions", sorted, compared, evicted)
	if sorted < 50 || compared < 200 || evicted < 100 {
		t.Fatal("too little was checked")
	}
}

// TestReserve: after Reserve(n), restoring n flows grows nothing — the flow arrays and the
// key index keep the memory Reserve gave them — and the table holds and finds them as
// without it; Reserve past the table's bound reserves up to it.
func TestReserve(t *testing.T) {
	const n = 5000
	tb := New(Config{Slots: 2})
	tb.Lookup(udpKey(1), 1) // (not empty: room is made on top of what it holds)
	tb.Reserve(n, 0)
	flows, slots, heads, ents := cap(tb.flows), cap(tb.slots), len(tb.m.heads), cap(tb.m.ents)
	keys := make([]packet.Key, n)
	for i := range keys {
		keys[i] = tcpKey(i)
		tb.Restore(keys[i], 5, 10, 3, 1, packet.Key{}, 0, false)
	}
	if cap(tb.flows) != flows || cap(tb.slots) != slots || len(tb.m.heads) != heads || cap(tb.m.ents) != ents {
		t.Errorf("restoring %d reserved flows grew the table: flows %d→%d, slots %d→%d, buckets %d→%d, entries %d→%d",
			n, flows, cap(tb.flows), slots, cap(tb.slots), heads, len(tb.m.heads), ents, cap(tb.m.ents))
	}
	for _, k := range keys {
		if f, _, ok := tb.Find(k); !ok || f.Key != k || f.Packets != 3 {
			t.Fatalf("flow %v: %+v after its restore", k, f)
		}
		if f, dir, ok := tb.Find(k.Reverse()); !ok || f.Key != k || dir != Reply {
			t.Fatalf("flow %v not found by its reply key", k)
		}
	}
	// With freed flows and keys to reuse, more than it reserves (no negative growth).
	for _, k := range keys[:1000] {
		f, _, _ := tb.Find(k)
		tb.Remove(f, 10)
	}
	tb.Reserve(10, 0)
	for _, k := range keys[:10] {
		tb.Restore(k, 5, 10, 3, 1, packet.Key{}, 0, false)
	}
	// Flows with an alias key each: Reserve counts it.
	al := New(Config{})
	al.Reserve(n, n)
	heads, ents = len(al.m.heads), cap(al.m.ents)
	for i := range n {
		al.Restore(tcpKey(i), 5, 10, 3, 1, udpKey(i), Reply, true)
	}
	if len(al.m.heads) != heads || cap(al.m.ents) != ents {
		t.Errorf("restoring %d reserved flows with aliases grew the index: buckets %d→%d, entries %d→%d", n, heads, len(al.m.heads), ents, cap(al.m.ents))
	}
	small := New(Config{MaxFlows: 10})
	small.Reserve(1<<30, 1<<30) // (not 2^30 flows' memory: the bound is 10)
	if cap(small.flows) > 64 {
		t.Errorf("Reserve past the bound made room for %d flows", cap(small.flows))
	}
}

// BenchmarkRestoreOrder: 10,000 flows restored into a table that holds 10,000 older ones,
// in an order unrelated to their times (as an incremental checkpoint lists them): one by
// one in time order, or in Bulk and then sorted once (the sort included; sort-ns/flow is
// the sort's share, per restored flow, of a list that holds 20,000).
func BenchmarkRestoreOrder(b *testing.B) {
	const n = 10000
	r := rand.New(rand.NewPCG(1, 2))
	last := make([]int64, n)
	for i := range last {
		last[i] = 1e9 + r.Int64N(1e7)
	}
	for _, bulk := range []bool{false, true} {
		name := map[bool]string{false: "ordered", true: "bulk"}[bulk]
		b.Run(name, func(b *testing.B) {
			var sorting time.Duration
			for b.Loop() {
				b.StopTimer()
				tb := New(Config{})
				tb.Reserve(2*n, 0)
				for i := range n {
					tb.Restore(tcpKey(n+i), 0, int64(i), 1, 1, packet.Key{}, 0, false)
				}
				b.StartTimer()
				run := func() {
					for i := range n {
						tb.Restore(tcpKey(i), 0, last[i], 1, 1, packet.Key{}, 0, false)
					}
				}
				if bulk {
					tb.Bulk(run)
					start := time.Now()
					tb.settle()
					sorting += time.Since(start)
				} else {
					run()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/flow")
			b.ReportMetric(float64(sorting.Nanoseconds())/float64(b.N)/n, "sort-ns/flow")
		})
	}
}

// TestSortByLast: the radix sort orders as a stable comparison sort does (latest first, ties
// in their order), for short and long lists, times close together, far apart, negative and
// at the int64 extremes.
func TestSortByLast(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var tmp []byLast
	for i := range 400 {
		n := r.IntN(3000)
		s := make([]byLast, n)
		spread := []int64{1, 10, 1e6, 1e10, math.MaxInt64}[i%5]
		for j := range s {
			s[j] = byLast{r.Int64N(spread), int32(j)}
			if i%7 == 0 && r.IntN(2) == 0 {
				s[j].last = -s[j].last
			}
			if i%11 == 0 && r.IntN(10) == 0 {
				s[j].last = []int64{math.MinInt64, math.MaxInt64}[r.IntN(2)]
			}
		}
		want := slices.Clone(s)
		slices.SortStableFunc(want, func(a, b byLast) int { return cmp.Compare(b.last, a.last) })
		var got []byLast
		got, tmp = sortByLast(s, tmp)
		if !slices.Equal(got, want) {
			t.Fatalf("case %d (%d flows, spread %d): radix order differs from a stable sort", i, n, spread)
		}
	}
}
