package flowtable

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/snf-dev/snf/packet"
)

// The model is the flow table's specification written the simple way: maps and linear
// scans, no arena, no intrusive lists.

type mFlow struct {
	id             int
	idx            int32 // the table's index, learnt when the flow is created
	key            packet.Key
	class          Class
	first, last    int64
	packets        uint64
	seq            uint64 // order of the latest touch: the LRU order within a class
	hasAlias       bool
	alias          packet.Key
	removedAt      int64
	removedEvicted bool
}

type mRef struct {
	f   *mFlow
	dir Dir
}

type mRemoval struct {
	key     packet.Key
	idx     int32
	now     int64
	evicted bool
}

type model struct {
	to     Timeouts
	max    int
	flows  []*mFlow // live, in creation order
	keys   map[packet.Key]mRef
	seq    uint64
	nextID int
	log    []mRemoval
	stats  Stats
}

func (m *model) touch(f *mFlow, now int64) {
	if now-f.last > int64(DefaultFlowletGap) {
		m.stats.Flowlets++
	}
	m.seq++
	f.seq, f.last = m.seq, now
	f.packets++
}

func (m *model) remove(f *mFlow, now int64, evicted bool) {
	i := slices.Index(m.flows, f)
	if i < 0 {
		return
	}
	m.log = append(m.log, mRemoval{f.key, f.idx, now, evicted})
	for k, r := range m.keys {
		if r.f == f {
			delete(m.keys, k)
		}
	}
	m.flows = slices.Delete(m.flows, i, i+1)
	if evicted {
		m.stats.Evicted++
	} else {
		m.stats.Expired++
	}
}

// lookup returns the flow, direction and created flag; a created flow's idx is to be set
// by the caller.
func (m *model) lookup(k packet.Key, now int64) (*mFlow, Dir, bool) {
	if r, ok := m.keys[k]; ok {
		if now-r.f.last <= int64(m.to[r.f.class]) {
			m.touch(r.f, now)
			return r.f, r.dir, false
		}
		m.remove(r.f, now, false)
	}
	if len(m.flows) >= m.max {
		m.evict(now)
	}
	m.nextID++
	m.seq++
	f := &mFlow{id: m.nextID, key: k, class: ClassOf(k.Proto), first: now, last: now, packets: 1, seq: m.seq}
	m.flows = append(m.flows, f)
	m.keys[k] = mRef{f, Orig}
	if rk := k.Reverse(); rk != k {
		if r, ok := m.keys[rk]; ok && r.f.hasAlias && r.f.alias == rk {
			r.f.hasAlias = false // the new flow takes the key over
		}
		m.keys[rk] = mRef{f, Reply}
	}
	m.stats.Created++
	m.stats.Flowlets++
	return f, Orig, true
}

// evict removes the flow closest to its idle expiry among each class's least recently used
// flow (ties: the lower class).
func (m *model) evict(now int64) {
	var best *mFlow
	var bestLeft int64
	for c := range numClasses {
		var lru *mFlow
		for _, f := range m.flows {
			if f.class == c && (lru == nil || f.seq < lru.seq) {
				lru = f
			}
		}
		if lru == nil {
			continue
		}
		if left := lru.last + int64(m.to[c]) - now; best == nil || left < bestLeft {
			best, bestLeft = lru, left
		}
	}
	if best != nil {
		m.remove(best, now, true)
	}
}

// byLRU returns the live flows in Range order: by class, least recently used first.
func (m *model) byLRU() []*mFlow {
	fs := slices.Clone(m.flows)
	slices.SortFunc(fs, func(a, b *mFlow) int {
		return cmp.Or(cmp.Compare(a.class, b.class), cmp.Compare(a.seq, b.seq))
	})
	return fs
}

func (m *model) expire(now int64) int {
	n := 0
	for _, f := range m.byLRU() {
		if now-f.last > int64(m.to[f.class]) {
			m.remove(f, now, false)
			n++
		}
	}
	return n
}

func (m *model) aliasKey(f *mFlow, k packet.Key, dir Dir) {
	if r, ok := m.keys[k]; ok {
		if r.f == f {
			m.keys[k] = mRef{f, dir}
			return
		}
		if r.f.hasAlias && r.f.alias == k {
			r.f.hasAlias = false
		}
	}
	if f.hasAlias {
		delete(m.keys, f.alias)
	}
	f.hasAlias, f.alias = true, k
	m.keys[k] = mRef{f, dir}
}

func (m *model) unalias(f *mFlow, k packet.Key) {
	if r, ok := m.keys[k]; ok && r.f == f {
		delete(m.keys, k)
		if f.hasAlias && f.alias == k {
			f.hasAlias = false
		}
	}
}

// keyPool is a small set of keys, so that reverses, self-flows, aliases colliding with
// other flows' keys and re-creations are frequent.
func keyPool() []packet.Key {
	hosts := []netip.Addr{
		netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"),
	}
	var ks []packet.Key
	for _, a := range hosts {
		for _, b := range hosts {
			if a.Is4() != b.Is4() {
				continue
			}
			for _, proto := range []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP} {
				for sp := uint16(1); sp <= 2; sp++ {
					for dp := uint16(1); dp <= 2; dp++ {
						ks = append(ks, packet.KeyFrom(a, b, sp, dp, proto))
					}
				}
			}
		}
	}
	return ks
}

func TestModel(t *testing.T) {
	ops := 40000
	if testing.Short() {
		ops = 5000
	}
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, seed, ops) })
	}
}

func runModel(t *testing.T, seed uint64, ops int) {
	r := rand.New(rand.NewPCG(seed, 99))
	to := Timeouts{ClassTCP: time.Duration(20), ClassUDP: time.Duration(8), ClassOther: time.Duration(3)}
	maxFlows := 4 + int(seed)*3
	var log []mRemoval
	var tb *Table
	tb = New(Config{MaxFlows: maxFlows, Timeouts: to, Slots: 1, OnRemove: func(f *Flow, now int64, evicted bool) {
		if tb.Slots(f.Index())[0] != f.Index() {
			t.Fatalf("OnRemove: flow %d's slot is %d: not its own any more", f.Index(), tb.Slots(f.Index())[0])
		}
		log = append(log, mRemoval{f.Key, f.Index(), now, evicted})
	}})
	m := &model{to: to, max: maxFlows, keys: make(map[packet.Key]mRef)}
	pool := keyPool()
	now := int64(0)
	var trace []string
	fail := func(format string, args ...any) {
		t.Helper()
		start := max(0, len(trace)-12)
		t.Fatalf("seed %d op %d: %s\nlast ops:\n  %s", seed, len(trace), fmt.Sprintf(format, args...), joinLines(trace[start:]))
	}
	pickFlow := func() *mFlow {
		if len(m.flows) == 0 {
			return nil
		}
		return m.flows[r.IntN(len(m.flows))]
	}
	for range ops {
		now += int64(r.IntN(3))
		switch op := r.IntN(20); {
		case op < 12:
			k := pool[r.IntN(len(pool))]
			trace = append(trace, fmt.Sprintf("Lookup(%s, %d)", k, now))
			f, dir, created := tb.Lookup(k, now)
			mf, mdir, mcreated := m.lookup(k, now)
			if created {
				mf.idx = f.Index()
				tb.Slots(f.Index())[0] = f.Index()
			}
			if created != mcreated || dir != mdir || f.Index() != mf.idx {
				fail("Lookup: created %v dir %d idx %d; model %v %d %d", created, dir, f.Index(), mcreated, mdir, mf.idx)
			}
			if f.Key != mf.key || f.First != mf.first || f.Last != mf.last || f.Packets != mf.packets {
				fail("Lookup: flow %s %d..%d ×%d; model %s %d..%d ×%d", f.Key, f.First, f.Last, f.Packets, mf.key, mf.first, mf.last, mf.packets)
			}
		case op < 14:
			trace = append(trace, fmt.Sprintf("Expire(%d)", now))
			if n, mn := tb.Expire(now), m.expire(now); n != mn {
				fail("Expire: %d; model %d", n, mn)
			}
		case op < 17:
			f := pickFlow()
			if f == nil {
				continue
			}
			k := pool[r.IntN(len(pool))]
			dir := Dir(r.IntN(2))
			trace = append(trace, fmt.Sprintf("Alias(flow %d %s, %s, %d)", f.idx, f.key, k, dir))
			tb.Alias(tb.Flow(f.idx), k, dir)
			m.aliasKey(f, k, dir)
		case op < 19:
			f := pickFlow()
			if f == nil {
				continue
			}
			k := pool[r.IntN(len(pool))]
			if f.hasAlias && r.IntN(2) == 0 {
				k = f.alias
			}
			trace = append(trace, fmt.Sprintf("Unalias(flow %d, %s)", f.idx, k))
			tb.Unalias(tb.Flow(f.idx), k)
			m.unalias(f, k)
		default:
			f := pickFlow()
			if f == nil {
				continue
			}
			trace = append(trace, fmt.Sprintf("Remove(flow %d, %d)", f.idx, now))
			tb.Remove(tb.Flow(f.idx), now)
			m.remove(f, now, false)
		}

		// Same removals, in the same order.
		if !slices.Equal(log, m.log) {
			fail("OnRemove calls\n got %v\nwant %v", log, m.log)
		}
		log, m.log = log[:0], m.log[:0]
		// Same key → (flow, direction) mapping.
		if tb.m.len() != len(m.keys) {
			fail("%d keys; model %d", tb.m.len(), len(m.keys))
		}
		for k, mr := range m.keys {
			f, dir, ok := tb.Find(k)
			if !ok || f.Index() != mr.f.idx || dir != mr.dir {
				fail("Find(%s): ok %v idx %d dir %d; model idx %d dir %d", k, ok, idxOf(f), dir, mr.f.idx, mr.dir)
			}
		}
		// Same live flows, in the same Range order.
		var got []*Flow
		tb.Range(func(f *Flow) bool { got = append(got, f); return true })
		want := m.byLRU()
		if len(got) != len(want) {
			fail("Range: %d flows; model %d", len(got), len(want))
		}
		for i, f := range got {
			w := want[i]
			if f.Index() != w.idx || f.Key != w.key || f.First != w.first || f.Last != w.last || f.Packets != w.packets {
				fail("Range[%d]: flow %d %s; model %d %s", i, f.Index(), f.Key, w.idx, w.key)
			}
		}
		s, ms := tb.Stats(), m.stats
		ms.Active = len(m.flows)
		if s != ms {
			fail("Stats %+v; model %+v", s, ms)
		}
		if len(trace)%64 == 0 {
			checkInvariants(t, tb)
		}
	}
	checkInvariants(t, tb)
}

func idxOf(f *Flow) int32 {
	if f == nil {
		return -1
	}
	return f.Index()
}

func joinLines(s []string) string {
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}
