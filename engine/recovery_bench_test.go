package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
)

// BenchmarkRecovery measures, side by side in one run, what failure-proofing costs and how
// fast it recovers, on the chain nat,firewall over generated traffic from memory, two units:
//
//   - throughput/off and throughput/on: packets/s at full speed without and with the packet
//     log and checkpoints (every 10 ms);
//
//   - latency/off and latency/on: root-to-egress latency p50/p99 at a moderate paced rate
//     (about 200,000 packets/s), where queues do not hide the cost;
//
//   - kill: a unit killed every 20,000 packets; the time from each failure to the first
//     replayed batch of its replacement at the egress (median and p99 over the run).
//
//     go test -run x -bench Recovery -benchtime 3x ./engine/
func BenchmarkRecovery(b *testing.B) {
	t := &testing.T{}
	frames := generated(t, 200000)
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
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		b.Run("throughput/"+name, func(b *testing.B) {
			var pkts uint64
			for b.Loop() {
				pkts += run(b, full, on, nil).Packets
			}
			b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "packets/s")
		})
	}
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		b.Run("latency/"+name, func(b *testing.B) {
			var s engine.LiveSummary
			for b.Loop() {
				s = run(b, paced, on, nil)
			}
			b.ReportMetric(float64(s.Latency.P50.Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(s.Latency.P99.Nanoseconds())/1e3, "p99-µs")
		})
	}
	b.Run("kill", func(b *testing.B) {
		var faults []engine.Fault
		for at := uint64(20000); at < uint64(len(frames)); at += 20000 {
			faults = append(faults, engine.Fault{Kind: engine.FaultKill, Unit: int(at/20000) % 2, AtPacket: at})
		}
		var s engine.LiveSummary
		for b.Loop() {
			s = run(b, full, true, faults)
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
