package policy

import (
	"testing"
)

// TestStaticIgnoresLoad: static's decisions depend on the hash, the units' states and the
// flow's current unit, never on Load or Capacity, and never ask for a unit.
func TestStaticIgnoresLoad(t *testing.T) {
	const units = 6
	s := mustNew(t, "static", Options{Seed: 5, StaticUnits: units})
	r := rng(2)
	for i := range 5000 {
		idle, busy := activePool(units, units), activePool(units, units)
		for u := range busy.Units {
			busy.Units[u].Load = 300 * r.float() // up to 3x capacity
			busy.Units[u].Capacity = 1 + 99*r.float()
		}
		if i%4 == 0 {
			off := r.intn(units)
			idle.Units[off].Active, busy.Units[off].Active = false, false
		}
		f := Flowlet{Hash: r.next(), Rate: 100 * r.float(), Current: r.intn(units+2) - 1}
		di, db := place(t, s, f, idle), place(t, s, f, busy)
		if di != db {
			t.Fatalf("%+v: %+v on an idle pool, %+v on a loaded one", f, di, db)
		}
		if db.ScaleOut {
			t.Fatalf("%+v: static asked for a unit", f)
		}
		want := refRendezvous(5, f.Hash, busy.Units)
		if f.Current >= 0 && f.Current < units && busy.Units[f.Current].Active {
			want = f.Current
		}
		if db.Unit != want {
			t.Fatalf("%+v: unit %d, want %d", f, db.Unit, want)
		}
	}
}

// TestStaticPool: static uses only its StaticUnits units, with perflow's mapping over them.
func TestStaticPool(t *testing.T) {
	s := NewStatic(4, 1)
	pf := NewPerFlow(1)
	pool := activePool(10, 10) // more units active than static's 4
	four := activePool(4, 4)
	for _, h := range hashes(4, 10000) {
		d := place(t, s, newFlow(h, 1), pool)
		if d.Unit < 0 || d.Unit >= 4 || d.ScaleOut {
			t.Fatalf("hash %x: %+v outside static's 4 units", h, d)
		}
		if want := place(t, pf, newFlow(h, 1), four); d.Unit != want.Unit {
			t.Fatalf("hash %x: static %d, perflow on the same 4 units %d", h, d.Unit, want.Unit)
		}
	}
	// A current unit beyond the static pool is not kept; one within it is, even draining.
	if d := place(t, s, Flowlet{Hash: 1, Current: 7}, pool); d.Unit >= 4 {
		t.Fatalf("current 7 kept: %+v", d)
	}
	pool.Units[2].Draining = true
	if d := place(t, s, Flowlet{Hash: 1, Current: 2}, pool); d.Unit != 2 {
		t.Fatalf("draining current 2 not kept: %+v", d)
	}
	// A pool smaller than StaticUnits is fine.
	if d := place(t, NewStatic(8, 1), newFlow(3, 1), activePool(2, 2)); d.Unit < 0 || d.Unit > 1 {
		t.Fatalf("small pool: %+v", d)
	}
	if NewStatic(0, 0).Units() != 1 {
		t.Fatal("NewStatic(0) should have 1 unit")
	}
}
