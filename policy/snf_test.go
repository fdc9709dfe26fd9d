package policy

import (
	"math"
	"testing"
)

func TestSNFPlace(t *testing.T) {
	// Capacity 100 and Target 0.8: a unit is full at 80.
	tests := []struct {
		name string
		pool *Pool
		f    Flowlet
		want Decision
	}{
		{"stays on current when it fits (even though a fuller unit fits)",
			mkPool(0.8, act(10, 100), act(70, 100), act(50, 100)), Flowlet{Rate: 20, Current: 0}, Decision{Unit: 0}},
		{"stays on current filled exactly to target",
			mkPool(0.8, act(60, 100), act(0, 100)), Flowlet{Rate: 20, Current: 0}, Decision{Unit: 0}},
		{"moves when current does not fit: to the fullest that fits",
			mkPool(0.8, act(70, 100), act(10, 100), act(50, 100)), Flowlet{Rate: 20, Current: 0}, Decision{Unit: 2}},
		{"moves off a current just over target",
			mkPool(0.8, act(60.5, 100), act(0, 100)), Flowlet{Rate: 20, Current: 0}, Decision{Unit: 1}},
		{"best fit: fullest that fits, not the lower-loaded ones nor the one that does not fit",
			mkPool(0.8, act(10, 100), act(40, 100), act(59, 100), act(61, 100), act(0, 100)), newFlow(1, 20), Decision{Unit: 2}},
		{"best fit: a unit filled exactly to target is the best",
			mkPool(0.8, act(59, 100), act(60, 100), act(61, 100)), newFlow(1, 20), Decision{Unit: 1}},
		{"best fit: ties to the lowest id",
			mkPool(0.8, act(30, 100), act(50, 100), act(50, 100), act(50, 100)), newFlow(1, 10), Decision{Unit: 1}},
		{"best fit by headroom with unequal capacities",
			// unit 0: room 800-700=100; unit 1: room 80-10=70 (fuller in headroom, emptier in utilisation)
			mkPool(0.8, act(700, 1000), act(10, 100)), newFlow(1, 20), Decision{Unit: 1}},
		{"draining unit never chosen, though fullest",
			mkPool(0.8, act(10, 100), drn(60, 100)), newFlow(1, 10), Decision{Unit: 0}},
		{"inactive unit never chosen, though fullest",
			mkPool(0.8, act(10, 100), off(60, 100)), newFlow(1, 10), Decision{Unit: 0}},
		{"current draining: moves though it fits",
			mkPool(0.8, act(30, 100), drn(10, 100), act(20, 100)), Flowlet{Rate: 10, Current: 1}, Decision{Unit: 0}},
		{"current inactive: moves",
			mkPool(0.8, act(30, 100), off(0, 100), act(20, 100)), Flowlet{Rate: 10, Current: 1}, Decision{Unit: 0}},
		{"current out of range is a new flow",
			mkPool(0.8, act(30, 100), act(40, 100)), Flowlet{Rate: 10, Current: 7}, Decision{Unit: 1}},
		{"negative current is a new flow",
			mkPool(0.8, act(30, 100), act(40, 100)), Flowlet{Rate: 10, Current: -5}, Decision{Unit: 1}},
		{"no fit: least-loaded usable unit, scale out",
			mkPool(0.8, act(75, 100), act(70, 100), act(78, 100)), newFlow(1, 20), Decision{Unit: 1, ScaleOut: true}},
		{"no fit: ties to the lowest id",
			mkPool(0.8, act(75, 100), act(70, 100), act(70, 100)), newFlow(1, 20), Decision{Unit: 1, ScaleOut: true}},
		{"no fit from current: falls back to least loaded (may be current)",
			mkPool(0.8, act(75, 100), act(70, 100)), Flowlet{Rate: 20, Current: 1}, Decision{Unit: 1, ScaleOut: true}},
		{"no fit: fallback skips draining and inactive units",
			mkPool(0.8, act(75, 100), drn(5, 100), off(0, 100), act(78, 100)), newFlow(1, 20), Decision{Unit: 0, ScaleOut: true}},
		{"no fit: fallback by utilisation with unequal capacities",
			mkPool(0.8, act(75, 100), act(700, 1000)), newFlow(1, 120), Decision{Unit: 1, ScaleOut: true}},
		{"no fit: units over target already",
			mkPool(0.8, act(95, 100), act(120, 100)), newFlow(1, 1), Decision{Unit: 0, ScaleOut: true}},
		{"elephant larger than an empty unit: idle unit, scale out",
			mkPool(0.8, act(10, 100), act(0, 100)), newFlow(1, 90), Decision{Unit: 1, ScaleOut: true}},
		{"zero active units: none, scale out",
			mkPool(0.8, off(0, 100), off(0, 100)), newFlow(1, 1), Decision{Unit: -1, ScaleOut: true}},
		{"only draining units: none, scale out",
			mkPool(0.8, drn(0, 100), off(0, 100)), Flowlet{Rate: 1, Current: 0}, Decision{Unit: -1, ScaleOut: true}},
		{"empty pool", mkPool(0.8), newFlow(1, 1), Decision{Unit: -1, ScaleOut: true}},
		{"nil pool", nil, newFlow(1, 1), Decision{Unit: -1, ScaleOut: true}},
		{"zero rate fits a full unit",
			mkPool(0.8, act(10, 100), act(80, 100)), newFlow(1, 0), Decision{Unit: 1}},
		{"NaN rate is 0",
			mkPool(0.8, act(10, 100), act(80, 100)), newFlow(1, math.NaN()), Decision{Unit: 1}},
		{"negative rate is 0",
			mkPool(0.8, act(10, 100), act(80, 100)), newFlow(1, -50), Decision{Unit: 1}},
		{"infinite rate fits nowhere",
			mkPool(0.8, act(10, 100), act(0, 100)), newFlow(1, math.Inf(1)), Decision{Unit: 1, ScaleOut: true}},
		{"target 0 (unset) means 1",
			mkPool(0, act(90, 100)), newFlow(1, 10), Decision{Unit: 0}},
		{"target above 1 means 1",
			mkPool(1.5, act(90, 100)), newFlow(1, 11), Decision{Unit: 0, ScaleOut: true}},
		{"zero-capacity unit takes nothing and is the last fallback",
			mkPool(0.8, act(0, 0), act(90, 100)), newFlow(1, 1), Decision{Unit: 1, ScaleOut: true}},
		{"NaN load never fits nor is least loaded",
			mkPool(0.8, act(math.NaN(), 100), act(90, 100)), newFlow(1, 1), Decision{Unit: 1, ScaleOut: true}},
		{"First with Current: Current decides",
			mkPool(0.8, act(10, 100), act(50, 100)), Flowlet{Rate: 10, Current: 0, First: true}, Decision{Unit: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := place(t, &SNF{}, tt.f, tt.pool); d != tt.want {
				t.Errorf("Place(%+v) = %+v, want %+v", tt.f, d, tt.want)
			}
		})
	}
}

// TestSNFMaxBacklog: a unit whose backlog is past the pool's MaxBacklog takes no new
// flowlet and keeps no returning one, whatever its predicted load; with MaxBacklog 0 the
// backlog is not looked at.
func TestSNFMaxBacklog(t *testing.T) {
	mk := func(max float64) *Pool {
		p := mkPool(0.8, act(60, 100), act(10, 100))
		p.Units[0].Backlog = 50
		p.MaxBacklog = max
		return p
	}
	if d := (&SNF{}).Place(newFlow(1, 10), mk(20)); d.Unit != 1 {
		t.Errorf("new flowlet with unit 0 backlogged: unit %d, want 1", d.Unit)
	}
	if d := (&SNF{}).Place(Flowlet{Rate: 10, Current: 0}, mk(20)); d.Unit != 1 {
		t.Errorf("returning flowlet on a backlogged unit: unit %d, want 1", d.Unit)
	}
	if d := (&SNF{}).Place(newFlow(1, 10), mk(0)); d.Unit != 0 {
		t.Errorf("MaxBacklog 0: unit %d, want best fit 0", d.Unit)
	}
	if d := (&SNF{}).Place(newFlow(1, 10), mk(50)); d.Unit != 0 {
		t.Errorf("backlog at (not past) MaxBacklog: unit %d, want best fit 0", d.Unit)
	}
	p := mk(20)
	p.Units[1].Backlog = 21
	if d := (&SNF{}).Place(newFlow(1, 10), p); !d.ScaleOut {
		t.Errorf("every unit backlogged: %+v, want a scale-out", d)
	}
}
