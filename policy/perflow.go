package policy

// PerFlow is sticky per-flow hashing ("perflow"), how classic NFV scales. A flowlet whose
// Current unit is still active stays there, even when that unit is draining or over its
// target: a live flow never moves (so a draining unit retires only when its flows end).
// Otherwise (a new flow, or one whose unit is gone) it goes to the unit chosen by rendezvous
// hashing of Hash over the active, non-draining units, so that growing the pool from N to
// N+1 units moves about 1/(N+1) of new flows' placements and retiring a unit moves only the
// flows it held.
//
// The decision asks for one more unit (ScaleOut) when the chosen unit cannot take the
// flowlet within Target*Capacity: the flowlet still goes there; the engine grows the pool so
// that later flows spread onto the new unit. With no usable unit the decision is Unit -1,
// ScaleOut.
//
// PerFlow keeps no state beyond its seed and is safe for concurrent use.
type PerFlow struct {
	hash rendezvous
}

// NewPerFlow returns a perflow policy hashing with seed.
func NewPerFlow(seed uint64) *PerFlow {
	return &PerFlow{hash: newRendezvous(seed)}
}

// Name returns "perflow".
func (*PerFlow) Name() string { return "perflow" }

// PerPacket returns false.
func (*PerFlow) PerPacket() bool { return false }

// Elastic returns true.
func (*PerFlow) Elastic() bool { return true }

// Place decides for a new flowlet.
func (p *PerFlow) Place(f Flowlet, pool *Pool) Decision {
	units, target := pool.view()
	rate := f.rate()
	c := f.current(units)
	if c < 0 || !units[c].Active {
		c = p.hash.pick(f.Hash, units)
		if c < 0 {
			return Decision{Unit: -1, ScaleOut: true}
		}
	}
	return Decision{Unit: c, ScaleOut: !units[c].fits(rate, target)}
}
