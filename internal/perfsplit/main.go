// Command perfsplit splits a CPU profile of a benchmark whose modes run interleaved in one
// process (BenchmarkRecovery with SNF_BENCH_WINDOWS) by mode: the samples of each mode's
// runs, in all and per function, and where each mode spends more, and less, than the base
// mode.
//
// On a shared machine the throughput of two modes moves by more than a few percent from run
// to run; the CPU samples of each mode's runs, interleaved over the same minutes, tell apart
// a few ns per packet, and say where they go. Record with `perf record -k mono` (the clock
// the windows are written in):
//
//	go test -c -o /tmp/engine.test ./engine/
//	cd engine && SNF_BENCH_WINDOWS=/tmp/windows perf record -k mono -e cpu-clock -F 10000 \
//	    -o /tmp/perf.data /tmp/engine.test -test.run x -test.bench 'Recovery$/throughput' -test.benchtime 20x
//	cd .. && go run ./internal/perfsplit -windows /tmp/windows -data /tmp/perf.data
//
// With -stages, it also splits each mode's samples by the pipeline stage (goroutine) that
// took them, told by a function in the sample's call chain (record with perf record -g):
// which stage a mode's extra work lands on, and with -freq (perf record's -F) how busy each
// stage kept a core — the busiest is the pipeline's bottleneck, whose work shows one for one
// in throughput. -stage then compares functions within one stage only. For the live engine:
//
//	-stages 'egress=engine.(*egress).run,unit=unit.(*Unit).run,root=engine.RunLive' -freq 5000
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
)

type window struct {
	bench, mode string
	start, end  float64
	sampled     bool // a sample fell in it (split)
}

func main() {
	winPath := flag.String("windows", "", "the windows file SNF_BENCH_WINDOWS named (required)")
	data := flag.String("data", "perf.data", "the profile perf record wrote (with -k mono)")
	base := flag.String("base", "off", "the mode the others are compared with")
	top := flag.Int("top", 25, "functions listed per mode")
	stagesFlag := flag.String("stages", "", "name=function,...: split samples by the first stage whose function is in their call chain (others: \"other\"); needs a profile with call chains (perf record -g)")
	only := flag.String("stage", "", "with -stages: compare the functions of this stage's samples only")
	freq := flag.Float64("freq", 0, "with -stages: the sampling frequency (perf record -F), to tell how busy each stage kept a core")
	flag.Parse()
	if *winPath == "" || *top < 0 {
		fmt.Fprintln(os.Stderr, "perfsplit: -windows is required (the file SNF_BENCH_WINDOWS named), -top at least 0")
		os.Exit(2)
	}
	stages, err := parseStages(*stagesFlag)
	if err == nil && *only != "" && !slices.ContainsFunc(stages, func(s stage) bool { return s.name == *only }) && *only != "other" {
		err = fmt.Errorf("-stage %q is not one of -stages", *only)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "perfsplit:", err)
		os.Exit(2)
	}
	wins, err := readWindows(*winPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "perfsplit:", err)
		os.Exit(1)
	}
	cmd := exec.Command("perf", "script", "-i", *data, "-F", "time,ip,sym")
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "perfsplit:", err)
		os.Exit(1)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "perfsplit: perf script:", err, "(perf: apt-get install linux-perf)")
		os.Exit(1)
	}
	var (
		counts   map[key]map[string]int
		byStage  map[key]map[string]int
		unplaced int
	)
	if stages == nil {
		counts, unplaced, err = split(out, wins)
	} else {
		counts, byStage, unplaced, err = splitChains(out, wins, stages, *only)
	}
	if werr := cmd.Wait(); werr != nil { // (perf's failure first: it explains an empty output)
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		err = fmt.Errorf("perf script -i %s: %v: %s", *data, werr, msg)
	}
	if err == nil {
		err = report(os.Stdout, wins, counts, unplaced, *base, *top)
	}
	if err == nil && byStage != nil {
		reportStages(os.Stdout, wins, byStage, stages, *freq)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "perfsplit:", err)
		os.Exit(1)
	}
}

// readWindows reads "bench/mode start end" lines.
func readWindows(path string) ([]window, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var wins []window
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		k := -1
		if len(f) == 3 {
			k = strings.LastIndexByte(f[0], '/')
		}
		var s, e float64
		if k > 0 {
			s, err = strconv.ParseFloat(f[1], 64)
			if err == nil {
				e, err = strconv.ParseFloat(f[2], 64)
			}
		}
		if k <= 0 || err != nil || e < s {
			return nil, fmt.Errorf("%s:%d: not a window (bench/mode start end): %q", path, i+1, line)
		}
		wins = append(wins, window{bench: f[0][:k], mode: f[0][k+1:], start: s, end: e})
	}
	if len(wins) == 0 {
		return nil, fmt.Errorf("%s: no windows (was SNF_BENCH_WINDOWS set for the run?)", path)
	}
	slices.SortFunc(wins, func(a, b window) int { return cmp.Compare(a.start, b.start) })
	return wins, nil
}

// key names a bench's mode.
type key struct{ bench, mode string }

// split counts perf script's samples ("time: ip sym") by the window they fall in, and
// function.
func split(r io.Reader, wins []window) (map[key]map[string]int, int, error) {
	counts := map[key]map[string]int{}
	unplaced := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		c := strings.IndexByte(line, ':')
		if c < 0 {
			continue
		}
		t, err := strconv.ParseFloat(line[:c], 64)
		if err != nil {
			continue
		}
		f := strings.Fields(line[c+1:])
		if len(f) == 0 {
			return nil, 0, errors.New("a sample without its address and function: record without -g (call chains)")
		}
		sym := "[unknown]"
		if len(f) > 1 {
			sym = strings.Join(f[1:], " ")
		}
		i := sort.Search(len(wins), func(j int) bool { return wins[j].start > t }) - 1 // the last started
		if i < 0 || t > wins[i].end {
			unplaced++
			continue
		}
		wins[i].sampled = true
		k := key{wins[i].bench, wins[i].mode}
		if counts[k] == nil {
			counts[k] = map[string]int{}
		}
		counts[k][sym]++
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if len(counts) == 0 {
		return nil, 0, errors.New("no sample fell in a window: record with perf record -k mono, the windows' clock")
	}
	return counts, unplaced, nil
}

// report writes each benchmark's modes: runs, samples, and the functions where each spends
// more than base, then those where it spends less. It counts only the runs that took samples (the windows file is appended
// to: windows of earlier recordings are not this profile's).
func report(w io.Writer, wins []window, counts map[key]map[string]int, unplaced int, base string, top int) error {
	var benches []string
	modes := map[string][]string{}
	runs := map[key]int{}
	hasBase := false
	for _, win := range wins {
		k := key{win.bench, win.mode}
		if counts[k] == nil || !win.sampled {
			continue
		}
		if runs[k] == 0 {
			if len(modes[win.bench]) == 0 {
				benches = append(benches, win.bench)
			}
			modes[win.bench] = append(modes[win.bench], win.mode)
		}
		runs[k]++
		hasBase = hasBase || win.mode == base
	}
	if !hasBase {
		return fmt.Errorf("no run of the base mode %q took samples (modes: %v)", base, modes)
	}
	fmt.Fprintf(w, "(%d samples outside the runs: setup, other benchmarks)\n", unplaced)
	for _, b := range benches {
		total := map[string]int{}
		for _, m := range modes[b] {
			for _, n := range counts[key{b, m}] {
				total[m] += n
			}
		}
		fmt.Fprintf(w, "\n%s\n", b)
		for _, m := range modes[b] {
			fmt.Fprintf(w, "  %-10s %4d runs %9d samples", m, runs[key{b, m}], total[m])
			if m != base && total[base] > 0 {
				fmt.Fprintf(w, "  %+6.2f %% against %s", 100*(float64(total[m])/float64(total[base])-1), base)
			}
			fmt.Fprintln(w)
		}
		bc := counts[key{b, base}]
		for _, m := range modes[b] {
			if m == base || bc == nil {
				continue
			}
			mc := counts[key{b, m}]
			syms := map[string]bool{}
			for s := range mc {
				syms[s] = true
			}
			for s := range bc {
				syms[s] = true
			}
			type row struct {
				sym       string
				base, got int
			}
			var rows []row
			for s := range syms {
				rows = append(rows, row{s, bc[s], mc[s]})
			}
			slices.SortFunc(rows, func(x, y row) int {
				return cmp.Or(cmp.Compare(y.got-y.base, x.got-x.base), cmp.Compare(x.sym, y.sym))
			})
			fmt.Fprintf(w, "  %s, more than %s (samples: %s, %s, difference):\n", m, base, base, m)
			for _, r := range rows[:min(top, len(rows))] {
				if r.got <= r.base {
					break // (the rest spend no more: listed below)
				}
				fmt.Fprintf(w, "    %8d %8d %+8d  %s\n", r.base, r.got, r.got-r.base, r.sym)
			}
			// Where it spends less: work that moved (a cache miss taken earlier by new code).
			var less []row
			for i := len(rows) - 1; i >= 0 && len(less) < (top+4)/5 && rows[i].got < rows[i].base; i-- {
				less = append(less, rows[i])
			}
			if len(less) > 0 {
				fmt.Fprintf(w, "  %s, less than %s:\n", m, base)
				for _, r := range less {
					fmt.Fprintf(w, "    %8d %8d %+8d  %s\n", r.base, r.got, r.got-r.base, r.sym)
				}
			}
		}
	}
	return nil
}

// stage is a pipeline stage (-stages): its name, and a function its goroutine runs under.
type stage struct{ name, fn string }

// parseStages parses "name=function,..." (nil for "").
func parseStages(v string) ([]stage, error) {
	if v == "" {
		return nil, nil
	}
	var st []stage
	for _, part := range strings.Split(v, ",") {
		name, fn, ok := strings.Cut(part, "=")
		if !ok || name == "" || fn == "" || name == "other" {
			return nil, fmt.Errorf("-stages: %q is not name=function (name not \"other\")", part)
		}
		st = append(st, stage{name, fn})
	}
	return st, nil
}

// splitChains is split for a profile with call chains (perf record -g: a sample is its time
// on a line, then a line per frame, leaf first, then a blank line): it counts each sample by
// window and leaf function (only those of stage only, if set), and by window and stage.
func splitChains(r io.Reader, wins []window, stages []stage, only string) (counts, byStage map[key]map[string]int, unplaced int, err error) {
	counts, byStage = map[key]map[string]int{}, map[key]map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var (
		in     bool    // within a sample
		t      float64 // its time
		frames []string
	)
	flush := func() {
		if !in {
			return
		}
		in = false
		i := sort.Search(len(wins), func(j int) bool { return wins[j].start > t }) - 1
		if i < 0 || t > wins[i].end {
			unplaced++
			return
		}
		st := "other"
		for _, s := range stages {
			if slices.ContainsFunc(frames, func(f string) bool { return strings.Contains(f, s.fn) }) {
				st = s.name
				break
			}
		}
		wins[i].sampled = true
		k := key{wins[i].bench, wins[i].mode}
		if byStage[k] == nil {
			byStage[k], counts[k] = map[string]int{}, map[string]int{}
		}
		byStage[k][st]++
		if only == "" || only == st {
			leaf := "[unknown]"
			if len(frames) > 0 {
				leaf = frames[0]
			}
			counts[k][leaf]++
		}
	}
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		switch {
		case line == "":
			flush()
		case raw[0] != ' ' && raw[0] != '\t' || strings.HasSuffix(line, ":") && !in:
			// A sample's header: its time (and perhaps more fields) before a colon.
			flush()
			c := strings.IndexByte(line, ':')
			if c < 0 {
				continue
			}
			f := strings.Fields(line[:c])
			if len(f) == 0 {
				continue
			}
			v, perr := strconv.ParseFloat(f[len(f)-1], 64)
			if perr != nil {
				continue
			}
			if rest := strings.TrimSpace(line[c+1:]); rest != "" {
				return nil, nil, 0, errors.New("a sample with its function on its own line: record with -g (call chains) for -stages")
			}
			in, t, frames = true, v, frames[:0]
		case in:
			sym := "[unknown]"
			if f := strings.Fields(line); len(f) > 1 {
				sym = strings.Join(f[1:], " ")
			}
			frames = append(frames, sym)
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, nil, 0, err
	}
	if len(byStage) == 0 {
		return nil, nil, 0, errors.New("no sample fell in a window: record with perf record -k mono, the windows' clock")
	}
	return counts, byStage, unplaced, nil
}

// reportStages writes each benchmark's modes' samples by stage (the cores each kept busy, with
// freq: samples / freq / the runs' time).
func reportStages(w io.Writer, wins []window, byStage map[key]map[string]int, stages []stage, freq float64) {
	names := []string{}
	for _, s := range stages {
		names = append(names, s.name)
	}
	names = append(names, "other")
	secs := map[key]float64{}
	var order []key
	for _, win := range wins {
		k := key{win.bench, win.mode}
		if byStage[k] == nil || !win.sampled {
			continue
		}
		if secs[k] == 0 {
			order = append(order, k)
		}
		secs[k] += win.end - win.start
	}
	fmt.Fprintln(w, "\nsamples by stage")
	for _, k := range order {
		fmt.Fprintf(w, "  %s %-10s", k.bench, k.mode)
		for _, n := range names {
			c := byStage[k][n]
			if freq > 0 {
				fmt.Fprintf(w, "  %s %d (%.2f cores)", n, c, float64(c)/freq/secs[k])
			} else {
				fmt.Fprintf(w, "  %s %d", n, c)
			}
		}
		fmt.Fprintln(w)
	}
}
