package trace

import (
	"embed"
	"fmt"
	"math"
	"math/rand/v2"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The published distributions, carried in the binary (see dist/README.md for sources).
//
//go:embed dist/*.cdf dist/*.txt
var distFiles embed.FS

// Dist is a distribution of positive values (flow sizes in bytes, gaps in microseconds),
// either a piecewise-linear CDF or a mixture of lognormals. It is immutable and safe for
// concurrent use.
type Dist struct {
	name string
	// Piecewise-linear CDF: p[i] = P(X <= x[i]), p from 0 to 1, both non-decreasing.
	x, p []float64
	// Lognormal mixture: cum[i] is the cumulative weight of components 0..i.
	cum, sigma, scale []float64
	mean              float64
}

// distNames are the flow-size distributions, in the order they are listed.
var distNames = []string{"websearch", "datamining", "fb_hadoop", "alistorage", "internet_edge_agh2015"}

var (
	distOnce sync.Once
	dists    map[string]*Dist
	distErr  error
)

// loadDists parses every embedded file once.
func loadDists() (map[string]*Dist, error) {
	distOnce.Do(func() {
		ents, err := distFiles.ReadDir("dist")
		if err != nil {
			distErr = err
			return
		}
		dists = map[string]*Dist{}
		for _, e := range ents {
			b, err := distFiles.ReadFile("dist/" + e.Name())
			if err != nil {
				distErr = err
				return
			}
			ext := path.Ext(e.Name())
			d, err := ParseDist(strings.TrimSuffix(e.Name(), ext), string(b), ext == ".txt")
			if err != nil {
				distErr = err
				return
			}
			dists[d.name] = d
		}
	})
	return dists, distErr
}

// DistNames returns the names of the flow-size distributions LookupDist knows.
func DistNames() []string { return slices.Clone(distNames) }

// LookupDist returns the flow-size distribution (bytes) of the given name, or a one-line
// error listing the known names.
func LookupDist(name string) (*Dist, error) {
	all, err := loadDists()
	if err != nil {
		return nil, err
	}
	if slices.Contains(distNames, name) {
		return all[name], nil
	}
	return nil, fmt.Errorf("unknown flow-size distribution %q (known: %s)", name, strings.Join(distNames, ", "))
}

// intraflowGaps returns the distribution of gaps between a flow's packets (microseconds).
func intraflowGaps() *Dist {
	all, err := loadDists()
	if err != nil {
		panic(err) // the embedded files are tested
	}
	return all["intraflow_gap"]
}

// ParseDist parses a distribution in the format of the files of dist/ (see its README): a
// CDF of "value fraction" lines, or, if mixture, lognormal components "weight s scale".
// Lines starting with # and blank lines are skipped.
func ParseDist(name, text string, mixture bool) (*Dist, error) {
	d := &Dist{name: name}
	var w []float64
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		want := 2
		if mixture {
			want = 3
		}
		var v [3]float64
		if len(f) != want {
			return nil, fmt.Errorf("distribution %s: line %d: want %d numbers, got %q", name, i+1, want, line)
		}
		for j, s := range f {
			x, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
				return nil, fmt.Errorf("distribution %s: line %d: %q is not a finite number >= 0", name, i+1, s)
			}
			v[j] = x
		}
		if mixture {
			if v[0] == 0 || v[1] == 0 || v[2] == 0 {
				return nil, fmt.Errorf("distribution %s: line %d: weight, s and scale must be > 0", name, i+1)
			}
			w, d.sigma, d.scale = append(w, v[0]), append(d.sigma, v[1]), append(d.scale, v[2])
			continue
		}
		if n := len(d.x); n > 0 && (v[0] < d.x[n-1] || v[1] < d.p[n-1]) {
			return nil, fmt.Errorf("distribution %s: line %d: values and fractions must not decrease", name, i+1)
		}
		if v[1] > 1 {
			return nil, fmt.Errorf("distribution %s: line %d: fraction %g is above 1", name, i+1, v[1])
		}
		d.x, d.p = append(d.x, v[0]), append(d.p, v[1])
	}
	if mixture {
		return d.finishMixture(w)
	}
	return d.finishCDF()
}

func (d *Dist) finishCDF() (*Dist, error) {
	if len(d.x) == 0 {
		return nil, fmt.Errorf("distribution %s: no points", d.name)
	}
	if d.p[0] > 0 { // an implicit (0, 0): interpolate from 0
		d.x, d.p = append([]float64{0}, d.x...), append([]float64{0}, d.p...)
	}
	last := d.p[len(d.p)-1]
	if last == 0 {
		return nil, fmt.Errorf("distribution %s: the last fraction is 0", d.name)
	}
	for i := range d.p { // conditional on X <= the last value
		d.p[i] /= last
	}
	d.p[len(d.p)-1] = 1
	for i := 1; i < len(d.x); i++ {
		d.mean += (d.p[i] - d.p[i-1]) * (d.x[i] + d.x[i-1]) / 2
	}
	if d.mean == 0 {
		return nil, fmt.Errorf("distribution %s: every value is 0", d.name)
	}
	return d, nil
}

func (d *Dist) finishMixture(w []float64) (*Dist, error) {
	if len(w) == 0 {
		return nil, fmt.Errorf("distribution %s: no components", d.name)
	}
	total := 0.0
	for _, x := range w {
		total += x
	}
	sum := 0.0
	for i, x := range w {
		sum += x / total
		d.cum = append(d.cum, sum)
		d.mean += x / total * d.scale[i] * math.Exp(d.sigma[i]*d.sigma[i]/2)
	}
	d.cum[len(d.cum)-1] = 1
	return d, nil
}

// Name returns the distribution's name.
func (d *Dist) Name() string { return d.name }

// Mean returns the distribution's mean.
func (d *Dist) Mean() float64 { return d.mean }

// Max returns the largest value the distribution draws, or +Inf for a mixture.
func (d *Dist) Max() float64 {
	if d.cum != nil {
		return math.Inf(1)
	}
	return d.x[len(d.x)-1]
}

// Quantile returns the value at cumulative fraction u in [0, 1) of a CDF distribution,
// interpolating linearly between its points (the inverse of CDF). For a mixture it panics:
// use Sample.
func (d *Dist) Quantile(u float64) float64 {
	if d.cum != nil {
		panic("trace: Quantile of a lognormal mixture")
	}
	// The first point with p > u; points with equal p (a jump) are passed over.
	i, _ := slices.BinarySearchFunc(d.p, u, func(p, u float64) int {
		if p <= u {
			return -1
		}
		return 1
	})
	if i >= len(d.p) {
		return d.x[len(d.x)-1]
	}
	if i == 0 {
		return d.x[0]
	}
	p0, p1 := d.p[i-1], d.p[i]
	return d.x[i-1] + (u-p0)/(p1-p0)*(d.x[i]-d.x[i-1])
}

// Sample draws a value with r: by inverse transform of a CDF, or from a component of a
// mixture.
func (d *Dist) Sample(r *rand.Rand) float64 {
	if d.cum == nil {
		return d.Quantile(r.Float64())
	}
	u, i := r.Float64(), 0
	for i < len(d.cum)-1 && u >= d.cum[i] {
		i++
	}
	return d.scale[i] * math.Exp(d.sigma[i]*r.NormFloat64())
}

// CDF returns P(X <= x).
func (d *Dist) CDF(x float64) float64 {
	if d.cum != nil {
		if x <= 0 {
			return 0
		}
		c, prev := 0.0, 0.0
		for i, cw := range d.cum {
			z := (math.Log(x) - math.Log(d.scale[i])) / d.sigma[i]
			c += (cw - prev) * 0.5 * math.Erfc(-z/math.Sqrt2)
			prev = cw
		}
		return c
	}
	if x < d.x[0] {
		return 0
	}
	for i := 1; i < len(d.x); i++ {
		if x < d.x[i] {
			return d.p[i-1] + (x-d.x[i-1])/(d.x[i]-d.x[i-1])*(d.p[i]-d.p[i-1])
		}
	}
	return 1
}
