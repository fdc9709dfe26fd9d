package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSplit: samples are counted by the run (window) they fall in, by function; samples
// between runs are not; the report gives each mode's total against the base and the
// functions where it spends more.
func TestSplit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w")
	// (The first window is an earlier recording's: it took no sample, and is not a run.)
	w := "B/throughput-2/on 1.0 2.0\nB/throughput-2/off 10.0 11.0\nB/throughput-2/on 11.5 12.5\nB/throughput-2/off 13.0 14.0\n"
	if err := os.WriteFile(path, []byte(w), 0o644); err != nil {
		t.Fatal(err)
	}
	wins, err := readWindows(path)
	if err != nil {
		t.Fatal(err)
	}
	script := `  10.5:  ffff0001 hash
  11.2:  ffff0002 gc
  11.6:  ffff0001 hash
  12.0:  ffff0003 fillAt
  12.1:  ffff0003 fillAt
  13.5:  ffff0001 hash
  14.5:  ffff0001 hash
garbage line
`
	counts, unplaced, err := split(strings.NewReader(script), wins)
	if err != nil {
		t.Fatal(err)
	}
	off, on := counts[key{"B/throughput-2", "off"}], counts[key{"B/throughput-2", "on"}]
	if unplaced != 2 || off["hash"] != 2 || len(off) != 1 || on["hash"] != 1 || on["fillAt"] != 2 || len(on) != 2 {
		t.Fatalf("unplaced %d, off %v, on %v", unplaced, off, on)
	}
	var out bytes.Buffer
	if err := report(&out, wins, counts, unplaced, "off", 5); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"off           2 runs         2 samples", "on            1 runs         3 samples  +50.00 % against off", "0        2       +2  fillAt",
		"on, less than off:\n           2        1       -1  hash\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	// hash is where on spends less: listed once, under "less than".
	if n := strings.Count(out.String(), "hash"); n != 1 {
		t.Errorf("hash listed %d times, want once:\n%s", n, out.String())
	}
}

// TestSplitBad: a profile with call chains (a sample's time alone on its line) and a base
// mode no run has are errors, not an empty report.
func TestSplitBad(t *testing.T) {
	wins := []window{{bench: "B", mode: "off", start: 1, end: 2}}
	if _, _, err := split(strings.NewReader("  1.5: \n\t ffff0001 hash\n"), wins); err == nil || !strings.Contains(err.Error(), "-g") {
		t.Errorf("call chains: %v", err)
	}
	counts, unplaced, err := split(strings.NewReader("  1.5:  ffff0001 hash\n"), wins)
	if err != nil {
		t.Fatal(err)
	}
	if err := report(io.Discard, wins, counts, unplaced, "on", 5); err == nil {
		t.Error("a base mode with no run: no error")
	}
}

// TestReadWindowsBad: a line that is not "bench/mode start end" is an error naming it.
func TestReadWindowsBad(t *testing.T) {
	for _, w := range []string{"", "x 1 2\n", "a/b 2 1\n", "a/b 1 x\n", "a/b 1\n"} {
		path := filepath.Join(t.TempDir(), "w")
		if err := os.WriteFile(path, []byte(w), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readWindows(path); err == nil {
			t.Errorf("%q: no error", w)
		}
	}
}

// TestSplitChains: with call chains (perf record -g), each sample goes to the first stage
// whose function is in its chain (else "other"), by window; -stage keeps one stage's samples
// in the functions' counts; the report gives each mode's stages, and the cores they kept busy.
func TestSplitChains(t *testing.T) {
	wins := []window{{bench: "B", mode: "off", start: 10, end: 11}, {bench: "B", mode: "on", start: 12, end: 14}}
	script := "10.1: \n\t ffff01 hash\n\t ffff02 engine.(*egress).run\n\t ffff03 engine.RunLive.func3\n\n" + // egress: before root in the list
		"10.2: \n\t ffff01 hash\n\t ffff04 root.Dispatch\n\t ffff03 engine.RunLive\n\n" +
		"  12.5: \n\t ffff05 fillIn\n\t ffff06 unit.(*Unit).run\n\n" +
		"12.6: \n\t ffff07 gcBgMarkWorker\n\n" +
		"13.0: \n\t ffff01 hash\n\t ffff03 engine.RunLive\n" + // (no blank line at the end)
		"20.0: \n\t ffff01 hash\n\t ffff03 engine.RunLive\n\n" // outside the runs
	stages, err := parseStages("egress=engine.(*egress).run,unit=unit.(*Unit).run,root=engine.RunLive")
	if err != nil {
		t.Fatal(err)
	}
	counts, byStage, unplaced, err := splitChains(strings.NewReader(script), wins, stages, "")
	if err != nil {
		t.Fatal(err)
	}
	off, on := key{"B", "off"}, key{"B", "on"}
	if unplaced != 1 || byStage[off]["egress"] != 1 || byStage[off]["root"] != 1 || len(byStage[off]) != 2 ||
		byStage[on]["unit"] != 1 || byStage[on]["other"] != 1 || byStage[on]["root"] != 1 || len(byStage[on]) != 3 ||
		counts[off]["hash"] != 2 || counts[on]["fillIn"] != 1 || counts[on]["hash"] != 1 {
		t.Fatalf("unplaced %d, by stage %v, counts %v", unplaced, byStage, counts)
	}
	counts, _, _, err = splitChains(strings.NewReader(script), wins, stages, "root")
	if err != nil || counts[off]["hash"] != 1 || counts[on]["fillIn"] != 0 || counts[on]["hash"] != 1 {
		t.Fatalf("-stage root: %v, %v", counts, err)
	}
	var out bytes.Buffer
	reportStages(&out, wins, byStage, stages, 2) // 2 samples a second
	for _, want := range []string{"B off         egress 1 (0.50 cores)  unit 0 (0.00 cores)  root 1 (0.50 cores)  other 0 (0.00 cores)\n",
		"B on          egress 0 (0.00 cores)  unit 1 (0.25 cores)  root 1 (0.25 cores)  other 1 (0.25 cores)\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	// A profile without call chains, and a bad -stages, are errors.
	if _, _, _, err := splitChains(strings.NewReader("10.5:  ffff0001 hash\n"), wins, stages, ""); err == nil || !strings.Contains(err.Error(), "-g") {
		t.Errorf("no call chains: %v", err)
	}
	for _, bad := range []string{"root", "=x", "root=", "other=x", "a=b,,c=d"} {
		if _, err := parseStages(bad); err == nil {
			t.Errorf("-stages %q: no error", bad)
		}
	}
}
