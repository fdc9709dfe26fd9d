package trace

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
)

// wlFrames reads every frame of a Workload for cfg in batches of batch.
func wlFrames(t testing.TB, cfg WorkloadConfig, batch int) ([]frame, WorkloadStats) {
	t.Helper()
	w, err := NewWorkload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pkts := make([]packet.Packet, batch)
	var out []frame
	for {
		n, err := w.Read(pkts)
		for i := range pkts[:n] {
			out = append(out, frame{bytes.Clone(pkts[i].Data), pkts[i].Time})
		}
		if err == io.EOF {
			if n != 0 {
				t.Fatalf("Read returned n=%d with io.EOF", n)
			}
			return out, w.Stats()
		}
		if err != nil || n == 0 {
			t.Fatalf("Read = %d, %v", n, err)
		}
	}
}

// smallWorkload is a quick workload: many short flows on a slow link.
func smallWorkload() WorkloadConfig {
	c := DefaultWorkloadConfig()
	c.Dist, c.Link, c.Duration = "alistorage", 1e9, time.Second
	return c
}

// sparseWorkload has many flows of few packets each: flows arrive at about 16000 a second,
// and each sends one data packet and then waits (OFF gaps of an hour).
func sparseWorkload() WorkloadConfig {
	c := DefaultWorkloadConfig()
	c.Dist, c.Burst, c.Gap = "alistorage", 1, "lognormal:median=1h,sigma=0.1"
	return c
}

// flowView is what a test sees of one flow (both directions of a 5-tuple).
type flowView struct {
	first, last int64
	times       []int64
	packets     int
	synOnly     bool  // its only packets are SYNs without ACK
	fin         bool  // it was closed (the server's FIN)
	down        int64 // TCP/UDP payload bytes from the server (the key's destination)
	client      packet.Key
}

// flowsOf groups frames by canonical 5-tuple, in order of first appearance.
func flowsOf(t testing.TB, frames []frame) []*flowView {
	t.Helper()
	idx := map[packet.Key]int{}
	var flows []*flowView
	var p packet.Packet
	for _, fr := range frames {
		p.SetData(fr.data, fr.ts, 0)
		ck, _ := p.Key.Canonical()
		i, ok := idx[ck]
		if !ok {
			i = len(flows)
			idx[ck] = i
			flows = append(flows, &flowView{first: fr.ts, synOnly: true, client: p.Key})
		}
		f := flows[i]
		f.last = fr.ts
		f.times = append(f.times, fr.ts)
		f.packets++
		if p.Proto != packet.ProtoTCP || p.TCPFlags()&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn {
			f.synOnly = false
		}
		if p.Key != f.client { // from the server
			f.down += int64(len(p.Payload()))
			if p.Proto == packet.ProtoTCP && p.TCPFlags()&packet.TCPFin != 0 {
				f.fin = true
			}
		}
	}
	return flows
}

func TestWorkloadDeterministic(t *testing.T) {
	cfg := smallWorkload()
	cfg.Duration = 300 * time.Millisecond
	a, _ := wlFrames(t, cfg, 64)
	b, _ := wlFrames(t, cfg, 7) // the batch size does not matter
	if len(a) < 10000 {
		t.Fatalf("only %d frames", len(a))
	}
	if len(a) != len(b) || digest(a) != digest(b) {
		t.Fatalf("two runs with the same seed differ: %d and %d frames", len(a), len(b))
	}
	cfg.Seed = 2
	c, _ := wlFrames(t, cfg, 64)
	if digest(c) == digest(a) {
		t.Fatal("seeds 1 and 2 give the same trace")
	}
}

// TestWorkloadFrames checks every frame: it parses, its checksums are valid, time never
// goes back and stays within the trace, and each flow has its own 5-tuple.
func TestWorkloadFrames(t *testing.T) {
	cfg := smallWorkload()
	cfg.UDPFrac, cfg.ScanFrac = 0.3, 0.1
	cfg.Warmup = 100 * time.Millisecond
	frames, st := wlFrames(t, cfg, 100)
	start, end := cfg.Start.UnixNano(), cfg.Start.Add(cfg.Duration).UnixNano()
	var p packet.Packet
	for i, fr := range frames {
		p.SetData(fr.data, fr.ts, 0)
		if !p.Is(packet.IPv4|packet.HasL4) || p.Flags&(packet.Malformed|packet.Truncated) != 0 {
			t.Fatalf("frame %d: flags %b", i, p.Flags)
		}
		if err := pkttest.VerifyChecksums(fr.data); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if len(fr.data) > 14+cfg.MTU {
			t.Fatalf("frame %d: %d bytes, above the MTU", i, len(fr.data))
		}
		if fr.ts < start || fr.ts >= end || (i > 0 && fr.ts < frames[i-1].ts) {
			t.Fatalf("frame %d: time %d out of order or outside [%d, %d)", i, fr.ts, start, end)
		}
	}
	if st.Packets != int64(len(frames)) {
		t.Errorf("Stats().Packets = %d, read %d", st.Packets, len(frames))
	}
	// Flows of the warm-up that ended before the trace do not show up.
	flows := flowsOf(t, frames)
	if len(flows) < 1000 || int64(len(flows)) > st.Flows {
		t.Errorf("%d distinct 5-tuples, %d flows started", len(flows), st.Flows)
	}
	if st.UDPFlows == 0 || st.ScanFlows == 0 || st.MaxActive == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestWorkloadDistinctTuples: without warm-up, every flow started is one 5-tuple.
func TestWorkloadDistinctTuples(t *testing.T) {
	cfg := sparseWorkload()
	cfg.Duration = time.Second
	cfg.Clients = 10 // few clients: their ports are used in turn
	frames, st := wlFrames(t, cfg, 256)
	if n := len(flowsOf(t, frames)); int64(n) != st.Flows || n < 10000 {
		t.Errorf("%d distinct 5-tuples for %d flows", n, st.Flows)
	}
}

// integrate returns the integral of rate over [a, b) (seconds from the start).
func integrate(rate func(time.Duration) float64, a, b time.Duration) float64 {
	const steps = 200
	h := (b - a) / steps
	s := 0.0
	for i := range steps {
		s += rate(a + h*time.Duration(i) + h/2)
	}
	return s * h.Seconds()
}

// TestArrivalsFollowProfile counts flow arrivals per window against the integral of the
// arrival rate over the window: Poisson counts, so within 5 standard deviations.
func TestArrivalsFollowProfile(t *testing.T) {
	for _, prof := range []string{
		"constant",
		"ramp:from=0.1,to=1",
		"diurnal:min=0.2,max=1",
		"diurnal:min=0,max=1,days=2",
		"diurnal:min=0.2,max=1+bursts:x=4,len=100ms,rate=1",
	} {
		t.Run(prof, func(t *testing.T) {
			cfg := DefaultWorkloadConfig()
			cfg.Dist, cfg.Profile, cfg.Duration = "alistorage", prof, 10*time.Second
			w, err := NewWorkload(cfg)
			if err != nil {
				t.Fatal(err)
			}
			const windows = 100
			win := cfg.Duration / windows
			var count [windows]int
			total := 0
			for at := w.arrT; at < w.end; at = w.nextArrival(at) {
				count[(at-w.start)/int64(win)]++
				total++
			}
			if total < 50000 {
				t.Fatalf("only %d arrivals", total)
			}
			chi2 := 0.0
			for i, n := range count {
				want := integrate(w.Rate, win*time.Duration(i), win*time.Duration(i+1))
				if d := math.Abs(float64(n) - want); d > 5*math.Sqrt(want)+1 {
					t.Errorf("window %d: %d arrivals, want %.0f", i, n, want)
				}
				if want > 0 {
					chi2 += (float64(n) - want) * (float64(n) - want) / want
				}
			}
			// 100 windows: chi-square with about 100 degrees of freedom; 160 is p < 1e-4.
			if chi2 > 160 {
				t.Errorf("chi-square %.1f over %d windows", chi2, windows)
			}
		})
	}
}

// TestFlowStartsFollowProfile checks the same in the frames: first packets of 5-tuples.
func TestFlowStartsFollowProfile(t *testing.T) {
	cfg := sparseWorkload()
	cfg.Profile, cfg.Duration = "ramp:from=0.1,to=1", 2*time.Second
	frames, _ := wlFrames(t, cfg, 256)
	w, _ := NewWorkload(cfg)
	const windows = 10
	win := cfg.Duration / windows
	var count [windows]int
	for _, f := range flowsOf(t, frames) {
		count[(f.first-cfg.Start.UnixNano())/int64(win)]++
	}
	for i, n := range count {
		want := integrate(w.Rate, win*time.Duration(i), win*time.Duration(i+1))
		if d := math.Abs(float64(n) - want); d > 5*math.Sqrt(want)+1 {
			t.Errorf("window %d: %d flows start, want %.0f", i, n, want)
		}
	}
	if count[windows-1] < 5*count[0] {
		t.Errorf("ramp from 0.1 to 1: %v", count)
	}
}

// ks returns the Kolmogorov–Smirnov distance between samples and d.
func ks(d *Dist, xs []float64) float64 {
	slices.Sort(xs)
	n := float64(len(xs))
	m := 0.0
	for i, x := range xs {
		c := d.CDF(x)
		m = max(m, math.Abs(c-float64(i)/n), math.Abs(c-float64(i+1)/n))
	}
	return m
}

func TestDistsMatchSources(t *testing.T) {
	// Means as the source files state them.
	means := map[string]float64{"websearch": 1.71e6, "datamining": 12.7e6, "fb_hadoop": 120e3,
		"alistorage": 41e3, "internet_edge_agh2015": 84.0e3}
	r := rand.New(rand.NewPCG(3, 4))
	for _, name := range DistNames() {
		d, err := LookupDist(name)
		if err != nil {
			t.Fatal(err)
		}
		if m := d.Mean(); math.Abs(m-means[name])/means[name] > 0.02 {
			t.Errorf("%s: mean %.4g, the source says %.4g", name, m, means[name])
		}
		xs := make([]float64, 50000)
		for i := range xs {
			xs[i] = d.Sample(r)
		}
		// The 0.1 % critical value of the KS distance for n = 50000 is 1.95/sqrt(n) ≈ 0.0087.
		if D := ks(d, xs); D > 0.0087 {
			t.Errorf("%s: KS distance %.4f between samples and the CDF", name, D)
		}
	}
	// The inverse transform inverts the CDF.
	d, _ := LookupDist("websearch")
	for u := 0.0; u < 1; u += 0.01 {
		if c := d.CDF(d.Quantile(u)); math.Abs(c-u) > 1e-9 {
			t.Fatalf("CDF(Quantile(%g)) = %g", u, c)
		}
	}
	if got := d.Quantile(0.53); got != 80000 {
		t.Errorf("websearch median point: Quantile(0.53) = %g, want 80000", got)
	}
	g := intraflowGaps()
	if g.Max() != 1e7 || g.Quantile(0.5/0.95) != 1000 { // conditional on <= 10 s
		t.Errorf("intraflow gaps: max %g, Quantile(0.5/0.95) = %g", g.Max(), g.Quantile(0.5/0.95))
	}
	if _, err := LookupDist("intraflow_gap"); err == nil || !strings.Contains(err.Error(), "known: websearch, datamining") {
		t.Errorf("LookupDist of a gap distribution: %v", err)
	}
}

func TestParseDistErrors(t *testing.T) {
	for _, bad := range []struct {
		text string
		mix  bool
	}{
		{"", false}, {"1 0.5\n0 0.6", false}, {"1 0.5\n2 0.4", false}, {"1 2", false},
		{"x 1", false}, {"1 1 1", false}, {"1 -1", false}, {"0 0\n0 1", false},
		{"1 1", true}, {"0 1 1", true}, {"1 NaN 1", true}, {"# nothing", true},
	} {
		if _, err := ParseDist("t", bad.text, bad.mix); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseDist(%q, %v) = %v, want a one-line error", bad.text, bad.mix, err)
		}
	}
}

// TestWorkloadFlowSizes: the bytes the servers of completed flows sent follow the
// distribution (no OFF gaps and a fast link, so flows that start early all complete).
func TestWorkloadFlowSizes(t *testing.T) {
	cfg := smallWorkload()
	cfg.Gap, cfg.Link, cfg.Load, cfg.ScanFrac, cfg.UDPFrac = "none", 10e9, 0.1, 0, 0
	frames, _ := wlFrames(t, cfg, 256)
	var xs []float64
	cut := cfg.Start.Add(cfg.Duration * 9 / 10).UnixNano()
	for _, f := range flowsOf(t, frames) {
		if f.first >= cut {
			continue
		}
		if !f.fin {
			t.Fatalf("a flow of %d bytes that started at %d did not complete", f.down, f.first)
		}
		xs = append(xs, float64(f.down))
	}
	d, _ := LookupDist(cfg.Dist)
	// Sizes are whole bytes (ceil): allow for that and for n of a few thousand.
	if D, bound := ks(d, xs), 2.2/math.Sqrt(float64(len(xs))); len(xs) < 2000 || D > bound {
		t.Errorf("KS distance %.4f over %d flows, want <= %.4f", D, len(xs), bound)
	}
}

// flowletGaps returns the number of gaps longer than 500µs between packets of a flow (the
// starts of flowlets after the first), of flows and of packets.
func flowletGaps(t *testing.T, frames []frame) (gaps, flows, packets int) {
	all := flowsOf(t, frames)
	for _, f := range all {
		for i := 1; i < len(f.times); i++ {
			if f.times[i]-f.times[i-1] > int64(500*time.Microsecond) {
				gaps++
			}
		}
	}
	return gaps, len(all), len(frames)
}

// TestWorkloadFlowlets: OFF gaps make flowlets, as many as the gap model says. Gaps are
// counted per packet: longer gaps also slow flows down, so fewer of their packets fit in
// the trace.
func TestWorkloadFlowlets(t *testing.T) {
	cfg := smallWorkload()
	cfg.Duration = 500 * time.Millisecond
	count := func(gap string, burst float64) (perPacket, perFlow float64) {
		c := cfg
		c.Gap, c.Burst = gap, burst
		frames, _ := wlFrames(t, c, 256)
		g, n, p := flowletGaps(t, frames)
		return float64(g) / float64(p), float64(g) / float64(n)
	}
	none, _ := count("none", 16)
	short, _ := count("lognormal:median=100us,sigma=0.3", 16)
	mid, _ := count("lognormal:median=400us,sigma=0.5", 16)
	def, _ := count(DefaultWorkloadConfig().Gap, 16)
	long, longFlow := count("lognormal:median=5ms,sigma=0.3", 16)
	measured, _ := count("intraflow", 16)
	small, _ := count("lognormal:median=5ms,sigma=0.3", 4)
	t.Logf("gaps > 500µs per 1000 packets: none %.2f, median 100µs %.2f, 400µs %.2f, default %.2f, 5ms %.2f (%.2f per flow), intraflow %.2f, 5ms with bursts of 4: %.2f",
		1000*none, 1000*short, 1000*mid, 1000*def, 1000*long, longFlow, 1000*measured, 1000*small)
	if none != 0 || short > 0.001 {
		t.Errorf("flowlet gaps without OFF gaps %.4f, with 100µs gaps %.4f per packet: want about 0", none, short)
	}
	if longFlow < 1 || measured == 0 {
		t.Errorf("gaps > 500µs: %.2f per flow with 5ms OFF gaps, %.4f per packet with measured gaps: want flowlets", longFlow, measured)
	}
	// P(gap > 500µs): 0.33 at median 400µs, 0.75 at the default (1ms, sigma 1), 1 at 5ms.
	if !(long > 1.15*def && def > 1.5*mid && mid > 0) {
		t.Errorf("flowlet gaps per packet do not follow the OFF gaps: 400µs %.4f, default %.4f, 5ms %.4f", mid, def, long)
	}
	if small < 2.5*long { // bursts of 4 packets instead of 16: about 3.5 times as many gaps
		t.Errorf("bursts of 4: %.4f flowlet gaps per packet, bursts of 16: %.4f", small, long)
	}
}

func TestWorkloadScanFrac(t *testing.T) {
	for _, frac := range []float64{0, 0.05, 0.3} {
		cfg := sparseWorkload()
		cfg.ScanFrac, cfg.Duration = frac, 300*time.Millisecond
		frames, _ := wlFrames(t, cfg, 256)
		cut := cfg.Start.Add(cfg.Duration).UnixNano() - int64(time.Millisecond) // flows opened at the end show only a SYN
		n, scans := 0, 0
		for _, f := range flowsOf(t, frames) {
			if f.first >= cut {
				continue
			}
			n++
			if f.synOnly {
				scans++
				if f.packets != 1 {
					t.Fatalf("a scan of %d packets", f.packets)
				}
			}
		}
		got, sd := float64(scans)/float64(n), math.Sqrt(frac*(1-frac)/float64(n))
		if math.Abs(got-frac) > 5*sd+1e-9 || n < 3000 {
			t.Errorf("ScanFrac %g: %d of %d flows are lone SYNs (%.4f)", frac, scans, n, got)
		}
	}
}

func TestWorkloadPacketSizes(t *testing.T) {
	frac := func(c WorkloadConfig) float64 {
		frames, _ := wlFrames(t, c, 256)
		small := 0
		for _, f := range frames {
			if len(f.data) <= 200 {
				small++
			}
		}
		return float64(small) / float64(len(frames))
	}
	cfg := DefaultWorkloadConfig()
	cfg.Duration = 200 * time.Millisecond
	if f := frac(cfg); f < 0.4 || f > 0.6 {
		t.Errorf("default: %.3f of the packets are small, want 0.4 to 0.6 (bimodal sizes)", f)
	}
	cfg.SmallFrac, cfg.Reverse = 0, 0
	if f := frac(cfg); f > 0.02 {
		t.Errorf("no small data packets, no reverse packets: %.3f are small", f)
	}
	cfg.Reverse = 1
	if f := frac(cfg); f < 0.45 || f > 0.55 {
		t.Errorf("one ACK per data packet: %.3f are small, want about 0.5", f)
	}
}

func TestWorkloadLimitsAndClose(t *testing.T) {
	cfg := smallWorkload()
	cfg.Packets = 1000
	frames, _ := wlFrames(t, cfg, 64)
	if len(frames) != 1000 {
		t.Errorf("Packets 1000: %d frames", len(frames))
	}
	w, _ := NewWorkload(cfg)
	pkts := make([]packet.Packet, 10)
	w.Close()
	if _, err := w.Read(pkts); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	// Warm-up: the trace starts with the flows already active.
	cfg = DefaultWorkloadConfig()
	cfg.Duration, cfg.Packets = 100*time.Millisecond, 1
	cfg.Warmup = 300 * time.Millisecond
	w, _ = NewWorkload(cfg)
	if n, _ := w.Read(pkts); n != 1 || w.Stats().Active < 20 || pkts[0].Time < cfg.Start.UnixNano() {
		t.Errorf("after a warm-up of 300ms: %d packets, %d flows active", n, w.Stats().Active)
	}
}

func TestWorkloadNoAllocs(t *testing.T) {
	cfg := DefaultWorkloadConfig()
	cfg.Duration = time.Hour
	w, err := NewWorkload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pkts := make([]packet.Packet, 64)
	for range 3000 { // warm-up: grow the buffers, reach steady state
		w.Read(pkts)
	}
	if a := testing.AllocsPerRun(2000, func() { w.Read(pkts) }); a != 0 {
		t.Errorf("%v allocations per Read of 64 packets", a)
	}
}

func TestParseProfile(t *testing.T) {
	d := 10 * time.Second
	for _, c := range []struct {
		spec string
		at   time.Duration
		want float64
	}{
		{"constant", 3 * time.Second, 1},
		{"constant:level=0.4", 0, 0.4},
		{"ramp:from=0.2,to=1", 0, 0.2},
		{"ramp:from=0.2,to=1", 5 * time.Second, 0.6},
		{"ramp:from=1,to=0", 10 * time.Second, 0},
		{"diurnal:min=0.2,max=1", 0, 0.2},
		{"diurnal:min=0.2,max=1", 5 * time.Second, 1},
		{"diurnal:min=0.2,max=1", 2500 * time.Millisecond, 0.6},
		{"diurnal:min=0,max=1,days=2", 2500 * time.Millisecond, 1},
		{"ramp:from=0.5,to=0.5+constant:level=2", 1 * time.Second, 1},
	} {
		p, err := ParseProfile(c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if got := p.Rate(c.at, d); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s at %s: %g, want %g", c.spec, c.at, got, c.want)
		}
	}
	// Bursts: x times the base for len, rate times a second.
	p, _ := ParseProfile("diurnal:min=0.5,max=0.5+bursts:x=4,len=50ms,rate=2")
	in, n := 0, 0
	for at := time.Duration(0); at < d; at += 100 * time.Microsecond {
		switch r := p.Rate(at, d); r {
		case 2:
			in++
		case 0.5:
		default:
			t.Fatalf("bursts at %s: %g", at, r)
		}
		n++
	}
	if got := float64(in) / float64(n); math.Abs(got-0.1) > 0.002 {
		t.Errorf("bursts cover %.4f of the time, want 0.1 (2 a second of 50ms)", got)
	}
	if p.Max() != 2 {
		t.Errorf("Max = %g", p.Max())
	}
	for _, bad := range []string{"", "weekly", "diurnal:min=1,max=0.5", "ramp:form=1", "ramp:from", "bursts:len=1s,rate=2",
		"bursts:x=-1", "constant:level=0", "diurnal:days=0", "bursts:rate=0", "constant:level=1e+3", "ramp:from=NaN", "+"} {
		if _, err := ParseProfile(bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseProfile(%q) = %v, want a one-line error", bad, err)
		}
	}
}

func TestParseWorkload(t *testing.T) {
	c, err := ParseWorkload("datamining,load=0.3,profile=diurnal:min=0.1,max=1+bursts:x=3,len=20ms,duration=20s,link=40Gbps,gap=lognormal:median=2ms,sigma=0.5,seed=7,scan=0.1,warmup=1s")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultWorkloadConfig()
	want.Dist, want.Load, want.Profile, want.Duration, want.Link = "datamining", 0.3, "diurnal:min=0.1,max=1+bursts:x=3,len=20ms", 20*time.Second, 40e9
	want.Gap, want.Seed, want.ScanFrac, want.Warmup = "lognormal:median=2ms,sigma=0.5", 7, 0.1, time.Second
	if c != want {
		t.Errorf("ParseWorkload:\n got %+v\nwant %+v", c, want)
	}
	if c, err := ParseWorkload(""); err != nil || c != DefaultWorkloadConfig() {
		t.Errorf("ParseWorkload(\"\") = %+v, %v: want the defaults", c, err)
	}
	if c, err := ParseWorkload("dist=fb_hadoop,mtu=1400,clients=5,servers=3,packets=9,udp=0.5,reverse=2,small=0.3,burst=4,flowrate=1G,rtt=1ms"); err != nil ||
		c.Dist != "fb_hadoop" || c.MTU != 1400 || c.Clients != 5 || c.Servers != 3 || c.Packets != 9 || c.UDPFrac != 0.5 ||
		c.Reverse != 2 || c.SmallFrac != 0.3 || c.Burst != 4 || c.FlowRate != 1e9 || c.RTT != time.Millisecond {
		t.Errorf("ParseWorkload: %+v, %v", c, err)
	}
	for _, bad := range []string{"nosuch", "websearch,load=2x", "websearch,load=0", "websearch,foo=1", "websearch,websearch",
		"load=0.5,load=0.6", "websearch,profile=weekly", "websearch,gap=pareto", "websearch,gap=none,x=1", "websearch,link=fast",
		"websearch,scan=1", "websearch,mtu=9000", "websearch,duration=0s", "websearch,seed=-1", "websearch,clients=1e9",
		"websearch,load=100,link=1e13,dist=alistorage", ",", "websearch,,load=1"} {
		if _, err := ParseWorkload(bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseWorkload(%q) = %v, want a one-line error", bad, err)
		}
	}
	// Profile and gap options must not be taken for workload options.
	for _, keys := range profKeys {
		for _, k := range append(keys, "median", "sigma") {
			if slices.Contains(workloadKeys, k) {
				t.Errorf("profile or gap option %q is also a workload option", k)
			}
		}
	}
	for _, c := range []struct {
		s    string
		want float64
	}{{"10Gbps", 10e9}, {"400Mbps", 400e6}, {"1e9", 1e9}, {"2.5G", 2.5e9}, {"100kb/s", 1e5}, {"1Tbit/s", 1e12}} {
		if got, err := ParseBitRate(c.s); err != nil || got != c.want {
			t.Errorf("ParseBitRate(%q) = %g, %v", c.s, got, err)
		}
	}
}

// FuzzParseWorkload: any spec gives a valid configuration or a one-line error, and a
// valid configuration's profile stays within [0, Max].
func FuzzParseWorkload(f *testing.F) {
	for _, s := range []string{"websearch", "datamining,load=0.3,profile=diurnal:min=0.1,max=1+bursts:x=3,len=20ms",
		"alistorage,gap=intraflow,link=1Gbps", "fb_hadoop,profile=ramp:from=1,to=0,gap=lognormal:median=1ms,sigma=2",
		"internet_edge_agh2015,scan=0.5,duration=1ms", "profile=constant:level=3", "x=1", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := ParseWorkload(spec)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("two-line error %q", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseWorkload(%q) accepted a config Validate refuses: %v", spec, err)
		}
		p, err := ParseProfile(c.Profile)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			at := c.Duration * time.Duration(i) / 50
			if r := p.Rate(at, c.Duration); !(r >= 0 && r <= p.Max()) {
				t.Fatalf("%s: Rate(%s) = %g, Max %g", c.Profile, at, r, p.Max())
			}
		}
		k, _ := c.compile()
		if c.Warmup > 0 || c.Clients > 1e5 || k.arrival*k.prof.Max()*c.Duration.Seconds() > 1e6 {
			return // too slow to read for a fuzz run
		}
		c.Packets = 50
		w, err := NewWorkload(c)
		if err != nil {
			t.Fatal(err)
		}
		pkts := make([]packet.Packet, 16)
		for range 10 {
			if _, err := w.Read(pkts); err != nil {
				break
			}
		}
	})
}

// BenchmarkWorkload reports the time per generated packet (one op = one packet) of the
// default workload (web-search flows at 5 Gbit/s) and packets per second.
func BenchmarkWorkload(b *testing.B) {
	for _, dist := range []string{"websearch", "internet_edge_agh2015"} {
		b.Run(dist, func(b *testing.B) {
			cfg := DefaultWorkloadConfig()
			cfg.Dist, cfg.Duration, cfg.Packets = dist, 24*time.Hour, b.N
			w, err := NewWorkload(cfg)
			if err != nil {
				b.Fatal(err)
			}
			pkts := make([]packet.Packet, 64)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for {
				if _, err := w.Read(pkts); err != nil {
					break
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "packets/s")
		})
	}
}

// FuzzParseProfile: any profile spec parses to a profile within [0, Max] everywhere, or
// gives a one-line error.
func FuzzParseProfile(f *testing.F) {
	for _, s := range []string{"constant", "ramp:from=0.1,to=1", "diurnal:min=0.2,max=1,days=3",
		"diurnal+bursts", "bursts:x=4,len=100ms,rate=1+constant:level=0.5", "ramp:to=0+ramp:from=0"} {
		f.Add(s, int64(time.Second), int64(10*time.Second))
	}
	f.Fuzz(func(t *testing.T, spec string, at, d int64) {
		p, err := ParseProfile(spec)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("two-line error %q", err)
			}
			return
		}
		if r := p.Rate(time.Duration(at), time.Duration(d)); !(r >= 0 && r <= p.Max()) || p.Max() == 0 {
			t.Fatalf("%s: Rate(%d, %d) = %g, Max %g", spec, at, d, r, p.Max())
		}
	})
}
