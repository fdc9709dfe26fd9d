package policy_test

import (
	"fmt"

	"github.com/snf-dev/snf/policy"
)

// An engine's use of a policy: ask for each new flowlet, add its rate to the chosen unit's
// Load, and activate a unit when asked (then ask again).
func Example() {
	p, err := policy.New("snf", policy.Options{})
	if err != nil {
		panic(err)
	}
	pool := &policy.Pool{Target: 0.8, Units: []policy.UnitView{
		{ID: 0, Active: true, Capacity: 100},
		{ID: 1, Capacity: 100}, // cold
	}}
	place := func(f policy.Flowlet) {
		d := p.Place(f, pool)
		if d.ScaleOut && p.Elastic() {
			pool.Units[1].Active = true // the engine found a unit to activate
			d = p.Place(f, pool)
		}
		pool.Units[d.Unit].Load += f.Rate
		fmt.Printf("flow %d rate %.0f -> unit %d (loads %.0f, %.0f)\n",
			f.Hash, f.Rate, d.Unit, pool.Units[0].Load, pool.Units[1].Load)
	}
	place(policy.Flowlet{Hash: 1, Rate: 50, Current: -1, First: true})
	place(policy.Flowlet{Hash: 2, Rate: 40, Current: -1, First: true}) // 90 > 80: scale out
	place(policy.Flowlet{Hash: 3, Rate: 30, Current: -1, First: true}) // best fit: unit 0
	// Output:
	// flow 1 rate 50 -> unit 0 (loads 50, 0)
	// flow 2 rate 40 -> unit 1 (loads 50, 40)
	// flow 3 rate 30 -> unit 0 (loads 80, 40)
}
