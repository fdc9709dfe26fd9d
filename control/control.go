// Package control is the elastic runtime's controller: at every tick it measures the load
// each unit got, decides which units take new flowlets, which drain and which retire, and
// records what the provider spends (unit-seconds). Activations happen between ticks, when
// the policy asks for a unit (ScaleOut).
//
// The controller is a deterministic component: it sees only what the engine passes in (the
// time since the last tick, the packets sent to each unit, the flows each unit holds) and
// changes only the pool's flags, so that the live engine (wall-clock ticks) and the
// simulator (virtual time) drive the same decisions.
package control

import (
	"math"
	"time"

	"github.com/snf-dev/snf/policy"
)

// Config configures a Controller.
type Config struct {
	// MinUnits and MaxUnits bound the active units (MinUnits >= 1).
	MinUnits, MaxUnits int
	// Target is the utilisation a unit is filled to, in (0,1].
	Target float64
	// Capacity is the packets/s one unit sustains for the chain.
	Capacity float64
	// Elastic: the pool may grow and shrink (false: a fixed pool, static).
	Elastic bool
	// Stateless: units hold no flow state (perpacket keeps it in the store), so a unit may
	// retire whatever flows were last sent to it.
	Stateless bool
	// IdleTicks is how many ticks a unit must get no packet before it can retire (default 2).
	IdleTicks int
	// ScaleOuts is the most units ScaleOut activates between two ticks (default 1).
	ScaleOuts int
	// ScaleOnMeasured: ScaleOut refuses while the load measured over the last interval fits
	// in the units taking work at Target. The policy then places the flowlet on its least
	// utilised unit. Between ticks the pool's Load is a prediction (measured at the tick plus
	// the flows placed since, minus none of those that ended), which runs ahead of the truth;
	// with this, growth is decided on measurements and placement on predictions.
	ScaleOnMeasured bool
	// BusyAfter: a unit that has drained for this many ticks and still holds flows has its
	// running flowlets moved too (root.Evacuate with busy), so that a pool whose flows never
	// pause for the flowlet gap still shrinks. 0: only idle flows move.
	BusyAfter int
}

// Sample is the pool at one tick.
type Sample struct {
	At      time.Duration // since the start
	Active  int
	Offered float64 // packets/s sent to the units since the previous tick
	// Saturated: the input had more packets waiting at every read of the interval
	// (policy.Pool.Saturated): Offered is what the pool took.
	Saturated bool
}

// Controller decides the pool's size. It is driven by one goroutine.
type Controller struct {
	cfg      Config
	lastSent []uint64
	rate     []float64 // by unit: measured packets/s, smoothed (see Tick)
	idle     []int
	drained  []int // by unit: ticks spent draining
	smoothed float64
	offered  float64 // packets/s measured over the last interval
	scaled   int
	unitSec  float64
	min, max int
	timeline []Sample
}

// New returns a controller for a pool of cfg.MaxUnits units.
func New(cfg Config) *Controller {
	cfg.MaxUnits = max(cfg.MaxUnits, 1)
	cfg.MinUnits = min(max(cfg.MinUnits, 1), cfg.MaxUnits)
	if !(cfg.Target > 0 && cfg.Target <= 1) {
		cfg.Target = 0.8
	}
	if cfg.IdleTicks <= 0 {
		cfg.IdleTicks = 2
	}
	if cfg.ScaleOuts <= 0 {
		cfg.ScaleOuts = 1
	}
	return &Controller{cfg: cfg, lastSent: make([]uint64, cfg.MaxUnits), rate: make([]float64, cfg.MaxUnits),
		idle: make([]int, cfg.MaxUnits), drained: make([]int, cfg.MaxUnits), min: math.MaxInt}
}

// Initial returns whether unit i is active at the start: the first MinUnits of an elastic
// pool, every unit of a fixed one.
func (c *Controller) Initial(i int) bool { return i < c.cfg.MinUnits || !c.cfg.Elastic }

// ScaleOut activates a unit for a policy that asked for one: a draining unit taken back
// (it is active and warm already: it costs nothing more), else an inactive unit. At most
// Config.ScaleOuts units start per tick, so that a burst of flowlets that fit nowhere does
// not start the whole pool at once. It returns the unit, or -1.
func (c *Controller) ScaleOut(pool *policy.Pool) int {
	if !c.cfg.Elastic {
		return -1
	}
	if c.cfg.ScaleOnMeasured && c.offered > 0 {
		taking := 0
		for i := range pool.Units {
			if v := &pool.Units[i]; v.Active && !v.Draining {
				taking++
			}
		}
		if c.offered <= float64(taking)*c.cfg.Target*c.cfg.Capacity && !allBacklogged(pool) {
			return -1
		}
	}
	for i := range pool.Units {
		if v := &pool.Units[i]; v.Active && v.Draining {
			v.Draining = false
			return i
		}
	}
	if c.scaled >= c.cfg.ScaleOuts {
		return -1
	}
	for i := range pool.Units {
		if v := &pool.Units[i]; !v.Active {
			v.Active, v.Draining, v.Load = true, false, 0
			c.scaled++
			c.idle[i] = 0
			return i
		}
	}
	return -1
}

// Tick runs the controller at time at (since the start), dt after the previous tick. sent
// holds the packets sent to each unit since the start (cumulative); held(i) returns the
// flows whose state unit i holds. Tick sets each unit's load to its measured rate, marks the least
// loaded unit draining while the offered load fits in fewer units (unless the pool is
// saturated: policy.Pool.Saturated), retires draining units
// that hold no flows and went idle, and accounts the unit-seconds of the interval.
func (c *Controller) Tick(at time.Duration, dt time.Duration, pool *policy.Pool, sent []uint64, held func(i int) int) {
	if dt <= 0 {
		return
	}
	sec := dt.Seconds()
	c.scaled = 0
	// A unit's measured rate is smoothed over a time constant of 100 packets at full
	// capacity, so that a tick too short to see many packets (a slow unit, a fast tick)
	// does not make the load jump between 0 and many times the truth; a tick that sees
	// hundreds of packets per unit takes its measure as is.
	alpha := 1.0
	if c.cfg.Capacity > 0 {
		alpha = -math.Expm1(-sec * c.cfg.Capacity / 100)
	}
	active, offered := 0, 0.0
	for i := range pool.Units {
		v := &pool.Units[i]
		d := sent[i] - c.lastSent[i]
		c.lastSent[i] = sent[i]
		offered += float64(d) / sec
		c.rate[i] += alpha * (float64(d)/sec - c.rate[i])
		if d == 0 {
			c.idle[i]++
		} else {
			c.idle[i] = 0
		}
		if !v.Active {
			continue
		}
		// Load is measured: the packets/s the unit was sent (smoothed as above). Until
		// the next tick the root adjusts it as it places flowlets (it moves a flow's
		// predicted rate from the unit it leaves to the one it joins, and adds new flows'),
		// so that Load counts the flows that are running, not the flowlets ever placed.
		v.Load = c.rate[i]
		if c.cfg.Stateless {
			v.Load = 0 // the root adds each packet's share (root.Config.Tick)
		}
		active++
	}
	// The interval just ended was spent with the units active during it.
	c.unitSec += float64(active) * sec
	c.min, c.max = min(c.min, active), max(c.max, active)
	c.smoothed = (c.smoothed + offered) / 2
	c.offered = offered
	if c.cfg.Elastic {
		// Drain: while the smoothed offered load fits in fewer units than take work, the
		// least-loaded one takes no new flowlets; it retires once it holds no flow (under a
		// policy that moves flows, the engine moves its idle flows away) and got no packet
		// for IdleTicks ticks.
		taking, least := 0, -1
		for i := range pool.Units {
			if v := &pool.Units[i]; v.Active && !v.Draining {
				taking++
				if least < 0 || c.rate[i] < c.rate[least] {
					least = i
				}
			}
		}
		// Not while the pool is saturated (Pool.Saturated): the input waits on the pool, so
		// the load measured is what the pool took, not what it is offered — a drain then
		// moves flows (handovers that stall the units) for load that is still there, and
		// the pool grows back at once.
		need := max(c.cfg.MinUnits, int(math.Ceil(c.smoothed/(c.cfg.Target*c.cfg.Capacity))))
		if taking > need && least >= 0 && !pool.Saturated {
			pool.Units[least].Draining = true
			taking--
		}
		for i := len(pool.Units) - 1; i >= 0 && active > c.cfg.MinUnits; i-- {
			v := &pool.Units[i]
			if !v.Active || !v.Draining || c.idle[i] < c.cfg.IdleTicks {
				continue
			}
			if !c.cfg.Stateless && held(i) > 0 {
				continue
			}
			v.Active, v.Draining, v.Load = false, false, 0
			active--
		}
		// Never leave every active unit draining.
		if taking == 0 {
			for i := range pool.Units {
				if v := &pool.Units[i]; v.Active {
					v.Draining = false
					break
				}
			}
		}
	}
	for i := range pool.Units {
		if v := &pool.Units[i]; v.Active && v.Draining {
			c.drained[i]++
		} else {
			c.drained[i] = 0
		}
	}
	c.timeline = append(c.timeline, Sample{At: at, Active: active, Offered: offered, Saturated: pool.Saturated})
}

// Active returns the units active at the last Tick (0 before the first).
func (c *Controller) Active() int {
	if len(c.timeline) == 0 {
		return 0
	}
	return c.timeline[len(c.timeline)-1].Active
}

// Draining calls fn for each active unit that is draining, with busy set once it has
// drained for Config.BusyAfter ticks (its running flowlets should move too).
func (c *Controller) Draining(pool *policy.Pool, fn func(i int, busy bool)) {
	for i := range pool.Units {
		if v := &pool.Units[i]; v.Active && v.Draining {
			fn(i, c.cfg.BusyAfter > 0 && c.drained[i] >= c.cfg.BusyAfter)
		}
	}
}

// Summary is what the controller recorded.
type Summary struct {
	UnitSeconds        float64
	UnitsMin, UnitsMax int
	UnitsMean          float64 // over ticks
	Timeline           []Sample
}

// Summary returns the unit-seconds, the active units' range and the timeline so far.
func (c *Controller) Summary() Summary {
	s := Summary{UnitSeconds: c.unitSec, UnitsMin: c.min, UnitsMax: c.max, Timeline: c.timeline}
	if len(c.timeline) == 0 {
		s.UnitsMin = 0
		return s
	}
	sum := 0
	for _, t := range c.timeline {
		sum += t.Active
	}
	s.UnitsMean = float64(sum) / float64(len(c.timeline))
	return s
}

// allBacklogged reports whether every unit taking work is past the pool's MaxBacklog (the
// measured load may fit, but the units cannot take more now).
func allBacklogged(pool *policy.Pool) bool {
	if pool.MaxBacklog <= 0 {
		return false
	}
	for i := range pool.Units {
		if v := &pool.Units[i]; v.Active && !v.Draining && v.Backlog <= pool.MaxBacklog {
			return false
		}
	}
	return true
}

// ForceScaleOut makes k more units take work at once, for a forced scale event (a test's
// scale storm, `snf run --fail scale=+K@N`): draining units are taken back first (they are
// active and warm), then inactive units are activated, lowest id first, up to the pool's
// size. It bypasses ScaleOut's limits (Config.ScaleOuts per tick, ScaleOnMeasured) and a
// fixed pool's: a fixed pool has no inactive unit, but takes back the units ForceScaleIn
// drained. It returns the units that now take work (fewer than k when the pool is full).
func (c *Controller) ForceScaleOut(pool *policy.Pool, k int) []int {
	var got []int
	for i := range pool.Units {
		if v := &pool.Units[i]; len(got) < k && v.Active && v.Draining {
			v.Draining = false
			c.drained[i] = 0
			got = append(got, i)
		}
	}
	for i := range pool.Units {
		if v := &pool.Units[i]; len(got) < k && !v.Active {
			v.Active, v.Draining, v.Load = true, false, 0
			c.idle[i] = 0
			got = append(got, i)
		}
	}
	return got
}

// ForceScaleIn marks up to k of the units taking work draining at once, the least loaded
// first (by measured rate, ties to the lowest id), for a forced scale event
// (`snf run --fail scale=-K@N`); one unit always keeps taking work. It returns the units it
// marked. What happens to their flows is the engine's and the policy's business, as for the
// units Tick drains: under a policy that moves flows the engine moves them away (the
// caller may move the running flowlets too, root.Evacuate with busy), under the others
// they stay and end where they are; a draining unit retires once it holds no flow and
// went idle (Tick), and a fixed pool's never retires (it takes no new flow until
// ForceScaleOut or a policy's ScaleOut takes it back).
func (c *Controller) ForceScaleIn(pool *policy.Pool, k int) []int {
	var taking []int
	for i := range pool.Units {
		if v := &pool.Units[i]; v.Active && !v.Draining {
			taking = append(taking, i)
		}
	}
	// Stable: equal rates keep id order.
	for a := 1; a < len(taking); a++ {
		for b := a; b > 0 && c.rate[taking[b]] < c.rate[taking[b-1]]; b-- {
			taking[b], taking[b-1] = taking[b-1], taking[b]
		}
	}
	taking = taking[:min(k, max(len(taking)-1, 0))]
	for _, i := range taking {
		pool.Units[i].Draining = true
	}
	return taking
}
