package trace

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ProfileHelp documents the syntax ParseProfile reads.
const ProfileHelp = `A load profile scales the flow arrival rate over the trace: TERM[+TERM...], the terms
multiplied together, each NAME or NAME:KEY=VALUE,KEY=VALUE:
  constant:level=1              a constant level (the default profile)
  ramp:from=0.1,to=1            linear from FROM at the start to TO at the end
  diurnal:min=0.2,max=1,days=1  a sinusoidal day compressed into the trace: MIN at the start
                                and end, MAX in the middle (DAYS such days in the trace)
  bursts:x=4,len=100ms,rate=1   bursts of X times the load for LEN, RATE bursts a second:
                                one at a fixed pseudo-random place of each 1/RATE slot
Example: diurnal:min=0.2,max=1+bursts:x=3,len=50ms,rate=2. Values hold no '+'.`

// profTerm is one factor of a Profile.
type profTerm struct {
	kind           string
	a, b           float64 // constant: level; ramp: from, to; diurnal: min, max; bursts: x
	days           float64 // diurnal
	length, period float64 // bursts: seconds
}

// Profile is a load profile: a pure function of time that scales the arrival rate of a
// Workload's flows. ParseProfile makes one; the zero Profile is constant 1.
type Profile struct {
	spec  string
	terms []profTerm
}

var profKeys = map[string][]string{
	"constant": {"level"},
	"ramp":     {"from", "to"},
	"diurnal":  {"min", "max", "days"},
	"bursts":   {"x", "len", "rate"},
}

// ParseProfile reads a profile (see ProfileHelp) and returns it, or a one-line error.
func ParseProfile(spec string) (Profile, error) {
	p := Profile{spec: spec}
	if strings.TrimSpace(spec) == "" {
		return p, fmt.Errorf("profile: empty (want e.g. constant, ramp:from=0.1,to=1, diurnal, diurnal+bursts)")
	}
	for _, ts := range strings.Split(spec, "+") {
		name, params, _ := strings.Cut(strings.TrimSpace(ts), ":")
		t := profTerm{kind: name}
		switch name {
		case "constant":
			t.a = 1
		case "ramp":
			t.a, t.b = 0.1, 1
		case "diurnal":
			t.a, t.b, t.days = 0.2, 1, 1
		case "bursts":
			t.a, t.length, t.period = 4, 0.1, 1
		default:
			return p, fmt.Errorf("profile %q: unknown term %q (constant, ramp, diurnal or bursts)", spec, name)
		}
		if params != "" {
			for _, kv := range strings.Split(params, ",") {
				if err := t.set(kv); err != nil {
					return p, fmt.Errorf("profile %q: %s: %v", spec, name, err)
				}
			}
		}
		if err := t.check(); err != nil {
			return p, fmt.Errorf("profile %q: %s: %v", spec, name, err)
		}
		p.terms = append(p.terms, t)
	}
	if p.Max() == 0 {
		return p, fmt.Errorf("profile %q is 0 everywhere: no flow would arrive", spec)
	}
	return p, nil
}

func (t *profTerm) set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || !slices.Contains(profKeys[t.kind], k) {
		return fmt.Errorf("want KEY=VALUE with KEY one of %s, got %q", strings.Join(profKeys[t.kind], ", "), kv)
	}
	if k == "len" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("len=%q: want a duration > 0 (e.g. 100ms)", v)
		}
		t.length = d.Seconds()
		return nil
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || x < 0 || x > 1e6 {
		return fmt.Errorf("%s=%q: want a number from 0 to 1e6", k, v)
	}
	switch k {
	case "level", "from", "min", "x":
		t.a = x
	case "to", "max":
		t.b = x
	case "days":
		t.days = x
	case "rate":
		if x == 0 {
			return fmt.Errorf("rate=%q: want a number of bursts a second > 0", v)
		}
		t.period = 1 / x
	}
	return nil
}

func (t *profTerm) check() error {
	switch t.kind {
	case "diurnal":
		if t.a > t.b {
			return fmt.Errorf("min=%g is above max=%g", t.a, t.b)
		}
		if t.days == 0 {
			return fmt.Errorf("days must be > 0")
		}
	case "bursts":
		if t.length >= t.period {
			return fmt.Errorf("len=%gs is not shorter than 1/rate=%gs: bursts would overlap", t.length, t.period)
		}
	}
	return nil
}

// String returns the spec the profile was parsed from ("constant" for the zero Profile).
func (p Profile) String() string {
	if p.spec == "" {
		return "constant"
	}
	return p.spec
}

// Rate returns the profile's value at time t of a trace that lasts d (t and d from the
// trace's start). It depends on nothing else.
func (p Profile) Rate(t, d time.Duration) float64 {
	ts, ds := t.Seconds(), d.Seconds()
	r := 1.0
	for i := range p.terms {
		r *= p.terms[i].rate(ts, ds)
	}
	return r
}

func (t *profTerm) rate(ts, ds float64) float64 {
	frac := 0.0
	if ds > 0 {
		frac = ts / ds
	}
	switch t.kind {
	case "constant":
		return t.a
	case "ramp":
		return min(t.a+(t.b-t.a)*min(max(frac, 0), 1), max(t.a, t.b)) // min: no rounding above Max
	case "diurnal":
		return min(t.a+(t.b-t.a)*(1-math.Cos(2*math.Pi*t.days*frac))/2, t.b)
	}
	// bursts: one in each slot of length period, at an offset hashed from the slot number.
	if ts < 0 {
		return 1
	}
	k := math.Floor(ts / t.period)
	off := float64(mix64(uint64(k)+0x9e3779b97f4a7c15)>>11) / (1 << 53) * (t.period - t.length)
	if at := ts - k*t.period; at >= off && at < off+t.length {
		return t.a
	}
	return 1
}

// Max returns an upper bound of Rate over all times.
func (p Profile) Max() float64 {
	m := 1.0
	for _, t := range p.terms {
		switch t.kind {
		case "constant":
			m *= t.a
		case "bursts":
			m *= max(t.a, 1)
		default:
			m *= max(t.a, t.b)
		}
	}
	return m
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
