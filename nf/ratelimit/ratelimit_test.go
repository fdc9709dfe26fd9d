package ratelimit_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
)

var (
	src1   = netip.MustParseAddr("10.0.0.1")
	src2   = netip.MustParseAddr("10.0.0.2")
	other  = netip.MustParseAddr("10.0.1.1")
	victim = netip.MustParseAddr("198.51.100.80")
	v6a    = netip.MustParseAddr("2001:db8::1")
	v6b    = netip.MustParseAddr("2001:db8::2")
	v6c    = netip.MustParseAddr("2001:db8:0:1::1")
	v6dst  = netip.MustParseAddr("2001:db8:ffff::80")
)

func syn(src netip.Addr, sport uint16) []byte {
	dst := victim
	if src.Is6() {
		dst = v6dst
	}
	return pkttest.TCP(src, dst, sport, 80, pkttest.SYN, nil)
}

const ms = int64(time.Millisecond)

// TestBurstThenSteadyRate: a source offering 100 packets/s to a 10/s, burst-5 limit passes
// the burst at once, then exactly one packet per 100 ms.
func TestBurstThenSteadyRate(t *testing.T) {
	c, alerts := newRL(t, "{rate: 10, burst: 5}")
	var passedAt []int64
	for i := range int64(200) { // 2 s, one packet every 10 ms
		if send(c, syn(src1, uint16(1000+i)), i*10*ms) {
			passedAt = append(passedAt, i*10)
		}
	}
	want := []int64{0, 10, 20, 30, 40} // the burst
	for t := int64(100); t < 2000; t += 100 {
		want = append(want, t) // then the rate: one token per 100 ms
	}
	if fmt.Sprint(passedAt) != fmt.Sprint(want) {
		t.Fatalf("passed at (ms) %v\nwant %v", passedAt, want)
	}
	if testtrace.Metric(c, 0, "passed") != 24 || testtrace.Metric(c, 0, "dropped") != 176 {
		t.Errorf("passed %d dropped %d, want 24 and 176", testtrace.Metric(c, 0, "passed"), testtrace.Metric(c, 0, "dropped"))
	}
	// One alert for the episode, in the common schema.
	if alerts.Len() != 1 {
		t.Fatalf("%d alerts, want 1", alerts.Len())
	}
	a := alerts.Snapshot()[0]
	if a.NF != "ratelimit" || a.Rule != "rate_exceeded" || a.Time != 50*ms || a.Flow.SrcAddr() != src1 ||
		a.Details["source"] != "10.0.0.1/32" || a.Details["rate"] != 10.0 || a.Details["burst"] != uint32(5) {
		t.Errorf("alert %+v", a)
	}
}

// TestRefillAfterIdle: tokens come back at the rate while the source is quiet, up to the
// burst; a bucket that filled up again starts a new episode (a new alert).
func TestRefillAfterIdle(t *testing.T) {
	c, alerts := newRL(t, "{rate: 10, burst: 5}")
	flood := func(at int64, n int) int {
		passed := 0
		for i := range n {
			if send(c, syn(src1, uint16(i)), at+int64(i)) { // n packets within n ns
				passed++
			}
		}
		return passed
	}
	if p := flood(0, 20); p != 5 {
		t.Fatalf("first flood: %d passed, want the burst 5", p)
	}
	if p := flood(250*ms, 20); p != 2 { // 250 ms quiet: 2.5 tokens
		t.Errorf("after 250 ms: %d passed, want 2", p)
	}
	if alerts.Len() != 1 {
		t.Errorf("a partly refilled bucket must not start a new episode: %d alerts", alerts.Len())
	}
	if p := flood(2*int64(time.Second), 20); p != 5 { // long quiet: full again, not more
		t.Errorf("after 2 s: %d passed, want the burst 5", p)
	}
	if alerts.Len() != 2 || testtrace.Metric(c, 0, "limited") != 2 {
		t.Errorf("a full bucket starts a new episode: %d alerts, limited %d", alerts.Len(), testtrace.Metric(c, 0, "limited"))
	}
	// The source was idle longer than burst/rate = 500 ms: its bucket was forgotten (and it
	// did not matter, a fresh bucket is a full one).
	if testtrace.Metric(c, 0, "buckets_expired") != 1 {
		t.Errorf("buckets_expired = %d, want 1", testtrace.Metric(c, 0, "buckets_expired"))
	}
}

// TestPrefixBuckets: sources of one prefix share a bucket, other prefixes have their own.
func TestPrefixBuckets(t *testing.T) {
	c, _ := newRL(t, "{rate: 1, burst: 2, prefix_v4: 24, prefix_v6: 64}")
	got := []bool{
		send(c, syn(src1, 1), 0), send(c, syn(src2, 1), 0), send(c, syn(src1, 2), 0), // 10.0.0.0/24: 2 pass
		send(c, syn(other, 1), 0),                                                 // 10.0.1.0/24: its own
		send(c, syn(v6a, 1), 0), send(c, syn(v6b, 1), 0), send(c, syn(v6a, 2), 0), // 2001:db8::/64
		send(c, syn(v6c, 1), 0), // 2001:db8:0:1::/64
	}
	want := []bool{true, true, false, true, true, true, false, true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("passed %v, want %v", got, want)
	}
	// Per address (the default prefixes are /32 and /64): 10.0.0.1 and .2 are separate.
	c, _ = newRL(t, "{rate: 1, burst: 1}")
	if !send(c, syn(src1, 1), 0) || !send(c, syn(src2, 1), 0) || send(c, syn(src1, 2), 0) {
		t.Error("per-address buckets")
	}
	// One bucket for everything of a family.
	c, _ = newRL(t, "{rate: 1, burst: 1, prefix_v4: 0, prefix_v6: 0}")
	if !send(c, syn(src1, 1), 0) || send(c, syn(other, 1), 0) || !send(c, syn(v6a, 1), 0) || send(c, syn(v6c, 1), 0) {
		t.Error("/0 buckets: one per family")
	}
}

// TestExempt: exempt sources are never limited nor given a bucket.
func TestExempt(t *testing.T) {
	c, _ := newRL(t, "{rate: 1, burst: 1, exempt: [10.0.0.0/31, '2001:db8::/126', '::ffff:10.0.1.0/120']}")
	for i := range 100 {
		for _, s := range []netip.Addr{src1, v6a, v6b, other} {
			if !send(c, syn(s, uint16(i)), int64(i)) {
				t.Fatalf("exempt source %s dropped", s)
			}
		}
	}
	if send(c, syn(src2, 1), 0) != true || send(c, syn(src2, 2), 0) != false {
		t.Error("10.0.0.2 is not exempt: it must be limited")
	}
	if testtrace.Metric(c, 0, "exempt") != 400 || testtrace.Metric(c, 0, "dropped") != 1 {
		t.Errorf("exempt %d dropped %d", testtrace.Metric(c, 0, "exempt"), testtrace.Metric(c, 0, "dropped"))
	}
}

// TestSourceBound: at max_sources the least recently used source is forgotten (it comes back
// with a full bucket); the others keep theirs.
func TestSourceBound(t *testing.T) {
	c, _ := newRL(t, "{rate: 1, burst: 1, max_sources: 3}")
	a, b, d, e := src1, src2, other, netip.MustParseAddr("10.0.2.1")
	for _, s := range []netip.Addr{a, b, d} {
		if !send(c, syn(s, 1), 0) {
			t.Fatal("first packet of a source dropped")
		}
	}
	if !send(c, syn(e, 1), 1) { // a fourth source: a, least recently used, is forgotten
		t.Fatal("fourth source dropped")
	}
	if testtrace.Metric(c, 0, "buckets_evicted") != 1 {
		t.Errorf("buckets_evicted = %d, want 1", testtrace.Metric(c, 0, "buckets_evicted"))
	}
	if send(c, syn(d, 2), 2) { // d is remembered: its bucket is empty
		t.Error("a remembered source got a token back")
	}
	if !send(c, syn(a, 2), 3) { // a was forgotten: a full bucket again
		t.Error("an evicted source must start with a full bucket")
	}
}

// TestMalformed: a malformed packet whose IP header is readable is limited by its source; a
// frame too short for one passes, counted.
func TestMalformed(t *testing.T) {
	c, _ := newRL(t, "{rate: 1, burst: 1}")
	cut := func(f []byte, n int) []byte { return append([]byte(nil), f[:n]...) }
	tcpCut := cut(syn(src1, 1), 14+20+10) // the TCP header cut: Malformed, IP header intact
	if !send(c, tcpCut, 0) || send(c, tcpCut, 1) {
		t.Error("malformed packets with a readable source must be limited by it")
	}
	v6Cut := cut(syn(v6a, 1), 14+40+4)
	if !send(c, v6Cut, 0) || send(c, v6Cut, 1) {
		t.Error("malformed IPv6 packets with a readable source must be limited by it")
	}
	ipCut := cut(syn(src2, 1), 14+12) // no source address in it
	if !send(c, ipCut, 0) || !send(c, ipCut, 1) {
		t.Error("unreadable packets pass")
	}
	if testtrace.Metric(c, 0, "malformed") != 4 || testtrace.Metric(c, 0, "unreadable") != 2 || testtrace.Metric(c, 0, "dropped") != 2 {
		t.Errorf("malformed %d unreadable %d dropped %d", testtrace.Metric(c, 0, "malformed"), testtrace.Metric(c, 0, "unreadable"), testtrace.Metric(c, 0, "dropped"))
	}
}

// TestTimeGoesBack: a packet stamped before the previous one is judged against the same
// bucket (no negative refill, no panic).
func TestTimeGoesBack(t *testing.T) {
	c, _ := newRL(t, "{rate: 10, burst: 1}")
	if !send(c, syn(src1, 1), 10*int64(time.Second)) || send(c, syn(src1, 2), 9*int64(time.Second)) ||
		!send(c, syn(src1, 3), 10*int64(time.Second)+100*ms) {
		t.Error("out-of-order timestamps")
	}
}

func TestConfigValidation(t *testing.T) {
	for cfg, want := range map[string]string{
		"{rate: 0}":                           "rate",
		"{rate: -3}":                          "rate",
		"{rate: 2e9}":                         "rate",
		"{burst: 0}":                          "burst",
		"{rate: 0.000001, burst: 4000000000}": "burst",
		"{prefix_v4: 33}":                     "prefix_v4",
		"{prefix_v6: -1}":                     "prefix_v6",
		"{max_sources: 0}":                    "max_sources",
		"{exempt: [10.0.0.1]}":                `"10.0.0.1"`, // a decode error: it names the value
		"{ratee: 3}":                          `unknown field "ratee"`,
	} {
		testtrace.ConfigError(t, "ratelimit", cfg, want)
	}
}

// TestZeroAllocs: a source held at its rate (dropping in steady state) and a source under it
// cost no allocation per packet.
func TestZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation may allocate")
	}
	c, _ := newRL(t, "{rate: 1000, burst: 10}")
	frames := [][]byte{syn(src1, 1), syn(src2, 2), syn(v6a, 3), syn(v6c, 4)}
	batch := make([]packet.Packet, 64)
	out := make([]*packet.Packet, 0, 64)
	now := int64(0)
	fill := func() {
		for i := range batch {
			now += 100_000 // 10 kpps in all: each source 2.5 kpps against 1 kpps
			batch[i].SetData(frames[i%len(frames)], now, 0)
		}
	}
	for range 10 {
		fill()
		c.Process(batch, out[:0])
	}
	if a := testtrace.AllocsPerRun(200, func() {
		fill()
		out = c.Process(batch, out[:0])
	}); a != 0 {
		t.Errorf("%v allocs per batch", a)
	}
	if testtrace.Metric(c, 0, "dropped") == 0 || testtrace.Metric(c, 0, "passed") == 0 {
		t.Errorf("the steady state must both pass and drop: passed %d dropped %d", testtrace.Metric(c, 0, "passed"), testtrace.Metric(c, 0, "dropped"))
	}
}
