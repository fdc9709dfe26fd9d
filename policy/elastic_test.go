package policy

import (
	"math"
	"testing"
)

// A flow of the elasticity simulation: it arrives at a step and runs flowlets separated by
// idle gaps, at one rate.
type simFlow struct {
	arrive int
	hash   uint64
	rate   float64
	dur    []int // duration of each flowlet, in steps
	gap    []int // idle gap after each flowlet but the last
}

type simStats struct {
	avgActive, avgLB float64 // time averages of active units and of ceil(load/limit)
	peakActive       int
	overSteps        int // unit-steps with Load over Target*Capacity
	moves            int // flowlets placed away from the unit holding their flow's state
}

// simulate runs flows through policy p with an engine that grows the pool on ScaleOut (as
// engineSim) and shrinks it: when the load would fit in one unit fewer at 75% of target, it
// drains the least-loaded unit, and it retires a draining unit once no flow's state is on it
// (a flow's state stays on its unit between flowlets, until its next flowlet moves it or
// the flow ends).
func simulate(t *testing.T, p Policy, flows []simFlow, steps, size int) simStats {
	const capacity, target = 1000.0, 0.8
	e := newEngineSim(size, capacity, target)
	type event struct{ flow, flowlet int }
	starts := make([][]event, steps+1000)
	ends := make([][]event, steps+1000)
	for i, f := range flows {
		starts[f.arrive] = append(starts[f.arrive], event{i, 0})
	}
	cur := make([]int, len(flows))
	holds := make([]int, size) // flows whose state is on each unit
	var st simStats
	for now := range steps {
		for _, ev := range ends[now] {
			f := &flows[ev.flow]
			e.pool.Units[cur[ev.flow]].Load -= f.rate
			if ev.flowlet+1 == len(f.dur) {
				holds[cur[ev.flow]]--
				continue
			}
			at := now + f.gap[ev.flowlet]
			starts[at] = append(starts[at], event{ev.flow, ev.flowlet + 1})
		}
		for _, ev := range starts[now] {
			f := &flows[ev.flow]
			fl := Flowlet{Hash: f.hash, Rate: f.rate, Current: -1, First: ev.flowlet == 0}
			if !fl.First {
				fl.Current = cur[ev.flow]
			}
			u := e.place(t, p, fl)
			if fl.Current != u {
				if fl.Current >= 0 {
					holds[fl.Current]--
					st.moves++
				}
				holds[u]++
				cur[ev.flow] = u
			}
			at := now + f.dur[ev.flowlet]
			ends[at] = append(ends[at], event{ev.flow, ev.flowlet})
		}
		// scale in
		total, usable, least := 0.0, 0, -1
		for i := range e.pool.Units {
			u := &e.pool.Units[i]
			if !u.Active {
				continue
			}
			if u.Draining && holds[i] == 0 {
				if math.Abs(u.Load) > 1e-6 {
					t.Fatalf("unit %d retired with load %v", i, u.Load)
				}
				u.Active, u.Draining, u.Load = false, false, 0
				continue
			}
			total += u.Load
			if !u.Draining {
				usable++
				if least < 0 || u.Load < e.pool.Units[least].Load {
					least = i
				}
			}
		}
		if p.Elastic() && usable > 1 && total < float64(usable-1)*e.limit*0.75 {
			e.pool.Units[least].Draining = true
		}
		active := e.active()
		st.avgActive += float64(active)
		st.avgLB += math.Ceil(total / e.limit)
		st.peakActive = max(st.peakActive, active)
		for _, u := range e.pool.Units {
			if u.Active && u.Load > e.limit+1e-9 {
				st.overSteps++
			}
		}
	}
	st.avgActive /= float64(steps)
	st.avgLB /= float64(steps)
	return st
}

// TestElasticTracksDemand drives snf and perflow with the same flows, whose arrival rate
// rises and falls (a sine over the run), through an engine that grows and shrinks the pool,
// and checks that snf keeps every unit within target, needs fewer units on average than
// perflow, and stays close to the ideal ceil(load/(Target*Capacity)) at every instant.
func TestElasticTracksDemand(t *testing.T) {
	const steps, size = 3000, 200
	r := rng(7)
	var flows []simFlow
	for now := range steps - 400 {
		lambda := 8 + 6*math.Sin(2*math.Pi*float64(now)/1000)
		k := int(lambda)
		if r.float() < lambda-float64(k) {
			k++
		}
		for range k {
			f := simFlow{arrive: now, hash: r.next(), rate: 5 + 55*r.float()}
			n := 1 + r.intn(10)
			for j := range n {
				f.dur = append(f.dur, 1+r.intn(20))
				if j+1 < n {
					f.gap = append(f.gap, 1+r.intn(10))
				}
			}
			flows = append(flows, f)
		}
	}
	s := simulate(t, &SNF{}, flows, steps, size)
	pf := simulate(t, NewPerFlow(1), flows, steps, size)
	t.Logf("%d flows; ideal avg %.2f units", len(flows), s.avgLB)
	t.Logf("snf:     avg %.2f units (%.3f ideal), peak %d, %d unit-steps over target, %d state moves",
		s.avgActive, s.avgActive/s.avgLB, s.peakActive, s.overSteps, s.moves)
	t.Logf("perflow: avg %.2f units (%.3f ideal), peak %d, %d unit-steps over target, %d state moves",
		pf.avgActive, pf.avgActive/pf.avgLB, pf.peakActive, pf.overSteps, pf.moves)
	if s.overSteps != 0 {
		t.Errorf("snf: %d unit-steps over target", s.overSteps)
	}
	if s.avgActive >= pf.avgActive {
		t.Errorf("snf averaged %.2f units, perflow %.2f: want snf fewer", s.avgActive, pf.avgActive)
	}
	if s.avgActive > 1.5*s.avgLB+1 {
		t.Errorf("snf averaged %.2f units for an ideal %.2f", s.avgActive, s.avgLB)
	}
}
