// Package flowtable keeps the flows a compute unit has seen: bidirectional, keyed by the
// packet's directional 5-tuple, with idle expiry per protocol class and a hard bound on the
// number of entries. It is a deterministic component: time is whatever the caller passes
// (packet timestamps), so a replay expires the same flows at the same packets.
//
// Steady state allocates nothing: flows live in an arena indexed by int32, free entries are
// reused, and each protocol class keeps intrusive lists ordered by each flow's latest packet
// so that expiry touches only the flows that expire: the flows this table saw last, and
// beside them the flows restored from another table and not touched here since (a moved
// flow's latest packet is older than the flows busy here, so it would otherwise be linked
// in by a walk past all of them). Range and expiry merge the two lists by time.
package flowtable

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/snf-dev/snf/packet"
)

// Dir is a packet's direction within its flow.
type Dir uint8

const (
	// Orig is the direction of the flow's first packet.
	Orig Dir = iota
	// Reply is the opposite direction.
	Reply
)

// Class groups protocols that share an idle timeout.
type Class uint8

const (
	ClassTCP Class = iota
	ClassUDP
	ClassOther // ICMP, ICMPv6 and every other protocol
	numClasses
)

// ClassOf returns the timeout class of an IP protocol.
func ClassOf(proto uint8) Class {
	switch proto {
	case packet.ProtoTCP:
		return ClassTCP
	case packet.ProtoUDP:
		return ClassUDP
	}
	return ClassOther
}

// Timeouts are idle timeouts per class: a flow with no packet for that long is expired.
type Timeouts [numClasses]time.Duration

// DefaultTimeouts apply when no NF asks for longer ones.
var DefaultTimeouts = Timeouts{ClassTCP: 5 * time.Minute, ClassUDP: time.Minute, ClassOther: 30 * time.Second}

// Max returns the per-class maximum of t and u.
func (t Timeouts) Max(u Timeouts) Timeouts {
	for i := range t {
		t[i] = max(t[i], u[i])
	}
	return t
}

// Config sizes a Table.
type Config struct {
	// MaxFlows bounds the number of flows; at the bound a new flow evicts the flow closest
	// to its idle expiry (0 means DefaultMaxFlows).
	MaxFlows int
	// Timeouts per class (zero entries take DefaultTimeouts).
	Timeouts Timeouts
	// Slots is the number of int32 slots kept per flow for the caller (NF flow-state
	// indices); they are set to -1 when a flow is created.
	Slots int
	// OnRemove, if set, is called for a flow just before it is expired or evicted (its
	// slots are still intact), with the time that triggered the removal.
	OnRemove func(f *Flow, now int64, evicted bool)
	// FlowletGap is the idle gap that ends a flowlet: a packet arriving more than this after
	// its flow's previous packet starts a new flowlet (0: DefaultFlowletGap).
	FlowletGap int64
	// Seed varies the key index's hash between tables (0 is a valid seed). It changes no
	// observable behaviour, only which keys share a bucket.
	Seed uint64
}

// DefaultFlowletGap is the default flowlet gap δ (SNF's default).
const DefaultFlowletGap = 500 * time.Microsecond

// DefaultMaxFlows is the default bound on flows per table.
const DefaultMaxFlows = 1 << 20

// A flow's directional keys, by position in Flow.keys: its two directions plus one alias
// (the reply key after a NAT rewrote the original direction). The alias has its own
// position so that a second Alias replaces exactly the first, whatever happened to the
// other keys (a flow to itself has no separate reply key; another flow's Alias may take
// over a flow's original or reply key).
const (
	keyOrig = iota
	keyReply
	keyAlias
	maxKeys
)

// Flow is one bidirectional flow.
type Flow struct {
	// Key is the directional key of the flow's first packet.
	Key packet.Key
	// First and Last are the times of the first and latest packet (ns).
	First, Last int64
	// Packets counts packets in both directions.
	Packets uint64
	// Flowlets counts the flow's flowlets: bursts separated by idle gaps longer than the
	// table's FlowletGap (the first packet starts the first flowlet).
	Flowlets uint32
	// FlowletStart is the time of the current flowlet's first packet.
	FlowletStart int64

	newFlowlet bool // the latest packet started a flowlet

	keys       [maxKeys]packet.Key
	mapped     uint8 // bit i set: keys[i] maps to this flow
	aliasDir   Dir
	class      Class
	live       bool
	list       uint8 // the LRU list holding it: listOf(class, restored)
	prev, next int32 // LRU list, most recent at head
	idx        int32
}

// NewFlowlet reports whether the packet just looked up started a flowlet (a new flow's first
// packet does).
func (f *Flow) NewFlowlet() bool { return f.newFlowlet }

// Live reports whether the flow is in its table (a slot of a removed flow is not).
func (f *Flow) Live() bool { return f.live }

// Index is the flow's stable index in its table while it lives.
func (f *Flow) Index() int32 { return f.idx }

// ref is what a directional key maps to.
type ref struct {
	idx int32
	dir Dir
}

// Stats counts the table's life.
type Stats struct {
	Created, Expired, Evicted uint64
	Flowlets                  uint64
	// MovedOut and MovedIn count flows detached to, and restored from, another table.
	MovedOut, MovedIn uint64
	Active            int
}

// Each class has two LRU lists, each ordered by Last (latest at the head): the flows touched
// here (main) and the flows restored from another table and not touched here since. Range,
// RangeIdle, Expire and eviction merge a class's two lists by Last (main first on a tie), so
// the table behaves as if each class had one list ordered by Last.
const numLists = 2 * numClasses

func listOf(c Class, restored bool) uint8 {
	if restored {
		return uint8(c)*2 + 1
	}
	return uint8(c) * 2
}

// older returns whichever of a (a main list's flow) and b (the same class's restored list's
// flow) has the earlier Last, a on a tie; -1 when both are -1.
func (t *Table) older(a, b int32) int32 {
	switch {
	case a < 0:
		return b
	case b < 0:
		return a
	case t.flows[b].Last < t.flows[a].Last:
		return b
	}
	return a
}

// Table is a bounded flow table. It is not safe for concurrent use: one unit owns it.
type Table struct {
	cfg   Config
	m     keyIndex
	flows []Flow
	slots []int32
	free  []int32
	head  [numLists]int32 // by list (listOf): most recent flow
	tail  [numLists]int32 // by list: least recent flow
	// finger holds, by list, two flows insertByLast recently placed by a walk, each
	// following one stream of such insertions (-1: none; one may have left the list
	// since: check before use).
	finger [2][numLists]int32
	// bulk is set while Bulk runs fn: insertByLast links flows first in their list and
	// marks the list in unsorted; settle sorts those lists.
	bulk     bool
	unsorted uint16 // bit l: list l is out of time order
	stats    Stats
	// nextExpiry is a lower bound of the earliest time a flow can expire: touching or
	// removing flows only moves the true value later; creating one updates it.
	nextExpiry int64
}

// New returns an empty table.
func New(cfg Config) *Table {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.FlowletGap <= 0 {
		cfg.FlowletGap = int64(DefaultFlowletGap)
	}
	for i, d := range cfg.Timeouts {
		if d <= 0 {
			cfg.Timeouts[i] = DefaultTimeouts[i]
		}
	}
	t := &Table{cfg: cfg, m: newKeyIndex(cfg.Seed)}
	for c := range t.head {
		t.head[c], t.tail[c], t.finger[0][c], t.finger[1][c] = -1, -1, -1, -1
	}
	return t
}

// Timeouts returns the table's idle timeouts.
func (t *Table) Timeouts() Timeouts { return t.cfg.Timeouts }

// FlowletGap returns the idle gap that ends a flowlet.
func (t *Table) FlowletGap() time.Duration { return time.Duration(t.cfg.FlowletGap) }

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	s := t.stats
	s.Active = len(t.flows) - len(t.free)
	return s
}

// Flow returns the flow at idx. A *Flow stays valid until the next Lookup or Alias, which
// may grow the arena; keep the index, not the pointer.
func (t *Table) Flow(idx int32) *Flow { return &t.flows[idx] }

// Slots returns the caller's slots of the flow at idx.
func (t *Table) Slots(idx int32) []int32 {
	n := t.cfg.Slots
	return t.slots[int(idx)*n : int(idx)*n+n : int(idx)*n+n]
}

// Lookup finds the flow of key k at time now, creating it (k becoming its original
// direction) when absent. A flow found idle past its timeout is expired first and a new one
// created in its place. created reports a new flow.
func (t *Table) Lookup(k packet.Key, now int64) (f *Flow, dir Dir, created bool) {
	return t.LookupRef(&k, now)
}

// LookupRef is Lookup without copying the key (the packet path's form).
func (t *Table) LookupRef(k *packet.Key, now int64) (f *Flow, dir Dir, created bool) {
	h, i := t.m.find(k)
	if i >= 0 {
		r := t.m.ents[i].r
		f = &t.flows[r.idx]
		if now-f.Last <= int64(t.cfg.Timeouts[f.class]) {
			t.touch(f, now)
			return f, r.dir, false
		}
		t.remove(f, now, false) // (unmaps k: its FlowEnd hooks may map keys to f, never to another flow)
	}
	f = t.create(*k, h, now, false)
	return f, Orig, true
}

// Find returns the flow of key k without creating or touching it.
func (t *Table) Find(k packet.Key) (f *Flow, dir Dir, ok bool) {
	r, ok := t.m.get(&k)
	if !ok {
		return nil, 0, false
	}
	return &t.flows[r.idx], r.dir, true
}

// Alias maps the directional key k to flow f in direction dir, so that packets with key k
// (for instance replies to a NAT-rewritten packet) find f. An existing mapping of k to
// another flow is taken over. A flow holds at most one alias: a second replaces the first.
// It reports whether the table changed: false when the alias was in place already.
func (t *Table) Alias(f *Flow, k packet.Key, dir Dir) bool {
	if f.mapped&(1<<keyAlias) != 0 && f.keys[keyAlias] == k && f.aliasDir == dir {
		return false // already in place: the common case of a NAT translating every packet
	}
	h, e := t.m.find(&k)
	if e >= 0 {
		r := t.m.ents[e].r
		if r.idx == f.idx {
			t.m.ents[e].r = ref{f.idx, dir}
			if f.mapped&(1<<keyAlias) != 0 && f.keys[keyAlias] == k {
				f.aliasDir = dir // aliasDir is the direction of the alias's mapping only
			}
			return true
		}
		t.dropKey(&t.flows[r.idx], k)
	}
	if f.mapped&(1<<keyAlias) != 0 {
		t.m.delIf(&f.keys[keyAlias], f.idx)
	}
	f.keys[keyAlias], f.aliasDir = k, dir
	f.mapped |= 1 << keyAlias
	if e >= 0 { // (the delete above was of another key: e is still k's)
		t.m.ents[e].r = ref{f.idx, dir}
	} else {
		t.m.insert(&k, h, ref{f.idx, dir})
	}
	return true
}

// Unalias removes the mapping of k if it points to f.
func (t *Table) Unalias(f *Flow, k packet.Key) {
	if t.m.delIf(&k, f.idx) {
		t.dropKey(f, k)
	}
}

// dropKey forgets that k maps to f (the caller updates the map).
func (t *Table) dropKey(f *Flow, k packet.Key) {
	for i := range f.keys {
		if f.mapped&(1<<i) != 0 && f.keys[i] == k {
			f.mapped &^= 1 << i
			return
		}
	}
}

// Expire removes every flow idle past its class timeout at time now and returns how many.
func (t *Table) Expire(now int64) int {
	if now <= t.nextExpiry {
		return 0 // no tail can have expired yet: the check costs no flow access
	}
	t.settle()
	n := 0
	t.nextExpiry = math.MaxInt64
	for c := range Class(numClasses) {
		to := int64(t.cfg.Timeouts[c])
		m, r := listOf(c, false), listOf(c, true)
		for {
			i := t.older(t.tail[m], t.tail[r])
			if i < 0 {
				break
			}
			f := &t.flows[i]
			if now-f.Last > to {
				t.remove(f, now, false)
				n++
				continue
			}
			t.nextExpiry = min(t.nextExpiry, f.Last+to)
			break
		}
	}
	return n
}

// Remove deletes flow f now (for instance when an NF saw the connection close).
func (t *Table) Remove(f *Flow, now int64) { t.remove(f, now, false) }

// Range calls fn for every live flow, least recently used first within each class.
func (t *Table) Range(fn func(f *Flow) bool) {
	t.RangeIdle(math.MaxInt64, fn)
}

// RangeIdle calls fn for every live flow whose latest packet came before the time before,
// oldest first within each class, until fn returns false. It visits only those flows (the
// lists are ordered by time), so a caller looking for idle flows does not pay for busy ones.
func (t *Table) RangeIdle(before int64, fn func(f *Flow) bool) {
	t.settle()
	for c := range Class(numClasses) {
		a, b := t.tail[listOf(c, false)], t.tail[listOf(c, true)]
		for {
			i := t.older(a, b)
			if i < 0 {
				break
			}
			f := &t.flows[i]
			if f.Last >= before {
				break
			}
			if i == a {
				a = f.prev
			} else {
				b = f.prev
			}
			if !fn(f) {
				return
			}
		}
	}
}

// Reserve makes room for n more flows (up to the table's bound), aliases of which have an
// alias key, at once: a restore that imports thousands grows the table's arrays and index
// once, not by doubling as they come (measured: growth was most of a restore's time).
func (t *Table) Reserve(n, aliases int) {
	if m := t.cfg.MaxFlows - (len(t.flows) - len(t.free)); n > m {
		n, aliases = m, min(aliases, m)
	}
	if n <= 0 {
		return
	}
	if need := n - len(t.free); need > 0 {
		t.flows = slices.Grow(t.flows, need)
		t.slots = slices.Grow(t.slots, need*t.cfg.Slots)
	}
	t.m.reserve(2*n + aliases) // (a flow's keys: original, reply and maybe an alias)
}

// create makes the flow of key k, whose hash is h, at time now, in the restored list if
// restored. The index must not hold k.
func (t *Table) create(k packet.Key, h uint64, now int64, restored bool) *Flow {
	if len(t.flows)-len(t.free) >= t.cfg.MaxFlows {
		t.evictOne(now)
	}
	var idx int32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		idx = int32(len(t.flows))
		t.flows = append(t.flows, Flow{})
		for range t.cfg.Slots {
			t.slots = append(t.slots, -1)
		}
	}
	f := &t.flows[idx]
	c := ClassOf(k.Proto)
	*f = Flow{Key: k, First: now, Last: now, Packets: 1, Flowlets: 1, FlowletStart: now, newFlowlet: true,
		class: c, list: listOf(c, restored), live: true, idx: idx, prev: -1, next: -1}
	t.stats.Flowlets++
	f.keys[keyOrig], f.keys[keyReply], f.mapped = k, k.Reverse(), 1<<keyOrig
	t.m.insert(&k, h, ref{idx, Orig})
	if rk := f.keys[keyReply]; rk != k { // a flow to itself (same address and port both ways) has one key
		if rh, e := t.m.find(&rk); e >= 0 {
			// The reply key is another flow's (its alias, say): the new flow takes it over,
			// as Alias does, and the other flow must know it no longer holds it.
			t.dropKey(&t.flows[t.m.ents[e].r.idx], rk)
			t.m.ents[e].r = ref{idx, Reply}
		} else {
			t.m.insert(&rk, rh, ref{idx, Reply})
		}
		f.mapped |= 1 << keyReply
	}
	for i := range t.Slots(idx) {
		t.Slots(idx)[i] = -1
	}
	t.insertByLast(f) // at the head, unless packets reach this table out of time order
	t.nextExpiry = min(t.nextExpiry, now+int64(t.cfg.Timeouts[f.class]))
	t.stats.Created++
	return f
}

// evictOne removes the flow that is closest to its idle expiry.
func (t *Table) evictOne(now int64) {
	t.bulk = false // (the rest of a bulk restore goes in order: one sort, not one per eviction)
	t.settle()
	best, bestLeft := int32(-1), int64(0)
	for c := range Class(numClasses) {
		i := t.older(t.tail[listOf(c, false)], t.tail[listOf(c, true)])
		if i < 0 {
			continue
		}
		left := t.flows[i].Last + int64(t.cfg.Timeouts[c]) - now
		if best < 0 || left < bestLeft {
			best, bestLeft = i, left
		}
	}
	if best >= 0 {
		t.remove(&t.flows[best], now, true)
	}
}

func (t *Table) touch(f *Flow, now int64) {
	f.newFlowlet = now-f.Last > t.cfg.FlowletGap
	if f.newFlowlet {
		f.Flowlets++
		f.FlowletStart = now
		t.stats.Flowlets++
	}
	f.Last = max(f.Last, now) // a packet with an earlier timestamp does not make the flow look older
	f.Packets++
	if main := listOf(f.class, false); f.list != main || t.head[main] != f.idx || (f.next >= 0 && t.flows[f.next].Last > now) {
		t.unlink(f)
		f.list = main
		t.insertByLast(f)
	}
}

// Detach removes flow f without calling OnRemove and without counting it as expired: the
// flow lives on in another table (a flow moved to another unit). Stats count it as moved.
func (t *Table) Detach(f *Flow) {
	if !f.live {
		return
	}
	t.drop(f)
	t.stats.MovedOut++
}

// Restore creates the flow with original key k and the given history, as Detach left it
// in another table: its reply key and, if hasAlias, its alias. It fails (nil) when k is
// already a flow here.
func (t *Table) Restore(k packet.Key, first, last int64, packets uint64, flowlets uint32, alias packet.Key, aliasDir Dir, hasAlias bool) *Flow {
	h, e := t.m.find(&k)
	if e >= 0 {
		return nil
	}
	return t.restore(k, h, first, last, packets, flowlets, alias, aliasDir, hasAlias)
}

// RestoreOver is Restore for a flow whose key another flow here may hold — as its alias or
// reply key, or as its own (a checkpoint lists flows that took over one another's keys, and
// even two flows with one Key: one whose key was taken, and the one made with it after): the
// new flow takes the key over, as Alias does, and the other flow lives on without it.
func (t *Table) RestoreOver(k packet.Key, first, last int64, packets uint64, flowlets uint32, alias packet.Key, aliasDir Dir, hasAlias bool) *Flow {
	h, e := t.m.find(&k)
	if e >= 0 {
		holder := t.m.ents[e].r.idx
		t.dropKey(&t.flows[holder], k)
		t.m.delIf(&k, holder)
	}
	return t.restore(k, h, first, last, packets, flowlets, alias, aliasDir, hasAlias)
}

// restore creates the restored flow of key k, of hash h, which the index does not hold.
func (t *Table) restore(k packet.Key, h uint64, first, last int64, packets uint64, flowlets uint32, alias packet.Key, aliasDir Dir, hasAlias bool) *Flow {
	f := t.create(k, h, last, true)
	f.First, f.Packets, f.Flowlets, f.newFlowlet = first, packets, flowlets, false
	// create linked it into the restored list, whose flows are those moved in and not
	// touched since: by its time (a few, usually all older than it), or first in Bulk.
	t.stats.Created--
	t.stats.Flowlets--
	t.stats.MovedIn++
	if hasAlias {
		t.Alias(f, alias, aliasDir)
	}
	return f
}

// FindFlow returns the live flow whose Key (its first packet's key) is k, if one of its
// keys still maps to it: another flow may have taken over k itself.
func (t *Table) FindFlow(k packet.Key) (*Flow, bool) {
	for _, x := range [2]packet.Key{k, k.Reverse()} {
		if r, ok := t.m.get(&x); ok && t.flows[r.idx].Key == k {
			return &t.flows[r.idx], true
		}
	}
	return nil, false
}

// AliasKey returns the flow's alias key and its direction, if it has one.
func (f *Flow) AliasKey() (packet.Key, Dir, bool) {
	return f.keys[keyAlias], f.aliasDir, f.mapped&(1<<keyAlias) != 0
}

func (t *Table) remove(f *Flow, now int64, evicted bool) {
	if !f.live {
		return
	}
	if t.cfg.OnRemove != nil {
		t.cfg.OnRemove(f, now, evicted)
	}
	t.drop(f)
	if evicted {
		t.stats.Evicted++
	} else {
		t.stats.Expired++
	}
}

// drop unmaps f's keys and frees its entry.
func (t *Table) drop(f *Flow) {
	for i := range f.keys {
		if f.mapped&(1<<i) == 0 {
			continue
		}
		t.m.delIf(&f.keys[i], f.idx)
	}
	t.unlink(f)
	f.live = false
	f.mapped = 0
	t.free = append(t.free, f.idx)
}

// insertByLast links f into its list (f.list) after every flow with a later Last and before
// every flow with an earlier or equal one. A flow at least as recent as the head (the usual
// case) goes to the head; otherwise a walk places it, from the nearest in time of the head,
// the tail and the list's two fingers — flows recently placed by a walk, if still in the
// list (the one a walk starts from, or else the farther one, moves to f). Flows imported one
// after the other (a draining unit's idle flows, oldest first)
// then cost a walk over the flows between them, not over all the newer ones each time, and
// so do the packets held for them (a few ms old) that a unit processes between imports:
// one finger follows each.
func (t *Table) insertByLast(f *Flow) {
	c := f.list
	if t.unsorted&(1<<c) != 0 && !t.bulk {
		t.settle()
	}
	h := t.head[c]
	var next int32 // the first flow not later than f, -1: f becomes the tail
	switch {
	case h < 0 || t.flows[h].Last <= f.Last:
		next = h
	case t.bulk:
		next = h // first, out of order: settle sorts the list
		t.unsorted |= 1 << c
	default:
		dist := func(g int32) int64 { return max(f.Last-t.flows[g].Last, t.flows[g].Last-f.Last) }
		s, d, used := h, dist(h), -1
		if tl := t.tail[c]; dist(tl) < d {
			s, d = tl, dist(tl)
		}
		var fd [2]int64 // the fingers' distances in time (max: none)
		for j := range t.finger {
			fd[j] = math.MaxInt64
			if g := t.finger[j][c]; g >= 0 && g != f.idx && g < int32(len(t.flows)) && t.flows[g].live && t.flows[g].list == c {
				if fd[j] = dist(g); fd[j] < d {
					s, d, used = g, fd[j], j
				}
			}
		}
		if used < 0 { // the farther finger follows f from now on
			used = 0
			if fd[1] > fd[0] {
				used = 1
			}
		}
		t.finger[used][c] = f.idx
		if t.flows[s].Last > f.Last {
			// Toward the tail, past the flows later than f.
			for s >= 0 && t.flows[s].Last > f.Last {
				s = t.flows[s].next
			}
		} else {
			// Toward the head, past the flows not later than f (the head is later).
			for p := t.flows[s].prev; t.flows[p].Last <= f.Last; p = t.flows[p].prev {
				s = p
			}
		}
		next = s
	}
	if next < 0 { // f is the oldest: new tail
		tl := t.tail[c]
		f.next, f.prev = -1, tl
		if tl >= 0 {
			t.flows[tl].next = f.idx
		} else {
			t.head[c] = f.idx
		}
		t.tail[c] = f.idx
		return
	}
	n := &t.flows[next]
	f.next, f.prev = next, n.prev
	if n.prev >= 0 {
		t.flows[n.prev].next = f.idx
	} else {
		t.head[c] = f.idx
	}
	n.prev = f.idx
}

// Bulk runs fn, in which flows join their lists unordered (each one first); the lists are
// sorted by time once, when next needed (by Expire, RangeIdle, eviction or a flow's
// insertion outside Bulk). Chain.Restore imports a checkpoint's flows in it: the flows of
// an incremental record come in the order they were first touched, and placing each one in
// time order by a walk cost O(n) per flow (a third of a 10,000-flow restore's time); a
// recovery restores several records one after the other, and the lists are sorted once.
func (t *Table) Bulk(fn func()) {
	t.bulk = true
	defer func() { t.bulk = false }()
	fn()
}

// settle sorts the lists Bulk left out of order.
func (t *Table) settle() {
	if t.unsorted == 0 {
		return
	}
	var s, tmp []byLast
	for c := range uint8(numLists) {
		if t.unsorted&(1<<c) == 0 {
			continue
		}
		s = s[:0]
		for i := t.head[c]; i >= 0; i = t.flows[i].next {
			s = append(s, byLast{t.flows[i].Last, i})
		}
		s, tmp = sortByLast(s, tmp)
		prev := int32(-1)
		t.head[c] = -1 // (the list may have emptied since)
		for _, x := range s {
			f := &t.flows[x.idx]
			f.prev = prev
			if prev >= 0 {
				t.flows[prev].next = x.idx
			} else {
				t.head[c] = x.idx
			}
			prev = x.idx
		}
		if prev >= 0 {
			t.flows[prev].next = -1
		}
		t.tail[c] = prev
		t.finger[0][c], t.finger[1][c] = -1, -1
	}
	t.unsorted = 0
}

type byLast struct {
	last int64
	idx  int32
}

// sortByLast sorts s by last, latest first, stably: of flows with equal times, the one
// nearer the head stays first, as insertByLast places it. It is a radix sort of the times'
// offsets from the latest (a list's times span seconds: three or four passes of 11 bits),
// several times faster than a comparison sort of thousands of flows. It returns the sorted
// slice and the other buffer, for reuse.
func sortByLast(s, tmp []byLast) (sorted, spare []byLast) {
	if len(s) < 64 {
		slices.SortStableFunc(s, func(a, b byLast) int { return cmp.Compare(b.last, a.last) })
		return s, tmp
	}
	hi, lo := s[0].last, s[0].last
	for _, x := range s {
		hi, lo = max(hi, x.last), min(lo, x.last)
	}
	tmp = slices.Grow(tmp[:0], len(s))[:len(s)]
	const bits = 11
	var count [1 << bits]int32
	for shift := 0; shift < 64 && uint64(hi-lo)>>shift != 0; shift += bits {
		clear(count[:])
		for _, x := range s {
			count[uint64(hi-x.last)>>shift&(1<<bits-1)]++
		}
		sum := int32(0)
		for d, n := range count {
			count[d] = sum
			sum += n
		}
		for _, x := range s {
			d := uint64(hi-x.last) >> shift & (1<<bits - 1)
			tmp[count[d]] = x
			count[d]++
		}
		s, tmp = tmp, s
	}
	return s, tmp
}

func (t *Table) unlink(f *Flow) {
	c := f.list
	if f.prev >= 0 {
		t.flows[f.prev].next = f.next
	} else {
		t.head[c] = f.next
	}
	if f.next >= 0 {
		t.flows[f.next].prev = f.prev
	} else {
		t.tail[c] = f.prev
	}
	f.prev, f.next = -1, -1
}
