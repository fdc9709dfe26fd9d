package policy

import (
	"math"
	"slices"
	"testing"
)

// refRendezvous is rendezvous hashing written out from its definition: the usable unit with
// the highest weight mix64(mix64(h ^ mix64(seed+golden)) ^ (id+1)*golden), or -1.
func refRendezvous(seed, h uint64, units []UnitView) int {
	best, bestW := -1, uint64(0)
	for id, u := range units {
		if !u.Active || u.Draining {
			continue
		}
		w := mix64(mix64(h^mix64(seed+golden)) ^ (uint64(id)+1)*golden)
		if best < 0 || w > bestW {
			best, bestW = id, w
		}
	}
	return best
}

// TestPerFlowPinned pins the hash: the same seed gives the same placements in every build, and
// the seed changes them.
func TestPerFlowPinned(t *testing.T) {
	want := map[uint64][]int{
		0: {0, 2, 1, 0, 2, 3, 3, 2, 3, 3, 0, 0, 3, 0, 3, 0},
		1: {0, 1, 0, 3, 1, 3, 0, 1, 0, 0, 2, 2, 1, 2, 2, 3},
	}
	pool := mkPool(0.8, act(0, 100), act(0, 100), act(0, 100), act(0, 100))
	for seed, w := range want {
		p := mustNew(t, "perflow", Options{Seed: seed})
		var got []int
		for h := range uint64(16) {
			got = append(got, place(t, p, newFlow(h, 1), pool).Unit)
		}
		if !slices.Equal(got, w) {
			t.Errorf("seed %d: placements %v, want %v", seed, got, w)
		}
	}
}

func TestPerFlowPlace(t *testing.T) {
	const seed = 3
	four := func() *Pool { return mkPool(0.8, act(10, 100), act(20, 100), act(30, 100), act(40, 100)) }
	tests := []struct {
		name string
		pool *Pool
		f    Flowlet
		want Decision
	}{
		{"sticky: stays on an active current",
			four(), Flowlet{Hash: 1, Rate: 10, Current: 2}, Decision{Unit: 2}},
		{"sticky: stays on a current over target, asking for a unit",
			mkPool(0.8, act(10, 100), act(79, 100)), Flowlet{Hash: 1, Rate: 10, Current: 1}, Decision{Unit: 1, ScaleOut: true}},
		{"sticky: stays on a draining current",
			mkPool(0.8, act(10, 100), drn(50, 100)), Flowlet{Hash: 1, Rate: 10, Current: 1}, Decision{Unit: 1}},
		{"sticky even when a much emptier unit exists",
			mkPool(0.8, act(0, 100), act(70, 100)), Flowlet{Hash: 1, Rate: 10, Current: 1}, Decision{Unit: 1}},
		{"current inactive: rehash over the usable units",
			mkPool(0.8, off(0, 100), act(0, 100)), Flowlet{Hash: 1, Rate: 10, Current: 0}, Decision{Unit: 1}},
		{"new flow skips draining and inactive units",
			mkPool(0.8, drn(0, 100), off(0, 100), act(50, 100)), newFlow(9, 10), Decision{Unit: 2}},
		{"new flow over target: placed, asks for a unit",
			mkPool(0.8, act(79, 100)), newFlow(9, 10), Decision{Unit: 0, ScaleOut: true}},
		{"new flow filled exactly to target: no scale out",
			mkPool(0.8, act(70, 100)), newFlow(9, 10), Decision{Unit: 0}},
		{"no usable unit", mkPool(0.8, drn(0, 100), off(0, 100)), newFlow(9, 1), Decision{Unit: -1, ScaleOut: true}},
		{"current inactive and no usable unit",
			mkPool(0.8, off(0, 100)), Flowlet{Hash: 9, Current: 0}, Decision{Unit: -1, ScaleOut: true}},
		{"current out of range: rehash",
			mkPool(0.8, act(0, 100)), Flowlet{Hash: 9, Current: 3}, Decision{Unit: 0}},
		{"NaN rate is 0", mkPool(0.8, act(80, 100)), newFlow(9, math.NaN()), Decision{Unit: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := place(t, NewPerFlow(seed), tt.f, tt.pool); d != tt.want {
				t.Errorf("Place(%+v) = %+v, want %+v", tt.f, d, tt.want)
			}
		})
	}
	// Ignoring load: a new flow goes where the hash says, whatever the loads.
	r := rng(1)
	p := NewPerFlow(seed)
	for range 1000 {
		pool := four()
		for i := range pool.Units {
			pool.Units[i].Load = 100 * r.float()
		}
		h := r.next()
		want := refRendezvous(seed, h, pool.Units)
		if d := place(t, p, newFlow(h, 5), pool); d.Unit != want || d.ScaleOut != (pool.Units[want].Load+5 > 80) {
			t.Fatalf("hash %x: %+v, want unit %d", h, d, want)
		}
	}
}

// placeAll places a first flowlet for every hash and returns the units.
func placeAll(t *testing.T, p Policy, hashes []uint64, pool *Pool) []int {
	t.Helper()
	out := make([]int, len(hashes))
	for i, h := range hashes {
		out[i] = p.Place(newFlow(h, 0), pool).Unit
	}
	return out
}

func hashes(seed uint64, n int) []uint64 {
	r := rng(seed)
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = r.next()
	}
	return hs
}

func activePool(n, size int) *Pool {
	p := mkPool(0.8, make([]UnitView, size)...)
	for i := range p.Units {
		p.Units[i].Capacity = 100
		p.Units[i].Active = i < n
	}
	return p
}

// TestPerFlowUniform: new flows spread evenly over the usable units, for random and for
// sequential hashes.
func TestPerFlowUniform(t *testing.T) {
	const m = 100000
	seq := make([]uint64, m)
	for i := range seq {
		seq[i] = uint64(i)
	}
	for name, hs := range map[string][]uint64{"random": hashes(5, m), "sequential": seq} {
		for _, n := range []int{2, 7, 16} {
			count := make([]int, n)
			for _, u := range placeAll(t, NewPerFlow(0), hs, activePool(n, n)) {
				count[u]++
			}
			for u, c := range count {
				if dev := math.Abs(float64(c)/(m/float64(n)) - 1); dev > 0.05 {
					t.Errorf("%s hashes, %d units: unit %d got %d of %d (off by %.1f%%)", name, n, u, c, m, 100*dev)
				}
			}
		}
	}
}

// TestPerFlowRendezvousDisruption: activating one unit next to N moves about 1/(N+1) of new
// flows' placements, every one of them to the new unit; losing a unit moves exactly the flows
// it held, spread over the others.
func TestPerFlowRendezvousDisruption(t *testing.T) {
	const m = 200000
	hs := hashes(11, m)
	for _, n := range []int{1, 4, 10, 31} {
		p := NewPerFlow(42)
		pool := activePool(n, n+1)
		before := placeAll(t, p, hs, pool)
		pool.Units[n].Active = true
		after := placeAll(t, p, hs, pool)
		moved := 0
		for i := range hs {
			if before[i] != after[i] {
				moved++
				if after[i] != n {
					t.Fatalf("N=%d: flow %d moved from %d to old unit %d", n, i, before[i], after[i])
				}
			}
		}
		frac, want := float64(moved)/m, 1/float64(n+1)
		if math.Abs(frac/want-1) > 0.05 {
			t.Errorf("N=%d -> %d: moved %.4f of placements, want %.4f ±5%%", n, n+1, frac, want)
		}
		t.Logf("N=%d -> %d: moved %.4f of placements (1/(N+1) = %.4f)", n, n+1, frac, want)

		// Remove a unit from the N+1 (draining or failed): only its flows move.
		for _, how := range []string{"inactive", "draining"} {
			gone := n / 2
			pool2 := activePool(n+1, n+1)
			if how == "inactive" {
				pool2.Units[gone].Active = false
			} else {
				pool2.Units[gone].Draining = true
			}
			removed := placeAll(t, p, hs, pool2)
			spread := make([]int, n+1)
			for i := range hs {
				if (after[i] != removed[i]) != (after[i] == gone) {
					t.Fatalf("N=%d, unit %d %s: flow %d went %d -> %d", n+1, gone, how, i, after[i], removed[i])
				}
				if after[i] == gone {
					spread[removed[i]]++
				}
			}
			if spread[gone] != 0 {
				t.Fatalf("N=%d: flows placed on %s unit %d", n+1, how, gone)
			}
		}
	}
}

// TestPerFlowSticky: flows placed on a pool stay where they are, through growth, while their
// unit is active (draining or overloaded included); a flow whose unit goes inactive rehashes.
func TestPerFlowSticky(t *testing.T) {
	const m = 20000
	hs := hashes(3, m)
	p := NewPerFlow(9)
	pool := activePool(4, 12)
	cur := placeAll(t, p, hs, pool)
	r := rng(8)
	for step := 0; step < 8; step++ {
		pool.Units[4+step].Active = true // grow
		if step == 3 {
			pool.Units[1].Draining = true
		}
		if step == 5 {
			pool.Units[2].Active = false // failed
		}
		for i := range pool.Units {
			pool.Units[i].Load = 200 * r.float() // loads, even overloads, do not matter
		}
		for i, h := range hs {
			d := place(t, p, Flowlet{Hash: h, Rate: 1, Current: cur[i]}, pool)
			if pool.Units[cur[i]].Active {
				if d.Unit != cur[i] {
					t.Fatalf("step %d: flow %d on active unit %d moved to %d", step, i, cur[i], d.Unit)
				}
			} else if d.Unit != refRendezvous(9, h, pool.Units) {
				t.Fatalf("step %d: flow %d off failed unit %d went to %d, not its hash", step, i, cur[i], d.Unit)
			}
			cur[i] = d.Unit
		}
	}
}
