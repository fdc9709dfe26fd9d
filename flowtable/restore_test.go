package flowtable

import (
	"math/rand/v2"
	"net/netip"
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

// TestReserve: after Reserve(n), restoring n flows grows nothing — the flow arrays and the
// key index keep the memory Reserve gave them — and the table holds and finds them as
// without it; Reserve past the table's bound reserves up to it.
func TestReserve(t *testing.T) {
	const n = 5000
	tb := New(Config{Slots: 2})
	tb.Lookup(udpKey(1), 1) // (not empty: room is made on top of what it holds)
	tb.Reserve(n)
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
	tb.Reserve(10)
	for _, k := range keys[:10] {
		tb.Restore(k, 5, 10, 3, 1, packet.Key{}, 0, false)
	}
	small := New(Config{MaxFlows: 10})
	small.Reserve(1 << 30) // (not 2^30 flows' memory: the bound is 10)
	if cap(small.flows) > 64 {
		t.Errorf("Reserve past the bound made room for %d flows", cap(small.flows))
	}
}
