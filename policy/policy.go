// Package policy holds the allocation policies of snf's dispatcher: the pure decision that
// says which compute unit a new flowlet (or, for perpacket, a packet) goes to, and whether the
// pool should grow.
//
// The root detects flowlets (a burst of a flow's packets separated by an idle gap); for the
// first packet of each new flowlet it asks the policy where the flowlet goes, and the
// flowlet's later packets follow that decision. The engine owns the Pool: it activates and
// retires units and keeps each unit's Load (the sum of the predicted rates of the flowlets it
// holds) up to date as flowlets start and end.
//
// The policies:
//
//   - "snf": SNF's flowlet bin-packing (best fit). A flowlet stays on the unit that holds its
//     flow's state when it fits there, else it goes to the fullest unit it fits in, so that
//     the emptier units drain and can be retired; when it fits nowhere the pool grows.
//   - "perflow": how classic NFV scales: a flow is pinned to the unit chosen by rendezvous
//     hashing when it starts and never moves while that unit lives.
//   - "perpacket": how today's serverless platforms work: every packet goes to the
//     least-loaded unit (all state must then live in the store).
//   - "static": a fixed pool sized for the peak, with perflow's sticky hashing; never scales.
//
// Policies are deterministic functions of their inputs: no I/O, no goroutines, no clock, no
// randomness beyond Options.Seed. The only state any policy keeps is perpacket's round-robin
// cursor; a policy value is therefore meant to be used by one goroutine (the root's), and
// Place never allocates.
package policy

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// UnitView is the policy's view of one unit.
type UnitView struct {
	ID       int     // stable unit id; must equal the unit's index in Pool.Units
	Active   bool    // active units take work; inactive ones are in the pool but off (cold)
	Draining bool    // being retired: takes no new flowlets (see each policy for live flows)
	Capacity float64 // packets/s the unit sustains for this chain (calibrated)
	Load     float64 // predicted load: sum of the rates of the flowlets it holds (packets/s)
	// Backlog is the packets sent to the unit that it has not served yet, as the engine
	// last saw them (see Pool.MaxBacklog).
	Backlog float64
}

// Pool is the view of all units; the engine owns it and updates Load as flowlets start and
// end. Before it asks about a new flowlet, the engine must have removed the rate of the
// flow's previous flowlet (which has ended: that is what made this one new) from its unit's
// Load, so that Load never counts the flowlet being placed.
type Pool struct {
	Units []UnitView
	// Target is the target utilisation in (0,1], e.g. 0.8: a unit is "full" at
	// Target*Capacity. A value outside (0,1] (including the zero value) is taken as 1;
	// Validate reports it.
	Target float64
	// MaxBacklog: a unit whose Backlog exceeds it takes no new flowlet, whatever its Load
	// (its queue already holds more than the latency objective allows: the load prediction
	// was wrong). 0: Backlog is not looked at.
	MaxBacklog float64
	// Saturated is set by the live engine at each tick: every read of the input since the
	// previous tick came back full without waiting for its packets (port.Waiter: not a
	// paced replay that slept, nor a pipe that blocked) — the input had more packets
	// waiting: a replay at full speed, or a pool that fell behind. The load measured is
	// then what the pool took, a lower bound of what is offered, and the controller does
	// not shrink the pool on it. (The simulator, whose input is virtual time, never sets
	// it.)
	Saturated bool
}

// Flowlet describes a new flowlet to place.
type Flowlet struct {
	Hash uint64 // the dispatch key's hash (direction-independent, stable)
	// Rate is the predicted packets/s of this flowlet (estimated from the flow's history).
	// A negative or NaN rate is taken as 0.
	Rate float64
	// Current is the unit holding the flow's state, or -1 for a new flow. An id outside the
	// pool is treated as -1.
	Current int
	// First marks the flow's first flowlet. It is informational: the four policies decide
	// from Current alone (a first flowlet has Current -1).
	First bool
}

// Decision is where a flowlet goes.
type Decision struct {
	Unit     int  // the unit to use (an active unit), or -1 if none can take it
	ScaleOut bool // the policy wants one more unit activated (the engine decides whether it can)
}

// Policy decides where new flowlets go.
type Policy interface {
	// Name is the policy's name as given to New.
	Name() string
	// Place decides for a new flowlet. It does not modify pool, does not keep it, and does
	// not allocate. A nil pool is an empty pool.
	Place(f Flowlet, pool *Pool) Decision
	// PerPacket reports whether every packet (not only a flowlet's first) is placed anew.
	PerPacket() bool
	// Elastic reports whether the engine may grow and shrink the pool for this policy.
	Elastic() bool
}

// Options configure a policy.
type Options struct {
	// Seed salts the hashing of perflow and static (0 is a valid seed). Two policies with
	// the same seed make the same decisions.
	Seed uint64
	// StaticUnits is the size of static's fixed pool (required, >= 1, for "static"): it
	// uses units 0..StaticUnits-1, which the engine activates at start.
	StaticUnits int
}

// Sized is implemented by policies that run on a fixed pool (static): Units is the number of
// units the engine activates at start and keeps for the whole run.
type Sized interface {
	Units() int
}

var names = []string{"snf", "perflow", "perpacket", "static"}

// Names returns the known policy names, in a fixed order ("snf" first).
func Names() []string {
	return append([]string(nil), names...)
}

// New returns the policy called name.
func New(name string, opts Options) (Policy, error) {
	switch name {
	case "snf":
		return &SNF{}, nil
	case "perflow":
		return NewPerFlow(opts.Seed), nil
	case "perpacket":
		return &PerPacket{}, nil
	case "static":
		if opts.StaticUnits < 1 {
			return nil, fmt.Errorf("policy: static needs StaticUnits >= 1, got %d", opts.StaticUnits)
		}
		return NewStatic(opts.StaticUnits, opts.Seed), nil
	}
	return nil, fmt.Errorf("policy: unknown policy %q (known: %s)", name, strings.Join(names, ", "))
}

// Validate reports the first inconsistency of the pool that Place would silently work
// around: a Target outside (0,1], a unit whose ID is not its index, a negative, infinite or
// NaN Capacity, a NaN Load.
func (p *Pool) Validate() error {
	if p == nil {
		return errors.New("policy: nil pool")
	}
	if !(p.Target > 0 && p.Target <= 1) {
		return fmt.Errorf("policy: pool target %v not in (0,1]", p.Target)
	}
	for i := range p.Units {
		u := &p.Units[i]
		switch {
		case u.ID != i:
			return fmt.Errorf("policy: unit at index %d has ID %d", i, u.ID)
		case !(u.Capacity >= 0 && u.Capacity <= math.MaxFloat64):
			return fmt.Errorf("policy: unit %d capacity %v", i, u.Capacity)
		case math.IsNaN(u.Load):
			return fmt.Errorf("policy: unit %d load is NaN", i)
		}
	}
	return nil
}

// view returns the pool's units and its effective target (1 when Target is not in (0,1]).
func (p *Pool) view() ([]UnitView, float64) {
	if p == nil {
		return nil, 1
	}
	t := p.Target
	if !(t > 0 && t <= 1) {
		t = 1
	}
	return p.Units, t
}

// rate returns f's rate with negative and NaN rates taken as 0.
func (f *Flowlet) rate() float64 {
	if f.Rate >= 0 {
		return f.Rate
	}
	return 0
}

// current returns f.Current if it names a unit of units, else -1.
func (f *Flowlet) current(units []UnitView) int {
	if f.Current >= 0 && f.Current < len(units) {
		return f.Current
	}
	return -1
}

// usable reports whether u may take a new flowlet: active and not draining.
func (u *UnitView) usable() bool { return u.Active && !u.Draining }

// fits reports whether rate more packets/s keep u within target*Capacity.
func (u *UnitView) fits(rate, target float64) bool {
	return u.Load+rate <= target*u.Capacity
}

// backlogged reports whether u's backlog is past the pool's MaxBacklog.
func (p *Pool) backlogged(u *UnitView) bool {
	return p.MaxBacklog > 0 && u.Backlog > p.MaxBacklog
}

// measured reports whether u's utilisation Load/Capacity is meaningful: Capacity positive
// and finite, Load not NaN. A unit that is not measured counts as infinitely utilised.
func (u *UnitView) measured() bool {
	return u.Capacity > 0 && u.Capacity <= math.MaxFloat64 && u.Load == u.Load
}

// lessUtilised reports whether u's utilisation is strictly lower than v's. It compares
// Load/Capacity by cross-multiplication (no division in the scans); equal loads on equal
// capacities always tie, which perpacket's round robin relies on.
func (u *UnitView) lessUtilised(v *UnitView) bool {
	if !u.measured() {
		return false
	}
	if !v.measured() {
		return true
	}
	return u.Load*v.Capacity < v.Load*u.Capacity
}

// leastLoaded returns the usable unit with the lowest utilisation, ties to the lowest id, or
// -1 when no unit is usable.
func leastLoaded(units []UnitView) int {
	best := -1
	for i := range units {
		u := &units[i]
		if u.usable() && (best < 0 || u.lessUtilised(&units[best])) {
			best = i
		}
	}
	return best
}
