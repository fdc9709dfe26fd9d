package policy

// mix64 is SplitMix64's finaliser: a bijection of uint64 with full avalanche.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

const golden = 0x9e3779b97f4a7c15

// rendezvous is highest-random-weight hashing over the usable units of a pool: a key goes to
// the active, non-draining unit whose weight for the key is highest. The weight of a unit
// does not depend on the other units, so activating a unit moves only the keys that now
// weigh most on it (about 1/(N+1) of them), and losing a unit moves only its own keys.
type rendezvous struct {
	salt uint64
}

func newRendezvous(seed uint64) rendezvous {
	return rendezvous{salt: mix64(seed + golden)}
}

// pick returns the usable unit of units with the highest weight for h, or -1 if none is
// usable. Weights of distinct units differ for every h (mix64 is a bijection and the
// per-unit inputs are distinct), so there are no ties.
func (r rendezvous) pick(h uint64, units []UnitView) int {
	hm := mix64(h ^ r.salt)
	best, bestW := -1, uint64(0)
	for i := range units {
		if !units[i].usable() {
			continue
		}
		if w := r.weight(hm, i); best < 0 || w > bestW {
			best, bestW = i, w
		}
	}
	return best
}

// weight is unit id's weight for a key whose salted mix is hm.
func (rendezvous) weight(hm uint64, id int) uint64 {
	return mix64(hm ^ (uint64(id)+1)*golden)
}
