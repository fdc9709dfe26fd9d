package policy

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	want := map[string]struct{ perPacket, elastic bool }{
		"snf":       {false, true},
		"perflow":   {false, true},
		"perpacket": {true, true},
		"static":    {false, false},
	}
	if got := Names(); !slices.Equal(got, []string{"snf", "perflow", "perpacket", "static"}) {
		t.Fatalf("Names() = %v", got)
	}
	Names()[0] = "changed"
	if Names()[0] != "snf" {
		t.Fatal("Names returns the package's slice")
	}
	for _, name := range Names() {
		p, err := New(name, Options{Seed: 7, StaticUnits: 4})
		if err != nil {
			t.Fatalf("New(%q): %v", name, err)
		}
		w := want[name]
		if p.Name() != name || p.PerPacket() != w.perPacket || p.Elastic() != w.elastic {
			t.Errorf("New(%q) = %s perPacket=%v elastic=%v, want perPacket=%v elastic=%v",
				name, p.Name(), p.PerPacket(), p.Elastic(), w.perPacket, w.elastic)
		}
		_, sized := p.(Sized)
		if sized != (name == "static") {
			t.Errorf("%s: Sized = %v", name, sized)
		}
	}
	if s := mustNew(t, "static", Options{StaticUnits: 5}).(Sized); s.Units() != 5 {
		t.Errorf("static Units() = %d, want 5", s.Units())
	}
	for _, name := range []string{"", "SNF", "per-flow", "random", "snf "} {
		p, err := New(name, Options{})
		if err == nil {
			t.Errorf("New(%q) = %v, want an error", name, p)
			continue
		}
		for _, known := range Names() {
			if !strings.Contains(err.Error(), known) {
				t.Errorf("New(%q) error %q does not list %q", name, err, known)
			}
		}
	}
	for _, n := range []int{0, -1} {
		if _, err := New("static", Options{StaticUnits: n}); err == nil || !strings.Contains(err.Error(), "StaticUnits") {
			t.Errorf("New(static, StaticUnits=%d) error = %v", n, err)
		}
	}
}

func TestValidate(t *testing.T) {
	good := mkPool(0.8, act(0, 100), off(0, 100), drn(50, 100))
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	if err := mkPool(1).Validate(); err != nil {
		t.Fatalf("Validate(empty) = %v", err)
	}
	bad := map[string]*Pool{
		"target 0":    mkPool(0, act(0, 100)),
		"target 1.5":  mkPool(1.5, act(0, 100)),
		"target NaN":  mkPool(math.NaN(), act(0, 100)),
		"target -1":   mkPool(-1, act(0, 100)),
		"id":          {Target: 0.8, Units: []UnitView{{ID: 1, Active: true, Capacity: 100}}},
		"capacity":    mkPool(0.8, act(0, -1)),
		"capacityNaN": mkPool(0.8, act(0, math.NaN())),
		"capacityInf": mkPool(0.8, act(0, math.Inf(1))),
		"load NaN":    mkPool(0.8, act(math.NaN(), 100)),
		"nil":         nil,
	}
	for name, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("Validate(%s) = nil, want an error", name)
		}
	}
}

// TestNilAndEmptyPool: every policy handles a nil or empty pool, and a pool with no usable
// unit, without panicking; the elastic ones ask for a unit.
func TestNilAndEmptyPool(t *testing.T) {
	pools := map[string]*Pool{
		"nil":      nil,
		"empty":    mkPool(0.8),
		"inactive": mkPool(0.8, off(0, 100), off(0, 100)),
		"draining": mkPool(0.8, drn(0, 100), drn(10, 100)),
	}
	for _, name := range Names() {
		for pname, pool := range pools {
			p := mustNew(t, name, Options{StaticUnits: 2})
			for _, f := range []Flowlet{newFlow(1, 10), {Hash: 2, Rate: 10, Current: 0}, {Hash: 3, Current: 5}} {
				d := place(t, p, f, pool)
				want := Decision{Unit: -1, ScaleOut: p.Elastic()}
				if pname == "draining" && f.Current == 0 && (name == "perflow" || name == "static") {
					want = Decision{Unit: 0} // sticky: the live flow stays on its draining unit
				}
				if d != want {
					t.Errorf("%s, %s pool, %+v: %+v, want %+v", name, pname, f, d, want)
				}
			}
		}
	}
}
