package portscan_test

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
)

var (
	scanner   = netip.MustParseAddr("203.0.113.66")
	scanner6  = netip.MustParseAddr("2001:db8:66::1")
	target    = netip.MustParseAddr("198.51.100.10")
	target6   = netip.MustParseAddr("2001:db8:10::10")
	router    = netip.MustParseAddr("192.0.2.254")
	router6   = netip.MustParseAddr("2001:db8:ff::1")
	bystander = netip.MustParseAddr("203.0.113.7")
)

// hostN is the n-th host of a /16 of targets.
func hostN(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, byte(n >> 8), byte(n)}) }

// unreachable returns an ICMP (ICMPv6) destination unreachable from the router to the
// sender of frame, quoting frame's IP packet.
func unreachable(frame []byte) []byte {
	ip := frame[14:]
	if ip[0]>>4 == 4 {
		src := netip.AddrFrom4([4]byte(ip[12:16]))
		return pkttest.Frame(router, src, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, ip)
	}
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	return pkttest.Frame(router6, src, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}, append([]byte{0, 0, 0, 0}, ip...))
}

// params are TRW parameters and the step counts the paper's formulas give for them:
// after n failures in a row Λ = ((1-θ1)/(1-θ0))^n, so the walk reaches η1 = PD/PF at
// n = ceil(ln η1 / ln((1-θ1)/(1-θ0))); after n successes Λ = (θ1/θ0)^n reaches
// η0 = (1-PD)/(1-PF) at n = ceil(ln η0 / ln(θ1/θ0)).
type params struct{ theta0, theta1, pd, pf float64 }

func (p params) config() string {
	return fmt.Sprintf("{theta0: %v, theta1: %v, pd: %v, pf: %v}", p.theta0, p.theta1, p.pd, p.pf)
}

func (p params) failRatio() float64 { return (1 - p.theta1) / (1 - p.theta0) }
func (p params) succRatio() float64 { return p.theta1 / p.theta0 }
func (p params) n1() int {
	return int(math.Ceil(math.Log(p.pd/p.pf)/math.Log(p.failRatio()) - 1e-9))
}
func (p params) n0() int {
	return int(math.Ceil(math.Log((1-p.pd)/(1-p.pf))/math.Log(p.succRatio()) - 1e-9))
}

var paramSets = []params{
	{0.8, 0.2, 0.99, 0.01},     // the paper's: N1 = 4, N0 = 4
	{0.9, 0.5, 0.999, 0.001},   // N1 = 5
	{0.8, 0.2, 0.9999, 0.0001}, // N1 = 7
	{0.6, 0.3, 0.99, 0.01},     // N1 = 9
}

func TestFormulaSteps(t *testing.T) {
	// The expected steps themselves, so that a wrong formula in the test cannot pass.
	want := []int{4, 5, 7, 9}
	for i, p := range paramSets {
		if p.n1() != want[i] {
			t.Errorf("%+v: N1 = %d, want %d", p, p.n1(), want[i])
		}
	}
	if paramSets[0].n0() != 4 {
		t.Errorf("paper's N0 = %d, want 4", paramSets[0].n0())
	}
}

// TestFailuresInARow: k failed first contacts in a row raise the alert exactly at the
// step the paper's formula predicts, whatever the kind of failure, and only once.
func TestFailuresInARow(t *testing.T) {
	kinds := []string{"rst", "icmp", "syn-timeout", "udp-timeout", "icmpv6", "echo-timeout"}
	for _, p := range paramSets {
		for _, kind := range kinds {
			t.Run(fmt.Sprintf("%v-%v-%s", p.theta0, p.pd, kind), func(t *testing.T) {
				h := newHarness(t, p.config())
				src := scanner
				if kind == "icmpv6" {
					src = scanner6
				}
				n1 := p.n1()
				for i := 1; i <= n1+3; i++ {
					port := uint16(1000 + i)
					var probe []byte
					switch kind {
					case "udp-timeout":
						probe = pkttest.UDP(src, target, 40000, port, []byte("probe"))
					case "echo-timeout":
						probe = pkttest.Echo(src, hostN(i), uint16(i), false)
					case "icmpv6":
						probe = pkttest.TCP(src, target6, 40000, port, pkttest.SYN, nil)
					default:
						probe = pkttest.TCP(src, target, 40000, port, pkttest.SYN, nil)
					}
					h.send(time.Millisecond, probe)
					switch kind {
					case "rst":
						h.send(time.Millisecond, pkttest.TCP(target, src, port, 40000, "RA", nil))
					case "icmp", "icmpv6":
						h.send(time.Millisecond, unreachable(probe))
					default:
						// No reply: a later packet of the source (the probe again) after
						// reply_timeout resolves the attempt as a failure.
						h.send(3*time.Second+time.Millisecond, probe)
					}
					wantAlerts := 0
					if i >= n1 {
						wantAlerts = 1
					}
					if got := h.sink.Len(); got != wantAlerts {
						t.Fatalf("after %d failures: %d alerts, want %d (N1 = %d)", i, got, wantAlerts, n1)
					}
					if i < n1 {
						if l, want := h.likelihood(src), math.Pow(p.failRatio(), float64(i)); math.Abs(l-want) > 1e-9*want {
							t.Fatalf("after %d failures Λ = %v, want %v", i, l, want)
						}
					}
				}
				if h.metric("failures") != uint64(n1+3) || h.metric("attempts") != uint64(n1+3) || h.metric("scanners") != 1 {
					t.Errorf("attempts %d failures %d scanners %d", h.metric("attempts"), h.metric("failures"), h.metric("scanners"))
				}
				a := h.sink.Snapshot()[0]
				if a.Rule != "scanner" || a.NF != "portscan" || a.Details["source"] != src.String() ||
					a.Details["failures"] != uint32(n1) || a.Details["attempts"] != uint32(n1) {
					t.Errorf("alert %+v", a)
				}
				if l := a.Details["likelihood"].(float64); l < p.pd/p.pf {
					t.Errorf("alert likelihood %v below η1 %v", l, p.pd/p.pf)
				}
			})
		}
	}
}

// TestSuccessesAreBenign: successful first contacts walk down to η0 at the predicted step;
// the walk then restarts at Λ = 1.
func TestSuccessesAreBenign(t *testing.T) {
	p := paramSets[0]
	for _, kind := range []string{"synack", "udp", "echo"} {
		t.Run(kind, func(t *testing.T) {
			h := newHarness(t, "")
			for i := 1; i <= p.n0()+1; i++ {
				port := uint16(2000 + i)
				switch kind {
				case "synack":
					h.send(time.Millisecond, pkttest.TCP(bystander, target, 50000, port, pkttest.SYN, nil))
					h.send(time.Millisecond, pkttest.TCP(target, bystander, port, 50000, pkttest.SYNACK, nil))
					h.send(time.Millisecond, pkttest.TCP(bystander, target, 50000, port, pkttest.ACK, nil))
				case "udp":
					h.send(time.Millisecond, pkttest.UDP(bystander, target, 50000, port, []byte("q")))
					h.send(time.Millisecond, pkttest.UDP(target, bystander, port, 50000, []byte("a")))
				case "echo":
					h.send(time.Millisecond, pkttest.Echo(bystander, hostN(i), uint16(i), false))
					h.send(time.Millisecond, pkttest.Echo(hostN(i), bystander, uint16(i), true))
				}
				l := h.likelihood(bystander)
				switch {
				case i < p.n0():
					if want := math.Pow(p.succRatio(), float64(i)); math.Abs(l-want) > 1e-9*want || h.metric("benign") != 0 {
						t.Fatalf("after %d successes Λ = %v (want %v), benign %d", i, l, want, h.metric("benign"))
					}
				case i == p.n0():
					if l != 1 || h.metric("benign") != 1 {
						t.Fatalf("after %d successes Λ = %v, benign %d: want a restart at 1", i, l, h.metric("benign"))
					}
				default:
					if want := p.succRatio(); math.Abs(l-want) > 1e-9 {
						t.Fatalf("restarted walk: Λ = %v, want %v", l, want)
					}
				}
			}
			if h.sink.Len() != 0 || h.metric("successes") != uint64(p.n0()+1) {
				t.Errorf("alerts %d successes %d", h.sink.Len(), h.metric("successes"))
			}
		})
	}
}

// TestMixedWalk: three successes (Λ = 1/64) and then failures: the alert comes at the
// smallest k with (1/4)^3 · 4^k >= 99, k = 7.
func TestMixedWalk(t *testing.T) {
	h := newHarness(t, "")
	for i := 1; i <= 3; i++ {
		h.send(time.Millisecond, pkttest.TCP(scanner, target, 40000, uint16(i), pkttest.SYN, nil))
		h.send(time.Millisecond, pkttest.TCP(target, scanner, uint16(i), 40000, pkttest.SYNACK, nil))
	}
	for k := 1; k <= 8; k++ {
		port := uint16(100 + k)
		h.send(time.Millisecond, pkttest.TCP(scanner, target, 40000, port, pkttest.SYN, nil))
		h.send(time.Millisecond, pkttest.TCP(target, scanner, port, 40000, "RA", nil))
		want := 0
		if k >= 7 {
			want = 1
		}
		if h.sink.Len() != want {
			t.Fatalf("after 3 successes and %d failures: %d alerts, want %d", k, h.sink.Len(), want)
		}
	}
	a := h.sink.Snapshot()[0]
	if a.Details["successes"] != uint32(3) || a.Details["failures"] != uint32(7) {
		t.Errorf("alert details %v", a.Details)
	}
}

// TestUnits: with unit service, a port sweep of one host is a run of first contacts; with
// unit host (the paper's) it is one, and a sweep of hosts is needed. Repeated connections
// to a contacted destination (retransmissions from new source ports) are not attempts.
func TestUnits(t *testing.T) {
	portSweep := func(h *harness) {
		for i := 1; i <= 10; i++ {
			port := uint16(i)
			for sport := uint16(40000); sport < 40003; sport++ { // each probe three times
				h.send(time.Millisecond, pkttest.TCP(scanner, target, sport, port, pkttest.SYN, nil))
				h.send(time.Millisecond, pkttest.TCP(target, scanner, port, sport, "RA", nil))
			}
		}
	}
	hostSweep := func(h *harness) {
		for i := 1; i <= 10; i++ {
			h.send(time.Millisecond, pkttest.TCP(scanner, hostN(i), 40000, 22, pkttest.SYN, nil))
			h.send(time.Millisecond, pkttest.TCP(hostN(i), scanner, 22, 40000, "RA", nil))
		}
	}
	for _, c := range []struct {
		unit          string
		sweep         func(*harness)
		attempts      uint64
		alertAtFailed uint32
	}{
		{"service", portSweep, 10, 4},
		{"host", portSweep, 1, 0},
		{"service", hostSweep, 10, 4},
		{"host", hostSweep, 10, 4},
	} {
		h := newHarness(t, "{unit: "+c.unit+"}")
		c.sweep(h)
		if h.metric("attempts") != c.attempts {
			t.Errorf("unit %s: %d attempts, want %d", c.unit, h.metric("attempts"), c.attempts)
		}
		switch {
		case c.alertAtFailed == 0 && h.sink.Len() != 0:
			t.Errorf("unit %s: a port sweep of one host raised %d alerts", c.unit, h.sink.Len())
		case c.alertAtFailed > 0 && (h.sink.Len() != 1 || h.sink.Snapshot()[0].Details["failures"] != c.alertAtFailed):
			t.Errorf("unit %s: alerts %v", c.unit, flagged(h.sink))
		}
	}
}

// TestBlock: with block, a flagged source's later packets (its probes and their replies)
// are dropped and counted; other sources pass. Without block everything passes.
func TestBlock(t *testing.T) {
	for _, block := range []bool{false, true} {
		h := newHarness(t, fmt.Sprintf("{block: %v}", block))
		for i := 1; i <= 4; i++ {
			h.send(time.Millisecond, pkttest.TCP(scanner, target, 40000, uint16(i), pkttest.SYN, nil))
			if !h.send(time.Millisecond, pkttest.TCP(target, scanner, uint16(i), 40000, "RA", nil)) {
				t.Fatalf("block %v: the reply that raised the alert was dropped", block)
			}
		}
		if h.sink.Len() != 1 {
			t.Fatalf("block %v: %d alerts", block, h.sink.Len())
		}
		fwdProbe := h.send(time.Millisecond, pkttest.TCP(scanner, target, 40000, 80, pkttest.SYN, nil))
		fwdReply := h.send(time.Millisecond, pkttest.TCP(target, scanner, 80, 40000, pkttest.SYNACK, nil))
		fwdOld := h.send(time.Millisecond, pkttest.TCP(scanner, target, 40000, 1, pkttest.ACK, nil))
		fwdOther := h.send(time.Millisecond, pkttest.TCP(bystander, target, 40000, 80, pkttest.SYN, nil))
		if fwdProbe == block || fwdReply == block || fwdOld == block || !fwdOther {
			t.Errorf("block %v: probe forwarded %v, reply %v, old flow %v, other source %v", block, fwdProbe, fwdReply, fwdOld, fwdOther)
		}
		if want := map[bool]uint64{false: 0, true: 3}[block]; h.metric("blocked") != want {
			t.Errorf("block %v: blocked %d, want %d", block, h.metric("blocked"), want)
		}
	}
}

// TestReplyTimeout: an attempt is pending until reply_timeout has passed (packet time); a
// reply within it is a success, one after it is late and ignored.
func TestReplyTimeout(t *testing.T) {
	h := newHarness(t, "{reply_timeout: 3s}")
	h.send(0, pkttest.TCP(bystander, target, 40000, 22, pkttest.SYN, nil))
	h.send(2900*time.Millisecond, pkttest.TCP(bystander, hostN(1), 40000, 22, pkttest.ACK, nil)) // the source again, at 2.9 s
	if h.metric("failures") != 0 {
		t.Fatal("attempt failed before reply_timeout")
	}
	h.send(50*time.Millisecond, pkttest.TCP(target, bystander, 22, 40000, pkttest.SYNACK, nil)) // 2.95 s
	if h.metric("successes") != 1 {
		t.Fatal("SYN-ACK within reply_timeout is not a success")
	}
	h.send(time.Second, pkttest.TCP(bystander, target, 40001, 23, pkttest.SYN, nil))
	h.send(3100*time.Millisecond, pkttest.TCP(bystander, hostN(1), 40000, 22, pkttest.ACK, nil))
	if h.metric("failures") != 1 || h.metric("timeouts") != 1 {
		t.Fatalf("no failure after reply_timeout: failures %d timeouts %d", h.metric("failures"), h.metric("timeouts"))
	}
	h.send(100*time.Millisecond, pkttest.TCP(target, bystander, 23, 40001, pkttest.SYNACK, nil))
	if h.metric("successes") != 1 || h.metric("late_replies") != 1 {
		t.Errorf("late reply: successes %d late %d", h.metric("successes"), h.metric("late_replies"))
	}
}

// TestFlowEndResolves: an attempt whose source sends nothing more is resolved when its
// flow leaves the flow table (FlowEnd).
func TestFlowEndResolves(t *testing.T) {
	h := newHarness(t, "")
	for i := 1; i <= 4; i++ {
		h.send(time.Millisecond, pkttest.TCP(scanner, hostN(i), 40000, 445, pkttest.SYN, nil))
	}
	if h.metric("failures") != 0 {
		t.Fatal("failures before any timeout")
	}
	// TCP flows idle for 5 minutes end; the sources stay (idle 10 minutes).
	h.c.Expire(h.now + int64(6*time.Minute))
	if h.metric("timeouts") != 4 || h.sink.Len() != 1 {
		t.Errorf("after flow end: timeouts %d, alerts %d", h.metric("timeouts"), h.sink.Len())
	}
}

// TestWindowOverflow: the 65th outstanding attempt of a source pushes the oldest out as a
// failure.
func TestWindowOverflow(t *testing.T) {
	h := newHarness(t, "")
	for i := 1; i <= 64; i++ {
		h.send(time.Microsecond, pkttest.TCP(bystander, hostN(i), 40000, 80, pkttest.SYN, nil))
	}
	if h.metric("failures") != 0 {
		t.Fatal("failure with 64 outstanding")
	}
	h.send(time.Microsecond, pkttest.TCP(bystander, hostN(65), 40000, 80, pkttest.SYN, nil))
	if h.metric("window_overflows") != 1 || h.metric("failures") != 1 {
		t.Errorf("overflows %d failures %d", h.metric("window_overflows"), h.metric("failures"))
	}
	// The pushed-out attempt's SYN-ACK arrives late: ignored.
	h.send(time.Microsecond, pkttest.TCP(hostN(1), bystander, 80, 40000, pkttest.SYNACK, nil))
	h.send(time.Microsecond, pkttest.TCP(hostN(2), bystander, 80, 40000, pkttest.SYNACK, nil))
	if h.metric("late_replies") != 1 || h.metric("successes") != 1 {
		t.Errorf("late %d successes %d", h.metric("late_replies"), h.metric("successes"))
	}
}

// TestNotAttempts: multicast and broadcast destinations, mid-stream TCP and replies are
// not first-contact attempts; malformed packets pass, counted.
func TestNotAttempts(t *testing.T) {
	h := newHarness(t, "")
	for _, dst := range []string{"224.0.0.251", "239.255.255.250", "255.255.255.255", "ff02::fb"} {
		src := bystander
		if strings.Contains(dst, ":") {
			src = scanner6
		}
		if !h.send(time.Millisecond, pkttest.UDP(src, netip.MustParseAddr(dst), 5353, 5353, []byte("q"))) {
			t.Fatal("multicast dropped")
		}
	}
	h.send(time.Millisecond, pkttest.TCP(bystander, target, 40000, 443, pkttest.ACK, []byte("mid-stream")))
	h.send(time.Millisecond, pkttest.TCP(bystander, target, 40001, 443, pkttest.SYNACK, nil))
	h.send(time.Millisecond, pkttest.Echo(bystander, target, 7, true))
	if h.metric("attempts") != 0 || h.metric("multicast") != 4 {
		t.Errorf("attempts %d multicast %d", h.metric("attempts"), h.metric("multicast"))
	}
	// Malformed: an IPv4 header cut short, a TCP header past the packet.
	syn := pkttest.TCP(bystander, target, 1, 2, pkttest.SYN, nil)
	for _, f := range [][]byte{syn[:20], syn[:40]} {
		if !h.send(time.Millisecond, f) {
			t.Error("malformed packet dropped")
		}
	}
	if h.metric("malformed") != 2 {
		t.Errorf("malformed %d", h.metric("malformed"))
	}
}

func TestConfigErrors(t *testing.T) {
	for cfg, field := range map[string]string{
		"{unit: port}":                      "unit",
		"{theta0: 1}":                       "theta0",
		"{theta1: 0.9}":                     "theta1",
		"{pf: 0}":                           "pf",
		"{pd: 0.005}":                       "pd",
		"{reply_timeout: 0s}":               "reply_timeout",
		"{max_sources: 0}":                  "max_sources",
		"{max_contacts: -1}":                "max_contacts",
		"{idle: 2s}":                        "idle",
		"{thresholds: 3}":                   "thresholds",
		"{reply_timeout: 1s, idle: 999ms}":  "idle",
		"{theta0: 0.5, theta1: 0.5}":        "theta1",
		"{block: yes-please}":               "block",
		"{unit: service, pd: 0.9, pf: 0.9}": "pd",
	} {
		testtrace.ConfigError(t, "portscan", cfg, field)
	}
	if _, err := snf.ParseChain([]byte("nfs:\n  - nf: portscan\n"), "x.yaml"); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestNoAllocs: after warm-up, the per-packet path allocates nothing, alerts aside.
func TestNoAllocs(t *testing.T) {
	h := newHarness(t, "")
	var frames [][]byte
	for i := range 32 {
		frames = append(frames,
			pkttest.TCP(bystander, hostN(i), 40000, 443, pkttest.SYN, nil),
			pkttest.TCP(hostN(i), bystander, 443, 40000, pkttest.SYNACK, nil))
	}
	frames = append(frames, pkttest.UDP(bystander, target, 5000, 53, []byte("q")),
		pkttest.UDP(target, bystander, 53, 5000, []byte("a")),
		unreachable(pkttest.UDP(bystander, target, 5001, 54, []byte("q"))))
	batch := pkttest.Batch(h.now, frames...)
	out := make([]*packet.Packet, 0, 2*len(batch))
	run := func() {
		for i := range batch {
			h.clock++
			batch[i].Clock = h.clock
			batch[i].Time += int64(time.Second)
		}
		out = h.c.Process(batch, out[:0])
	}
	for range 3 {
		run()
	}
	if n := testtrace.AllocsPerRun(50, run); n != 0 {
		t.Errorf("%v allocations per batch", n)
	}
}
