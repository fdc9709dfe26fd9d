package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/report"
)

// parseUnits reads --units: "" (1-8), "N" or "MIN-MAX".
func parseUnits(s string) (lo, hi int, err error) {
	if s == "" {
		return 1, 8, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi = lo
	var err2 error
	if isRange {
		hi, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || lo < 1 || hi < lo || hi > 1024 {
		return 0, 0, fmt.Errorf("--units %q: want N or MIN-MAX with 1 <= MIN <= MAX <= 1024", s)
	}
	if !isRange {
		lo = 1 // --units N: up to N units
	}
	return lo, hi, nil
}

func newPolicy(name string, maxUnits int) (policy.Policy, error) {
	return policy.New(name, policy.Options{StaticUnits: maxUnits, Seed: 1})
}

func printLiveSummary(w io.Writer, inName string, spec *snf.ChainSpec, pol string, minU, maxU int, gap time.Duration, s engine.LiveSummary) {
	names := make([]string, len(spec.NFs))
	for i, n := range spec.NFs {
		names[i] = n.Name
	}
	fmt.Fprintf(w, "input     %s\n", inName)
	fmt.Fprintf(w, "chain     %s\n", strings.Join(names, " → "))
	fmt.Fprintf(w, "engine    elastic: policy %s, units %d-%d, flowlet gap %s, unit capacity %.0f packets/s\n", pol, minU, maxU, gap, s.Capacity)
	fmt.Fprintf(w, "packets   %d in, %d out, %d dropped, %d emitted; %d alerts\n", s.Packets, s.Written, s.Chain.Dropped, s.Chain.Emitted, s.Chain.Alerts)
	fmt.Fprintf(w, "flows     %d flows, %d flowlets, %d reorderings inside flows\n", s.Flows, s.Flowlets, s.Reorders)
	fmt.Fprintf(w, "handover  %d handovers (%d moving idle flows off draining units), %d state bytes moved, state in transit p50 %s p99 %s; %d packets held for state, waiting p50 %s p99 %s\n",
		s.Handovers, s.Evacuated, s.BytesMoved, s.HandoverWait.P50, s.HandoverWait.P99, s.Held, s.HeldWait.P50, s.HeldWait.P99)
	if s.LogMaxPackets > 0 || s.Failures > 0 {
		held := fmt.Sprintf("%d bytes (arena %d bytes, %d frames past it)", s.LogMaxBytes, s.LogArenaBytes, s.LogOverflows)
		if s.LogPositions {
			held = "their positions in the input (read again to replay)"
		} else if s.LogShortened > 0 {
			held += fmt.Sprintf("; headers only for %d batches once written (%d with payloads kept, of %d packets)", s.LogShortened, s.LogTailed, s.LogTailedPackets)
		}
		fmt.Fprintf(w, "recovery  %d units failed and replaced, %d packets replayed (billed once), %d duplicate outputs, %d states, %d alerts dropped; failure to first replayed batch out p50 %s p99 %s; packet log peak %d packets, %s, %d waits for room\n",
			s.Failures, s.Replayed, s.Duplicates, s.StateDuplicates, s.AlertDuplicates, s.RecoveryTime.P50, s.RecoveryTime.P99, s.LogMaxPackets, held, s.LogWaits)
	}
	if n := len(s.FaultsMissed); n > 0 {
		fmt.Fprintf(w, "faults    %d not injected, the run ended first (at packet %d): %s\n", n, s.Packets, faultList(s.FaultsMissed))
	}
	if n := len(s.FaultsIdle); n > 0 {
		fmt.Fprintf(w, "faults    %d hit a unit the pool had not started (it held no flows): %s\n", n, faultList(s.FaultsIdle))
	}
	if s.Checkpoints > 0 || s.CheckpointErrors > 0 {
		fmt.Fprintf(w, "checkpoint %d records, %d bytes written to the store in the background, %d failed writes\n", s.Checkpoints, s.CheckpointBytes, s.CheckpointErrors)
	}
	if s.StoreReads > 0 {
		fmt.Fprintf(w, "store     per-packet flow state: %d reads, %d writes\n", s.StoreReads, s.StoreWrites)
	}
	fmt.Fprintf(w, "units     min %d, mean %.2f, max %d active; %.3f unit-seconds\n", s.UnitsMin, s.UnitsMean, s.UnitsMax, s.UnitSeconds)
	fmt.Fprintf(w, "latency   root to egress: p50 %s, p99 %s, p99.9 %s\n", s.Latency.P50, s.Latency.P99, s.Latency.P999)
	fmt.Fprintf(w, "time      %s wall, %.0f packets/s\n", s.Elapsed.Round(time.Millisecond), s.PPS())
	var bills []string
	for _, b := range s.Billed {
		bills = append(bills, fmt.Sprintf("%s %d", b.Name, b.Packets))
	}
	fmt.Fprintf(w, "billed    packets per NF: %s\n", strings.Join(bills, ", "))
	if len(s.Timeline) > 1 {
		fmt.Fprintln(w, "timeline  offered load (packets/s) and active units:")
		step := max(1, len(s.Timeline)/12)
		saturated := false
		for i := 0; i < len(s.Timeline); i += step {
			t := s.Timeline[i]
			mark := " "
			if t.Saturated {
				mark, saturated = "≥", true
			}
			fmt.Fprintf(w, "  %8s %s%10.0f  %3d %s\n", t.At.Round(time.Millisecond), mark, t.Offered, t.Active, strings.Repeat("█", min(t.Active, 64)))
		}
		if saturated {
			fmt.Fprintln(w, "  ≥: the input had more packets waiting at every read (full speed, or the pool fell behind):")
			fmt.Fprintln(w, "     the load shown is what the pool took, and the pool does not shrink on it")
		}
	}
}

// runCompare runs every policy on the same input and prints one table.
func runCompare(ctx context.Context, stdout, stderr io.Writer, spec *snf.ChainSpec, open func() (port.Reader, uint32, error),
	inName string, minU, maxU int, gap time.Duration, batch int, capacity float64, quiet bool, reportDir string, args []string) error {
	if capacity == 0 {
		c, err := engine.Calibrate(spec, 20000)
		if err != nil {
			return err
		}
		capacity = c
	}
	type row struct {
		name string
		s    engine.LiveSummary
	}
	var rows []row
	for _, name := range policy.Names() {
		p, err := newPolicy(name, maxU)
		if err != nil {
			return err
		}
		r, _, err := open()
		if err != nil {
			return err
		}
		if !quiet {
			fmt.Fprintf(stderr, "snf: running %s\n", name)
		}
		s, err := engine.RunLive(ctx, engine.LiveConfig{Spec: spec, In: r, Policy: p, MinUnits: minU, MaxUnits: maxU,
			FlowletGap: gap, Batch: batch, Capacity: capacity})
		r.Close()
		if err != nil {
			return err
		}
		if s.InputErr != nil {
			return s.InputErr
		}
		rows = append(rows, row{name, s})
	}
	fmt.Fprintf(stdout, "input %s, units %d-%d, flowlet gap %s, unit capacity %.0f packets/s\n\n", inName, minU, maxU, gap, capacity)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	var header []string
	var table [][]string
	for _, r := range rows {
		var row []string
		header, row = liveRow(r.name, r.s)
		table = append(table, row)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, row := range table {
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if reportDir == "" {
		return nil
	}
	rep := &report.Report{Title: "snf run: every policy", Capacity: capacity, Header: header, Rows: table,
		Command: "snf " + strings.Join(append([]string{"run"}, args...), " "), Notes: liveNotes(inName, minU, maxU, gap, capacity, saturated(rows[0].s))}
	for _, r := range rows {
		rep.Runs = append(rep.Runs, liveReportRun(r.name, r.s))
	}
	if err := report.Write(reportDir, rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport    %s\n", filepath.Join(reportDir, "index.html"))
	return nil
}

// liveRow is a live run's row of the comparison table, with its header.
func liveRow(name string, s engine.LiveSummary) (header, row []string) {
	header = []string{"policy", "packets", "out", "flowlets", "handovers", "reorders", "units min/mean/max", "unit-s", "p50", "p99", "p99.9"}
	row = []string{name, fmt.Sprint(s.Packets), fmt.Sprint(s.Written), fmt.Sprint(s.Flowlets), fmt.Sprint(s.Handovers),
		fmt.Sprint(s.Reorders), fmt.Sprintf("%d/%.2f/%d", s.UnitsMin, s.UnitsMean, s.UnitsMax), fmt.Sprintf("%.3f", s.UnitSeconds),
		s.Latency.P50.String(), s.Latency.P99.String(), s.Latency.P999.String()}
	return header, row
}

func liveNotes(inName string, minU, maxU int, gap time.Duration, capacity float64, saturated bool) []string {
	notes := []string{
		fmt.Sprintf("input     %s", inName),
		fmt.Sprintf("engine    live (wall clock), units %d-%d, flowlet gap %s, unit capacity %.0f packets/s", minU, maxU, gap, capacity),
		"latency   the live engine keeps percentiles, not the whole distribution: its CDF is drawn through p50, p99 and p99.9",
		"oracle    per controller interval: the fewest units whose capacity covers the offered load; handovers per interval are not recorded live",
	}
	if saturated {
		notes = append(notes, "saturated intervals (the input had packets waiting at every read: marked on the load plot) offered what the pool took: their load and oracle are lower bounds")
	}
	return notes
}

// saturated reports whether a tick of s's timeline was saturated (policy.Pool.Saturated).
func saturated(s engine.LiveSummary) bool {
	return slices.ContainsFunc(s.Timeline, func(t engine.Sample) bool { return t.Saturated })
}

// liveReportRun converts a live run for the report: its controller timeline, with the
// oracle per interval, and the latency CDF through its three percentiles.
func liveReportRun(name string, s engine.LiveSummary) report.Run {
	run := report.Run{Name: name}
	for _, t := range s.Timeline {
		o := 0
		if s.Capacity > 0 {
			o = max(1, int(math.Ceil(t.Offered/s.Capacity-1e-9)))
		}
		run.Timeline = append(run.Timeline, report.Point{At: t.At, Offered: t.Offered, Oracle: o, Active: t.Active, Saturated: t.Saturated})
	}
	if s.Latency.P50 > 0 {
		run.Latency = []report.CDFPoint{{Latency: s.Latency.P50, Fraction: 0.5}, {Latency: s.Latency.P99, Fraction: 0.99},
			{Latency: s.Latency.P999, Fraction: 0.999}}
	}
	return run
}

// faultList names faults as --fail spells them, comma-separated.
func faultList(fs []engine.Fault) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.String()
	}
	return strings.Join(names, ", ")
}
