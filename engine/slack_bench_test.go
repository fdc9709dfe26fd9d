package engine_test

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
)

// BenchmarkTimerSlack measures what the timer slack RunLive sets changes (engine's
// tightenTimerSlack; LiveConfig.KeepTimerSlack): the chain nat,firewall over generated
// traffic from memory, and over a real capture (../shared/traces, copies one after the other;
// skipped without it), two static units, with every thread's timer slack at Linux's default
// 50 µs ("kept") and at 1 ns ("tight"), one run of each in turn per iteration: at full speed
// (packets/s, over 1,000,000 packets), and paced at about 200,000 packets/s (root-to-egress
// latency p50 and p99, medians over the iterations). It needs CAP_SYS_NICE (root) to set the
// other threads' slack, and Linux.
//
//	go test -run x -bench TimerSlack -benchtime 10x ./engine/
func BenchmarkTimerSlack(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("the timer slack is Linux's")
	}
	if os.Geteuid() != 0 {
		b.Skip("setting other threads' timer slack needs CAP_SYS_NICE (root)")
	}
	b.Cleanup(func() { engine.SetTimerSlack(1) }) // (as RunLive leaves it, whatever happens)
	b.Run("generated", func(b *testing.B) { timerSlack(b, generated(&testing.T{}, 1000000)) })
	b.Run("capture", func(b *testing.B) { timerSlack(b, captureCopies(b, 1000000)) })
}

func timerSlack(b *testing.B, frames []mem.Frame) {
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		b.Fatal(err)
	}
	run := func(in port.Reader) engine.LiveSummary {
		pol, _ := policy.New("static", policy.Options{StaticUnits: 2})
		s, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: in, Policy: pol,
			MinUnits: 2, MaxUnits: 2, Capacity: 1e9, KeepTimerSlack: true})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	// The paced run: 0.2 s of input at about 200,000 packets/s.
	paced := frames[:40000]
	speed := 200000 / (float64(len(paced)-1) / (float64(paced[len(paced)-1].Time-paced[0].Time) / 1e9))
	modes := []struct {
		name  string
		slack int
	}{{"kept", 50000}, {"tight", 1}}
	var (
		rate     [2][]float64 // M packets/s, per iteration
		p50, p99 [2][]float64 // µs
	)
	for i := 0; b.Loop(); i++ {
		for j := range modes {
			k := (i + j) % len(modes) // each mode first in turn
			if set, threads := engine.SetTimerSlack(modes[k].slack); set != threads {
				b.Fatalf("set the timer slack of %d threads of %d", set, threads)
			}
			runtime.GC()
			start := time.Now()
			s := run(mem.NewReader(frames))
			rate[k] = append(rate[k], float64(s.Packets)/time.Since(start).Seconds()/1e6)
			s = run(port.Paced(mem.NewReader(paced), speed, time.Sleep, time.Now))
			p50[k] = append(p50[k], float64(s.Latency.P50.Nanoseconds())/1e3)
			p99[k] = append(p99[k], float64(s.Latency.P99.Nanoseconds())/1e3)
		}
	}
	var gains []float64 // per iteration, tight against kept
	for i := range rate[0] {
		gains = append(gains, 100*(rate[1][i]/rate[0][i]-1))
	}
	for k, m := range modes {
		b.ReportMetric(median(rate[k]), m.name+"-Mpackets/s")
		b.ReportMetric(median(p50[k]), m.name+"-p50-µs")
		b.ReportMetric(median(p99[k]), m.name+"-p99-µs")
	}
	b.ReportMetric(median(gains), "tight-median-gain-%")
}
