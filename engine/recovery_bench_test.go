package engine_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/replay"
	"github.com/snf-dev/snf/unit"
)

// BenchmarkRecovery measures, side by side in one run, what failure-proofing costs and how
// fast it recovers, on the chain nat,firewall over generated traffic from memory, two units:
//
//   - throughput: packets/s at full speed without and with the packet log and checkpoints
//     (every 10 ms), one run of each in turn per iteration (so that the machine's noise
//     hits both alike), over 1,000,000 packets (a long run: the log's memory is reused
//     after its first tens of milliseconds, as in any long-running deployment);
//
//   - latency: root-to-egress latency p50/p99 at a moderate paced rate (about 200,000
//     packets/s), where queues do not hide the cost, off and on in turn;
//
//   - kill: a unit killed every 20,000 packets; the time from each failure to the first
//     replayed batch of its replacement at the egress (median and p99 over the run).
//
//     go test -run x -bench Recovery -benchtime 3x ./engine/
func BenchmarkRecovery(b *testing.B) {
	t := &testing.T{}
	frames := generated(t, 1000000)
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, in func() port.Reader, recovery bool, faults []engine.Fault) engine.LiveSummary {
		pol, _ := policy.New("static", policy.Options{StaticUnits: 2})
		s, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: in(), Policy: pol,
			MinUnits: 2, MaxUnits: 2, Capacity: 1e9, Recovery: recovery, Faults: faults})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	full := func() port.Reader { return mem.NewReader(frames) }
	// generated traffic is 20,000 packets/s of capture time: ×10 paces it at 200,000.
	paced := func() port.Reader { return port.Paced(mem.NewReader(frames[:40000]), 10, time.Sleep, time.Now) }
	b.Run("throughput", func(b *testing.B) {
		var pkts [2]uint64
		var took [2]time.Duration
		for b.Loop() {
			for k, on := range []bool{false, true} {
				start := time.Now()
				pkts[k] += run(b, full, on, nil).Packets
				took[k] += time.Since(start)
			}
		}
		off, on := float64(pkts[0])/took[0].Seconds(), float64(pkts[1])/took[1].Seconds()
		b.ReportMetric(off, "off-packets/s")
		b.ReportMetric(on, "on-packets/s")
		b.ReportMetric(100*(1-on/off), "cost-%")
	})
	b.Run("latency", func(b *testing.B) {
		var s [2]engine.LiveSummary
		for b.Loop() {
			for k, on := range []bool{false, true} {
				s[k] = run(b, paced, on, nil)
			}
		}
		b.ReportMetric(float64(s[0].Latency.P50.Nanoseconds())/1e3, "off-p50-µs")
		b.ReportMetric(float64(s[1].Latency.P50.Nanoseconds())/1e3, "on-p50-µs")
		b.ReportMetric(float64(s[0].Latency.P99.Nanoseconds())/1e3, "off-p99-µs")
		b.ReportMetric(float64(s[1].Latency.P99.Nanoseconds())/1e3, "on-p99-µs")
	})
	b.Run("kill", func(b *testing.B) {
		var faults []engine.Fault
		for at := uint64(20000); at < 200000; at += 20000 {
			faults = append(faults, engine.Fault{Kind: engine.FaultKill, Unit: int(at/20000) % 2, AtPacket: at})
		}
		short := generated(t, 200000)
		var s engine.LiveSummary
		for b.Loop() {
			s = run(b, func() port.Reader { return mem.NewReader(short) }, true, faults)
		}
		b.ReportMetric(float64(s.Failures), "failures")
		b.ReportMetric(float64(s.RecoveryTime.P50.Nanoseconds())/1e6, "recovery-p50-ms")
		b.ReportMetric(float64(s.RecoveryTime.P99.Nanoseconds())/1e6, "recovery-p99-ms")
		b.ReportMetric(float64(s.Replayed)/float64(s.Failures), "replayed/failure")
	})
}

// TestLogBound: a long run at full speed with a small packet log stays within its bound:
// the root waits for checkpoints when the log is full (back-pressure) and loses nothing —
// the output equals the one-chain run's.
func TestLogBound(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := generated(t, 60000)
	want := reference(t, spec, frames)
	const bound = 2000
	w := &mem.Writer{}
	var got outcome
	pol, _ := policy.New("snf", policy.Options{})
	s, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: mem.NewReader(frames), Out: w,
		Policy: pol, MinUnits: 1, MaxUnits: 4, Batch: 64, Capacity: 2000, Tick: time.Millisecond,
		Recovery: true, LogPackets: bound, Faults: []engine.Fault{{Kind: engine.FaultKill, Unit: 0, AtPacket: 30000}},
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
	if s.LogWaits == 0 {
		t.Errorf("the root never waited for room: the bound (%d packets) was not reached in %d packets", bound, len(frames))
	}
	t.Logf("log peak %d packets (bound %d), %d waits for room, %d checkpoints, %d failures", s.LogMaxPackets, bound, s.LogWaits, s.Checkpoints, s.Failures)
}

// BenchmarkRecoveryPath measures what failure-proofing adds to a packet's path when nothing
// else competes for the core: each iteration takes the next batch of 64 generated packets
// through nat,firewall twice, in turn — once as without recovery (the chain), once as with
// it (the root logs the batch, replay.Log.Append, before it leaves; the chain tracks what
// its packets change for checkpoints, and every 156 batches — 10 ms at 1 M packets/s —
// writes an incremental checkpoint record between two batches, as a unit does) — and times
// each pass. Every packet of a batch leaves the unit with its batch, so the added time of
// a batch's path is the latency added to each of its packets: the report gives the median
// and p99 pass times, off and on, and their difference.
//
//	go test -run x -bench RecoveryPath ./engine/
func BenchmarkRecoveryPath(b *testing.B) {
	frames := generated(&testing.T{}, 200000)
	const batch = 64
	pkts := make([]packet.Packet, len(frames))
	for i, f := range frames {
		pkts[i].SetData(slices.Clone(f.Data), f.Time, 0)
	}
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		b.Fatal(err)
	}
	off, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		b.Fatal(err)
	}
	on, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true})
	if err != nil {
		b.Fatal(err)
	}
	log := replay.NewLog(64<<20, 1<<18, 1)
	var out []*packet.Packet
	var rec []byte
	var took [2][]time.Duration
	n, seq := 0, uint64(0)
	restore := func(ps []packet.Packet, at int) {
		for j := range ps {
			ps[j].SetData(frames[at+j].Data, frames[at+j].Time, 0)
			ps[j].Clock, ps[j].Flow = uint64(at+j+1), 0
		}
	}
	for b.Loop() {
		if n+batch > len(pkts) {
			b.StopTimer()
			n = 0
			off.Close()
			on.Close()
			if off, err = snf.NewChain(spec, snf.ChainOptions{}); err == nil {
				on, err = snf.NewChain(spec, snf.ChainOptions{Checkpoints: true})
			}
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		ps := pkts[n : n+batch]
		restore(ps, n)
		t0 := time.Now()
		out = off.Process(ps, out[:0])
		took[0] = append(took[0], time.Since(t0))

		restore(ps, n)
		seq++
		if seq%156 == 0 {
			if rec, _, err = on.Checkpoint(rec[:0], false); err != nil {
				b.Fatal(err)
			}
		}
		t0 = time.Now()
		log.Append(&unit.Batch{Pkts: ps, N: batch, Seq: seq})
		out = on.Process(ps, out[:0])
		took[1] = append(took[1], time.Since(t0))
		log.Covered(0, seq)
		n += batch
	}
	q := func(d []time.Duration, f float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[int(f*float64(len(s)-1))]
	}
	b.ReportMetric(float64(q(took[0], 0.5).Nanoseconds())/1e3, "off-p50-µs/batch")
	b.ReportMetric(float64(q(took[1], 0.5).Nanoseconds())/1e3, "on-p50-µs/batch")
	b.ReportMetric(float64((q(took[1], 0.5)-q(took[0], 0.5)).Nanoseconds())/1e3, "added-p50-µs")
	b.ReportMetric(float64((q(took[1], 0.99)-q(took[0], 0.99)).Nanoseconds())/1e3, "added-p99-µs")
}
