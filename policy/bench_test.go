package policy

import (
	"fmt"
	"testing"
)

// benchPool returns an active pool of n units, capacity 1000, target 0.8, loads spread over
// [0, 900) so that some units fit a flowlet and some do not.
func benchPool(n int) *Pool {
	p := activePool(n, n)
	r := rng(uint64(n))
	for i := range p.Units {
		p.Units[i].Capacity = 1000
		p.Units[i].Load = 900 * r.float()
	}
	if n > 4 {
		p.Units[1].Draining = true
		p.Units[3].Active = false
	}
	return p
}

// benchFlowlets are the flowlets the benchmarks cycle through: all new flows (the full
// scan), or a mix of new flows, flows that stay and flows whose unit is gone or full.
func benchFlowlets(n int, mixed bool) []Flowlet {
	r := rng(5)
	fl := make([]Flowlet, 1024)
	for i := range fl {
		fl[i] = Flowlet{Hash: r.next(), Rate: 1 + 200*r.float(), Current: -1}
		if mixed {
			fl[i].Current = r.intn(n+1) - 1
		}
	}
	return fl
}

var benchSizes = []int{8, 1000}

func BenchmarkPlace(b *testing.B) {
	for _, name := range Names() {
		for _, n := range benchSizes {
			for _, mixed := range []bool{false, true} {
				flows := map[bool]string{false: "new", true: "mixed"}[mixed]
				b.Run(fmt.Sprintf("%s/units=%d/%s", name, n, flows), func(b *testing.B) {
					p := mustNew(b, name, Options{Seed: 1, StaticUnits: n})
					pool, fl := benchPool(n), benchFlowlets(n, mixed)
					b.ReportAllocs()
					var sink int
					i := 0
					for b.Loop() {
						sink += p.Place(fl[i&1023], pool).Unit
						i++
					}
					_ = sink
				})
			}
		}
	}
}

// TestPlaceAllocs: Place allocates nothing, for every policy and pool size.
func TestPlaceAllocs(t *testing.T) {
	for _, name := range Names() {
		for _, n := range benchSizes {
			p := mustNew(t, name, Options{Seed: 1, StaticUnits: n})
			pool, fl := benchPool(n), benchFlowlets(n, true)
			i := 0
			if a := testing.AllocsPerRun(1000, func() {
				p.Place(fl[i&1023], pool)
				i++
			}); a != 0 {
				t.Errorf("%s with %d units: %v allocs per Place", name, n, a)
			}
		}
	}
}
