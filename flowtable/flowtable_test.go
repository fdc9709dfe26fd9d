package flowtable

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/snf-dev/snf/packet"
)

const sec = int64(time.Second)

func addr4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func tcpKey(i int) packet.Key {
	return packet.KeyFrom(addr4(i), netip.MustParseAddr("192.0.2.80"), uint16(1024+i%60000), 80, packet.ProtoTCP)
}

func udpKey(i int) packet.Key {
	return packet.KeyFrom(addr4(i), netip.MustParseAddr("192.0.2.53"), uint16(1024+i%60000), 53, packet.ProtoUDP)
}

func icmpKey(i int) packet.Key {
	return packet.KeyFrom(addr4(i), netip.MustParseAddr("192.0.2.1"), uint16(i), uint16(i), packet.ProtoICMP)
}

// removal records one OnRemove call.
type removal struct {
	key     packet.Key
	idx     int32
	now     int64
	evicted bool
	slots   []int32
	packets uint64
}

// recorder returns a Config.OnRemove that records calls (t is set after New).
func recorder(t **Table, log *[]removal) func(f *Flow, now int64, evicted bool) {
	return func(f *Flow, now int64, evicted bool) {
		if !f.live {
			panic("OnRemove called for a dead flow")
		}
		*log = append(*log, removal{key: f.Key, idx: f.Index(), now: now, evicted: evicted,
			slots: slices.Clone((*t).Slots(f.Index())), packets: f.Packets})
	}
}

// checkInvariants checks the table's internal consistency: every map entry points to a live
// flow that lists the key as mapped, every mapped key of a live flow is in the map, the LRU
// lists hold exactly the live flows, and the free list exactly the dead ones.
func checkInvariants(t *testing.T, tb *Table) {
	t.Helper()
	count := 0
	tb.m.each(func(k packet.Key, r ref) {
		count++
		f := &tb.flows[r.idx]
		if !f.live {
			t.Fatalf("key %s maps to dead flow %d", k, r.idx)
		}
		found := false
		for i := range f.keys {
			if f.mapped&(1<<i) != 0 && f.keys[i] == k {
				found = true
			}
		}
		if !found {
			t.Fatalf("key %s maps to flow %d, which does not list it", k, r.idx)
		}
	})
	if count != tb.m.len() {
		t.Fatalf("index holds %d entries, counts %d", count, tb.m.len())
	}
	for b, bk := range tb.m.heads {
		var sig uint32
		for i := bk.first; i >= 0; i = tb.m.ents[i].next {
			sig |= sigBit(tb.m.ents[i].h)
		}
		if sig != bk.sig {
			t.Fatalf("bucket %d's signature is %#x, its chain's %#x", b, bk.sig, sig)
		}
	}
	live := 0
	for i := range tb.flows {
		f := &tb.flows[i]
		if !f.live {
			continue
		}
		live++
		n := 0
		for j := range f.keys {
			if f.mapped&(1<<j) == 0 {
				continue
			}
			n++
			if r, ok := tb.m.get(&f.keys[j]); !ok || r.idx != f.idx {
				t.Fatalf("flow %d lists key %s, which maps elsewhere", i, f.keys[j])
			}
		}
		if f.mapped&(1<<keyAlias) != 0 {
			if r, _ := tb.m.get(&f.keys[keyAlias]); r.dir != f.aliasDir {
				t.Fatalf("flow %d: alias maps in direction %d, aliasDir %d", i, r.dir, f.aliasDir)
			}
		}
	}
	inLists := 0
	for c := range tb.head {
		prev := int32(-1)
		for i := tb.head[c]; i >= 0; i = tb.flows[i].next {
			f := &tb.flows[i]
			if !f.live || f.list != uint8(c) || f.class != Class(c/2) || f.prev != prev {
				t.Fatalf("LRU list %d corrupt at %d", c, i)
			}
			if prev >= 0 && tb.flows[prev].Last < f.Last && tb.unsorted&(1<<c) == 0 { // (Bulk left it to sort)
				t.Fatalf("LRU list %d: flow %d (last %d) after flow %d (last %d)", c, i, f.Last, prev, tb.flows[prev].Last)
			}
			prev = i
			inLists++
		}
		if tb.tail[c] != prev {
			t.Fatalf("LRU list %d: tail %d, last element %d", c, tb.tail[c], prev)
		}
	}
	if inLists != live || live != tb.Stats().Active || len(tb.flows)-len(tb.free) != live {
		t.Fatalf("live flows %d, in LRU lists %d, Active %d, arena %d free %d", live, inLists, tb.Stats().Active, len(tb.flows), len(tb.free))
	}
	if len(tb.slots) != len(tb.flows)*tb.cfg.Slots {
		t.Fatalf("slots %d for %d flows × %d", len(tb.slots), len(tb.flows), tb.cfg.Slots)
	}
}

func TestNewDefaults(t *testing.T) {
	tb := New(Config{Timeouts: Timeouts{ClassUDP: 7 * time.Second}})
	if tb.cfg.MaxFlows != DefaultMaxFlows {
		t.Errorf("MaxFlows %d", tb.cfg.MaxFlows)
	}
	want := DefaultTimeouts
	want[ClassUDP] = 7 * time.Second
	if tb.Timeouts() != want {
		t.Errorf("Timeouts %v, want %v", tb.Timeouts(), want)
	}
	if got := (Timeouts{1, 5, 3}).Max(Timeouts{2, 4, 3}); got != (Timeouts{2, 5, 3}) {
		t.Errorf("Max = %v", got)
	}
	for proto, c := range map[uint8]Class{6: ClassTCP, 17: ClassUDP, 1: ClassOther, 58: ClassOther, 47: ClassOther, 132: ClassOther} {
		if ClassOf(proto) != c {
			t.Errorf("ClassOf(%d) = %d", proto, ClassOf(proto))
		}
	}
}

func TestLookupCreatesAndFindsReverse(t *testing.T) {
	tb := New(Config{})
	k := tcpKey(1)
	f, dir, created := tb.Lookup(k, 100)
	if !created || dir != Orig || f.Key != k || f.First != 100 || f.Last != 100 || f.Packets != 1 {
		t.Fatalf("first Lookup: created %v dir %d flow %+v", created, dir, f)
	}
	idx := f.Index()
	f, dir, created = tb.Lookup(k.Reverse(), 200)
	if created || dir != Reply || f.Index() != idx || f.Key != k || f.First != 100 || f.Last != 200 || f.Packets != 2 {
		t.Fatalf("reverse Lookup: created %v dir %d flow %+v", created, dir, f)
	}
	f, dir, created = tb.Lookup(k, 300)
	if created || dir != Orig || f.Index() != idx || f.Packets != 3 {
		t.Fatalf("third Lookup: created %v dir %d packets %d", created, dir, f.Packets)
	}
	if g, d, ok := tb.Find(k.Reverse()); !ok || g.Index() != idx || d != Reply || g.Packets != 3 || g.Last != 300 {
		t.Fatalf("Find: ok %v dir %d flow %+v", ok, d, g)
	}
	if _, _, ok := tb.Find(tcpKey(2)); ok {
		t.Fatal("Find of an unknown key succeeded")
	}
	if s := tb.Stats(); s.Created != 1 || s.Active != 1 || s.Expired != 0 || s.Evicted != 0 {
		t.Fatalf("Stats %+v", s)
	}
	// A second flow is distinct.
	g, _, created := tb.Lookup(udpKey(1), 300)
	if !created || g.Index() == idx {
		t.Fatalf("second flow: created %v index %d", created, g.Index())
	}
	// A flow to itself: one key, always Orig.
	self := packet.KeyFrom(addr4(9), addr4(9), 7, 7, packet.ProtoUDP)
	s, _, _ := tb.Lookup(self, 400)
	if _, d, created := tb.Lookup(self.Reverse(), 401); created || d != Orig || s.Packets != 2 {
		t.Fatalf("self flow: created %v dir %d packets %d", created, d, s.Packets)
	}
	checkInvariants(t, tb)
}

func TestIdleExpiryPerClass(t *testing.T) {
	var log []removal
	var tb *Table
	tb = New(Config{Timeouts: Timeouts{ClassTCP: 10 * time.Second, ClassUDP: 5 * time.Second, ClassOther: 2 * time.Second},
		Slots: 1, OnRemove: recorder(&tb, &log)})
	ft, _, _ := tb.Lookup(tcpKey(1), 0)
	it := ft.Index()
	tb.Slots(it)[0] = 11
	fu, _, _ := tb.Lookup(udpKey(1), 0)
	iu := fu.Index()
	tb.Slots(iu)[0] = 22
	fo, _, _ := tb.Lookup(icmpKey(1), 0)
	io := fo.Index()
	tb.Slots(io)[0] = 33

	if n := tb.Expire(2 * sec); n != 0 || len(log) != 0 {
		t.Fatalf("Expire at exactly the ICMP timeout: %d removed", n)
	}
	if n := tb.Expire(2*sec + 1); n != 1 || len(log) != 1 {
		t.Fatalf("Expire past the ICMP timeout: %d removed, %d callbacks", n, len(log))
	}
	if r := log[0]; r.key != icmpKey(1) || r.idx != io || r.now != 2*sec+1 || r.evicted || !slices.Equal(r.slots, []int32{33}) {
		t.Fatalf("OnRemove %+v", r)
	}
	if _, _, ok := tb.Find(icmpKey(1)); ok {
		t.Fatal("expired ICMP flow still found")
	}
	if _, _, ok := tb.Find(icmpKey(1).Reverse()); ok {
		t.Fatal("expired ICMP flow's reply key still found")
	}
	// Touch TCP; UDP expires at 5 s.
	tb.Lookup(tcpKey(1).Reverse(), 8*sec)
	if n := tb.Expire(5*sec + 1); n != 1 || log[1].key != udpKey(1) || !slices.Equal(log[1].slots, []int32{22}) {
		t.Fatalf("Expire(5s+1): %d, log %+v", n, log)
	}
	if n := tb.Expire(10*sec + 1); n != 0 {
		t.Fatalf("Expire(10s+1) removed a TCP flow touched at 8 s")
	}
	if n := tb.Expire(18*sec + 1); n != 1 || log[2].key != tcpKey(1) || log[2].packets != 2 || !slices.Equal(log[2].slots, []int32{11}) {
		t.Fatalf("Expire(18s+1): %d, log %+v", n, log)
	}
	if s := tb.Stats(); s.Expired != 3 || s.Active != 0 || s.Created != 3 {
		t.Fatalf("Stats %+v", s)
	}
	// The freed slots are reused by new flows, reset to -1 (after OnRemove saw them).
	for i := range 3 {
		f, _, _ := tb.Lookup(tcpKey(100+i), 20*sec)
		if f.Index() > 2 {
			t.Errorf("new flow at index %d: freed entries not reused", f.Index())
		}
		if s := tb.Slots(f.Index()); s[0] != -1 {
			t.Errorf("reused flow %d: slot %d, want -1", f.Index(), s[0])
		}
	}
	checkInvariants(t, tb)
}

func TestLookupStaleFlowRecreates(t *testing.T) {
	var log []removal
	var tb *Table
	tb = New(Config{Timeouts: Timeouts{ClassTCP: 10 * time.Second}, Slots: 2, OnRemove: recorder(&tb, &log)})
	k := tcpKey(5)
	f, _, _ := tb.Lookup(k, 0)
	tb.Lookup(k, 3*sec)
	tb.Slots(f.Index())[1] = 42
	// From the reply side, past the timeout: the stale flow goes, a new one (with the
	// reply key as its original direction) comes.
	f, dir, created := tb.Lookup(k.Reverse(), 13*sec+1)
	if !created || dir != Orig || f.Key != k.Reverse() || f.First != 13*sec+1 || f.Packets != 1 {
		t.Fatalf("stale Lookup: created %v dir %d flow %+v", created, dir, f)
	}
	if len(log) != 1 || log[0].key != k || log[0].evicted || log[0].packets != 2 || !slices.Equal(log[0].slots, []int32{-1, 42}) || log[0].now != 13*sec+1 {
		t.Fatalf("OnRemove log %+v", log)
	}
	if s := tb.Slots(f.Index()); !slices.Equal(s, []int32{-1, -1}) {
		t.Fatalf("new flow slots %v", s)
	}
	if _, d, _ := tb.Lookup(k, 13*sec+2); d != Reply {
		t.Fatalf("the old original direction is now Reply, got %d", d)
	}
	if s := tb.Stats(); s.Created != 2 || s.Expired != 1 || s.Active != 1 {
		t.Fatalf("Stats %+v", s)
	}
	// At exactly the timeout the flow is still alive.
	tb.Lookup(k, 20*sec)
	if _, _, created := tb.Lookup(k, 30*sec); created {
		t.Fatal("flow idle for exactly its timeout was recreated")
	}
	checkInvariants(t, tb)
}

func TestMaxFlowsEvictsClosestToExpiry(t *testing.T) {
	var log []removal
	var tb *Table
	tb = New(Config{MaxFlows: 3, Timeouts: Timeouts{ClassTCP: 100 * time.Second, ClassUDP: 10 * time.Second, ClassOther: 2 * time.Second},
		OnRemove: recorder(&tb, &log)})
	tb.Lookup(tcpKey(1), 0)     // expires at 100 s
	tb.Lookup(udpKey(1), 5*sec) // expires at 15 s
	tb.Lookup(icmpKey(1), 6*sec)
	// At 7 s the ICMP flow (1 s left) is closest to expiry.
	tb.Lookup(udpKey(2), 7*sec)
	if len(log) != 1 || log[0].key != icmpKey(1) || !log[0].evicted || log[0].now != 7*sec {
		t.Fatalf("first eviction %+v", log)
	}
	// Now UDP 1 (8 s left) goes before UDP 2 (10 s) and TCP (93 s).
	tb.Lookup(tcpKey(2), 7*sec)
	if len(log) != 2 || log[1].key != udpKey(1) {
		t.Fatalf("second eviction %+v", log)
	}
	// Touching UDP 2 at 16 s gives it 10 s left, still less than TCP 1 (84 s) and TCP 2
	// (91 s): it goes.
	tb.Lookup(udpKey(2), 16*sec)
	tb.Lookup(tcpKey(3), 16*sec)
	if len(log) != 3 || log[2].key != udpKey(2) {
		t.Fatalf("third eviction %+v", log)
	}
	// Within a class the least recently used goes first.
	tb.Lookup(tcpKey(1), 60*sec)
	tb.Lookup(tcpKey(4), 60*sec)
	if len(log) != 4 || log[3].key != tcpKey(2) {
		t.Fatalf("fourth eviction %+v", log)
	}
	if s := tb.Stats(); s.Evicted != 4 || s.Expired != 0 || s.Active != 3 || s.Created != 7 {
		t.Fatalf("Stats %+v", s)
	}
	checkInvariants(t, tb)
}

// TestFloodBounded: 100k distinct keys into MaxFlows=1000 keep the table (flows, keys,
// arena, free list) bounded.
func TestFloodBounded(t *testing.T) {
	evicted := 0
	tb := New(Config{MaxFlows: 1000, Slots: 2, OnRemove: func(f *Flow, now int64, ev bool) {
		if ev {
			evicted++
		}
	}})
	for i := range 100000 {
		k := tcpKey(i)
		if i%3 == 1 {
			k = udpKey(i)
		}
		if _, _, created := tb.Lookup(k, int64(i)*1000); !created {
			t.Fatalf("key %d: not created", i)
		}
		if s := tb.Stats(); s.Active > 1000 {
			t.Fatalf("after %d keys: %d active flows", i+1, s.Active)
		}
		if tb.m.len() > 2*1000 || len(tb.flows) > 1000 || len(tb.free) > 1000 || len(tb.slots) > 2*1000 {
			t.Fatalf("after %d keys: map %d, arena %d, free %d, slots %d", i+1, tb.m.len(), len(tb.flows), len(tb.free), len(tb.slots))
		}
	}
	s := tb.Stats()
	if s.Active != 1000 || s.Created != 100000 || s.Evicted != 99000 || evicted != 99000 || s.Expired != 0 {
		t.Fatalf("Stats %+v, OnRemove evictions %d", s, evicted)
	}
	if tb.m.len() != 2000 {
		t.Fatalf("%d keys in the map for 1000 flows", tb.m.len())
	}
	checkInvariants(t, tb)
}

// natKeys returns the keys of a NAT scenario: a client flow, and the reply key a server
// sends to the NAT's public address and port.
func natReply(port uint16) packet.Key {
	return packet.KeyFrom(netip.MustParseAddr("192.0.2.80"), netip.MustParseAddr("203.0.113.1"), 80, port, packet.ProtoTCP)
}

func TestAlias(t *testing.T) {
	var log []removal
	var tb *Table
	tb = New(Config{OnRemove: recorder(&tb, &log)})
	a, _, _ := tb.Lookup(tcpKey(1), 0)
	ia := a.Index()
	r1 := natReply(5000)
	tb.Alias(tb.Flow(ia), r1, Reply)
	if f, d, created := tb.Lookup(r1, 1); created || d != Reply || f.Index() != ia || f.Packets != 2 {
		t.Fatalf("Lookup of the alias: created %v dir %d flow %d", created, d, f.Index())
	}
	// Aliasing again (every packet of a NAT does) changes nothing.
	tb.Alias(tb.Flow(ia), r1, Reply)
	if f, d, _ := tb.Find(r1); f.Index() != ia || d != Reply {
		t.Fatal("repeated Alias broke the mapping")
	}
	// The direction of an alias can change.
	tb.Alias(tb.Flow(ia), r1, Orig)
	if _, d, _ := tb.Find(r1); d != Orig {
		t.Fatal("Alias did not change the direction")
	}
	// A second alias replaces the first.
	r2 := natReply(5001)
	tb.Alias(tb.Flow(ia), r2, Reply)
	if _, _, ok := tb.Find(r1); ok {
		t.Fatal("first alias still maps after a second")
	}
	if f, d, ok := tb.Find(r2); !ok || f.Index() != ia || d != Reply {
		t.Fatal("second alias does not map")
	}
	// Aliasing one of the flow's own keys changes its direction but keeps the alias.
	tb.Alias(tb.Flow(ia), tcpKey(1), Reply)
	if _, d, _ := tb.Find(tcpKey(1)); d != Reply {
		t.Fatal("own key: direction not changed")
	}
	if _, _, ok := tb.Find(r2); !ok {
		t.Fatal("aliasing an own key dropped the alias")
	}
	tb.Alias(tb.Flow(ia), tcpKey(1), Orig)
	// Then the alias's direction can still change (the fast path must not skip it).
	tb.Alias(tb.Flow(ia), r2, Orig)
	tb.Alias(tb.Flow(ia), r2, Reply)
	if _, d, _ := tb.Find(r2); d != Reply {
		t.Fatalf("alias direction %d after Alias(…, Reply)", d)
	}
	checkInvariants(t, tb)

	// Takeover: flow B aliases A's alias key; A no longer owns it, and A's removal does
	// not remove B's mapping.
	b, _, _ := tb.Lookup(tcpKey(2), 10)
	ib := b.Index()
	tb.Alias(tb.Flow(ib), r2, Reply)
	if f, _, _ := tb.Find(r2); f.Index() != ib {
		t.Fatal("takeover did not move the key")
	}
	tb.Unalias(tb.Flow(ia), r2) // not A's any more: no effect
	if f, _, ok := tb.Find(r2); !ok || f.Index() != ib {
		t.Fatal("Unalias by a flow that lost the key removed it")
	}
	// A can alias again: one alias, no leftovers.
	r3 := natReply(5002)
	tb.Alias(tb.Flow(ia), r3, Reply)
	tb.Remove(tb.Flow(ia), 20)
	if len(log) != 1 || log[0].key != tcpKey(1) {
		t.Fatalf("Remove: log %+v", log)
	}
	for _, k := range []packet.Key{tcpKey(1), tcpKey(1).Reverse(), r3} {
		if _, _, ok := tb.Find(k); ok {
			t.Fatalf("key %s of a removed flow still found", k)
		}
	}
	if f, _, ok := tb.Find(r2); !ok || f.Index() != ib {
		t.Fatal("removing A removed B's alias")
	}
	// Unalias by the owner.
	tb.Unalias(tb.Flow(ib), r2)
	if _, _, ok := tb.Find(r2); ok {
		t.Fatal("Unalias left the key")
	}
	if f, _, ok := tb.Find(tcpKey(2).Reverse()); !ok || f.Index() != ib {
		t.Fatal("Unalias of the alias removed a primary key")
	}
	checkInvariants(t, tb)
	if s := tb.Stats(); s.Active != 1 || tb.m.len() != 2 {
		t.Fatalf("Stats %+v, %d keys", s, tb.m.len())
	}
}

// TestAliasTakesPrimaryKey: an alias can take over another flow's original or reply key
// (a packet from outside created a flow before the NAT expected it). The victim flow keeps
// working with its remaining key and still holds at most one alias afterwards.
func TestAliasTakesPrimaryKey(t *testing.T) {
	tb := New(Config{})
	r := natReply(6000)
	// A flow created by an unsolicited packet from the server to the NAT address.
	c, _, _ := tb.Lookup(r, 0)
	ic := c.Index()
	a, _, _ := tb.Lookup(tcpKey(1), 1)
	ia := a.Index()
	tb.Alias(tb.Flow(ia), r, Reply)
	if f, d, _ := tb.Find(r); f.Index() != ia || d != Reply {
		t.Fatal("alias did not take over the other flow's original key")
	}
	if f, d, ok := tb.Find(r.Reverse()); !ok || f.Index() != ic || d != Reply {
		t.Fatal("the victim lost its reply key too")
	}
	// The victim aliases twice: only the second alias maps.
	x, y := natReply(7000), natReply(7001)
	tb.Alias(tb.Flow(ic), x, Reply)
	tb.Alias(tb.Flow(ic), y, Reply)
	if _, _, ok := tb.Find(x); ok {
		t.Fatal("a flow that lost a primary key holds two aliases")
	}
	if f, _, ok := tb.Find(y); !ok || f.Index() != ic {
		t.Fatal("second alias of the victim does not map")
	}
	checkInvariants(t, tb)
	// A flow to itself (one key) also holds one alias.
	self := packet.KeyFrom(addr4(3), addr4(3), 9, 9, packet.ProtoUDP)
	s, _, _ := tb.Lookup(self, 2)
	is := s.Index()
	tb.Alias(tb.Flow(is), udpKey(1), Reply)
	tb.Alias(tb.Flow(is), udpKey(2), Reply)
	if _, _, ok := tb.Find(udpKey(1)); ok {
		t.Fatal("a flow to itself holds two aliases")
	}
	// The original flow can take its key back.
	tb.Alias(tb.Flow(ic), r, Orig)
	if f, d, _ := tb.Find(r); f.Index() != ic || d != Orig {
		t.Fatal("key not taken back")
	}
	if _, _, ok := tb.Find(y); ok {
		t.Fatal("taking a key back as alias kept the previous alias")
	}
	checkInvariants(t, tb)
	// Unalias of a primary key, then two aliases: still one.
	tb.Unalias(tb.Flow(ia), tcpKey(1).Reverse())
	tb.Alias(tb.Flow(ia), x, Reply)
	tb.Alias(tb.Flow(ia), y, Reply)
	if _, _, ok := tb.Find(x); ok {
		t.Fatal("a flow that unaliased its reply key holds two aliases")
	}
	checkInvariants(t, tb)
	for _, f := range []int32{ia, ic, is} {
		tb.Remove(tb.Flow(f), 3)
	}
	if tb.m.len() != 0 || tb.Stats().Active != 0 {
		t.Fatalf("after removing every flow: %d keys, %d active", tb.m.len(), tb.Stats().Active)
	}
}

func TestSlots(t *testing.T) {
	tb := New(Config{Slots: 3})
	a, _, _ := tb.Lookup(tcpKey(1), 0)
	ia := a.Index()
	b, _, _ := tb.Lookup(tcpKey(2), 0)
	ib := b.Index()
	for _, i := range []int32{ia, ib} {
		if s := tb.Slots(i); !slices.Equal(s, []int32{-1, -1, -1}) {
			t.Fatalf("new flow slots %v", s)
		}
	}
	tb.Slots(ia)[0], tb.Slots(ia)[2] = 7, 9
	if s := tb.Slots(ib); !slices.Equal(s, []int32{-1, -1, -1}) {
		t.Fatalf("writing A's slots changed B's: %v", s)
	}
	// Appending to a slot slice must not spill into the next flow.
	_ = append(tb.Slots(ia), 99)
	if s := tb.Slots(ib); s[0] != -1 {
		t.Fatal("append to A's slots overwrote B's")
	}
	// Growing the arena keeps the values.
	for i := range 5000 {
		tb.Lookup(udpKey(i), 1)
	}
	if s := tb.Slots(ia); !slices.Equal(s, []int32{7, -1, 9}) {
		t.Fatalf("after growth A's slots are %v", s)
	}
	// No slots configured.
	tz := New(Config{})
	f, _, _ := tz.Lookup(tcpKey(1), 0)
	if s := tz.Slots(f.Index()); len(s) != 0 {
		t.Fatalf("Slots with Slots=0: %v", s)
	}
	checkInvariants(t, tb)
}

func TestRemove(t *testing.T) {
	var log []removal
	var tb *Table
	tb = New(Config{Slots: 1, OnRemove: recorder(&tb, &log)})
	a, _, _ := tb.Lookup(tcpKey(1), 0)
	ia := a.Index()
	tb.Slots(ia)[0] = 5
	tb.Lookup(tcpKey(2), 0)
	tb.Remove(tb.Flow(ia), 10)
	if len(log) != 1 || log[0].key != tcpKey(1) || log[0].evicted || log[0].now != 10 || log[0].slots[0] != 5 {
		t.Fatalf("OnRemove %+v", log)
	}
	tb.Remove(tb.Flow(ia), 11) // already gone: no second callback, no count
	if len(log) != 1 || tb.Stats().Expired != 1 {
		t.Fatalf("second Remove: %d callbacks, Stats %+v", len(log), tb.Stats())
	}
	if _, _, ok := tb.Find(tcpKey(1)); ok {
		t.Fatal("removed flow found")
	}
	if _, _, created := tb.Lookup(tcpKey(1).Reverse(), 12); !created {
		t.Fatal("Lookup after Remove did not create")
	}
	checkInvariants(t, tb)
}

func TestRangeOrder(t *testing.T) {
	tb := New(Config{})
	tb.Lookup(udpKey(1), 0)
	tb.Lookup(tcpKey(1), 1)
	tb.Lookup(icmpKey(1), 2)
	tb.Lookup(tcpKey(2), 3)
	tb.Lookup(udpKey(2), 4)
	tb.Lookup(tcpKey(3), 5)
	tb.Lookup(tcpKey(1).Reverse(), 6) // TCP 1 becomes most recent
	tb.Lookup(udpKey(1), 7)
	var got []packet.Key
	tb.Range(func(f *Flow) bool { got = append(got, f.Key); return true })
	want := []packet.Key{tcpKey(2), tcpKey(3), tcpKey(1), udpKey(2), udpKey(1), icmpKey(1)}
	if !slices.Equal(got, want) {
		t.Fatalf("Range order:\n got %v\nwant %v", got, want)
	}
	n := 0
	tb.Range(func(f *Flow) bool { n++; return n < 4 })
	if n != 4 {
		t.Fatalf("Range did not stop: %d calls", n)
	}
	// Removing the current flow inside Range is safe.
	tb.Range(func(f *Flow) bool { tb.Remove(f, 8); return true })
	if tb.Stats().Active != 0 || tb.m.len() != 0 {
		t.Fatalf("after removing all in Range: %+v", tb.Stats())
	}
}

// TestRangeIdle: RangeIdle visits exactly the flows last seen before the given time,
// oldest first within each class, and stops when asked.
func TestRangeIdle(t *testing.T) {
	tb := New(Config{})
	tb.Lookup(udpKey(1), 0)
	tb.Lookup(tcpKey(1), 1)
	tb.Lookup(tcpKey(2), 3)
	tb.Lookup(udpKey(2), 4)
	tb.Lookup(tcpKey(1).Reverse(), 6) // TCP 1 is busy again
	var got []packet.Key
	tb.RangeIdle(5, func(f *Flow) bool { got = append(got, f.Key); return true })
	want := []packet.Key{tcpKey(2), udpKey(1), udpKey(2)}
	if !slices.Equal(got, want) {
		t.Fatalf("RangeIdle(5):\n got %v\nwant %v", got, want)
	}
	n := 0
	tb.RangeIdle(100, func(*Flow) bool { n++; return false })
	if n != 1 {
		t.Errorf("RangeIdle did not stop: %d calls", n)
	}
	tb.RangeIdle(0, func(f *Flow) bool { t.Errorf("flow %v is not idle before 0", f.Key); return true })
	if tb.FlowletGap() != DefaultFlowletGap {
		t.Errorf("flowlet gap %v, want the default %v", tb.FlowletGap(), DefaultFlowletGap)
	}
}

// TestZeroAllocs: steady-state lookups of existing flows and create/expire churn allocate
// nothing once the table has grown.
func TestZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation may allocate")
	}
	tb := New(Config{Slots: 2})
	const n = 4096
	keys := make([]packet.Key, n)
	for i := range keys {
		keys[i] = tcpKey(i)
		tb.Lookup(keys[i], 0)
	}
	i := 0
	if a := testing.AllocsPerRun(10000, func() {
		k := keys[i%n]
		if i&1 == 1 {
			k = k.Reverse()
		}
		tb.Lookup(k, int64(i))
		i++
	}); a != 0 {
		t.Errorf("Lookup of existing flows: %v allocs per run", a)
	}

	// Churn: a new flow per packet, each living 1000 packets (expired by Expire).
	churn := New(Config{Timeouts: Timeouts{ClassUDP: time.Duration(1000)}, Slots: 2})
	now := int64(0)
	step := func() {
		now++
		churn.Expire(now)
		churn.Lookup(udpKey(int(now)), now)
	}
	for range 500000 {
		step()
	}
	if a := testing.AllocsPerRun(200000, step); a != 0 {
		t.Errorf("create/expire churn: %v allocs per run", a)
	}
	if s := churn.Stats(); s.Active > 1001 {
		t.Errorf("churn: %d active", s.Active)
	}
	// Churn by eviction at the MaxFlows bound.
	ev := New(Config{MaxFlows: 1000})
	k := 0
	evict := func() {
		k++
		ev.Lookup(tcpKey(k), int64(k))
	}
	for range 500000 {
		evict()
	}
	if a := testing.AllocsPerRun(200000, evict); a != 0 {
		t.Errorf("eviction churn: %v allocs per run", a)
	}
	checkInvariants(t, churn)
	checkInvariants(t, ev)
}

func BenchmarkLookup(b *testing.B) {
	tb := New(Config{Slots: 4})
	const n = 1 << 14
	keys := make([]packet.Key, n)
	for i := range keys {
		keys[i] = tcpKey(i)
		if i%4 == 0 {
			keys[i] = udpKey(i)
		}
		tb.Lookup(keys[i], 0)
	}
	for i := range keys {
		if i&1 == 1 {
			keys[i] = keys[i].Reverse()
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tb.Lookup(keys[i&(n-1)], int64(i))
	}
}

// churnBench is the table of BenchmarkChurn, warmed up once per process: Go's map only
// settles (its tombstones pruned instead of growing the table) after a few million
// deletions, and a benchmark function runs several times.
var churnBench struct {
	tb   *Table
	keys []packet.Key
	now  int64
}

// BenchmarkChurn: every packet is a new flow; Expire removes the flows idle past their
// timeout, so about 10k flows live.
func BenchmarkChurn(b *testing.B) {
	c := &churnBench
	step := func() {
		c.now++
		c.tb.Expire(c.now)
		c.tb.Lookup(c.keys[c.now&(1<<20-1)], c.now)
	}
	if c.tb == nil {
		c.tb = New(Config{Timeouts: Timeouts{ClassTCP: time.Duration(10000)}, Slots: 4})
		c.keys = make([]packet.Key, 1<<20)
		for i := range c.keys {
			c.keys[i] = tcpKey(i)
		}
		for range 3_000_000 {
			step()
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		step()
	}
}

// TestCreateTakesReverseKeyFromAlias: a new flow whose reply key is another flow's alias
// takes that key over, and the other flow knows it: re-aliasing the key (as a NAT does on
// every packet) takes it back instead of being skipped as "already in place".
func TestCreateTakesReverseKeyFromAlias(t *testing.T) {
	tb := New(Config{})
	g, _, _ := tb.Lookup(tcpKey(1), 0)
	ig := g.Index()
	rk := natReply(8000)
	tb.Alias(tb.Flow(ig), rk, Reply)
	// A packet in the other direction of the alias creates a new flow, whose reply key is rk.
	f, _, created := tb.Lookup(rk.Reverse(), 1)
	if !created {
		t.Fatal("no new flow")
	}
	inew := f.Index()
	if h, d, _ := tb.Find(rk); h.Index() != inew || d != Reply {
		t.Fatal("the new flow does not own its reply key")
	}
	checkInvariants(t, tb)
	tb.Alias(tb.Flow(ig), rk, Reply)
	if h, d, _ := tb.Find(rk); h.Index() != ig || d != Reply {
		t.Fatal("re-aliasing did not take the key back")
	}
	checkInvariants(t, tb)
	// Removing the new flow leaves g's alias alone.
	tb.Remove(tb.Flow(inew), 2)
	if h, _, ok := tb.Find(rk); !ok || h.Index() != ig {
		t.Fatal("removing the other flow removed g's alias")
	}
	checkInvariants(t, tb)
}

func TestFlowlets(t *testing.T) {
	tb := New(Config{FlowletGap: int64(time.Millisecond)})
	k := packet.KeyFrom(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 2, packet.ProtoUDP)
	ms := int64(time.Millisecond)
	var starts []bool
	for _, at := range []int64{0, ms / 2, ms, 3 * ms, 3*ms + 1, 10 * ms} {
		f, _, _ := tb.Lookup(k, at)
		starts = append(starts, f.NewFlowlet())
	}
	// Reply packets belong to the same flowlets.
	f, _, _ := tb.Lookup(k.Reverse(), 10*ms+ms/2)
	starts = append(starts, f.NewFlowlet())
	want := []bool{true, false, false, true, false, true, false}
	for i := range want {
		if starts[i] != want[i] {
			t.Fatalf("packet %d: new flowlet %v, want %v (all: %v)", i, starts[i], want[i], starts)
		}
	}
	if f.Flowlets != 3 || f.FlowletStart != 10*ms || tb.Stats().Flowlets != 3 {
		t.Errorf("flowlets %d start %d stats %d", f.Flowlets, f.FlowletStart, tb.Stats().Flowlets)
	}
}
