package policy

import (
	"math"
	"slices"
	"testing"
)

func TestPerPacketSequence(t *testing.T) {
	tests := []struct {
		name string
		pool *Pool
		rate float64
		want []Decision
	}{
		{"equal loads: round robin",
			mkPool(0.8, act(10, 100), act(10, 100), act(10, 100), act(10, 100)), 1,
			[]Decision{{Unit: 0}, {Unit: 1}, {Unit: 2}, {Unit: 3}, {Unit: 0}, {Unit: 1}}},
		{"round robin skips draining and inactive units",
			mkPool(0.8, act(10, 100), off(0, 100), act(10, 100), drn(0, 100)), 1,
			[]Decision{{Unit: 0}, {Unit: 2}, {Unit: 0}, {Unit: 2}}},
		{"least loaded wins whatever the cursor",
			mkPool(0.8, act(50, 100), act(10, 100), act(50, 100)), 1,
			[]Decision{{Unit: 1}, {Unit: 1}, {Unit: 1}}},
		{"ties among the least loaded only",
			// start 0 -> 0; cursor 1 -> 1; cursor 2: scan 2,0,1 -> 0; cursor 1 -> 1 ...
			mkPool(0.8, act(10, 100), act(10, 100), act(20, 100)), 1,
			[]Decision{{Unit: 0}, {Unit: 1}, {Unit: 0}, {Unit: 1}}},
		{"least loaded by utilisation",
			mkPool(0.8, act(50, 100), act(400, 1000)), 1,
			[]Decision{{Unit: 1}, {Unit: 1}}},
		{"all over target: least loaded, scale out",
			mkPool(0.8, act(85, 100), act(81, 100)), 1,
			[]Decision{{Unit: 1, ScaleOut: true}, {Unit: 1, ScaleOut: true}}},
		{"all full for this rate: scale out",
			mkPool(0.8, act(75, 100), act(75, 100)), 10,
			[]Decision{{Unit: 0, ScaleOut: true}, {Unit: 1, ScaleOut: true}}},
		{"one fits (not the least utilised): no scale out",
			mkPool(0.8, act(75, 100), act(760, 1000)), 10,
			[]Decision{{Unit: 0}, {Unit: 0}}},
		{"units without a measurable utilisation come last",
			mkPool(0.8, act(0, 0), act(math.NaN(), 100), act(70, 100)), 1,
			[]Decision{{Unit: 2}, {Unit: 2}}},
		{"only unmeasurable units: round robin among them, scale out",
			mkPool(0.8, act(0, 0), act(math.NaN(), 100)), 1,
			[]Decision{{Unit: 0, ScaleOut: true}, {Unit: 1, ScaleOut: true}, {Unit: 0, ScaleOut: true}}},
		{"no usable unit",
			mkPool(0.8, off(0, 100), drn(0, 100)), 1,
			[]Decision{{Unit: -1, ScaleOut: true}, {Unit: -1, ScaleOut: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &PerPacket{}
			var got []Decision
			for i := range tt.want {
				// Current and Hash do not matter to perpacket.
				got = append(got, place(t, p, Flowlet{Hash: uint64(i), Rate: tt.rate, Current: i % 2}, tt.pool))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("decisions %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestPerPacketCursor: the cursor survives a pool that shrinks under it and is kept when no
// unit is usable.
func TestPerPacketCursor(t *testing.T) {
	p := &PerPacket{}
	big := mkPool(0.8, act(0, 100), act(0, 100), act(0, 100), act(0, 100))
	for range 4 {
		place(t, p, newFlow(0, 1), big) // 0,1,2,3: cursor at 4
	}
	small := mkPool(0.8, act(0, 100), act(0, 100))
	if d := place(t, p, newFlow(0, 1), small); d.Unit != 0 {
		t.Fatalf("after shrink: unit %d, want 0", d.Unit)
	}
	place(t, p, newFlow(0, 1), mkPool(0.8, off(0, 100))) // cursor kept at 1
	if d := place(t, p, newFlow(0, 1), small); d.Unit != 1 {
		t.Fatalf("after no usable unit: unit %d, want 1", d.Unit)
	}
}

// TestPerPacketDeterministic: two fresh policies driven by the same sequence of pools make the
// same decisions; on equal loads every usable unit gets its turn.
func TestPerPacketDeterministic(t *testing.T) {
	run := func() []Decision {
		p := &PerPacket{}
		r := rng(77)
		pool := activePool(6, 8)
		var out []Decision
		for i := range 5000 {
			if i%500 == 0 { // the pool changes now and then
				u := r.intn(len(pool.Units))
				pool.Units[u].Active = !pool.Units[u].Active
			}
			d := place(t, p, Flowlet{Hash: r.next(), Rate: 1, Current: -1}, pool)
			if d.Unit >= 0 {
				pool.Units[d.Unit].Load++
				if i%3 == 0 { // packets leave
					v := r.intn(len(pool.Units))
					pool.Units[v].Load = max(0, pool.Units[v].Load-1)
				}
			}
			out = append(out, d)
		}
		return out
	}
	a, b := run(), run()
	if !slices.Equal(a, b) {
		t.Fatal("two runs from the same state made different decisions")
	}
	// Equal loads: n consecutive decisions visit each of n usable units once.
	p := &PerPacket{}
	pool := activePool(5, 7)
	pool.Units[2].Draining = true
	seen := map[int]int{}
	for range 4 * 4 {
		seen[place(t, p, newFlow(0, 1), pool).Unit]++
	}
	if len(seen) != 4 || seen[0] != 4 || seen[1] != 4 || seen[3] != 4 || seen[4] != 4 {
		t.Fatalf("round robin over usable units 0,1,3,4: %v", seen)
	}
}
