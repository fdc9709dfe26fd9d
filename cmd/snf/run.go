package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	_ "github.com/snf-dev/snf/nf/all"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/afpacket"
	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/report"
	"github.com/snf-dev/snf/store"
	"github.com/snf-dev/snf/trace"
)

const runHelp = `Usage: snf run [--chain FILE | --nfs LIST] [--in CAPTURE | --in if:IFACE] [--out FILE | --out if:IFACE] [flags]

Processes packets through a chain of NFs on the embedded runtime and prints a summary:
packets in, out and dropped per NF, flows, wall time and packets/s.

The chain is a YAML file (--chain) or a comma-separated list of NF types with their
default configs (--nfs; 'snf nfs' lists them). The input is a pcap or pcapng capture
(Ethernet); without --in, snf generates synthetic traffic (TCP, UDP and ICMP flows from
10.0.0.0/16 to 198.18.0.0/15 and back). --in gen:SPEC streams a realistic generated workload
(flow sizes from published distributions, a load profile over time; the SPEC is that of
'snf trace gen', e.g. gen:websearch,load=0.3,duration=5s) without writing a file. The
output, if --out is given, is a capture of the packets that leave the chain (pcapng if the
name ends in .pcapng, else pcap).

--in if:IFACE reads a live network interface (Linux, as root: AF_PACKET with a memory-mapped
receive ring of --ring frames; the interface in promiscuous mode while it runs) until
Ctrl-C — which ends the run normally, its summary printed — or --count packets, or --idle
without one; --out if:IFACE sends the packets out of one (it may be the input's). With
--recovery, the packet log keeps where each packet is in the receive ring, which holds the
frames until a checkpoint covers them; when the ring is full of frames kept, the kernel
drops what arrives, and the summary counts it.

With --policy (or --units, --compare) the chain runs on an elastic pool of compute units:
a root detects flowlets and sends each new one to a unit chosen by the policy (snf: flowlet
bin-packing; perflow: sticky hashing; perpacket: any packet anywhere, flow state in the
store; static: a fixed pool), units start and stop with the load (at full speed, or while
the pool falls behind, the pool does not shrink: the load it sees is what it took), and a
flow's state moves between units with its flowlets. The summary then adds flowlets,
handovers, reorderings, units over time, unit-seconds, packets billed per NF and latency
percentiles.

Shared state (a NAT's port pool, a monitor's counters, a load balancer's backends) lives in
the embedded store unless --store names a Redis server.

A bad input file ends the run with an error naming the file and offset, after every good
packet before it was processed and written; the exit status is then 1.

Examples:
  snf run
  snf run --nfs nat,firewall --in in.pcap --out out.pcap
  snf run --chain chain.yaml --in in.pcap --speed 1      # at capture pace
  snf run --nfs none --in in.pcapng --out copy.pcapng     # empty chain: a copy
  snf run --nfs portscan --in scan.pcap --alerts -        # alerts as JSON lines on stderr
  snf run --policy snf --units 1-8 --in in.pcap --speed 4 # elastic units
  snf run --compare --in in.pcap --speed 4 --capacity 2000
  snf run --nfs nat,monitor --in in.pcap --store redis://127.0.0.1:6379
  snf run --policy snf --in gen:websearch,load=0.2,profile=diurnal,duration=3s --speed 1
  snf run --nfs nat,firewall --in if:eth1 --out if:eth2 --policy snf --recovery
`

// openInput opens --in: a capture file, a generated workload ("gen:SPEC", see 'snf trace gen
// --help'), or, when empty, the built-in generator (packets and seed apply to it). With
// rereadable (a run with a packet log), generated traffic keeps what builds each frame again,
// so that the log keeps positions rather than copies (trace.GenConfig.Rereadable).
// "if:IFACE" is a live interface, opened with lo.
func openInput(in string, packets int, seed uint64, rereadable bool, lo afpacket.Options) (port.Reader, uint32, error) {
	if iface, ok := strings.CutPrefix(in, "if:"); ok {
		lo.NoTx = true
		p, err := afpacket.Open(iface, lo)
		if err != nil {
			return nil, 0, err
		}
		return p, p.LinkType(), nil
	}
	if spec, ok := strings.CutPrefix(in, "gen:"); ok {
		cfg, err := trace.ParseWorkload(spec)
		if err != nil {
			return nil, 0, &exitError{2, "--in: " + err.Error()}
		}
		cfg.Rereadable = rereadable
		w, err := trace.NewWorkload(cfg)
		if err != nil {
			return nil, 0, &exitError{2, "--in: " + err.Error()}
		}
		return w, 1, nil
	}
	if in != "" {
		pr, err := pcapfile.Open(in)
		if err != nil {
			return nil, 0, err
		}
		return pr, pr.LinkType(), nil
	}
	cfg := trace.DefaultGenConfig()
	cfg.Packets, cfg.Seed, cfg.Rereadable = packets, seed, rereadable
	g, err := trace.NewGenerator(cfg)
	if err != nil {
		return nil, 0, err
	}
	return g, 1, nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", runHelp, stdout, stderr)
	chainFile := fs.String("chain", "", "chain file (YAML); see 'snf nfs' for NF configs")
	nfs := fs.String("nfs", "", "comma-separated NF types with default configs, or none (default nat,firewall when --chain is not given)")
	in := fs.String("in", "", "input capture, pcap or pcapng: a file, or a pipe such as /dev/stdin, read as packets arrive (default: generated traffic)")
	out := fs.String("out", "", "output capture of the packets leaving the chain")
	speedFlag := fs.String("speed", "max", "replay pace: max (as fast as possible), 1 (capture pace), 2 (twice as fast), 0.5, …")
	pol := fs.String("policy", "", "run elastic units with this allocation policy: snf, perflow, perpacket or static (default: one chain, no units); perpacket takes no --recovery, --fail or --verify")
	units := fs.String("units", "", "elastic pool size: N (1 to N), or MIN-MAX (default 1-8; static uses MAX)")
	gap := fs.Duration("flowlet-gap", 500*time.Microsecond, "flowlet gap δ: a flow's packet more than this after its previous one starts a new flowlet")
	ckEvery := fs.Duration("checkpoint", 0, "elastic runs: every unit writes its state (flows, Scoped values) to the store at this interval, in the background (0: never; --recovery: 10ms)")
	capacity := fs.Float64("capacity", 0, "packets/s one unit sustains for this chain (default: measured at start)")
	compare := fs.Bool("compare", false, "run every policy on the same input and print one table (--report: and plots); --out, --alerts, --checkpoint and --store apply to one policy's run, not to it")
	reportDir := fs.String("report", "", "elastic runs: write an HTML report (index.html and SVG plots) into this directory")
	storeURL := fs.String("store", "embedded", "where shared state lives: embedded (in this process) or redis://HOST:PORT[/DB] (the run keeps its state there under a namespace of its own, run/ID, deleted when it ends: runs sharing a server never see each other's state)")
	batch := fs.Int("batch", engine.DefaultBatch, "packets per batch")
	packets := fs.Int("packets", 200000, "packets to generate when there is no --in")
	seed := fs.Uint64("seed", 1, "seed of the generated traffic")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	alerts := fs.String("alerts", "", "write the NFs' alerts as JSON lines to this file (- for stderr)")
	recovery := fs.Bool("recovery", false, "elastic runs: log packets at the root and checkpoint units, so that a failed unit is replaced and its packets replayed (not with --policy perpacket)")
	ring := fs.Int("ring", 65536, "--in if:IFACE: frames of 2 KB its receive ring holds: with --recovery it keeps every frame from the oldest one a replay may need, so give it at least the rate times the failure timeout (100ms) — a stalled unit's frames fill it until the unit is replaced, and the kernel drops what comes meanwhile")
	count := fs.Int64("count", 0, "--in if:IFACE: stop after this many packets (default: at Ctrl-C)")
	idle := fs.Duration("idle", 0, "--in if:IFACE: stop after this long without a packet (default: at Ctrl-C)")
	readOnce := fs.Bool("read-once", false, "with --recovery: take the input as one that cannot be read again, as a pipe: the packet log keeps copies of the frames (for a chain whose NFs read only headers, their headers once written), not their positions in the input")
	var faults []engine.Fault
	fs.Func("fail", "inject a fault before packet N (or at a capture time such as 1.5s instead of N): unit=K@N kills unit K, stall=K@N/50ms stalls it, scale=+K@N starts K more units at once, scale=-K@N drains K units at once (their flows move away under --policy snf), move=K@N moves every flow of unit K (snf); repeatable; turns on --recovery", func(v string) error {
		f, err := engine.ParseFault(v)
		if err != nil {
			return err
		}
		faults = append(faults, f)
		return nil
	})
	verify := fs.Bool("verify", false, "also run the one-chain reference and check chain output equivalence (the input is read into memory); exit status 1 when it does not hold (not with --policy perpacket, which does not keep it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *chainFile != "" && *nfs != "" {
		return &exitError{2, "run: give --chain or --nfs, not both"}
	}
	speed := 0.0
	if *speedFlag != "max" {
		v, err := parseSpeed("run", *speedFlag, "max or a factor > 0 (1 is capture pace)")
		if err != nil {
			return err
		}
		speed = v
	}
	minU, maxU, err := parseUnits(*units)
	if err != nil {
		return &exitError{2, "run: " + err.Error()}
	}
	if *gap <= 0 {
		return &exitError{2, "run: --flowlet-gap must be > 0"}
	}
	if !validCapacity(*capacity) {
		return &exitError{2, "run: --capacity must be 0 (measure) or a number of packets/s >= 1"}
	}
	if *packets < 0 {
		return &exitError{2, "run: --packets must be >= 0"}
	}
	if *ckEvery < 0 {
		return &exitError{2, "run: --checkpoint must be >= 0"}
	}
	if len(faults) > 0 {
		*recovery = true
	}
	elastic := *pol != "" || *units != "" || *compare || *recovery || *verify
	if elastic && *pol == "" && !*compare {
		*pol = "snf"
	}
	if *compare && *pol != "" {
		return &exitError{2, "run: --compare runs every policy; do not give --policy"}
	}
	if elastic {
		// Each unit has 16 batches of its own, each packet a 2 KB buffer: refuse what would
		// not fit rather than die out of memory.
		if need := float64(maxU) * 16 * float64(*batch) * 2304; need > 4<<30 {
			return &exitError{2, fmt.Sprintf("run: --batch %d with up to %d units needs %.0f GB of packet buffers (units × 16 batches × %d packets × 2 KB, at most 4 GB): give a smaller --batch or fewer --units", *batch, maxU, need/1e9, *batch)}
		}
	}
	if *compare {
		// What runCompare does not use: refused rather than silently ignored.
		var ignored []string
		for _, f := range []struct {
			name  string
			given bool
		}{{"--out", *out != ""}, {"--alerts", *alerts != ""}, {"--checkpoint", *ckEvery > 0}, {"--store", *storeURL != "embedded"}} {
			if f.given {
				ignored = append(ignored, f.name)
			}
		}
		if len(ignored) > 0 {
			verb := map[bool]string{true: "applies", false: "apply"}[len(ignored) == 1]
			return &exitError{2, fmt.Sprintf("run: --compare writes only its table (and --report): %s %s to one policy's run (--policy)", strings.Join(ignored, ", "), verb)}
		}
	}
	if *pol == "perpacket" && *recovery {
		by := "--recovery"
		if len(faults) > 0 {
			by = "--fail (which turns on --recovery)"
		}
		return &exitError{2, "run: " + by + " does not support --policy perpacket: its flow state is written to the store per packet, untagged, so a replay would apply packets twice (use snf, perflow or static)"}
	}
	if *pol == "perpacket" && *verify {
		return &exitError{2, "run: --verify checks chain output equivalence, which --policy perpacket does not keep by design: any unit takes any packet, so a flow's packets may be reordered and race on its state (verify snf, perflow or static)"}
	}
	if !elastic {
		// The elastic runs' flags would be ignored by one chain: refused, as --report is.
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for _, name := range []string{"report", "capacity", "flowlet-gap", "checkpoint"} {
			if given[name] {
				return &exitError{2, "run: --" + name + " needs an elastic run (--policy, --units or --compare)"}
			}
		}
	}
	if *batch < 1 || *batch > 1<<16 {
		return &exitError{2, "run: --batch must be between 1 and 65536"}
	}
	liveIn := strings.HasPrefix(*in, "if:")
	if err := checkLive("run", liveIn, fs, *speedFlag, *verify, *compare, *ring, *count, *idle); err != nil {
		return err
	}
	inFile := *in
	if strings.HasPrefix(inFile, "gen:") || liveIn {
		inFile = ""
	}
	outFile := *out
	if strings.HasPrefix(outFile, "if:") {
		outFile = ""
	}
	alertsFile := *alerts
	if alertsFile == "-" {
		alertsFile = ""
	}
	if err := checkOutputs("run", []namedPath{{"--out", outFile}, {"--alerts", alertsFile}},
		[]namedPath{{"--in", inFile}, {"--chain", *chainFile}}); err != nil {
		return err
	}
	spec, err := loadSpec(*chainFile, *nfs)
	if err != nil {
		return err
	}

	inName := "generated traffic"
	if *in != "" {
		inName = *in
	}
	// openAs opens the input afresh (--compare reads it once per policy), generated traffic
	// rereadable or not (openInput) — with --read-once, taken as read once (port.Copied).
	var live *afpacket.Port // --in if:IFACE
	openAs := func(rereadable bool) (port.Reader, uint32, error) {
		r, linkType, err := openInput(*in, *packets, *seed, rereadable && !*readOnce,
			afpacket.Options{Frames: *ring, Count: *count, Idle: *idle})
		if err != nil {
			return nil, 0, err
		}
		live, _ = r.(*afpacket.Port)
		if speed > 0 {
			r = port.PacedWith(r, speed, port.SleepContext(ctx), time.Now) // (its waits end with ctx)
		}
		if *readOnce {
			r = port.Copied(r)
		}
		return r, linkType, nil
	}
	open := func() (port.Reader, uint32, error) {
		return openAs(*recovery && !*verify) // (--verify reads it into memory)
	}
	if *readOnce && !*recovery {
		return &exitError{2, "run: --read-once applies to the packet log: give --recovery (or --fail)"}
	}
	if *compare && (len(faults) > 0 || *verify || *recovery) {
		return &exitError{2, "run: --compare runs every policy once: --fail, --recovery and --verify apply to one policy (--policy)"}
	}
	if *compare {
		err := runCompare(ctx, stdout, stderr, spec, open, inName, minU, maxU, *gap, *batch, *capacity, *quiet, *reportDir, args)
		if errors.Is(err, context.Canceled) {
			return &exitError{130, "interrupted"}
		}
		return err
	}
	r, linkType, err := open()
	if err != nil {
		return err
	}
	defer r.Close()
	runCtx := ctx
	if live != nil {
		// Ctrl-C ends a live interface's input, and the run then ends as at any input's
		// end: its summary printed, exit status 0. (A second Ctrl-C kills the process.)
		runCtx = context.WithoutCancel(ctx)
		defer context.AfterFunc(ctx, live.Stop)()
		if !*quiet {
			until := "until Ctrl-C"
			if *count > 0 {
				until += fmt.Sprintf(" or %d packets", *count)
			}
			if *idle > 0 {
				until += fmt.Sprintf(" or %v without one", *idle)
			}
			fmt.Fprintf(stderr, "snf: reading %s %s\n", *in, until)
		}
	}
	closeAlerts := func() error { return nil } // --alerts: flush and close, its first error

	st, closeStore, err := openRunStore(*storeURL, stderr)
	if err != nil {
		return err
	}
	defer closeStore()

	var sink *snf.JSONAlerts
	if *alerts != "" {
		ao, err := openAlerts(*alerts, stderr)
		if err != nil {
			return err
		}
		defer ao.close() // (on an early return; the run's end closes it and reports its error)
		sink = ao.sink
		closeAlerts = ao.close
	}
	opts := snf.ChainOptions{Store: st}
	if sink != nil {
		opts.Alerts = sink
	}
	chain, err := snf.NewChain(spec, opts)
	if err != nil {
		return err
	}
	defer chain.Close()

	var w port.Writer
	var liveOut *afpacket.Port // --out if:IFACE
	if iface, ok := strings.CutPrefix(*out, "if:"); ok {
		if linkType != 1 {
			return &exitError{2, fmt.Sprintf("run: --out %s sends Ethernet frames; the input's link type is %d", *out, linkType)}
		}
		if liveOut, err = afpacket.Open(iface, afpacket.Options{NoRx: true}); err != nil {
			return err
		}
		w = liveOut
	} else if *out != "" {
		pw, err := pcapfile.Create(*out, pcapfile.FormatFromName(*out), linkType, 0)
		if err != nil {
			return err
		}
		w = pw
	}
	// liveStats prints what the live interfaces counted (after the run).
	liveStats := func() {
		if live != nil {
			st := live.Stats()
			fmt.Fprintf(stdout, "interface %s: %d frames read, %d dropped by the kernel (the receive ring full), %d truncated (longer than a slot)\n", *in, st.Received, st.Dropped, st.Truncated)
		}
		if liveOut != nil {
			st := liveOut.Stats()
			fmt.Fprintf(stdout, "interface %s: %d frames sent, %d not sent (shorter than an Ethernet header or longer than the MTU)\n", *out, st.Sent, st.TxDropped)
		}
	}

	if elastic {
		p, err := newPolicy(*pol, maxU)
		if err != nil {
			return &exitError{2, "run: " + err.Error()}
		}
		lc := engine.LiveConfig{Spec: spec, In: r, Out: w, Policy: p, MinUnits: minU, MaxUnits: maxU,
			FlowletGap: *gap, Batch: *batch, Capacity: *capacity, Store: st, Checkpoint: *ckEvery,
			Recovery: *recovery, Faults: faults}
		if sink != nil {
			lc.Alerts = sink
		}
		if !*quiet {
			lc.Progress = func(p engine.LiveProgress) {
				fmt.Fprintf(stderr, "snf: %d packets, %d units, %.0f packets/s\n", p.Packets, p.Units, float64(p.Packets)/p.Elapsed.Seconds())
			}
		}
		for _, f := range faults {
			if f.Unit >= maxU {
				return &exitError{2, fmt.Sprintf("run: --fail %s: the pool has units 0..%d", f, maxU-1)}
			}
		}
		if !*quiet {
			fmt.Fprintf(stderr, "snf: %s policy, %d-%d units\n", *pol, minU, maxU)
		}
		var sum engine.LiveSummary
		var runErr, coe error
		if *verify {
			// Generated traffic gives the same frames when opened again: the run reads it
			// so, as it would without --verify (with a log: rereadable, positions kept).
			var again func() (port.Reader, error)
			if *in == "" || strings.HasPrefix(*in, "gen:") {
				again = func() (port.Reader, error) {
					r, _, err := openAs(*recovery)
					return r, err
				}
			}
			sum, coe, runErr = runVerified(ctx, lc, again, *readOnce, stderr, *quiet)
		} else {
			sum, runErr = engine.RunLive(runCtx, lc)
		}
		if w != nil {
			if err := w.Close(); err != nil && runErr == nil {
				runErr = fmt.Errorf("write %s: %w", *out, err)
			}
		}
		if err := closeAlerts(); err != nil && runErr == nil {
			runErr = err
		}
		printLiveSummary(stdout, inName, spec, *pol, minU, maxU, *gap, sum)
		liveStats()
		if len(sum.FaultsMissed) > 0 {
			// Not an error (the input's length is known only once read), but not silent: a
			// run that verifies COE "under a fault" that never happened says so.
			fmt.Fprintf(stderr, "snf: warning: --fail %s: not injected, the run ended first (at packet %d)\n", faultList(sum.FaultsMissed), sum.Packets)
		}
		if len(sum.FaultsIdle) > 0 {
			// Nor a fault that hit a unit with nothing to lose: the pool had not started it.
			fmt.Fprintf(stderr, "snf: warning: --fail %s: the unit was not active (the pool had not started it), so the fault tested nothing; --policy static --units N keeps N units busy\n", faultList(sum.FaultsIdle))
		}
		if *verify && runErr == nil {
			if coe != nil {
				fmt.Fprintf(stdout, "verify    %v\n", coe)
				return &exitError{1, "chain output equivalence does not hold (see verify above)"}
			}
			fmt.Fprintf(stdout, "verify    COE holds: the same %d packets as one chain (byte for byte%s), in the same order within each flow, the same final flow states and alerts, the same packets billed per NF\n",
				sum.Written, map[bool]string{true: ", up to the values shared state hands out", false: ""}[sharedValues(spec)])
		}
		if *reportDir != "" && runErr == nil {
			header, row := liveRow(*pol, sum)
			rep := &report.Report{Title: "snf run: " + *pol, Capacity: sum.Capacity, Header: header, Rows: [][]string{row},
				Runs: []report.Run{liveReportRun(*pol, sum)}, Command: "snf " + strings.Join(append([]string{"run"}, args...), " "),
				Notes: liveNotes(inName, minU, maxU, *gap, sum.Capacity, saturated(sum))}
			if err := report.Write(*reportDir, rep); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "report    %s\n", filepath.Join(*reportDir, "index.html"))
		}
		if runErr != nil {
			if errors.Is(runErr, context.Canceled) {
				return &exitError{130, "interrupted; the output holds the packets processed so far"}
			}
			return runErr
		}
		return sum.InputErr
	}
	cfg := engine.Config{Chain: chain, In: r, Out: w, Batch: *batch}
	if !*quiet {
		cfg.Progress = func(s engine.Summary) {
			fmt.Fprintf(stderr, "snf: %d packets, %d out, %.0f packets/s\n", s.Packets, s.Written, s.PPS())
		}
	}
	sum, runErr := engine.Run(runCtx, cfg)
	if w != nil {
		if err := w.Close(); err != nil && runErr == nil {
			runErr = fmt.Errorf("write %s: %w", *out, err)
		}
	}
	if err := store.Flush(st); err != nil && runErr == nil {
		runErr = err // (it names the store: "store: redis …")
	}
	printSummary(stdout, inName, spec, chain, sum)
	liveStats()
	if err := chain.WriteReports(stdout); err != nil && runErr == nil {
		runErr = err
	}
	if err := closeAlerts(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) {
			return &exitError{130, "interrupted; the output holds the packets processed so far"}
		}
		return runErr
	}
	if sum.InputErr != nil {
		return sum.InputErr
	}
	return nil
}

// alertsOut is --alerts: JSON lines to a file (buffered) or, for "-", to stderr.
type alertsOut struct {
	name string
	sink *snf.JSONAlerts
	f    *os.File // nil for stderr
	bw   *bufio.Writer
	done bool
	err  error
}

func openAlerts(name string, stderr io.Writer) (*alertsOut, error) {
	a := &alertsOut{name: name}
	if name == "-" {
		a.name = "stderr"
		a.sink = snf.NewJSONAlerts(stderr)
		return a, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	a.f, a.bw = f, bufio.NewWriter(f)
	a.sink = snf.NewJSONAlerts(a.bw)
	return a, nil
}

// close flushes and closes the file once, and returns the first error of writing an alert,
// flushing or closing (the same on every call): alerts lost are a failed run.
func (a *alertsOut) close() error {
	if a.done {
		return a.err
	}
	a.done = true
	err := a.sink.Err()
	if a.f != nil {
		if ferr := a.bw.Flush(); err == nil {
			err = ferr
		}
		if cerr := a.f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		a.err = fmt.Errorf("write alerts to %s: %w", a.name, err)
	}
	return a.err
}

// validCapacity reports whether c is a --capacity: 0 (measure it) or finite packets/s of at
// least 1 (below, it would print as 0 packets/s, and a unit could serve no packet).
func validCapacity(c float64) bool {
	return c == 0 || (c >= 1 && !math.IsInf(c, 0))
}

// parseSpeed reads a --speed factor (> 0, finite); want says what the flag takes.
func parseSpeed(cmd, s, want string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) { // (NaN too)
		return 0, &exitError{2, fmt.Sprintf("%s: --speed %q: want %s", cmd, s, want)}
	}
	return v, nil
}

// loadSpec returns the chain of --chain or --nfs (default nat,firewall).
func loadSpec(chainFile, nfs string) (*snf.ChainSpec, error) {
	if nfs != "" && nfs != "none" {
		for i, name := range strings.Split(nfs, ",") {
			if strings.TrimSpace(name) == "" {
				return nil, &exitError{2, fmt.Sprintf("--nfs: empty NF name at position %d (want a comma-separated list such as nat,firewall, or none)", i+1)}
			}
		}
	}
	switch {
	case chainFile != "":
		return snf.LoadChainFile(chainFile)
	case nfs != "":
		return snf.ChainFromNames(nfs)
	}
	return snf.ChainFromNames("nat,firewall")
}

func printSummary(w io.Writer, inName string, spec *snf.ChainSpec, chain *snf.Chain, s engine.Summary) {
	names := make([]string, len(spec.NFs))
	for i, n := range spec.NFs {
		names[i] = n.Name
	}
	chainName := strings.Join(names, " → ")
	if chainName == "" {
		chainName = "(empty)"
	}
	fmt.Fprintf(w, "input    %s\n", inName)
	fmt.Fprintf(w, "chain    %s\n", chainName)
	span := time.Duration(s.LastTS - s.FirstTS)
	fmt.Fprintf(w, "packets  %d in, %d out, %d dropped, %d emitted (%d non-IP passed, %d malformed)\n",
		s.Chain.In, s.Chain.Out, s.Chain.Dropped, s.Chain.Emitted, s.Chain.NonIP, s.Chain.Malformed)
	if s.Chain.Alerts > 0 {
		fmt.Fprintf(w, "alerts   %d\n", s.Chain.Alerts)
	}
	fs := chain.FlowStats()
	fmt.Fprintf(w, "flows    %d seen, %d active at end, %d expired, %d evicted\n", fs.Created, fs.Active, fs.Expired, fs.Evicted)
	fmt.Fprintf(w, "time     %s wall for %s of traffic, %.0f packets/s\n",
		s.Elapsed.Round(time.Millisecond), span.Round(time.Millisecond), s.PPS())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNF\tin\tdropped\temitted\talerts\tcounters")
	for _, r := range chain.Report() {
		var cs []string
		for _, m := range r.Metrics {
			if m.Value > 0 {
				cs = append(cs, fmt.Sprintf("%s=%d", m.Name, m.Value))
			}
		}
		sort.Strings(cs)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", r.Name, r.Stats.In, r.Stats.Dropped, r.Stats.Emitted, r.Stats.Alerts, strings.Join(cs, " "))
	}
	tw.Flush()
}

// checkLive refuses the flags that a live interface's input (--in if:IFACE) takes without
// one, and those it cannot take.
func checkLive(cmd string, live bool, fs *flag.FlagSet, speed string, verify, compare bool, ring int, count int64, idle time.Duration) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !live {
		for _, name := range []string{"ring", "count", "idle"} {
			if given[name] {
				return &exitError{2, cmd + ": --" + name + " applies to a live interface (--in if:IFACE)"}
			}
		}
		return nil
	}
	switch {
	case given["speed"] && speed != "max":
		return &exitError{2, cmd + ": --speed paces a capture; a live interface comes at its own pace"}
	case verify:
		return &exitError{2, cmd + ": --verify reads its input into memory and runs it twice: capture the interface first (--out FILE with --nfs none), then verify the capture"}
	case compare:
		return &exitError{2, cmd + ": --compare runs every policy on the same input: capture the interface first, then compare on the capture"}
	case ring < 256 || ring > 1<<19:
		return &exitError{2, cmd + ": --ring must be between 256 and 524288 frames (of 2 KB: 1 GB)"}
	case count < 0 || idle < 0:
		return &exitError{2, cmd + ": --count and --idle must be >= 0"}
	}
	return nil
}
