package policy

// PerPacket places every packet anew ("perpacket"), as today's serverless platforms do, which
// forces all state into the store. A packet goes to the least-utilised (Load/Capacity)
// active, non-draining unit. Ties are broken round robin: the scan starts at a cursor, the
// first tied unit from there wins, and the cursor moves just past the chosen unit. The
// cursor is the only state any policy keeps; it starts at 0, so a fresh PerPacket given the
// same sequence of calls makes the same sequence of decisions. It is not safe for concurrent
// use.
//
// The decision asks for one more unit (ScaleOut) when no usable unit can take Rate more
// within Target*Capacity (every one is over target); the packet still goes to the least
// utilised. With no usable unit the decision is Unit -1, ScaleOut, and the cursor is kept.
type PerPacket struct {
	next int // where the next scan starts
}

// Name returns "perpacket".
func (*PerPacket) Name() string { return "perpacket" }

// PerPacket returns true.
func (*PerPacket) PerPacket() bool { return true }

// Elastic returns true.
func (*PerPacket) Elastic() bool { return true }

// Place decides for a packet.
func (p *PerPacket) Place(f Flowlet, pool *Pool) Decision {
	units, target := pool.view()
	n := len(units)
	if n == 0 {
		return Decision{Unit: -1, ScaleOut: true}
	}
	rate := f.rate()
	start := p.next
	if start < 0 || start >= n {
		start = 0
	}
	best, fit := -1, false
	for k, i := 0, start; k < n; k, i = k+1, i+1 {
		if i == n {
			i = 0
		}
		u := &units[i]
		if !u.usable() {
			continue
		}
		fit = fit || u.fits(rate, target)
		if best < 0 || u.lessUtilised(&units[best]) {
			best = i
		}
	}
	if best < 0 {
		return Decision{Unit: -1, ScaleOut: true}
	}
	p.next = best + 1
	return Decision{Unit: best, ScaleOut: !fit}
}
