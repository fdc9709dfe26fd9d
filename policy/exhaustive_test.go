package policy

import (
	"cmp"
	"math"
	"slices"
	"testing"
)

// Reference implementations, written from the policies' specifications by sorting
// candidates rather than scanning, to check the real ones on every small pool.

type refCand struct {
	id  int
	key float64
}

func sortCands(c []refCand) {
	slices.SortStableFunc(c, func(a, b refCand) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.id, b.id))
	})
}

func refUtil(u UnitView) float64 {
	if u.Capacity <= 0 || math.IsNaN(u.Load/u.Capacity) {
		return math.Inf(1)
	}
	return u.Load / u.Capacity
}

func refLeast(units []UnitView) int {
	var c []refCand
	for id, u := range units {
		if u.Active && !u.Draining {
			c = append(c, refCand{id, refUtil(u)})
		}
	}
	if len(c) == 0 {
		return -1
	}
	sortCands(c)
	return c[0].id
}

func refSNF(f Flowlet, units []UnitView, target float64) Decision {
	fits := func(u UnitView) bool { return u.Active && !u.Draining && u.Load+f.Rate <= target*u.Capacity }
	if f.Current >= 0 && f.Current < len(units) && fits(units[f.Current]) {
		return Decision{Unit: f.Current}
	}
	var c []refCand
	for id, u := range units {
		if fits(u) {
			c = append(c, refCand{id, target*u.Capacity - u.Load})
		}
	}
	if len(c) > 0 {
		sortCands(c)
		return Decision{Unit: c[0].id}
	}
	return Decision{Unit: refLeast(units), ScaleOut: true}
}

func refSticky(seed uint64, f Flowlet, units []UnitView, target float64, elastic bool) Decision {
	c := -1
	if f.Current >= 0 && f.Current < len(units) && units[f.Current].Active {
		c = f.Current
	} else {
		c = refRendezvous(seed, f.Hash, units)
	}
	if c < 0 {
		return Decision{Unit: -1, ScaleOut: elastic}
	}
	return Decision{Unit: c, ScaleOut: elastic && units[c].Load+f.Rate > target*units[c].Capacity}
}

// refPerPacket returns the decision and the new cursor.
func refPerPacket(cursor int, f Flowlet, units []UnitView, target float64) (Decision, int) {
	n := len(units)
	if cursor >= n {
		cursor = 0
	}
	least := refLeast(units)
	if least < 0 {
		return Decision{Unit: -1, ScaleOut: true}, cursor
	}
	// Among the units tied with the least utilised, the first at or after the cursor.
	best, bestDist := -1, n
	fit := false
	for id, u := range units {
		if !u.Active || u.Draining {
			continue
		}
		fit = fit || u.Load+f.Rate <= target*u.Capacity
		if refUtil(u) == refUtil(units[least]) {
			if d := (id - cursor + n) % n; d < bestDist {
				best, bestDist = id, d
			}
		}
	}
	return Decision{Unit: best, ScaleOut: !fit}, best + 1
}

// TestExhaustiveSmallPools checks every policy against its reference on every pool of three
// units whose states, loads and capacities come from small sets (27000 pools), for every
// current unit and a few rates: 540000 decisions per policy.
func TestExhaustiveSmallPools(t *testing.T) {
	const target = 0.8
	states := []UnitView{off(0, 0), act(0, 0), drn(0, 0)}
	loads := []float64{0, 40, 70, 80, 95}
	caps := []float64{100, 50}
	var opts []UnitView
	for _, s := range states {
		for _, l := range loads {
			for _, c := range caps {
				s.Load, s.Capacity = l, c
				opts = append(opts, s)
			}
		}
	}
	currents := []int{-1, 0, 1, 2, 3}
	rates := []float64{0, 10, 40, 90}

	const seed = 17
	snf, pf, pp, st := &SNF{}, NewPerFlow(seed), &PerPacket{}, NewStatic(2, seed)
	cursor := 0
	pool := &Pool{Target: target, Units: make([]UnitView, 3)}
	want := make([]UnitView, 3)
	cases := 0
	for _, a := range opts {
		for _, b := range opts {
			for _, c := range opts {
				want[0], want[1], want[2] = a, b, c
				for i := range want {
					want[i].ID = i
				}
				for _, cur := range currents {
					for _, rate := range rates {
						copy(pool.Units, want)
						cases++
						f := Flowlet{Hash: mix64(uint64(cases)), Rate: rate, Current: cur, First: cur < 0}
						check := func(name string, got, exp Decision) {
							if got != exp {
								t.Fatalf("%s: pool %+v, flowlet %+v: %+v, want %+v", name, want, f, got, exp)
							}
							if !slices.Equal(pool.Units, want) {
								t.Fatalf("%s modified the pool", name)
							}
							if got.Unit >= 0 && !want[got.Unit].Active {
								t.Fatalf("%s chose inactive unit %d", name, got.Unit)
							}
						}
						check("snf", snf.Place(f, pool), refSNF(f, want, target))
						check("perflow", pf.Place(f, pool), refSticky(seed, f, want, target, true))
						check("static", st.Place(f, pool), refSticky(seed, f, want[:2], target, false))
						var exp Decision
						exp, cursor = refPerPacket(cursor, f, want, target)
						check("perpacket", pp.Place(f, pool), exp)

						// Properties stated in the brief, on top of the references.
						d := snf.Place(f, pool)
						if d.Unit >= 0 && want[d.Unit].Draining {
							t.Fatalf("snf chose draining unit %d", d.Unit)
						}
						if d.Unit < 0 && refLeast(want) >= 0 {
							t.Fatalf("snf chose no unit with usable unit %d", refLeast(want))
						}
					}
				}
			}
		}
	}
	if cases != 27000*len(currents)*len(rates) {
		t.Fatalf("%d cases", cases)
	}
}

// FuzzPlace checks every policy against its reference on pools of up to 8 units decoded from
// the input: per unit a state byte and a load byte (0..255 of capacity 200 or 100).
func FuzzPlace(f *testing.F) {
	f.Add([]byte{1, 100, 1, 50, 2, 10, 0, 0}, int8(-1), uint8(20), uint64(1))
	f.Add([]byte{1, 160, 1, 160, 1, 159}, int8(2), uint8(1), uint64(2))
	f.Add([]byte{}, int8(0), uint8(0), uint64(0))
	f.Fuzz(func(t *testing.T, spec []byte, cur int8, rate uint8, hash uint64) {
		const target, seed = 0.8, 3
		var units []UnitView
		for i := 0; i+1 < len(spec) && len(units) < 8; i += 2 {
			u := UnitView{ID: len(units), Capacity: 200, Load: float64(spec[i+1])}
			if spec[i]&4 != 0 {
				u.Capacity = 100
			}
			switch spec[i] % 3 {
			case 1:
				u.Active = true
			case 2:
				u.Active, u.Draining = true, true
			}
			units = append(units, u)
		}
		pool := &Pool{Target: target, Units: units}
		fl := Flowlet{Hash: hash, Rate: float64(rate), Current: int(cur)}
		if fl.Current < -1 || fl.Current >= len(units) {
			fl.Current = -1 // the references assume a valid or absent current
		}
		want := slices.Clone(units)
		if d, r := place(t, &SNF{}, fl, pool), refSNF(fl, want, target); d != r {
			t.Fatalf("snf %+v on %+v: %+v, want %+v", fl, want, d, r)
		}
		if d, r := place(t, NewPerFlow(seed), fl, pool), refSticky(seed, fl, want, target, true); d != r {
			t.Fatalf("perflow %+v on %+v: %+v, want %+v", fl, want, d, r)
		}
		n := min(3, len(want))
		if d, r := place(t, NewStatic(3, seed), fl, pool), refSticky(seed, fl, want[:n], target, false); d != r {
			t.Fatalf("static %+v on %+v: %+v, want %+v", fl, want, d, r)
		}
		pp, cursor := &PerPacket{}, 0
		for range 3 {
			var r Decision
			r, cursor = refPerPacket(cursor, fl, want, target)
			if d := place(t, pp, fl, pool); d != r {
				t.Fatalf("perpacket %+v on %+v: %+v, want %+v", fl, want, d, r)
			}
		}
	})
}
