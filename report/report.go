// Package report writes an experiment's HTML report: the comparison table and plots of the
// offered load and the active units of each policy over time (one timeline), the latency
// CDFs, and the handovers over time. Plots are SVG files made with gonum.org/v1/plot; the
// page, index.html, references them and holds the table. The package knows nothing of the
// engines: the caller converts its results into a Report.
package report

import (
	"errors"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Point is one interval of a run's timeline.
type Point struct {
	At        time.Duration // end of the interval, since the start
	Offered   float64       // packets/s offered in the interval
	Oracle    int           // the oracle's units for that load (0: not known)
	Active    int           // active units
	Handovers float64       // handovers per second in the interval
	// Saturated: the input had packets waiting at every read of the interval (a live run
	// at full speed): Offered is what the pool took, and Offered and Oracle are lower
	// bounds of the load offered. The load plot marks these intervals.
	Saturated bool
}

// CDFPoint is a point of a latency CDF: the share of packets with a latency up to Latency.
type CDFPoint struct {
	Latency  time.Duration
	Fraction float64
}

// Run is one policy's results.
type Run struct {
	Name     string
	Timeline []Point
	Latency  []CDFPoint // nil: no CDF (only the table's percentiles)
}

// Report is an experiment's report.
type Report struct {
	Title string
	// Notes are lines printed above the table (input, chain, model).
	Notes []string
	// Capacity is a unit's packets/s: the load plot shows the offered load in units' worth.
	Capacity float64
	// SLO is drawn on the latency plot (0: none).
	SLO time.Duration
	// Header and Rows are the comparison table.
	Header []string
	Rows   [][]string
	Runs   []Run
	// Command is the command line that made the report (shown on the page).
	Command string
	// PNG writes the plots as PNG images instead of SVG.
	PNG bool
}

// Files written by Write besides index.html (".png" instead of ".svg" with Report.PNG).
const (
	LoadPlot      = "load.svg"
	LatencyPlot   = "latency.svg"
	HandoversPlot = "handovers.svg"
)

// Write writes index.html and the plots into dir (created if needed).
func Write(dir string, r *Report) error {
	if len(r.Runs) == 0 {
		return errors.New("report: no runs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	plots := []struct {
		name string
		make func(*Report) (*plot.Plot, error)
	}{{LoadPlot, loadPlot}, {LatencyPlot, latencyPlot}, {HandoversPlot, handoversPlot}}
	var made []string
	for _, p := range plots {
		pl, err := p.make(r)
		if err != nil {
			return fmt.Errorf("report: %s: %w", p.name, err)
		}
		if pl == nil {
			continue
		}
		name := p.name
		if r.PNG {
			name = strings.TrimSuffix(name, ".svg") + ".png"
		}
		if err := pl.Save(24*vg.Centimeter, 12*vg.Centimeter, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("report: %s: %w", name, err)
		}
		made = append(made, name)
	}
	f, err := os.Create(filepath.Join(dir, "index.html"))
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	err = page.Execute(f, struct {
		*Report
		Plots []string
	}{r, made})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("report: index.html: %w", err)
	}
	return nil
}

// palette gives each run a color and a dash pattern, so that lines stay apart in grey too.
var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
}

func style(l *plotter.Line, i int) {
	l.Color = palette[i%len(palette)]
	l.Width = vg.Points(1.5)
	if i > 0 {
		l.Dashes = []vg.Length{vg.Points(float64(2 + 2*(i%4))), vg.Points(2)}
	}
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// steps returns the points of a step function through (x[i], y[i]): each value holds over
// the interval that ends at its x.
// addRun adds run i's line through pts to p, styled and named in the legend.
func addRun(p *plot.Plot, pts plotter.XYs, i int, name string) error {
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	style(l, i)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

func steps(xs, ys []float64) plotter.XYs {
	var pts plotter.XYs
	prev := 0.0
	for i := range xs {
		pts = append(pts, plotter.XY{X: prev, Y: ys[i]}, plotter.XY{X: xs[i], Y: ys[i]})
		prev = xs[i]
	}
	return pts
}

// loadPlot: the offered load (of the first run: every run gets the same traffic) in units'
// worth, the oracle's units, and every run's active units, over time.
func loadPlot(r *Report) (*plot.Plot, error) {
	p := newPlot("Offered load and active units", "time (s)", "units")
	first := r.Runs[0].Timeline
	if len(first) == 0 {
		return nil, nil
	}
	var xs, load, oracle []float64
	for _, t := range first {
		xs = append(xs, t.At.Seconds())
		if r.Capacity > 0 {
			load = append(load, t.Offered/r.Capacity)
		}
		oracle = append(oracle, float64(t.Oracle))
	}
	if len(load) > 0 {
		l, err := plotter.NewLine(steps(xs, load))
		if err != nil {
			return nil, err
		}
		l.Color = color.Gray{0x60}
		l.Width = vg.Points(1)
		l.FillColor = color.Gray{0xe4}
		p.Add(l)
		p.Legend.Add("offered load (units' worth)", l)
	}
	if sat := saturated(first, r.Capacity); len(sat) > 0 {
		s, err := plotter.NewScatter(sat)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle.Shape = draw.TriangleGlyph{}
		s.GlyphStyle.Color = color.Black
		s.GlyphStyle.Radius = vg.Points(2.5)
		p.Add(s)
		name := "input waiting on the pool: load and oracle at least this"
		if len(r.Runs) > 1 {
			name += " (" + r.Runs[0].Name + "'s run)"
		}
		p.Legend.Add(name, s)
	}
	if first[0].Oracle > 0 {
		l, err := plotter.NewLine(steps(xs, oracle))
		if err != nil {
			return nil, err
		}
		l.Color = color.Black
		l.Width = vg.Points(1)
		l.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
		p.Add(l)
		p.Legend.Add("oracle units (per interval)", l)
	}
	for i, run := range r.Runs {
		var x, y []float64
		for _, t := range run.Timeline {
			x, y = append(x, t.At.Seconds()), append(y, float64(t.Active))
		}
		if len(x) == 0 {
			continue
		}
		if err := addRun(p, steps(x, y), i, run.Name+" active units"); err != nil {
			return nil, err
		}
	}
	p.Y.Min = 0
	return p, nil
}

// saturated returns a mark for each saturated interval of tl, at its middle: at its load
// in units' worth (its oracle's units without a capacity).
func saturated(tl []Point, capacity float64) plotter.XYs {
	var pts plotter.XYs
	prev := 0.0
	for _, t := range tl {
		x := t.At.Seconds()
		if t.Saturated {
			y := float64(t.Oracle)
			if capacity > 0 {
				y = t.Offered / capacity
			}
			pts = append(pts, plotter.XY{X: (prev + x) / 2, Y: y})
		}
		prev = x
	}
	return pts
}

// latencyPlot: each run's latency CDF, the latency on a log scale; the SLO as a vertical
// line. nil when no run has a CDF.
func latencyPlot(r *Report) (*plot.Plot, error) {
	p := newPlot("Latency CDF", "latency (µs, log scale)", "share of packets")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Left = false
	p.Legend.Top = false
	lo, hi, some := math.Inf(1), 0.0, false
	for i, run := range r.Runs {
		var pts plotter.XYs
		for _, c := range run.Latency {
			us := max(c.Latency.Seconds()*1e6, 1e-3)
			pts = append(pts, plotter.XY{X: us, Y: c.Fraction})
			lo, hi = min(lo, us), max(hi, us)
		}
		if len(pts) == 0 {
			continue
		}
		some = true
		if err := addRun(p, pts, i, run.Name); err != nil {
			return nil, err
		}
	}
	if !some {
		return nil, nil
	}
	if r.SLO > 0 {
		us := r.SLO.Seconds() * 1e6
		l, err := plotter.NewLine(plotter.XYs{{X: us, Y: 0}, {X: us, Y: 1}})
		if err != nil {
			return nil, err
		}
		l.Color = color.Black
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("SLO %s", r.SLO), l)
		lo, hi = min(lo, us), max(hi, us)
	}
	p.X.Min, p.X.Max = lo, hi*1.2
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.XOffs = -vg.Points(4)
	p.Legend.YOffs = vg.Points(4)
	return p, nil
}

// handoversPlot: each run's handovers per second over time; nil when no run has any.
func handoversPlot(r *Report) (*plot.Plot, error) {
	p := newPlot("State handovers", "time (s)", "handovers per second")
	some := false
	for i, run := range r.Runs {
		var x, y []float64
		for _, t := range run.Timeline {
			x, y = append(x, t.At.Seconds()), append(y, t.Handovers)
			some = some || t.Handovers > 0
		}
		if len(x) == 0 {
			continue
		}
		if err := addRun(p, steps(x, y), i, run.Name); err != nil {
			return nil, err
		}
	}
	if !some {
		return nil, nil
	}
	p.Y.Min = 0
	return p, nil
}

var page = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #eee; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.6em; white-space: pre-wrap; }
img { display: block; margin: 1em 0; max-width: 100%; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{if .Command}}<pre>{{.Command}}</pre>{{end}}
{{if .Notes}}<pre>{{range .Notes}}{{.}}
{{end}}</pre>{{end}}
<h2>Comparison</h2>
<table>
<tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
<h2>Plots</h2>
{{range .Plots}}<img src="{{.}}" alt="{{.}}">
{{end}}
</body>
</html>
`))
