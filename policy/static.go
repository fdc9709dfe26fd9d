package policy

// Static is a fixed pool sized for the peak ("static"): the engine activates units
// 0..Units()-1 at start and never scales. Flows are placed with perflow's sticky rendezvous
// hashing over those of the units that are active and not draining; a flow whose Current
// unit is one of them and still active stays there. Load and Capacity are ignored, and the
// decision never asks for a unit (ScaleOut is always false). With no usable unit the
// decision is Unit -1.
//
// Static keeps no state beyond its configuration and is safe for concurrent use.
type Static struct {
	hash  rendezvous
	units int
}

// NewStatic returns a static policy over units units (at least 1), hashing with seed.
func NewStatic(units int, seed uint64) *Static {
	return &Static{hash: newRendezvous(seed), units: max(units, 1)}
}

// Name returns "static".
func (*Static) Name() string { return "static" }

// PerPacket returns false.
func (*Static) PerPacket() bool { return false }

// Elastic returns false: the pool is fixed.
func (*Static) Elastic() bool { return false }

// Units returns the size of the fixed pool.
func (s *Static) Units() int { return s.units }

// Place decides for a new flowlet.
func (s *Static) Place(f Flowlet, pool *Pool) Decision {
	units, _ := pool.view()
	if len(units) > s.units {
		units = units[:s.units]
	}
	if c := f.current(units); c >= 0 && units[c].Active {
		return Decision{Unit: c}
	}
	return Decision{Unit: s.hash.pick(f.Hash, units)}
}
