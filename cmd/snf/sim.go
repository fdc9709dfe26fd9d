package main

import (
	"context"
	"errors"
	"flag"
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
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/report"
	"github.com/snf-dev/snf/trace"
)

const simHelp = `Usage: snf sim [--chain FILE | --nfs LIST] [--in CAPTURE] [--policy NAME | --compare] [flags]

Simulates the elastic runtime in virtual time: the same root, allocation policies,
controller and NF chains as 'snf run --policy', but units are modelled, not run on cores.
Each unit has a bounded FIFO queue and serves one packet at a time with a service time drawn
around 1/capacity (lognormal with coefficient of variation --cv); a unit activated during
the run serves nothing for --cold-start; a flow's state reaches its new unit --transfer plus
its size over --bandwidth after the old unit served the flow's last packet; under perpacket
every packet waits --store-rtt for its flow state. The chains still process every packet,
so outputs, state and handovers are real. Thousands of units fit; the same seed gives the
same results.

The controller is the live engine's: every --tick it measures each unit's load, drains the
least loaded unit while the load fits in fewer at --target, and retires a drained unit once
it holds no flow. For snf, a unit whose queue holds more than --max-backlog of work takes no
new flowlet (and the pool may grow when every unit is so), and a unit still draining after
--busy-after ticks has its running flowlets moved too. The defaults (target 0.9, 500us,
4 ticks, flowlet gap 5ms) come from the sweeps in BENCHMARKS.md.

It prints, per policy: unit-seconds and their ratio to an oracle (in each 1ms window, the
fewest units whose full capacity covers the packets that arrived, at least one), latency
p50/p99/p99.9 (departure - arrival, virtual) and the share over --slo, packets dropped at
full queues, reorderings inside flows, handovers per second, state bytes moved and packets
billed.

Without --in, the input is a generated data-center workload (the realistic generator of
'snf trace gen'): web-search flow sizes, a diurnal day compressed into --duration with
bursts of twice the flow arrival rate on top (50ms, twice a second), on a link sized so
that the day's peak is --peak units' worth of capacity (before bursts); the input line
prints it as a gen: spec. With --in, a pcap or pcapng capture, or --in gen:SPEC (a
generated workload, see 'snf trace gen --help'), is replayed at --speed times its pace.

With --handoff (or --batch-cost, --root-cost, --read-wake) it also models the live engine's
goroutine pipeline, as 'snf run' runs it: the root reads the packets that arrived while it
dispatched the last read (--root-cost each), or, waiting for input, those that arrived by
its next wake-up (every --read-wake: a paced replay's sleep), and flushes one batch per
unit at the end of each read; a batch reaches its unit one hand-off later (a goroutine's
wake-up: lognormal, mean --handoff, coefficient of variation --handoff-cv), the unit serves
it whole (--batch-cost, then each packet's service time), and its outputs reach the egress
one hand-off after it ends; a state takes two on top of --transfer. --handoff -1 measures
the model on this machine (engine.CalibratePipeline: the live engine with the chain on one
unit at 3,000 packets/s for 1s; the flags given keep their values) and prints the
measurement as a timing line. The latency from the root's release of a packet, the span
'snf run' measures, is then printed too (the single-policy summary; --compare's columns
"p50 root" and "p99 root"). Off by default.

Without --capacity, a unit's capacity is measured on this machine (engine.Calibrate, the
median of 5) and rounded down to a power of ten packets/s, so that the same seed prints the
same tables on a machine despite its noise; the measurement itself is a timing line. Give
--capacity to pin it.

With --sweep PARAM=V1,V2,... (repeatable: the runs are the product) it runs one policy
(--policy, default snf) once per combination and prints one row each: unit-seconds and their
ratio to the oracle, p99 and p99.9, the share over the SLO, drops and handovers per second.
PARAM is gap (the flowlet gap), target (utilisation), tick, cv, measured (true or false:
--scale-on-measured), busy (--busy-after, in ticks) or backlog (--max-backlog).

Examples:
  snf sim --compare                                 # every policy, data-center day
  snf sim --compare --report out                    # and out/index.html with plots
  snf sim --sweep gap=100us,500us,2ms --sweep target=0.7,0.8,0.9
  snf sim --policy snf --units 1-64 --peak 40
  snf sim --nfs firewall --in in.pcap --speed 100 --capacity 50000 --compare
  snf sim --policy perflow --cv 1 --cold-start 5ms --slo 500us --seed 7
  snf sim --nfs nat,firewall --in in.pcap --speed 4 --capacity 2000 --service-rate -1 --handoff -1
  snf sim --policy snf --timeline                   # units and load over time
  snf sim --compare --in gen:fb_hadoop,load=0.3,link=40Gbps,profile=diurnal,duration=2s
`

// simOptions are the flags of snf sim that shape one run.
type simOptions struct {
	minU, maxU                int
	gap, tick                 time.Duration
	speed, capacity, cv, peak float64
	cold, transfer, rtt, slo  time.Duration
	bandwidth, serviceRate    float64
	queue, batch, scaleOuts   int
	busyAfter                 int
	maxBacklog                time.Duration
	measured                  bool
	target                    float64
	seed                      uint64
	packets                   int
	duration                  time.Duration
	in                        string
	spec                      *snf.ChainSpec
	timeline                  bool
	pipe                      engine.Pipeline // the pipeline model (off: zero)
}

func cmdSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sim", simHelp, stdout, stderr)
	chainFile := fs.String("chain", "", "chain file (YAML); see 'snf nfs' for NF configs")
	nfs := fs.String("nfs", "", "comma-separated NF types with default configs (default nat,firewall when --chain is not given)")
	in := fs.String("in", "", "input: a pcap or pcapng capture, or gen:SPEC (default: a generated data-center day)")
	pol := fs.String("policy", "snf", "allocation policy: snf, perflow, perpacket or static")
	compare := fs.Bool("compare", false, "run every policy on the same traffic and print one table")
	units := fs.String("units", "1-16", "pool size: N (1 to N), or MIN-MAX; static uses MAX")
	gap := fs.Duration("flowlet-gap", 5*time.Millisecond, "flowlet gap δ (chosen by the sweep in BENCHMARKS.md)")
	speedFlag := fs.String("speed", "1", "virtual pace of --in: a factor > 0 (2 = twice as fast as captured)")
	capacity := fs.Float64("capacity", 0, "packets/s one unit serves (default: measured, rounded down to a power of ten)")
	serviceRate := fs.Float64("service-rate", 0, "packets/s a unit really serves, if not --capacity (e.g. to model 'snf run --capacity' with the calibrated speed: -1 measures it)")
	cv := fs.Float64("cv", 0.5, "coefficient of variation of the service time (lognormal; 0: constant)")
	cold := fs.Duration("cold-start", time.Millisecond, "time a newly activated unit serves nothing")
	transfer := fs.Duration("transfer", 5*time.Microsecond, "fixed delay of a state handover (plus bytes / --bandwidth)")
	bandwidth := fs.Float64("bandwidth", 1.25e9, "bytes/s of a state handover")
	rtt := fs.Duration("store-rtt", 50*time.Microsecond, "perpacket: store round trip every packet pays")
	slo := fs.Duration("slo", time.Millisecond, "latency objective: the share of packets over it is reported")
	tick := fs.Duration("tick", 10*time.Millisecond, "controller period (virtual time)")
	scaleOuts := fs.Int("scale-outs", 1, "most units activated between two ticks")
	onMeasured := fs.Bool("scale-on-measured", true, "snf, perpacket: grow the pool only when the load measured over the last tick no longer fits at --target (chosen by the sweep in BENCHMARKS.md)")
	handoff := fs.String("handoff", "0", "pipeline model: mean time a batch or state takes from one goroutine to the next (0: no pipeline model; -1: measure the model on this machine)")
	handoffCV := fs.Float64("handoff-cv", 1, "pipeline model: coefficient of variation of a hand-off (lognormal)")
	batchCost := fs.Duration("batch-cost", 0, "pipeline model: a unit's cost per batch, on top of its packets' service")
	rootCost := fs.Duration("root-cost", 0, "pipeline model: the root's time to dispatch a packet")
	readWake := fs.Duration("read-wake", 0, "pipeline model: granularity of the root's wake-ups when it waits for input (a paced replay's sleep)")
	busyAfter := fs.Int("busy-after", 4, "snf: a unit that has drained for this many ticks has its running flowlets moved too (0: only idle flows move; chosen by the sweep in BENCHMARKS.md)")
	maxBacklog := fs.Duration("max-backlog", 500*time.Microsecond, "snf: a unit with more work queued than this (in time at --capacity) takes no new flowlet, and the pool may grow when all are so (0: off; chosen by the sweep in BENCHMARKS.md)")
	target := fs.Float64("target", 0.9, "utilisation a unit is filled to, in (0,1] (chosen by the sweep in BENCHMARKS.md)")
	queue := fs.Int("queue", 4096, "packets a unit's queue holds; more are dropped")
	batch := fs.Int("batch", engine.DefaultBatch, "most packets a unit takes from its queue at once")
	seed := fs.Uint64("seed", 1, "seed of the service times and of the generated traffic")
	packets := fs.Int("packets", 0, "stop the input after this many packets (0: no limit)")
	duration := fs.Duration("duration", time.Second, "generated day (no --in): its length")
	peak := fs.Float64("peak", 10, "generated day (no --in): the diurnal peak, in units' worth of capacity")
	timeline := fs.Bool("timeline", false, "print the active units and offered load over time")
	reportDir := fs.String("report", "", "write an HTML report (index.html and SVG plots) into this directory (not with --sweep)")
	reportPNG := fs.Bool("png", false, "--report: PNG plots instead of SVG")
	var sweeps sweepFlag
	fs.Var(&sweeps, "sweep", "PARAM=V1,V2,...: run every combination (gap, target, tick, cv, measured, busy, backlog); repeatable")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bad := func(format string, a ...any) error { return &exitError{2, "sim: " + fmt.Sprintf(format, a...)} }
	if *chainFile != "" && *nfs != "" {
		return bad("give --chain or --nfs, not both")
	}
	speed, err := parseSpeed("sim", *speedFlag, "a factor > 0 (1 is capture pace)")
	if err != nil {
		return err
	}
	minU, maxU, err := parseUnits(*units)
	if err != nil {
		return bad("%v", err)
	}
	switch {
	case *gap <= 0:
		return bad("--flowlet-gap must be > 0")
	case !validCapacity(*capacity):
		return bad("--capacity must be 0 (measure) or a number of packets/s >= 1")
	case !(*serviceRate >= 0 || *serviceRate == -1) || math.IsInf(*serviceRate, 0):
		return bad("--service-rate must be >= 0, or -1 to measure it")
	case !(*cv >= 0) || math.IsInf(*cv, 0):
		return bad("--cv must be >= 0")
	case !(*handoffCV >= 0) || math.IsInf(*handoffCV, 0):
		return bad("--handoff-cv must be >= 0")
	case *batchCost < 0 || *rootCost < 0 || *readWake < 0:
		return bad("--batch-cost, --root-cost and --read-wake must be >= 0")
	case *cold < 0 || *transfer < 0 || *rtt < 0:
		return bad("--cold-start, --transfer and --store-rtt must be >= 0")
	case !(*bandwidth > 0) || math.IsInf(*bandwidth, 1):
		return bad("--bandwidth must be a number of bytes/s > 0")
	case *slo <= 0 || *tick <= 0:
		return bad("--slo and --tick must be > 0")
	case *queue < 1 || *batch < 1 || *batch > 1<<16:
		return bad("--queue must be >= 1 and --batch between 1 and 65536")
	case *scaleOuts < 1:
		return bad("--scale-outs must be >= 1")
	case *busyAfter < 0:
		return bad("--busy-after must be >= 0 ticks (0: only idle flows move)")
	case *maxBacklog < 0:
		return bad("--max-backlog must be >= 0 (0: off)")
	case !(*target > 0 && *target <= 1):
		return bad("--target must be in (0,1]")
	case *packets < 0:
		return bad("--packets must be >= 0 (0: no limit)")
	case !(*peak > 0) || *peak > 1e6:
		return bad("--peak must be > 0 (at most 1e6)")
	case *duration <= 0 || *duration > time.Hour:
		return bad("--duration must be > 0 and at most 1h")
	}
	measurePipe := *handoff == "-1"
	var handoffD time.Duration
	if !measurePipe {
		if handoffD, err = time.ParseDuration(*handoff); err != nil || handoffD < 0 {
			return bad("--handoff must be a duration >= 0, or -1 to measure the pipeline model")
		}
	}
	if len(sweeps) > 0 && *compare {
		return bad("give --sweep or --compare, not both")
	}
	if len(sweeps) > 0 && (*reportDir != "" || *timeline) {
		return bad("--sweep prints one table: --report and --timeline apply to one policy's run or --compare")
	}
	if *reportPNG && *reportDir == "" {
		return bad("--png applies to --report: give --report DIR")
	}
	if err := sweeps.check(); err != nil {
		return bad("%v", err)
	}
	var policies []string
	if *compare {
		policies = policy.Names()
	} else {
		if !slices.Contains(policy.Names(), *pol) {
			return bad("--policy %q: want one of %s", *pol, strings.Join(policy.Names(), ", "))
		}
		policies = []string{*pol}
	}
	spec, err := loadSpec(*chainFile, *nfs)
	if err != nil {
		return err
	}
	o := simOptions{minU: minU, maxU: maxU, gap: *gap, tick: *tick, speed: speed, capacity: *capacity, cv: *cv, peak: *peak,
		cold: *cold, transfer: *transfer, rtt: *rtt, slo: *slo, bandwidth: *bandwidth, queue: *queue, batch: *batch,
		serviceRate: *serviceRate, scaleOuts: *scaleOuts, busyAfter: *busyAfter, maxBacklog: *maxBacklog, measured: *onMeasured, target: *target, seed: *seed, packets: *packets, duration: *duration, in: *in, spec: spec, timeline: *timeline,
		pipe: engine.Pipeline{Handoff: handoffD, HandoffCV: *handoffCV, BatchCost: *batchCost, RootCost: *rootCost, ReadWake: *readWake}}
	if spec, ok := strings.CutPrefix(o.in, "gen:"); ok {
		if _, err := trace.ParseWorkload(spec); err != nil {
			return bad("--in: %v", err)
		}
	}
	var measured float64
	if o.capacity == 0 || o.serviceRate < 0 {
		if measured, err = measureCapacity(spec); err != nil {
			return err
		}
		if o.capacity == 0 {
			o.capacity = roundDownPow10(measured)
		}
		if o.serviceRate < 0 {
			o.serviceRate = roundDownPow10(measured)
		}
	}
	var pipeMeasured engine.Percentiles
	if measurePipe {
		m, lat, err := engine.CalibratePipeline(spec, 3000, time.Second)
		if err != nil {
			return err
		}
		pipeMeasured, o.pipe.Handoff = lat, m.Handoff
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		if !given["handoff-cv"] {
			o.pipe.HandoffCV = m.HandoffCV
		}
		if !given["batch-cost"] {
			o.pipe.BatchCost = m.BatchCost
		}
		if !given["root-cost"] {
			o.pipe.RootCost = m.RootCost
		}
		if !given["read-wake"] {
			o.pipe.ReadWake = m.ReadWake
		}
	}
	names := make([]string, len(spec.NFs))
	for i, n := range spec.NFs {
		names[i] = n.Name
	}
	notes := []string{
		fmt.Sprintf("input     %s", describeInput(o)),
		fmt.Sprintf("chain     %s", strings.Join(names, " → ")),
		fmt.Sprintf("model     units %d-%d, capacity %.0f packets/s%s (cv %g), target %g, queue %d, cold start %s, transfer %s + bytes at %.3g B/s, store rtt %s (perpacket), tick %s (up to %d activations each%s), backlog bound %s, busy moves after %d ticks, flowlet gap %s, slo %s, seed %d",
			o.minU, o.maxU, o.capacity, serviceNote(o), o.cv, o.target, o.queue, o.cold, o.transfer, o.bandwidth, o.rtt, o.tick, o.scaleOuts, measuredNote(o), o.maxBacklog, o.busyAfter, o.gap, o.slo, o.seed) + pipeNote(o.pipe),
	}
	for _, n := range notes {
		fmt.Fprintln(stdout, n)
	}
	if len(sweeps) > 0 {
		return runSweep(ctx, stdout, o, *pol, sweeps)
	}
	type row struct {
		name string
		s    engine.SimSummary
	}
	var rows []row
	for _, name := range policies {
		s, err := simOne(ctx, o, name)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return &exitError{130, "interrupted"}
			}
			return err
		}
		if s.InputErr != nil {
			return s.InputErr
		}
		rows = append(rows, row{name, s})
		if !*compare {
			printSimSummary(stdout, name, s, o)
		}
	}
	header := []string{"policy", "units min/mean/max", "unit-s", "oracle", "ratio", "p50", "p99", "p99.9", "over SLO",
		"dropped", "reorders", "handovers/s", "bytes moved", "billed"}
	if o.pipe.On() { // the latency 'snf run' measures, from the root's release
		header = slices.Insert(header, 8, "p50 root", "p99 root")
	}
	var table [][]string
	for _, r := range rows {
		s := r.s
		row := []string{r.name, fmt.Sprintf("%d/%.2f/%d", s.UnitsMin, s.UnitsMean, s.UnitsMax),
			fmt.Sprintf("%.3f", s.UnitSeconds), fmt.Sprintf("%.3f", s.OracleUnitSeconds), fmt.Sprintf("%.2f", s.OracleRatio),
			s.Latency.P50.String(), s.Latency.P99.String(), s.Latency.P999.String(), fmt.Sprintf("%.2f%%", 100*s.OverSLOFrac),
			fmt.Sprint(s.Dropped), fmt.Sprint(s.Reorders), fmt.Sprintf("%.0f", s.HandoversPerSec), fmt.Sprint(s.BytesMoved),
			billed(s.Billed)}
		if o.pipe.On() {
			row = slices.Insert(row, 8, s.LatencyFromRoot.P50.String(), s.LatencyFromRoot.P99.String())
		}
		table = append(table, row)
	}
	if *compare {
		fmt.Fprintln(stdout)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
		for _, r := range table {
			fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if o.timeline {
			for _, r := range rows {
				fmt.Fprintf(stdout, "\n%s:\n", r.name)
				printTicks(stdout, r.s.Ticks)
			}
		}
	}
	if *reportDir != "" {
		rep := &report.Report{Title: "snf sim: " + strings.Join(policies, ", "), Notes: notes, Capacity: o.capacity,
			SLO: o.slo, Header: header, Rows: table, PNG: *reportPNG, Command: "snf " + strings.Join(append([]string{"sim"}, args...), " ")}
		for _, r := range rows {
			rep.Runs = append(rep.Runs, reportRun(r.name, r.s))
		}
		if err := report.Write(*reportDir, rep); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nreport    %s\n", filepath.Join(*reportDir, "index.html"))
	}
	// Timing lines last: everything above is a function of the flags and the seed.
	fmt.Fprintln(stdout)
	if measured > 0 {
		fmt.Fprintf(stdout, "timing    calibration measured %.0f packets/s per unit on this machine\n", measured)
	}
	if measurePipe {
		fmt.Fprintf(stdout, "timing    pipeline measured on this machine: %s (fitted to the live engine's latency with the chain on one unit: p50 %s, p99 %s)\n",
			strings.TrimPrefix(pipeNote(o.pipe), ", pipeline: "), pipeMeasured.P50, pipeMeasured.P99)
	}
	for _, r := range rows {
		fmt.Fprintf(stdout, "timing    %s: %s wall, %.0f simulated packets/s\n", r.name, r.s.Wall.Round(time.Millisecond), float64(r.s.Packets)/r.s.Wall.Seconds())
	}
	return nil
}

// simOne runs one policy on a fresh copy of the input.
func simOne(ctx context.Context, o simOptions, name string) (engine.SimSummary, error) {
	p, err := newPolicy(name, o.maxU)
	if err != nil {
		return engine.SimSummary{}, err
	}
	r, err := simInput(o)
	if err != nil {
		return engine.SimSummary{}, err
	}
	defer r.Close()
	return engine.RunSim(ctx, engine.SimConfig{Spec: o.spec, In: r, Policy: p, MinUnits: o.minU, MaxUnits: o.maxU,
		FlowletGap: o.gap, Speed: o.speed, Capacity: o.capacity, Tick: o.tick, Batch: o.batch, QueueLimit: o.queue,
		CV: o.cv, ColdStart: negIfZero(o.cold), TransferBase: negIfZero(o.transfer), Bandwidth: o.bandwidth,
		StoreRTT: o.rtt, SLO: o.slo, Seed: o.seed, Target: o.target, ScaleOuts: o.scaleOuts, ServiceRate: o.serviceRate,
		ScaleOnMeasured: o.measured, BusyAfter: o.busyAfter, MaxBacklog: o.maxBacklog, Pipeline: o.pipe})
}

// pipeNote describes the pipeline model, if on.
func pipeNote(p engine.Pipeline) string {
	if !p.On() {
		return ""
	}
	return fmt.Sprintf(", pipeline: hand-off %s (cv %.2f), batch cost %s, root cost %s per packet, read wake-up %s",
		p.Handoff, p.HandoffCV, p.BatchCost, p.RootCost, p.ReadWake)
}

// negIfZero maps a flag's 0 ("none") to the engine's "none" (negative; its 0 is the default).
func negIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// dayFrameBytes is the mean frame of the default day's traffic (web-search flows, 20% small
// data packets, one ACK per two data packets), measured over its first second: what turns
// --peak units' worth of packets/s into the link rate of the generator.
const dayFrameBytes = 840

// daySpec is the default input: a data-center day relative to the unit capacity.
func daySpec(o simOptions) string {
	link := o.peak * o.capacity * 8 * dayFrameBytes
	return fmt.Sprintf("websearch,load=1,link=%.4g,profile=diurnal:min=0.2,max=1+bursts:x=2,len=50ms,rate=2,duration=%s,warmup=200ms,seed=%d",
		link, o.duration, o.seed)
}

// inputSpec returns --in, or the default day as a gen: spec.
func inputSpec(o simOptions) string {
	if o.in != "" {
		return o.in
	}
	return "gen:" + daySpec(o)
}

// simInput opens the input: a capture, or a generated workload.
func simInput(o simOptions) (port.Reader, error) {
	in := inputSpec(o)
	if spec, ok := strings.CutPrefix(in, "gen:"); ok {
		cfg, err := trace.ParseWorkload(spec)
		if err != nil {
			return nil, &exitError{2, "sim: --in: " + err.Error()}
		}
		if o.packets > 0 {
			cfg.Packets = o.packets
		}
		return trace.NewWorkload(cfg)
	}
	r, err := pcapfile.Open(in)
	if err != nil {
		return nil, err
	}
	if o.packets > 0 {
		return &limitReader{r: r, left: o.packets}, nil
	}
	return r, nil
}

// limitReader stops a reader after a number of packets.
type limitReader struct {
	r    port.Reader
	left int
}

func (l *limitReader) Read(p []packet.Packet) (int, error) {
	if l.left <= 0 {
		return 0, io.EOF
	}
	n, err := l.r.Read(p[:min(len(p), l.left)])
	l.left -= n
	return n, err
}

func (l *limitReader) Close() error { return l.r.Close() }

func describeInput(o simOptions) string {
	s := fmt.Sprintf("%s at speed %g", inputSpec(o), o.speed)
	if o.in == "" {
		s += fmt.Sprintf(" (a data-center day: diurnal peak %g units' worth of %.0f packets/s, bursts of 2× arrivals)", o.peak, o.capacity)
	}
	if o.packets > 0 {
		s += fmt.Sprintf(", first %d packets", o.packets)
	}
	return s
}

// measureCapacity is the median of 5 calibrations.
func measureCapacity(spec *snf.ChainSpec) (float64, error) {
	var v []float64
	for range 5 {
		c, err := engine.Calibrate(spec, 20000)
		if err != nil {
			return 0, err
		}
		v = append(v, c)
	}
	slices.Sort(v)
	return v[len(v)/2], nil
}

// roundDownPow10 rounds x > 0 down to a power of ten: coarse, so that the noise of a
// measurement on a shared machine (easily ±50%) rarely moves it.
func roundDownPow10(x float64) float64 {
	return math.Pow(10, math.Floor(math.Log10(x)))
}

func billed(b []engine.NFBill) string {
	var parts []string
	for _, x := range b {
		parts = append(parts, fmt.Sprintf("%s %d", x.Name, x.Packets))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func printSimSummary(w io.Writer, name string, s engine.SimSummary, o simOptions) {
	fmt.Fprintf(w, "\npolicy    %s\n", name)
	fmt.Fprintf(w, "packets   %d in, %d out, %d dropped at full queues, %d dropped by the chain, %d emitted; %d alerts\n",
		s.Packets, s.Written, s.Dropped, s.Chain.Dropped, s.Chain.Emitted, s.Chain.Alerts)
	fmt.Fprintf(w, "flows     %d flows, %d flowlets, %d reorderings inside flows\n", s.Flows, s.Flowlets, s.Reorders)
	fmt.Fprintf(w, "handover  %d handovers (%.0f/s; %d moving idle flows off draining units), %d state bytes moved; %d packets held for state, waiting p50 %s p99 %s\n",
		s.Handovers, s.HandoversPerSec, s.Evacuated, s.BytesMoved, s.Held, s.HeldWait.P50, s.HeldWait.P99)
	if s.StoreReads > 0 {
		fmt.Fprintf(w, "store     per-packet flow state: %d reads, %d writes\n", s.StoreReads, s.StoreWrites)
	}
	fmt.Fprintf(w, "units     min %d, mean %.2f, max %d active; %.3f unit-seconds, oracle %.3f (ratio %.2f)\n",
		s.UnitsMin, s.UnitsMean, s.UnitsMax, s.UnitSeconds, s.OracleUnitSeconds, s.OracleRatio)
	fmt.Fprintf(w, "latency   mean %s, p50 %s, p99 %s, p99.9 %s; %.2f%% over the %s SLO (mean service %s)\n",
		s.LatencyMean, s.Latency.P50, s.Latency.P99, s.Latency.P999, 100*s.OverSLOFrac, s.SLO, s.ServiceMean)
	if o.pipe.On() {
		fmt.Fprintf(w, "          from the root's release (the span 'snf run' measures): p50 %s, p99 %s, p99.9 %s\n",
			s.LatencyFromRoot.P50, s.LatencyFromRoot.P99, s.LatencyFromRoot.P999)
	}
	fmt.Fprintf(w, "time      %s simulated\n", s.Elapsed.Round(time.Microsecond))
	fmt.Fprintf(w, "billed    packets per NF: %s\n", billed(s.Billed))
	if o.timeline {
		printTicks(w, s.Ticks)
	}
}

// printTicks prints about 20 of the controller's intervals.
func printTicks(w io.Writer, ticks []engine.SimSample) {
	fmt.Fprintln(w, "timeline  at, offered load (packets/s), oracle units, active units, handovers, share of packets out over the SLO:")
	step := max(1, len(ticks)/20)
	for i := 0; i < len(ticks); i += step {
		t := ticks[i]
		over := 0.0
		if t.Out > 0 {
			over = 100 * float64(t.OverSLO) / float64(t.Out)
		}
		fmt.Fprintf(w, "  %9s  %12.0f  %4d  %4d  %6d  %6.2f%% %s\n", t.At.Round(time.Millisecond), t.Offered, t.Oracle, t.Active, t.Handovers, over, strings.Repeat("█", min(t.Active, 64)))
	}
}

// sweepFlag is the repeatable --sweep PARAM=V1,V2,... flag.
type sweepFlag []sweepParam

type sweepParam struct {
	name string
	vals []string
}

func (f *sweepFlag) String() string { return "" }

// Set records the value; check validates it after parsing, so that a bad one is a one-line
// error like any other flag's.
func (f *sweepFlag) Set(v string) error {
	name, list, _ := strings.Cut(v, "=")
	*f = append(*f, sweepParam{name, strings.Split(list, ",")})
	return nil
}

func (f sweepFlag) check() error {
	for i, p := range f {
		if p.name == "" || len(p.vals) == 0 || p.vals[0] == "" {
			return fmt.Errorf("--sweep %q: want PARAM=V1,V2,... (gap, target, tick, cv, measured or busy)", p.name)
		}
		for _, q := range f[:i] {
			if q.name == p.name {
				return fmt.Errorf("--sweep: %s swept twice", p.name)
			}
		}
		var probe simOptions
		for _, x := range p.vals {
			if err := probe.set(p.name, x); err != nil {
				return fmt.Errorf("--sweep: %v", err)
			}
		}
	}
	return nil
}

// set sets one swept parameter of o.
func (o *simOptions) set(name, v string) error {
	switch name {
	case "gap", "tick":
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s=%q: want a duration > 0", name, v)
		}
		if name == "gap" {
			o.gap = d
		} else {
			o.tick = d
		}
	case "backlog":
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("backlog=%q: want a duration >= 0", v)
		}
		o.maxBacklog = d
	case "busy":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("busy=%q: want ticks >= 0", v)
		}
		o.busyAfter = n
	case "measured":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("measured=%q: want true or false", v)
		}
		o.measured = b
	case "target", "cv":
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(x) || x < 0 || (name == "target" && !(x > 0 && x <= 1)) || math.IsInf(x, 0) {
			return fmt.Errorf("%s=%q: want a number (target in (0,1], cv >= 0)", name, v)
		}
		if name == "target" {
			o.target = x
		} else {
			o.cv = x
		}
	default:
		return fmt.Errorf("unknown parameter %q (gap, target, tick, cv, measured or busy)", name)
	}
	return nil
}

// runSweep runs policy name once per combination of the swept values and prints a table.
func runSweep(ctx context.Context, stdout io.Writer, o simOptions, name string, sweeps sweepFlag) error {
	combos := [][]string{nil}
	for _, p := range sweeps {
		var next [][]string
		for _, c := range combos {
			for _, v := range p.vals {
				next = append(next, append(slices.Clone(c), v))
			}
		}
		combos = next
	}
	fmt.Fprintf(stdout, "\nsweep     policy %s, %d runs\n", name, len(combos))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := ""
	for _, p := range sweeps {
		head += p.name + "\t"
	}
	fmt.Fprintln(tw, head+"units mean/max\tunit-s\tratio\tp99\tp99.9\tover SLO\tdropped\thandovers/s\tbytes moved\t")
	var walls []time.Duration
	var pkts []uint64
	for _, c := range combos {
		oc := o
		line := ""
		for i, p := range sweeps {
			if err := oc.set(p.name, c[i]); err != nil {
				return err
			}
			line += c[i] + "\t"
		}
		s, err := simOne(ctx, oc, name)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return &exitError{130, "interrupted"}
			}
			return err
		}
		if s.InputErr != nil {
			return s.InputErr
		}
		fmt.Fprintf(tw, "%s%.2f/%d\t%.3f\t%.2f\t%s\t%s\t%.2f%%\t%d\t%.0f\t%d\t\n", line, s.UnitsMean, s.UnitsMax, s.UnitSeconds,
			s.OracleRatio, s.Latency.P99, s.Latency.P999, 100*s.OverSLOFrac, s.Dropped, s.HandoversPerSec, s.BytesMoved)
		walls, pkts = append(walls, s.Wall), append(pkts, s.Packets)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	var total time.Duration
	var n uint64
	for i := range walls {
		total += walls[i]
		n += pkts[i]
	}
	fmt.Fprintf(stdout, "timing    %d runs: %s wall, %.0f simulated packets/s\n", len(walls), total.Round(time.Millisecond), float64(n)/total.Seconds())
	return nil
}

// reportRun converts a simulated run for the report.
func reportRun(name string, s engine.SimSummary) report.Run {
	run := report.Run{Name: name}
	var prev time.Duration
	for _, t := range s.Ticks {
		hps := 0.0
		if dt := t.At - prev; dt > 0 {
			hps = float64(t.Handovers) / dt.Seconds()
		}
		prev = t.At
		run.Timeline = append(run.Timeline, report.Point{At: t.At, Offered: t.Offered, Oracle: t.Oracle, Active: t.Active, Handovers: hps})
	}
	for _, c := range s.LatencyCDF {
		run.Latency = append(run.Latency, report.CDFPoint{Latency: c.Value, Fraction: c.Fraction})
	}
	return run
}

func serviceNote(o simOptions) string {
	if o.serviceRate > 0 {
		return fmt.Sprintf(" planned, serving %.0f", o.serviceRate)
	}
	return ""
}

func measuredNote(o simOptions) string {
	if o.measured {
		return ", only when the measured load needs them"
	}
	return ""
}
