package policy

import (
	"math"
	"slices"
	"testing"
)

// Unit constructors for table tests; mkPool sets the IDs.
func act(load, capacity float64) UnitView {
	return UnitView{Active: true, Capacity: capacity, Load: load}
}
func drn(load, capacity float64) UnitView {
	return UnitView{Active: true, Draining: true, Capacity: capacity, Load: load}
}
func off(load, capacity float64) UnitView { return UnitView{Capacity: capacity, Load: load} }

func mkPool(target float64, units ...UnitView) *Pool {
	p := &Pool{Target: target, Units: units}
	for i := range p.Units {
		p.Units[i].ID = i
	}
	return p
}

// place calls p.Place and fails the test if the call modified the pool or returned a unit
// that is not active.
func place(t testing.TB, p Policy, f Flowlet, pool *Pool) Decision {
	t.Helper()
	var before []UnitView
	var target float64
	if pool != nil {
		before, target = slices.Clone(pool.Units), pool.Target
	}
	d := p.Place(f, pool)
	if pool != nil {
		if !slices.EqualFunc(before, pool.Units, sameUnit) || math.Float64bits(target) != math.Float64bits(pool.Target) {
			t.Fatalf("%s: Place modified the pool", p.Name())
		}
		if d.Unit < -1 || d.Unit >= len(pool.Units) || d.Unit >= 0 && !pool.Units[d.Unit].Active {
			t.Fatalf("%s: Place returned unit %d, not an active unit of %d", p.Name(), d.Unit, len(pool.Units))
		}
	} else if d.Unit != -1 {
		t.Fatalf("%s: Place(nil pool) returned unit %d", p.Name(), d.Unit)
	}
	return d
}

// sameUnit compares units bit for bit (so that NaN equals NaN).
func sameUnit(a, b UnitView) bool {
	return a.ID == b.ID && a.Active == b.Active && a.Draining == b.Draining &&
		math.Float64bits(a.Capacity) == math.Float64bits(b.Capacity) &&
		math.Float64bits(a.Load) == math.Float64bits(b.Load)
}

// newFlow is a first flowlet with the given rate.
func newFlow(hash uint64, rate float64) Flowlet {
	return Flowlet{Hash: hash, Rate: rate, Current: -1, First: true}
}

// rng is SplitMix64, the tests' only source of randomness (fixed seeds).
type rng uint64

func (r *rng) next() uint64 {
	*r += golden
	return mix64(uint64(*r))
}

// float returns a float64 in [0,1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// intn returns an int in [0,n).
func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

func mustNew(t testing.TB, name string, opts Options) Policy {
	t.Helper()
	p, err := New(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
