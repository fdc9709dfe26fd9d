package report

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample() *Report {
	r := &Report{Title: "Policies on a test day", Notes: []string{"input  test", "model  test"}, Capacity: 1000,
		SLO: time.Millisecond, Header: []string{"policy", "unit-s", "p99"}, Command: "snf sim --compare --report out"}
	for i, name := range []string{"snf", "perflow"} {
		run := Run{Name: name}
		for k := 1; k <= 50; k++ {
			load := 1000 + 800*float64(k%10)
			run.Timeline = append(run.Timeline, Point{At: time.Duration(k) * 10 * time.Millisecond, Offered: load,
				Oracle: int(load/1000) + 1, Active: int(load/1000) + 1 + i, Handovers: float64((1 - i) * 100 * (k % 3))})
		}
		for k := 0; k <= 10; k++ {
			run.Latency = append(run.Latency, CDFPoint{Latency: time.Duration(1<<k) * time.Microsecond * time.Duration(i+1), Fraction: float64(k) / 10})
		}
		r.Runs = append(r.Runs, run)
		r.Rows = append(r.Rows, []string{name, "1.5", "<2ms & more>"})
	}
	return r
}

// TestWrite: the report's plots exist and are well-formed SVG with drawn content, and the
// page references each of them and holds the table, escaped.
func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := Write(dir, sample()); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(html)
	for _, name := range []string{LoadPlot, LatencyPlot, HandoversPlot} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		checkSVG(t, name, b)
		if !strings.Contains(page, `src="`+name+`"`) {
			t.Errorf("index.html does not reference %s", name)
		}
	}
	for _, want := range []string{"<th>policy</th>", "<td>perflow</td>", "&lt;2ms &amp; more&gt;", "snf sim --compare --report out"} {
		if !strings.Contains(page, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
}

// checkSVG parses b as XML: the root must be <svg> and it must draw paths (the lines).
func checkSVG(t *testing.T, name string, b []byte) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(b)))
	root, paths := "", 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("%s: not well-formed XML: %v", name, err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "path" {
				paths++
			}
		}
	}
	if root != "svg" || paths < 5 {
		t.Errorf("%s: root <%s>, %d paths; want an <svg> with lines", name, root, paths)
	}
}

// TestWriteNoHandovers: a run without handovers or CDFs still gets its load plot and a
// page that references only the plots written.
func TestWriteNoHandovers(t *testing.T) {
	r := sample()
	for i := range r.Runs {
		r.Runs[i].Latency = nil
		for k := range r.Runs[i].Timeline {
			r.Runs[i].Timeline[k].Handovers = 0
		}
	}
	dir := t.TempDir()
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	for _, name := range []string{LatencyPlot, HandoversPlot} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil || strings.Contains(string(html), name) {
			t.Errorf("%s written or referenced with nothing to plot", name)
		}
	}
	if !strings.Contains(string(html), LoadPlot) {
		t.Errorf("no load plot")
	}
	if err := Write(dir, &Report{}); err == nil {
		t.Errorf("a report without runs: no error")
	}
}

// TestWriteSaturated: the load plot marks the saturated intervals, and only when there are.
func TestWriteSaturated(t *testing.T) {
	const legend = "input waiting on the pool"
	for _, sat := range []bool{false, true} {
		r := sample()
		for k := range r.Runs[0].Timeline {
			r.Runs[0].Timeline[k].Saturated = sat && k%10 == 4
		}
		dir := t.TempDir()
		if err := Write(dir, r); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, LoadPlot))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), legend) != sat {
			t.Errorf("saturated intervals %v: the load plot's legend has %q: %v", sat, legend, !sat)
		}
		if sat && !strings.Contains(string(b), "snf&#39;s run") && !strings.Contains(string(b), "snf's run") {
			t.Errorf("two runs: the legend does not say whose intervals are marked (the first run's, snf)")
		}
	}
	// Each mark sits at its interval's middle, at its load in units' worth.
	tl := []Point{{At: 10 * time.Millisecond, Offered: 500}, {At: 20 * time.Millisecond, Offered: 3000, Oracle: 3, Saturated: true}}
	if pts := saturated(tl, 1000); len(pts) != 1 || pts[0].X != 0.015 || pts[0].Y != 3 {
		t.Errorf("marks %v: want one at (0.015, 3)", pts)
	}
}
