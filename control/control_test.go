package control

import (
	"math"
	"testing"
	"time"

	"github.com/snf-dev/snf/policy"
)

const tick = 10 * time.Millisecond

func newPool(n, active int, capacity float64) *policy.Pool {
	p := &policy.Pool{Target: 0.8}
	for i := range n {
		p.Units = append(p.Units, policy.UnitView{ID: i, Active: i < active, Capacity: capacity})
	}
	return p
}

func actives(p *policy.Pool) (active, draining int) {
	for _, u := range p.Units {
		if u.Active {
			active++
			if u.Draining {
				draining++
			}
		}
	}
	return
}

// TestScaleOutOnePerTick: at most one activation per tick; a draining unit is taken back
// (free: it is active) before an inactive one is activated; a fixed pool never grows.
func TestScaleOutOnePerTick(t *testing.T) {
	c := New(Config{MinUnits: 1, MaxUnits: 3, Capacity: 100, Elastic: true})
	p := newPool(3, 1, 100)
	if u := c.ScaleOut(p); u != 1 || !p.Units[1].Active {
		t.Fatalf("first scale-out: unit %d, want 1 active", u)
	}
	if u := c.ScaleOut(p); u != -1 {
		t.Errorf("second scale-out in the same tick: unit %d, want -1", u)
	}
	sent := make([]uint64, 3)
	c.Tick(tick, tick, p, sent, func(int) int { return 1 }) // no load: unit 0 drains
	if !p.Units[0].Draining {
		t.Fatalf("no load, two units: unit 0 not draining")
	}
	// A draining unit is taken back first (it is active and warm), whatever the count.
	if u := c.ScaleOut(p); u != 0 || p.Units[0].Draining {
		t.Errorf("with a draining unit: unit %d (draining %v), want unit 0 taken back", u, p.Units[0].Draining)
	}
	if u := c.ScaleOut(p); u != 2 || !p.Units[2].Active {
		t.Errorf("after a tick, no unit draining: unit %d, want 2 activated", u)
	}
	if u := c.ScaleOut(p); u != -1 {
		t.Errorf("a second activation in one tick: unit %d, want -1", u)
	}
	fixed := New(Config{MinUnits: 1, MaxUnits: 3, Capacity: 100})
	if u := fixed.ScaleOut(newPool(3, 1, 100)); u != -1 {
		t.Errorf("a fixed pool scaled out to unit %d", u)
	}
	if !fixed.Initial(2) || c.Initial(1) || !c.Initial(0) {
		t.Errorf("initial: fixed unit 2 %v, elastic unit 1 %v, unit 0 %v; want true, false, true", fixed.Initial(2), c.Initial(1), c.Initial(0))
	}
}

// TestDrainAndRetire: with little offered load, the least-loaded unit drains; it retires
// only once it holds no flow and went idle; never below MinUnits.
func TestDrainAndRetire(t *testing.T) {
	c := New(Config{MinUnits: 1, MaxUnits: 3, Capacity: 1000, Target: 0.8, Elastic: true})
	p := newPool(3, 3, 1000)
	p.Units[0].Load, p.Units[1].Load, p.Units[2].Load = 300, 100, 200
	sent := []uint64{10, 0, 0} // 1,000 packets/s offered over a tick: one unit's worth
	held := []int{5, 2, 0}
	c.Tick(tick, tick, p, sent, func(i int) int { return held[i] })
	if !p.Units[1].Draining || p.Units[0].Draining || p.Units[2].Draining {
		t.Fatalf("drained %+v, want unit 1 (least loaded) only", p.Units)
	}
	// Unit 1 got no packet but still holds flows: it stays.
	sent[0] += 10
	c.Tick(2*tick, tick, p, sent, func(i int) int { return held[i] })
	c.Tick(3*tick, tick, p, sent, func(i int) int { return held[i] })
	if !p.Units[1].Active {
		t.Fatalf("unit 1 retired while it held %d flows", held[1])
	}
	held[1] = 0
	c.Tick(4*tick, tick, p, sent, func(i int) int { return held[i] })
	if p.Units[1].Active {
		t.Errorf("unit 1 idle, draining and empty is still active")
	}
	// Keep going: units drain down to MinUnits and never below.
	for k := 5; k < 20; k++ {
		held[2] = 0
		c.Tick(time.Duration(k)*tick, tick, p, sent, func(i int) int { return held[i] })
	}
	if a, d := actives(p); a != 1 || d != 0 {
		t.Errorf("%d active (%d draining), want 1 (0): the minimum, taking work", a, d)
	}
	if !p.Units[0].Active {
		t.Errorf("the unit holding flows was retired: %+v", p.Units)
	}
}

// TestStatelessRetiresHoldingUnits: under a stateless policy (perpacket), a draining idle
// unit retires whatever flows the root last sent to it.
func TestStatelessRetiresHoldingUnits(t *testing.T) {
	c := New(Config{MinUnits: 1, MaxUnits: 2, Capacity: 1000, Elastic: true, Stateless: true})
	p := newPool(2, 2, 1000)
	sent := []uint64{0, 0}
	for k := 1; k <= 4; k++ {
		c.Tick(time.Duration(k)*tick, tick, p, sent, func(int) int { return 7 })
	}
	if a, _ := actives(p); a != 1 {
		t.Errorf("%d active, want 1", a)
	}
}

// TestUnitSeconds: the unit-seconds are the active units integrated over the ticks'
// intervals, and the summary's range and mean follow the timeline.
func TestUnitSeconds(t *testing.T) {
	c := New(Config{MinUnits: 2, MaxUnits: 4, Capacity: 1000, Elastic: true})
	p := newPool(4, 2, 1000)
	sent := make([]uint64, 4)
	c.Tick(tick, tick, p, sent, func(int) int { return 1 })
	c.ScaleOut(p)
	sent[2] = 100
	c.Tick(2*tick, 20*time.Millisecond, p, sent, func(int) int { return 1 })
	s := c.Summary()
	want := 2*0.010 + 3*0.020
	if math.Abs(s.UnitSeconds-want) > 1e-12 || s.UnitsMin != 2 || s.UnitsMax != 3 || s.UnitsMean != 2.5 || len(s.Timeline) != 2 {
		t.Errorf("summary %+v, want %v unit-seconds, units 2..3 mean 2.5", s, want)
	}
	if got := s.Timeline[1].Offered; got != 100/0.020 {
		t.Errorf("offered %v packets/s, want %v", got, 100/0.020)
	}
	if z := New(Config{}).Summary(); z.UnitsMin != 0 || z.UnitSeconds != 0 {
		t.Errorf("empty summary %+v", z)
	}
}

// TestScaleOnMeasured: with ScaleOnMeasured, ScaleOut refuses while the load measured over
// the last interval fits in the units taking work at Target, and activates once it does not.
func TestScaleOnMeasured(t *testing.T) {
	c := New(Config{MinUnits: 1, MaxUnits: 3, Capacity: 1000, Target: 0.8, Elastic: true, ScaleOnMeasured: true})
	p := newPool(3, 1, 1000)
	sent := []uint64{7, 0, 0} // 700 packets/s over a 10ms tick: fits one unit at 800
	c.Tick(tick, tick, p, sent, func(int) int { return 1 })
	if u := c.ScaleOut(p); u != -1 {
		t.Errorf("measured 700 packets/s, one unit takes 800: activated unit %d", u)
	}
	sent[0] += 9 // 900 packets/s: no longer fits
	c.Tick(2*tick, tick, p, sent, func(int) int { return 1 })
	if u := c.ScaleOut(p); u != 1 || !p.Units[1].Active {
		t.Errorf("measured 900 packets/s: unit %d, want 1 activated", u)
	}
	// Without the option the policy's word is enough.
	c2 := New(Config{MinUnits: 1, MaxUnits: 3, Capacity: 1000, Target: 0.8, Elastic: true})
	p2 := newPool(3, 1, 1000)
	c2.Tick(tick, tick, p2, []uint64{7, 0, 0}, func(int) int { return 1 })
	if u := c2.ScaleOut(p2); u != 1 {
		t.Errorf("without ScaleOnMeasured: unit %d, want 1", u)
	}
}

// TestBusyAfter: a draining unit that still holds flows is reported busy (its running
// flowlets should move) once it has drained for BusyAfter ticks, not before; without
// BusyAfter, never.
func TestBusyAfter(t *testing.T) {
	for _, after := range []int{0, 3} {
		c := New(Config{MinUnits: 1, MaxUnits: 2, Capacity: 100, Elastic: true, BusyAfter: after})
		p := newPool(2, 2, 100)
		sent := make([]uint64, 2)
		held := func(int) int { return 1 } // never empties: it cannot retire
		for k := 1; k <= 5; k++ {
			sent[0] += 1 // a trickle on unit 0: unit 1 is the least loaded, it drains
			c.Tick(time.Duration(k)*tick, tick, p, sent, held)
			busy, calls := false, 0
			c.Draining(p, func(i int, b bool) {
				calls++
				if i != 1 {
					t.Errorf("unit %d reported draining, want unit 1", i)
				}
				busy = b
			})
			if calls != 1 {
				t.Fatalf("BusyAfter %d, tick %d: %d draining units, want 1", after, k, calls)
			}
			if want := after > 0 && k >= after; busy != want {
				t.Errorf("BusyAfter %d, tick %d: busy %v, want %v", after, k, busy, want)
			}
		}
	}
}

// TestScaleOnBacklog: with ScaleOnMeasured, a scale-out the measured load does not justify
// is still granted when every unit taking work is past the pool's MaxBacklog.
func TestScaleOnBacklog(t *testing.T) {
	c := New(Config{MinUnits: 1, MaxUnits: 3, Capacity: 1000, Target: 0.8, Elastic: true, ScaleOnMeasured: true})
	p := newPool(3, 1, 1000)
	p.MaxBacklog = 100
	c.Tick(tick, tick, p, []uint64{7, 0, 0}, func(int) int { return 1 }) // 700/s: fits
	p.Units[0].Backlog = 100
	if u := c.ScaleOut(p); u != -1 {
		t.Errorf("backlog at the bound: activated unit %d", u)
	}
	p.Units[0].Backlog = 101
	if u := c.ScaleOut(p); u != 1 {
		t.Errorf("the only taking unit past MaxBacklog: unit %d, want 1", u)
	}
}

// TestForceScale: a forced scale-out takes draining units back, then activates inactive ones,
// k at once whatever the per-tick limit, up to the pool's size; a forced scale-in drains the
// least loaded units taking work, k at once, and never the last one; a fixed pool only takes
// back what was drained.
func TestForceScale(t *testing.T) {
	c := New(Config{MinUnits: 1, MaxUnits: 6, Capacity: 100, Elastic: true, ScaleOnMeasured: true})
	p := newPool(6, 2, 100)
	p.Units[1].Draining = true
	if got := c.ForceScaleOut(p, 3); len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("forced scale-out of 3: units %v, want [1 2 3] (the draining one first)", got)
	}
	if a, d := actives(p); a != 4 || d != 0 {
		t.Fatalf("%d active, %d draining, want 4 and 0", a, d)
	}
	if got := c.ForceScaleOut(p, 10); len(got) != 2 {
		t.Fatalf("forced scale-out of 10 with 2 inactive: units %v", got)
	}
	// Units 0-2 got packets, 3-5 none: the idle ones drain first.
	sent := []uint64{300, 200, 100, 0, 0, 0}
	c.Tick(tick, tick, p, sent, func(int) int { return 0 })
	for i := range p.Units {
		p.Units[i].Draining = false
	}
	got := c.ForceScaleIn(p, 4)
	if len(got) != 4 || got[0] != 3 || got[1] != 4 || got[2] != 5 || got[3] != 2 {
		t.Fatalf("forced scale-in of 4: units %v, want [3 4 5 2] (least loaded first)", got)
	}
	if got := c.ForceScaleIn(p, 5); len(got) != 1 || got[0] != 1 {
		t.Fatalf("forced scale-in of 5 with 2 taking work: units %v, want [1]", got)
	}
	if got := c.ForceScaleIn(p, 1); len(got) != 0 {
		t.Fatalf("forced scale-in with one unit taking work: units %v, want none", got)
	}
	if a, d := actives(p); a != 6 || d != 5 {
		t.Fatalf("%d active, %d draining, want 6 and 5", a, d)
	}

	fixed := New(Config{MinUnits: 3, MaxUnits: 3, Capacity: 100})
	fp := newPool(3, 3, 100)
	if got := fixed.ForceScaleIn(fp, 2); len(got) != 2 {
		t.Fatalf("fixed pool: forced scale-in of 2: units %v", got)
	}
	fixed.Tick(tick, tick, fp, make([]uint64, 3), func(int) int { return 0 })
	if a, d := actives(fp); a != 3 || d != 2 {
		t.Fatalf("fixed pool after a tick: %d active, %d draining, want 3 and 2 (it never retires)", a, d)
	}
	if got := fixed.ForceScaleOut(fp, 5); len(got) != 2 {
		t.Fatalf("fixed pool: forced scale-out: units %v, want the 2 drained ones back", got)
	}
}

// TestSaturatedKeepsUnits: while the input has more packets waiting at every read (the pool
// saturated), the load measured is what the pool took, and no unit drains on it — at full
// speed a drain would move flows for load that is still there; once reads come back short,
// the pool shrinks as before. The timeline records which ticks were saturated.
func TestSaturatedKeepsUnits(t *testing.T) {
	c := New(Config{MinUnits: 1, MaxUnits: 3, Capacity: 1000, Elastic: true})
	p := newPool(3, 2, 1000)
	sent := make([]uint64, 3)
	busy := func(int) int { return 1 }
	p.Saturated = true
	for k := 1; k <= 5; k++ { // 100 packets/s offered: it fits in one unit of 1,000
		sent[0]++
		c.Tick(time.Duration(k)*tick, tick, p, sent, busy)
		if a, d := actives(p); a != 2 || d != 0 {
			t.Fatalf("saturated tick %d: %d active, %d draining; want 2 taking work", k, a, d)
		}
	}
	p.Saturated = false
	sent[0]++
	c.Tick(6*tick, tick, p, sent, busy)
	if a, d := actives(p); a != 2 || d != 1 || !p.Units[1].Draining {
		t.Fatalf("after saturation: %d active, %d draining (unit 1 %v); want unit 1 draining", a, d, p.Units[1].Draining)
	}
	tl := c.Summary().Timeline
	if len(tl) != 6 || !tl[4].Saturated || tl[5].Saturated {
		t.Errorf("timeline saturation: %+v; want ticks 1-5 saturated, 6 not", tl)
	}
}
