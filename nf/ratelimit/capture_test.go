package ratelimit_test

import (
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
)

const synflood = "ddos_synflood_spoofed.pcap"

// TestSynFloodSharedBucket: spoofed sources, one victim. With one bucket for all IPv4 sources
// (prefix_v4: 0) the limiter holds the configured rate: no 1-second window of packet time
// passes more than rate+burst, and while the flood is on, what passes follows the rate.
func TestSynFloodSharedBucket(t *testing.T) {
	const rate, burst = 500, 100
	pkts := testtrace.Packets(t, synflood)
	c, alerts := newRL(t, "{prefix_v4: 0, rate: 500, burst: 100}")
	var passed, offered []int64
	for i := range pkts {
		ts := pkts[i].Time
		offered = append(offered, ts)
		if len(c.Process(pkts[i:i+1], nil)) == 1 {
			passed = append(passed, ts)
		}
	}
	if got := testtrace.Metric(c, 0, "passed") + testtrace.Metric(c, 0, "dropped"); got != uint64(len(pkts)) || testtrace.Metric(c, 0, "passed") != uint64(len(passed)) {
		t.Fatalf("passed+dropped = %d for %d packets", got, len(pkts))
	}

	// Every 1-second window, aligned on the first packet and sliding (starting at any
	// passed packet), passes at most rate+burst.
	t0 := offered[0]
	perWindow := map[int64]int{}
	offeredPerWindow := map[int64]int{}
	for _, ts := range passed {
		perWindow[(ts-t0)/1e9]++
	}
	for _, ts := range offered {
		offeredPerWindow[(ts-t0)/1e9]++
	}
	for w, n := range perWindow {
		if n > rate+burst {
			t.Errorf("window %ds: %d passed (offered %d), more than rate+burst = %d", w, n, offeredPerWindow[w], rate+burst)
		}
	}
	maxSliding, j := 0, 0
	for i := range passed {
		for j < len(passed) && passed[j] < passed[i]+int64(time.Second) {
			j++
		}
		maxSliding = max(maxSliding, j-i)
	}
	if maxSliding > rate+burst {
		t.Errorf("a sliding 1-second window passed %d packets, more than rate+burst = %d", maxSliding, rate+burst)
	}
	// The first second is the heart of the flood (23,620 SYNs offered): it passes close to
	// the rate — the burst on top, less what the 0.2 s gap in it could not bank.
	if n := perWindow[0]; n < rate*9/10 || offeredPerWindow[0] < 10*rate {
		t.Errorf("first second: %d passed of %d offered, want about the rate %d", n, offeredPerWindow[0], rate)
	}

	// While overloaded: for each stretch of consecutive 100-ms bins offering at least twice
	// the rate, from its first packet to its last, what passes is rate × duration plus at most
	// one burst (banked in the pause before the stretch). The flood comes in clumps, so the
	// stretches are short and the burst shows; the slope is the rate.
	type stretch struct{ first, last int64 }
	bin := func(ts int64) int64 { return (ts - t0) / int64(100*time.Millisecond) }
	perBin := map[int64]int{}
	for _, ts := range offered {
		perBin[bin(ts)]++
	}
	busy := func(b int64) bool { return perBin[b] >= 2*rate/10 }
	var stretches []stretch
	for _, ts := range offered {
		if !busy(bin(ts)) {
			continue
		}
		if n := len(stretches); n > 0 && (bin(ts) == bin(stretches[n-1].last) || bin(ts) == bin(stretches[n-1].last)+1) {
			stretches[n-1].last = ts
		} else {
			stretches = append(stretches, stretch{ts, ts})
		}
	}
	if len(stretches) < 3 {
		t.Fatalf("want the capture's 3+ flood stretches, found %d", len(stretches))
	}
	for _, s := range stretches {
		n := 0
		for _, ts := range passed {
			if ts >= s.first && ts <= s.last {
				n++
			}
		}
		d := float64(s.last-s.first) / 1e9
		lo, hi := 0.9*rate*d, rate*d+burst+1
		t.Logf("flood stretch at %.2fs for %.3fs: %d passed (rate × duration = %.0f)", float64(s.first-t0)/1e9, d, n, rate*d)
		if float64(n) < lo || float64(n) > hi {
			t.Errorf("stretch at %.2fs, %.3fs long: %d passed, want %.0f..%.0f", float64(s.first-t0)/1e9, d, n, lo, hi)
		}
	}
	// One alert per episode: the bucket is full again only after the flood pauses.
	raised := alerts.Snapshot()
	if len(raised) == 0 || uint64(len(raised)) != testtrace.Metric(c, 0, "limited") || raised[0].Rule != "rate_exceeded" ||
		raised[0].Details["source"] != "0.0.0.0/0" {
		t.Errorf("alerts: %d (limited %d), first %+v", len(raised), testtrace.Metric(c, 0, "limited"), raised)
	}
	t.Logf("one bucket for all: %d of %d passed; per 1-s window %v; %d alerts", len(passed), len(pkts), perWindow, len(raised))
}

// TestSynFloodPerAddress: with one bucket per /32 the same limit lets the spoofed flood
// through, since each spoofed source sends one or two SYNs — why prefix buckets exist.
func TestSynFloodPerAddress(t *testing.T) {
	pkts := testtrace.Packets(t, synflood)
	c, alerts := newRL(t, "{prefix_v4: 32, rate: 500, burst: 100}")
	passed := 0
	for i := range pkts {
		passed += len(c.Process(pkts[i:i+1], nil))
	}
	if passed != len(pkts) || alerts.Len() != 0 {
		t.Errorf("per-/32 buckets passed %d of %d spoofed SYNs (%d alerts), want all", passed, len(pkts), alerts.Len())
	}
	t.Logf("one bucket per /32: %d of %d passed", passed, len(pkts))
}

// TestDefaultLeavesBrowsingAlone: the default (1000 packets/s, burst 2000 per address) does
// not touch dense real browsing — its busiest source sends 154 packets in 100 ms.
func TestDefaultLeavesBrowsingAlone(t *testing.T) {
	pkts := testtrace.Packets(t, "pcapplusplus_example.pcap")
	c, alerts := newRL(t, "")
	out := c.Process(pkts, nil)
	if len(out) != len(pkts) || testtrace.Metric(c, 0, "dropped") != 0 || alerts.Len() != 0 {
		t.Errorf("default config: %d of %d passed, %d alerts", len(out), len(pkts), alerts.Len())
	}
	if testtrace.Metric(c, 0, "passed") != uint64(len(pkts)) {
		t.Errorf("passed = %d, want every packet (%d) counted", testtrace.Metric(c, 0, "passed"), len(pkts))
	}
}

// newReplay replays the whole batches of a capture pass after pass, each pass a minute
// after the previous one's end, so that time keeps going forward.
func newReplay(tb testing.TB, name string) *testtrace.Replay {
	pkts := testtrace.Packets(tb, name)
	pkts = pkts[:len(pkts)/testtrace.BatchSize*testtrace.BatchSize]
	return testtrace.NewReplay(pkts, testtrace.Span(pkts)+time.Minute)
}

// TestZeroAllocsOnCaptures: after warm-up passes (the bucket map and arena reach their
// working size within the first five passes of the flood, whose 37,000 buckets all expire
// between passes), a whole pass of a real capture through the
// chain allocates nothing — 37,000 spoofed sources coming and going (per-address buckets,
// created, expired, reused) and real browsing.
func TestZeroAllocsOnCaptures(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation may allocate")
	}
	for _, name := range []string{synflood, "pcapplusplus_example.pcap"} {
		r := newReplay(t, name)
		c, _ := newRL(t, "")
		for range 8 {
			r.RunPass(c)
		}
		if a := testtrace.AllocsPerRun(3, func() { r.RunPass(c) }); a != 0 {
			t.Errorf("%s: %v allocations per pass of %d packets", name, a, r.Packets())
		}
	}
}

// BenchmarkRatelimit: the chain over batches of 64 packets of real captures. The flood's
// "empty-chain" line is the chain's own cost (flow lookup; every SYN is a new flow): subtract
// it to get the rate limiter's.
func BenchmarkRatelimit(b *testing.B) {
	for _, bc := range []struct{ name, capture, config string }{
		{"synflood/empty-chain", synflood, ""},
		{"synflood/per-address", synflood, ""},
		{"synflood/one-bucket", synflood, "{prefix_v4: 0, rate: 500, burst: 100}"},
		{"browsing/per-address", "pcapplusplus_example.pcap", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newReplay(b, bc.capture)
			var c *snf.Chain
			if strings.HasSuffix(bc.name, "empty-chain") { // the flow table alone, to subtract
				c = testtrace.ChainOf(b, "none", snf.ChainOptions{})
			} else {
				c, _ = newRL(b, bc.config)
			}
			// 8 passes: the bucket map reaches its working size (see TestZeroAllocsOnCaptures).
			testtrace.BenchBatches(b, 8*r.Batches(), func() { r.Batch(c) })
		})
	}
}
