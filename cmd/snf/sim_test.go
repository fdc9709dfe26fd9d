package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// withoutTiming drops the lines that depend on the machine's speed.
func withoutTiming(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "timing ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestSimCompareDeterministic: snf sim --compare prints the same text twice for one seed
// (timing lines aside), a table row per policy, and other numbers for another seed.
func TestSimCompareDeterministic(t *testing.T) {
	args := []string{"sim", "--compare", "--duration", "200ms", "--peak", "4", "--capacity", "100000", "--tick", "2ms"}
	code, a, errs := runSnf(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	_, b, _ := runSnf(args...)
	if withoutTiming(a) != withoutTiming(b) {
		t.Errorf("two runs with one seed differ:\n%s\n---\n%s", a, b)
	}
	for _, p := range []string{"snf", "perflow", "perpacket", "static"} {
		if !strings.Contains(a, " "+p+"  ") {
			t.Errorf("no row for %s:\n%s", p, a)
		}
	}
	_, c, _ := runSnf(append(args, "--seed", "2")...)
	if withoutTiming(a) == withoutTiming(c) {
		t.Errorf("seeds 1 and 2 printed the same")
	}
	t.Log("\n" + a)
}

func TestSimSinglePolicy(t *testing.T) {
	code, out, errs := runSnf("sim", "--policy", "perflow", "--packets", "20000", "--capacity", "50000", "--timeline")
	if code != 0 || !strings.Contains(out, "unit-seconds, oracle") || !strings.Contains(out, "timeline") {
		t.Fatalf("exit %d: %s\n%s", code, out, errs)
	}
}

// TestSimPipeline: the pipeline model's flags turn it on (the model line says so, the
// summary adds the latency from the root's release); the same seed prints the same text;
// without them nothing of it shows. --handoff -1 measures it (a timing line).
func TestSimPipeline(t *testing.T) {
	base := []string{"sim", "--policy", "snf", "--packets", "20000", "--capacity", "50000"}
	args := append(base, "--handoff", "10us", "--handoff-cv", "0.5", "--batch-cost", "1us", "--root-cost", "300ns", "--read-wake", "100us")
	code, a, errs := runSnf(args...)
	if code != 0 || !strings.Contains(a, "pipeline: hand-off 10µs (cv 0.50), batch cost 1µs, root cost 300ns per packet, read wake-up 100µs") ||
		!strings.Contains(a, "from the root's release") {
		t.Fatalf("exit %d: %s\n%s", code, a, errs)
	}
	if _, b, _ := runSnf(args...); withoutTiming(a) != withoutTiming(b) {
		t.Errorf("two runs with one seed differ:\n%s\n---\n%s", a, b)
	}
	if _, c, _ := runSnf(base...); strings.Contains(c, "pipeline") || strings.Contains(c, "root's release") {
		t.Errorf("no pipeline flags, yet:\n%s", c)
	}
	if code, e, errs := runSnf("sim", "--compare", "--packets", "5000", "--capacity", "50000", "--handoff", "10us"); code != 0 ||
		!strings.Contains(e, "p50 root") || !strings.Contains(e, "p99 root") {
		t.Errorf("--compare with the pipeline model: exit %d, no root latency columns:\n%s\n%s", code, e, errs)
	}
	code, d, errs := runSnf(append(base, "--handoff", "-1")...)
	if code != 0 || !strings.Contains(d, "timing    pipeline measured on this machine: hand-off ") {
		t.Fatalf("--handoff -1: exit %d: %s\n%s", code, d, errs)
	}
	t.Log("\n" + a + "\n" + d)
}

// TestSimBadFlags: a bad flag is a one-line error and exit status 2.
func TestSimBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--policy", "nope"}, {"--units", "0"}, {"--speed", "0"}, {"--cv", "-1"}, {"--slo", "0s"},
		{"--cold-start", "-1ms"}, {"--queue", "0"}, {"--capacity", "-5"}, {"--chain", "a.yaml", "--nfs", "nat"},
		{"--packets", "-1"}, {"--peak", "0"}, {"--duration", "0s"}, {"--target", "1.5"}, {"--scale-outs", "0"},
		{"--in", "gen:nosuchdist"}, {"--service-rate", "-2"}, {"extra"},
		{"--handoff", "-2"}, {"--handoff", "x"}, {"--handoff-cv", "-1"}, {"--batch-cost", "-1us"}, {"--read-wake", "-1ms"},
		{"--bandwidth", "Inf"}, {"--bandwidth", "0"}, {"--sweep", "backlog=-1ms"},
	} {
		code, out, errs := runSnf(append([]string{"sim"}, args...)...)
		if code != 2 || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.HasPrefix(errs, "snf: sim: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, out, errs)
		}
	}
	if code, errs, _ := runSnf("sim", "--help"); code != 0 || !strings.Contains(errs, "snf sim --compare") {
		t.Errorf("--help: exit %d, %q", code, errs)
	}
}

// TestSimSweep: one row per combination of the swept values, in order, each with its own
// numbers; a bad sweep is a one-line error.
func TestSimSweep(t *testing.T) {
	code, out, errs := runSnf("sim", "--duration", "100ms", "--peak", "3", "--capacity", "100000",
		"--sweep", "gap=500us,5ms", "--sweep", "target=0.6,0.9")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 2 && (f[0] == "500us" || f[0] == "5ms") {
			rows = append(rows, f[0]+" "+f[1]+" "+f[3])
		}
	}
	if len(rows) != 4 || !strings.HasPrefix(rows[0], "500us 0.6") || !strings.HasPrefix(rows[3], "5ms 0.9") {
		t.Fatalf("rows %q:\n%s", rows, out)
	}
	if rows[0] == rows[1] {
		t.Errorf("targets 0.6 and 0.9 spent the same unit-seconds: %q", rows)
	}
	for _, args := range [][]string{{"--sweep", "gap"}, {"--sweep", "nope=1"}, {"--sweep", "target=2"},
		{"--sweep", "gap=1ms", "--sweep", "gap=2ms"}, {"--sweep", "gap=1ms", "--compare"}} {
		code, out, errs := runSnf(append([]string{"sim"}, args...)...)
		if code != 2 || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, out, errs)
		}
	}
}

// TestSimSweepRefusesOneRunFlags: --sweep prints one table: --report (which it used to skip,
// writing nothing and saying nothing) and --timeline are refused, as is --png without --report.
func TestSimSweepRefusesOneRunFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rep")
	base := []string{"sim", "--duration", "100ms", "--peak", "3", "--capacity", "100000"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--sweep", "gap=1ms,2ms", "--report", dir}, "snf: sim: --sweep prints one table: --report and --timeline apply to one policy's run or --compare\n"},
		{[]string{"--sweep", "gap=1ms,2ms", "--timeline"}, "snf: sim: --sweep prints one table: --report and --timeline apply to one policy's run or --compare\n"},
		{[]string{"--png"}, "snf: sim: --png applies to --report: give --report DIR\n"},
	} {
		code, out, errs := runSnf(append(base, c.args...)...)
		if code != 2 || out != "" || errs != c.want {
			t.Errorf("%v: exit %d, stderr %q, stdout\n%s", c.args, code, errs, out)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s was created", dir)
	}
}

// TestSimReport: --report writes index.html and its plots, which the page references; the
// table on the page is the printed one.
func TestSimReport(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runSnf("sim", "--compare", "--duration", "100ms", "--peak", "3", "--capacity", "100000", "--report", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"load.svg", "latency.svg", "handovers.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("<?xml")) || !bytes.Contains(b, []byte("<svg")) || !bytes.HasSuffix(bytes.TrimSpace(b), []byte("</svg>")) {
			t.Errorf("%s is not an SVG document", name)
		}
		if !bytes.Contains(page, []byte(`src="`+name+`"`)) {
			t.Errorf("index.html does not reference %s", name)
		}
	}
	for _, p := range []string{"snf", "perflow", "perpacket", "static"} {
		if !bytes.Contains(page, []byte("<td>"+p+"</td>")) {
			t.Errorf("no row for %s in the page", p)
		}
	}
	if !strings.Contains(out, "report    "+filepath.Join(dir, "index.html")) {
		t.Errorf("output does not name the report:\n%s", out)
	}
}

// TestRunReport: snf run --report writes the live engine's report (the load and latency
// plots; the live engine records no handovers per interval), and refuses a run that is not
// elastic.
func TestRunReport(t *testing.T) {
	in := filepath.Join(tracesDir(t), "pcapplusplus_example.pcap")
	dir := t.TempDir()
	code, out, errs := runSnf("run", "--policy", "snf", "--in", in, "--capacity", "50000", "--quiet", "--report", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, out, errs)
	}
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"load.svg", "latency.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(page, []byte(`src="`+name+`"`)) {
			t.Errorf("%s: not an SVG, or not referenced by the page", name)
		}
	}
	if !bytes.Contains(page, []byte("<td>snf</td>")) || !bytes.Contains(page, []byte("<td>4631</td>")) {
		t.Errorf("the page lacks the run's row")
	}
	if code, _, errs := runSnf("run", "--in", in, "--report", dir); code != 2 || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("--report without an elastic run: exit %d, %q; want 2 and one line", code, errs)
	}
}
