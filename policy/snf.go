package policy

// SNF is SNF's flowlet bin-packing policy ("snf"). For a new flowlet of rate r:
//
//  1. If the flow's Current unit is active, not draining, and Load+r <= Target*Capacity,
//     the flowlet stays there (no state move).
//  2. Otherwise it goes to the active, non-draining unit it fits in that is fullest, that is,
//     has the least headroom Target*Capacity-Load left (Best Fit; with equal capacities, the
//     normal case for one chain's calibrated units, simply the highest Load); ties go to the
//     lowest id. Packing onto the fullest units lets the emptier ones drain and be retired.
//  3. If it fits nowhere, it goes to the least-utilised (Load/Capacity) active, non-draining
//     unit, ties to the lowest id, so that its packets are not lost, and the decision asks
//     for one more unit (ScaleOut). With no such unit the decision is Unit -1, ScaleOut.
//
// Draining and inactive units never get a flowlet. A flowlet larger than an empty unit's
// Target*Capacity fits nowhere, so it always asks for a unit (the engine can give each such
// elephant a unit of its own).
//
// An engine that activates a unit right away on ScaleOut and asks again gets exactly the
// Best Fit packing. While no flowlet ends, any two of its units then hold more than one
// unit's worth (the later one was opened for a flowlet that did not fit in the earlier), so
// with equal capacities it uses at most max(1, ceil(2*total/(Target*Capacity))-1) units, and
// at most floor(1.7*OPT) (Dósa and Sgall, 2014), OPT being the fewest units that can hold
// the flowlets.
//
// SNF keeps no state; its zero value is ready to use and safe for concurrent use.
type SNF struct{}

// Name returns "snf".
func (*SNF) Name() string { return "snf" }

// PerPacket returns false: only a flowlet's first packet is placed.
func (*SNF) PerPacket() bool { return false }

// Elastic returns true.
func (*SNF) Elastic() bool { return true }

// Place decides for a new flowlet.
func (*SNF) Place(f Flowlet, pool *Pool) Decision {
	units, target := pool.view()
	rate := f.rate()
	if c := f.current(units); c >= 0 {
		if u := &units[c]; u.usable() && u.fits(rate, target) && !pool.backlogged(u) {
			return Decision{Unit: c}
		}
	}
	best, bestRoom := -1, 0.0
	for i := range units {
		u := &units[i]
		if !u.usable() || !u.fits(rate, target) || pool.backlogged(u) {
			continue
		}
		if room := target*u.Capacity - u.Load; best < 0 || room < bestRoom {
			best, bestRoom = i, room
		}
	}
	if best >= 0 {
		return Decision{Unit: best}
	}
	return Decision{Unit: leastLoaded(units), ScaleOut: true}
}

// MovesFlows returns true: snf moves a flow's state between units at flowlet boundaries, so
// the engine moves a draining unit's idle flows away instead of waiting for them to end.
func (*SNF) MovesFlows() bool { return true }
