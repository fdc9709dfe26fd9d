package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/replay"
	"github.com/snf-dev/snf/trace"
	"github.com/snf-dev/snf/unit"
)

// BenchmarkRecovery measures, side by side in one run, what failure-proofing costs and how
// fast it recovers, on the chain nat,firewall over generated traffic from memory, two units:
//
//   - throughput: packets/s at full speed without and with the packet log and checkpoints
//     (every 10 ms) — the log keeping positions in the input ("on"), or copies of the frames
//     ("copied": an input read once) — one run of each in turn per iteration (so that the
//     machine's noise hits all alike; each first in turn), over 1,000,000 packets (a long
//     run: the log's memory is reused after its first tens of milliseconds, as in any
//     long-running deployment); the cost over all iterations, the median of the iterations'
//     costs, a 95 % bootstrap interval of their mean, the CPU time per packet of the whole
//     process, and the cost between each mode's fastest run (the least disturbed by other
//     tenants);
//
//   - throughput-capture: the same over a real capture (../shared/traces; skipped without
//     it), copies one after the other to 1,000,000 packets: cheaper NF work per packet than
//     the generated traffic's new flows, so the same added work is a larger share;
//
//   - throughput-capture-short: the same over 250,000 packets, for four times the
//     iterations (-benchtime 40x): pairs a quarter as long, closer in time, which this
//     machine's shifts between fast and slow phases split less often (its 95 % intervals
//     came out about half as wide, its medians within 4–5 % where the long runs' spread
//     over 2.6–9.6 %: BENCHMARKS.md, nineteenth session);
//
//   - latency: root-to-egress latency p50/p99 at a moderate paced rate (about 200,000
//     packets/s), where queues do not hide the cost, off, on (positions in the input: a
//     paced memory input can read its packets again, as a paced capture file) and copied
//     (port.Copied) in turn (the medians over the iterations);
//
//   - kill: a unit killed every 20,000 packets; the time from each failure to the first
//     replayed batch of its replacement at the egress (median and p99 over the run); the
//     replay reading the input again (kill) or the log's copies (kill-copied).
//
// Run it with:
//
//	go test -run x -bench 'Recovery$' -benchtime 10x ./engine/
func BenchmarkRecovery(b *testing.B) {
	t := &testing.T{}
	frames := generated(t, 1000000)
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, in func() port.Reader, recovery bool, faults []engine.Fault) engine.LiveSummary {
		return runRecovery(b, spec, in(), recovery, faults)
	}
	full := func() port.Reader { return mem.NewReader(frames) }
	// generated traffic is 20,000 packets/s of capture time: ×10 paces it at 200,000.
	paced := func() port.Reader { return port.Paced(mem.NewReader(frames[:40000]), 10, time.Sleep, time.Now) }
	throughput := func(b *testing.B, full, reread func() port.Reader) { recoveryThroughput(b, spec, full, reread) }
	b.Run("throughput", func(b *testing.B) { throughput(b, full, nil) })
	b.Run("throughput-generator", func(b *testing.B) {
		// The same traffic read from its generator, as 'snf run' reads it: on, the generator
		// is Rereadable (it keeps each frame's recipe until the log releases it, and a replay
		// builds the frame again); copied, it is read once.
		gen := func(rereadable bool) func() port.Reader {
			return func() port.Reader {
				cfg := genConfig(len(frames))
				cfg.Rereadable = rereadable
				g, err := trace.NewGenerator(cfg)
				if err != nil {
					b.Fatal(err)
				}
				return g
			}
		}
		throughput(b, gen(false), gen(true))
	})
	b.Run("throughput-capture", func(b *testing.B) {
		// A real capture (../shared/traces, beside the repository in CI) end to end, copies
		// one after the other in time to 1,000,000 packets: fewer new flows than the
		// generated traffic, cheaper NF work per packet.
		capture := captureCopies(b, len(frames))
		throughput(b, func() port.Reader { return mem.NewReader(capture) }, nil)
	})
	b.Run("throughput-capture-short", func(b *testing.B) {
		// (The log's memory is reused after its first checkpoint interval, 10 ms: a quarter
		// of the packets, 40–60 ms at these rates, is still mostly steady state.)
		capture := captureCopies(b, len(frames)/4)
		throughput(b, func() port.Reader { return mem.NewReader(capture) }, nil)
	})
	b.Run("latency", func(b *testing.B) {
		modes := []struct {
			name string
			on   bool
			in   func() port.Reader
		}{{"off", false, paced}, {"on", true, paced}, {"copied", true, func() port.Reader { return port.Copied(paced()) }}}
		var p50, p99 [3][]float64 // per iteration, µs
		for i := 0; b.Loop(); i++ {
			for j := range modes {
				k := (j + i) % len(modes) // each mode first in turn
				s := run(b, modes[k].in, modes[k].on, nil)
				p50[k] = append(p50[k], float64(s.Latency.P50.Nanoseconds())/1e3)
				p99[k] = append(p99[k], float64(s.Latency.P99.Nanoseconds())/1e3)
			}
		}
		// The medians over the iterations (one run's p99 moves with a single hiccup of the
		// machine).
		for k, m := range modes {
			b.ReportMetric(median(p50[k]), m.name+"-p50-µs")
			b.ReportMetric(median(p99[k]), m.name+"-p99-µs")
		}
	})
	for _, copied := range []bool{false, true} {
		name := "kill"
		if copied {
			name = "kill-copied" // the log's copies replayed, not the input read again
		}
		b.Run(name, func(b *testing.B) {
			var faults []engine.Fault
			for at := uint64(20000); at < 200000; at += 20000 {
				faults = append(faults, engine.Fault{Kind: engine.FaultKill, Unit: int(at/20000) % 2, AtPacket: at})
			}
			short := generated(t, 200000)
			in := func() port.Reader {
				if copied {
					return port.Copied(mem.NewReader(short))
				}
				return mem.NewReader(short)
			}
			var s engine.LiveSummary
			for b.Loop() {
				s = run(b, in, true, faults)
			}
			b.ReportMetric(float64(s.Failures), "failures")
			b.ReportMetric(float64(s.RecoveryTime.P50.Nanoseconds())/1e6, "recovery-p50-ms")
			b.ReportMetric(float64(s.RecoveryTime.P99.Nanoseconds())/1e6, "recovery-p99-ms")
			b.ReportMetric(float64(s.Replayed)/float64(s.Failures), "replayed/failure")
		})
	}
}

// recoveryThroughput is BenchmarkRecovery's throughput: off, on (the log keeping positions in
// reread's input, full's when nil) and copied (full's, port.Copied), in turn per iteration.
// An input is opened before its run's clock starts.
func recoveryThroughput(b *testing.B, spec *snf.ChainSpec, full, reread func() port.Reader) {
	// Three modes: off; on, the log keeping each packet's position in the input (memory
	// can be read again, as a capture file can; reread's input, full's when nil); on, the
	// input read once (port.Copied, as a pipe): the log keeps a copy of each
	// frame, lent to the units.
	if reread == nil {
		reread = full
	}
	modes := []struct {
		name string
		on   bool
		in   func() port.Reader
	}{{"off", false, full}, {"on", true, reread}, {"copied", true, func() port.Reader { return port.Copied(full()) }}}
	var (
		pkts  [3]uint64
		took  [3]time.Duration
		best  [3]time.Duration // the fastest iteration's run
		cpu   [3]time.Duration // the process's CPU time (user + system)
		costs [3][]float64     // per iteration, against off
	)
	for i := 0; b.Loop(); i++ {
		var rate [3]float64
		for j := range modes {
			k := (j + i) % len(modes) // each mode first in turn: drift in the machine's speed hits all
			// A collection now, not during a run: the benchmark's own heap (the input's
			// million frames) takes tens of ms to mark, and a cycle would land in
			// whichever run was going when a run's setup crossed the next goal.
			runtime.GC()
			w0 := monotonic()
			in := modes[k].in()
			c0, start := cpuTime(), time.Now()
			n := runRecovery(b, spec, in, modes[k].on, nil).Packets
			d := time.Since(start)
			benchWindow(b.Name(), modes[k].name, w0, monotonic())
			cpu[k] += cpuTime() - c0
			pkts[k] += n
			took[k] += d
			if best[k] == 0 || d < best[k] {
				best[k] = d
			}
			rate[k] = float64(n) / d.Seconds()
		}
		for k := 1; k < len(modes); k++ {
			costs[k] = append(costs[k], 100*(1-rate[k]/rate[0]))
		}
	}
	offRate := float64(pkts[0]) / took[0].Seconds()
	offCPU := float64(cpu[0].Nanoseconds()) / float64(pkts[0])
	b.ReportMetric(offRate, "off-packets/s")
	b.ReportMetric(offCPU, "off-cpu-ns/pkt")
	for k := 1; k < len(modes); k++ {
		rate := float64(pkts[k]) / took[k].Seconds()
		perPkt := float64(cpu[k].Nanoseconds()) / float64(pkts[k])
		m := modes[k].name
		b.ReportMetric(rate, m+"-packets/s")
		b.ReportMetric(100*(1-rate/offRate), m+"-cost-%")
		// The median of the iterations' costs: a burst of another tenant's load during
		// one run moves the total, not the median.
		b.ReportMetric(median(costs[k]), m+"-median-cost-%")
		// How far the iterations' mean cost can be trusted on this machine: a 95 %
		// bootstrap interval of it.
		lo, hi := bootstrapMean(costs[k], 0.95)
		b.ReportMetric(lo, m+"-cost-ci95-lo-%")
		b.ReportMetric(hi, m+"-cost-ci95-hi-%")
		// The fastest runs' cost: another tenant's load slows runs, never speeds them
		// up, so each mode's fastest run is its least disturbed (every run is 1,000,000
		// packets).
		b.ReportMetric(100*(float64(best[k])/float64(best[0])-1), m+"-best-cost-%")
		// The work per packet, every goroutine's (root, units, egress, checkpoint
		// writers, GC): what a packet costs the machine, whatever the schedule.
		b.ReportMetric(perPkt, m+"-cpu-ns/pkt")
		b.ReportMetric(100*(perPkt/offCPU-1), m+"-cpu-cost-%")
	}
}

// runRecovery runs in through spec on two static units, with or without recovery.
func runRecovery(b *testing.B, spec *snf.ChainSpec, in port.Reader, recovery bool, faults []engine.Fault) engine.LiveSummary {
	pol, _ := policy.New("static", policy.Options{StaticUnits: 2})
	s, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: in, Policy: pol,
		MinUnits: 2, MaxUnits: 2, Capacity: 1e9, Recovery: recovery, Faults: faults})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// bootstrapMean returns a conf (e.g. 0.95) bootstrap interval of the mean of v: the means of
// 2,000 resamples of v with replacement, their central conf share (a fixed seed: the same
// samples give the same interval).
func bootstrapMean(v []float64, conf float64) (lo, hi float64) {
	if len(v) == 0 {
		return 0, 0
	}
	r := rand.New(rand.NewPCG(1, 2))
	means := make([]float64, 2000)
	for i := range means {
		var sum float64
		for range v {
			sum += v[r.IntN(len(v))]
		}
		means[i] = sum / float64(len(v))
	}
	slices.Sort(means)
	cut := int((1 - conf) / 2 * float64(len(means)))
	return means[cut], means[len(means)-1-cut]
}

// benchWindow, with SNF_BENCH_WINDOWS set, appends to that file a line per run: the
// benchmark, the mode, and the run's start and end on CLOCK_MONOTONIC (seconds) — the clock
// of `perf record -k mono`, so that internal/perfsplit can split a profile of the whole
// benchmark by mode: CPU samples per mode and function, from runs interleaved in one process
// (on this shared machine, the one measure that tells a few ns per packet apart;
// BENCHMARKS.md).
func benchWindow(bench, mode string, start, end float64) {
	path := os.Getenv("SNF_BENCH_WINDOWS")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err) // (a benchmark run by hand, asked for this file)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s/%s %.9f %.9f\n", bench, mode, start, end); err != nil {
		panic(err)
	}
}

// TestLogBound: a long run at full speed with a small packet log stays within its bound:
// the root waits for checkpoints when the log is full (back-pressure) and loses nothing —
// the output equals the one-chain run's. Both ways of logging: copies of the frames (the
// input read once: port.Copied) and positions in the input.
func TestLogBound(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := generated(t, 60000)
	want := reference(t, spec, frames)
	t.Run("copied", func(t *testing.T) { logBound(t, spec, frames, want, true) })
	t.Run("input", func(t *testing.T) { logBound(t, spec, frames, want, false) })
}

func logBound(t *testing.T, spec *snf.ChainSpec, frames []mem.Frame, want outcome, copied bool) {
	const bound = 2000
	w := &mem.Writer{}
	var got outcome
	pol, _ := policy.New("snf", policy.Options{})
	var in port.Reader = mem.NewReader(frames)
	if copied {
		in = port.Copied(in)
	}
	s, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: in, Out: w,
		Policy: pol, MinUnits: 1, MaxUnits: 4, Batch: 64, Capacity: 2000, Tick: time.Millisecond,
		// A kill only (replaced at once): a long FailTimeout, so that a unit a loaded machine
		// leaves unscheduled is not declared stalled too (the test counts the failures; one
		// CI run under the race detector counted 2).
		FailTimeout: time.Second,
		Recovery:    true, LogPackets: bound, Faults: []engine.Fault{{Kind: engine.FaultKill, Unit: 0, AtPacket: 30000}},
		OnDone: func(chains []*snf.Chain) { got = collect(t, w, chains, frames[len(frames)-1].Time) }})
	if err != nil {
		t.Fatal(err)
	}
	compare(t, want, got)
	// The bound, as LiveConfig states it: LogPackets, plus at most one batch per unit sent on
	// while the root waits for room (it may carry the Marker a waiting unit needs).
	if limit := bound + 4*64; s.LogMaxPackets > limit {
		t.Errorf("the log held %d packets, its bound is %d (+ one batch per unit: %d)", s.LogMaxPackets, bound, limit)
	}
	// Copied, the root read every packet into the log's arena, which its memory held: the
	// log's peak, what the root had read but not yet dispatched, and blocks not yet reused.
	// Else the log held no frame.
	if copied && (s.LogOverflows != 0 || s.LogArenaBytes == 0 || s.LogArenaBytes > 8<<20) {
		t.Errorf("the log's arena took %d bytes, %d frames past it: want every frame in it, a few MiB", s.LogArenaBytes, s.LogOverflows)
	}
	if !copied && (s.LogArenaBytes != 0 || s.LogMaxBytes != 0) {
		t.Errorf("the log kept positions in the input, yet held %d bytes of frames (arena %d)", s.LogMaxBytes, s.LogArenaBytes)
	}
	if s.Failures != 1 {
		t.Errorf("%d failures recovered, want 1", s.Failures)
	}
	if s.LogWaits == 0 {
		t.Errorf("the root never waited for room: the bound (%d packets) was not reached in %d packets", bound, len(frames))
	}
	t.Logf("log peak %d packets (bound %d), arena %d bytes, %d waits for room, %d checkpoints, %d failures", s.LogMaxPackets, bound, s.LogArenaBytes, s.LogWaits, s.Checkpoints, s.Failures)
}

// TestLogIdleUnit: a unit that goes idle takes no checkpoint by itself, and its last batch
// would hold the log's head — the log growing behind it for the rest of the run. The root
// asks it for one (two checkpoint intervals after its checkpoints stopped covering the
// head), so the log stays a few intervals deep. Here two static units share 2,000 packets of
// many flows (a unit checkpoints at its first batch, then every 2 ms: its later batches are
// uncovered), then one flow sends 200,000 more (some 30 ms at full speed): one unit idles for
// all of them. The log's bounds are above 200,000 packets: without the nudge it would hold
// them all.
func TestLogIdleUnit(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := generated(t, 2000)
	last := frames[len(frames)-1].Time
	one := pkttest.UDP(netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("10.2.2.2"), 4000, 53, make([]byte, 600))
	for i := range 200000 {
		frames = append(frames, mem.Frame{Data: one, Time: last + int64(i+1)*1000})
	}
	pol, _ := policy.New("static", policy.Options{StaticUnits: 2})
	s, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: mem.NewReader(frames),
		Policy: pol, MinUnits: 2, MaxUnits: 2, Capacity: 1e9, Tick: time.Millisecond, Recovery: true, Checkpoint: 2 * time.Millisecond, LogBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if s.Written != uint64(len(frames)) {
		t.Fatalf("%d of %d packets out", s.Written, len(frames))
	}
	if s.LogMaxPackets > 150000 {
		t.Errorf("the log held %d packets behind the idle unit: want it trimmed as the busy one checkpoints", s.LogMaxPackets)
	}
	t.Logf("log peak %d packets, %d checkpoints, %s", s.LogMaxPackets, s.Checkpoints, s.Elapsed)
}

// BenchmarkRecoveryPath measures what failure-proofing adds to a packet's path when nothing
// else competes for the core, at full speed and at a moderate rate:
//
//   - full: batches of 64, the log trimmed every 156 batches (10,000 packets: 10 ms of
//     checkpoint interval at 1 M packets/s);
//   - moderate: batches of 16 (what the root sends at a time at 200,000 packets/s, paced as
//     in BenchmarkRecovery/latency: 15 packets per batch on average, measured), the log
//     trimmed every 125 batches (2,000 packets: 10 ms at that rate).
//
// Each iteration takes the next batch of generated packets (about 700 bytes each) through the
// path three times, in turn (each mode first in turn), with the code the live engine runs:
//
//   - off: the root reads them into its packets, in an arena (SetData, as a port does; the
//     arena's memory reused at the next batch, as the engine's lender reuses it once the
//     egress is done), and lends the frames to a unit's batch (Borrow, as live.Send does;
//     the unit's 16 batches in rotation); the unit runs nat,firewall on the batch;
//   - on: the root reads into the log's arena, hands each packet to the log (replay.Log.Keep
//     saves its headers) and lends the batch its frame (Borrow: no copy), and logs the batch
//     as it leaves (Append); the unit runs the chain on the frames in place, tracking what
//     its packets change; and
//     at each checkpoint interval the unit writes an incremental checkpoint record between
//     two batches and the log is trimmed to it — so the log holds as much as in a run, and
//     the root reads into memory the log freed (an input read once);
//   - pos: as off, and the root logs the batch, whose packets carry their positions in the
//     input (packet.Packet.Pos), and whose metadata the log then takes as the egress does
//     once it wrote the batch (Entry.Prepare: not in the batch's path, nor the root's
//     stage), and checkpoints as on (an input that can be read again: memory, a capture
//     file); the frames are lent as in off;
//   - hdr: as on, the log keeping headers only once the egress wrote a batch
//     (replay.Log.HeadersOnly: nat and firewall read only headers) — here once the chain
//     processed it.
//
// It reports the root's stage per packet (read, copy or lend, log: the serial stage of the
// pipeline, which bounds its throughput) and the whole path per batch, median and p99, for
// each mode (every packet of a batch leaves the unit with its batch: the batch's added time is
// the latency each of its packets gains).
//
//	go test -run x -bench RecoveryPath -benchtime 30000x ./engine/
func BenchmarkRecoveryPath(b *testing.B) {
	frames := generated(&testing.T{}, 200000)
	b.Run("full", func(b *testing.B) { recoveryPath(b, frames, 64, 156) })
	b.Run("moderate", func(b *testing.B) { recoveryPath(b, frames, 16, 125) })
}

// recoveryPath runs BenchmarkRecoveryPath with batches of batch packets, a checkpoint every
// every batches. Three modes, in turn on each batch: off; on, the log keeping a copy of
// each frame (read into its arena) lent to the batch ("on": an input read once); on, the
// log keeping each packet's position in the input, the batch a copy ("pos": an input that
// can be read again).
func recoveryPath(b *testing.B, frames []mem.Frame, batch, every int) {
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		b.Fatal(err)
	}
	const modes = 4
	var chains [modes]*snf.Chain
	open := func() {
		for k := range chains {
			if chains[k] != nil {
				chains[k].Close()
			}
			if chains[k], err = snf.NewChain(spec, snf.ChainOptions{Checkpoints: k > 0}); err != nil {
				b.Fatal(err)
			}
		}
	}
	open()
	logs := [modes]*replay.Log{nil, replay.NewLog(64<<20, 1<<18, 1), replay.NewLog(64<<20, 1<<18, 1), replay.NewLog(64<<20, 1<<18, 1)}
	logs[2].Src = mem.NewReader(frames)
	written := make([]atomic.Uint64, 1) // (hdr: the egress's mark)
	logs[3].HeadersOnly(written)
	// The lender's arenas (off, pos): the engine reuses a frame's memory once the egress is
	// done with its batch; here, at the next batch.
	var lent [modes]*packet.Arena
	var (
		read     [modes][]packet.Packet // the root's read buffers
		batches  [modes][]*unit.Batch
		out      []*packet.Packet
		rec      []byte
		rootTook [modes]time.Duration
		took     [modes][]time.Duration
		n, k     int
		seq      uint64
		sink     byte
	)
	for m := range modes {
		read[m] = make([]packet.Packet, batch)
		var a *packet.Arena
		switch m {
		case 1, 3:
			a = logs[m].Arena() // as RunLive's root does
		default:
			lent[m] = packet.NewArena(8<<20, 256<<10)
			a = lent[m]
		}
		for j := range read[m] {
			read[m][j].UseArena(a)
		}
		for range 16 {
			batches[m] = append(batches[m], unit.NewBatch(batch, nil))
		}
	}
	for b.Loop() {
		if n+batch > len(frames) {
			b.StopTimer()
			n = 0
			open()
			b.StartTimer()
		}
		// The source frames are cold (read once); touch them first, so that no pass pays
		// that for the others.
		for j := range batch {
			d := frames[n+j].Data
			for x := 0; x < len(d); x += 64 {
				sink += d[x]
			}
		}
		seq++
		for i := range modes {
			m := (i + k) % modes // each mode first in turn
			t0 := time.Now()
			in, bt := read[m], batches[m][k%16]
			bt.Reset()
			if lent[m] != nil {
				lent[m].Free(lent[m].Head()) // the last batch is done
			}
			for j := range in {
				fr := &frames[n+j]
				in[j].SetData(fr.Data, fr.Time, fr.WireLen)
				in[j].Pos = uint64(n + j) // (as a memory input's Read, in every mode)
				in[j].Clock = uint64(n + j + 1)
				var f []byte
				switch m { // as live.Send
				case 0, 2:
					f = in[j].Data
				case 1, 3:
					f = logs[m].Keep(0, &in[j])
				}
				if f != nil {
					bt.Pkts[j].Borrow(&in[j], f)
				} else {
					bt.Pkts[j].CopyFrom(&in[j])
				}
				bt.N++
			}
			if bt.Seq = seq; m > 0 {
				logs[m].Append(bt)
			}
			t1 := time.Now()
			if bt.Log != nil && bt.LogFirst {
				bt.Log.Prepare(bt) // as the unit does, before its chain (the frames the log kept)
			}
			out = chains[m].Process(bt.Pkts[:bt.N], out[:0])
			took[m] = append(took[m], time.Since(t0))
			rootTook[m] += t1.Sub(t0)
			if bt.Log != nil && !bt.LogFirst {
				bt.Log.Prepare(bt) // as the egress does, once it wrote the batch's outputs
			}
			if m == 3 {
				written[0].Store(seq) // the egress wrote it
			}
		}
		if seq%uint64(every) == 0 {
			for m := 1; m < modes; m++ {
				if rec, _, err = chains[m].Checkpoint(rec[:0], false); err != nil {
					b.Fatal(err)
				}
				logs[m].Covered(0, seq)
			}
		}
		n += batch
		k++
	}
	q := func(d []time.Duration, f float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[int(f*float64(len(s)-1))]
	}
	pkts := float64(len(took[0]) * batch)
	b.ReportMetric(float64(rootTook[0].Nanoseconds())/pkts, "off-root-ns/pkt")
	b.ReportMetric(float64(q(took[0], 0.5).Nanoseconds())/1e3, "off-p50-µs/batch")
	for m, name := range []string{"", "on", "pos", "hdr"} {
		if m == 0 {
			continue
		}
		b.ReportMetric(float64(rootTook[m].Nanoseconds())/pkts, name+"-root-ns/pkt")
		b.ReportMetric(float64(q(took[m], 0.5).Nanoseconds())/1e3, name+"-p50-µs/batch")
		b.ReportMetric(float64((q(took[m], 0.5)-q(took[0], 0.5)).Nanoseconds())/1e3, name+"-added-p50-µs")
		b.ReportMetric(float64((q(took[m], 0.99)-q(took[0], 0.99)).Nanoseconds())/1e3, name+"-added-p99-µs")
		b.ReportMetric(float64((q(took[m], 0.5)-q(took[0], 0.5)).Nanoseconds())/float64(batch), name+"-added-p50-ns/pkt")
	}
	b.ReportMetric(float64(logs[1].Stats().MaxPackets), "log-peak-packets")
	b.ReportMetric(float64(logs[3].Stats().Arena.Bytes), "hdr-arena-bytes")
	b.ReportMetric(float64(logs[1].Stats().Arena.Bytes), "on-arena-bytes")
	_ = sink
}

// captureCopies returns n packets of the real capture pcapplusplus_example (../shared/traces,
// beside the repository in CI), copies of it one after the other in time, or skips b without
// it.
func captureCopies(b *testing.B, n int) []mem.Frame {
	path, _ := filepath.Abs("../../shared/traces/pcapplusplus_example.pcap")
	if _, err := os.Stat(path); err != nil {
		b.Skipf("real capture not found at %s (it sits beside the repository in CI)", path)
	}
	base := readFrames(&testing.T{}, path)
	span := base[len(base)-1].Time - base[0].Time + 1e9
	var capture []mem.Frame
	for k := int64(0); len(capture) < n; k++ {
		for _, f := range base {
			f.Time += k * span
			capture = append(capture, f)
		}
	}
	return capture[:n]
}

// median returns the median of v (the upper one of an even count), v unchanged.
func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
