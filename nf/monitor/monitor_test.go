package monitor_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/monitor"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/store"
)

var (
	client = netip.MustParseAddr("10.0.0.1")
	server = netip.MustParseAddr("198.51.100.1")
	t0     = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
)

// genFlows builds n UDP flows: flow i (1..n) has i requests of 10·i payload bytes, each
// answered with 20·i bytes, all 1 ms apart from start.
func genFlows(n int, start int64) []packet.Packet {
	var frames [][]byte
	for i := 1; i <= n; i++ {
		for range i {
			frames = append(frames,
				pkttest.UDP(client, server, uint16(10000+i), 53, make([]byte, 10*i)),
				pkttest.UDP(server, client, 53, uint16(10000+i), make([]byte, 20*i)))
		}
	}
	return pkttest.Batch(start, frames...)
}

func sameFlows(t *testing.T, who string, got []monitor.Flow, want exact, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: %d flows, want %d", who, len(got), n)
	}
	for i, f := range got {
		// Flow 30-i is the (i+1)-th heaviest.
		port := uint16(10000 + 30 - i)
		k := canon(f.Key)
		if f.Key.Proto != packet.ProtoUDP || (f.Key.SrcPort != port && f.Key.DstPort != port) ||
			f.Bytes != want.bytes[k] || f.Packets != want.packets[k] {
			t.Errorf("%s #%d: %s %d packets %d bytes, want port %d with %d and %d", who, i+1, f.Key, f.Packets, f.Bytes,
				port, want.packets[k], want.bytes[k])
		}
	}
}

// TestTopOfGeneratedFlows: 30 flows of known sizes; the top 10 are the 10 largest with
// their exact counts (both directions, wire bytes), and the report prints them in order.
func TestTopOfGeneratedFlows(t *testing.T) {
	pkts := genFlows(30, t0)
	want := exactCounts(pkts)
	c, m, _ := newChain(t, "", nil, 0)
	testtrace.Process(c, pkts)
	sameFlows(t, "top", m.Top(), want, 10)
	if b, p, f := m.Totals(); b != want.totalBytes || p != want.totalPackets || f != 30 {
		t.Errorf("totals %d %d %d", b, p, f)
	}
	if testtrace.Metric(c, 0, "packets") != want.totalPackets || testtrace.Metric(c, 0, "bytes") != want.totalBytes || testtrace.Metric(c, 0, "flows") != 30 {
		t.Errorf("metrics %+v", c.Report()[0].Metrics)
	}
	var sb strings.Builder
	if err := m.Report(&sb); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(sb.String()), "\n")
	if len(lines) != 12 || !strings.Contains(lines[0], "30 flows") ||
		!strings.Contains(lines[2], "10.0.0.1:10030") || !strings.Contains(lines[11], "10.0.0.1:10021") {
		t.Errorf("report:\n%s", sb.String())
	}
}

// TestLateHeavyFlow: a flow that becomes the heaviest after the candidates are full takes
// the place of the lightest and is reported.
func TestLateHeavyFlow(t *testing.T) {
	c, m, _ := newChain(t, "{top: 2}", nil, 0)
	testtrace.Process(c, genFlows(10, t0)) // 4 candidates fill up with the first flows
	var frames [][]byte
	for range 50 {
		frames = append(frames, pkttest.TCP(client, server, 5555, 443, pkttest.ACK, make([]byte, 1000)))
	}
	testtrace.Process(c, pkttest.Batch(t0+int64(time.Second), frames...))
	top := m.Top()
	if len(top) != 2 || top[0].Key.DstPort != 443 || top[0].Packets != 50 || top[1].Key.SrcPort != 10010 {
		t.Errorf("top %+v", top)
	}
}

// TestFlowEnd: how flows ended is counted when they leave the flow table.
func TestFlowEnd(t *testing.T) {
	c, _, _ := newChain(t, "", nil, 0)
	testtrace.Process(c, pkttest.Batch(t0,
		pkttest.TCP(client, server, 1, 80, pkttest.SYN, nil),
		pkttest.TCP(server, client, 80, 1, pkttest.SYNACK, nil),
		pkttest.TCP(client, server, 1, 80, pkttest.FINACK, nil),
		pkttest.TCP(server, client, 80, 1, pkttest.FINACK, nil),
		pkttest.TCP(client, server, 2, 80, pkttest.SYN, nil),
		pkttest.TCP(server, client, 80, 2, "RA", nil),
		pkttest.UDP(client, server, 3, 53, []byte("unanswered")),
	))
	if testtrace.Metric(c, 0, "flows_ended") != 0 {
		t.Fatal("flows ended early")
	}
	c.Expire(t0 + int64(time.Hour))
	for name, want := range map[string]uint64{"flows": 3, "flows_ended": 3, "tcp_closed": 1, "tcp_reset": 1, "flows_unanswered": 1} {
		if got := testtrace.Metric(c, 0, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}

// TestUnitsMerge: three units share a store; each flow's packets are split over two of
// them. Every unit's report equals one chain's over all packets, once the units pushed
// their updates; before a flush interval passes a unit's updates are its own.
func TestUnitsMerge(t *testing.T) {
	pkts := genFlows(30, t0)
	want := exactCounts(pkts)
	st := store.NewEmbedded()
	var chains []*snf.Chain
	var mons []*monitor.Monitor
	for u := range 3 {
		c, m, _ := newChain(t, "{flush: 1s}", st, uint32(u+1))
		chains, mons = append(chains, c), append(mons, m)
	}
	// Packet i of the capture goes to unit (flow + i/half) % 3: each flow's two halves
	// on different units.
	var per [3][]packet.Packet
	seen := map[packet.Key]int{}
	for i := range pkts {
		k := canon(pkts[i].Key)
		u := (int(k.SrcPort) + seen[k]*2/int(want.packets[k])) % 3
		seen[k]++
		per[u] = append(per[u], pkts[i])
	}
	for u := range 3 {
		testtrace.Process(chains[u], per[u])
	}
	// Within the flush interval (the generated packets span < 1 s) each unit pushed only
	// its first packet: unit 1 sees less than everything.
	if b, _, _ := mons[0].Totals(); b >= want.totalBytes {
		t.Errorf("unit 1 sees %d bytes before the others flushed, all is %d", b, want.totalBytes)
	}
	// A packet a flush interval later makes each unit push.
	for u := range 3 {
		testtrace.Process(chains[u], pkttest.Batch(t0+int64(2*time.Second), pkttest.UDP(client, server, 9, 9, nil)))
	}
	want = exactCounts(append(pkts, pkttest.Batch(0, pkttest.UDP(client, server, 9, 9, nil), pkttest.UDP(client, server, 9, 9, nil), pkttest.UDP(client, server, 9, 9, nil))...))
	for u, m := range mons {
		sameFlows(t, "unit "+string(rune('1'+u)), m.Top(), want, 10)
		if b, p, _ := m.Totals(); b != want.totalBytes || p != want.totalPackets {
			t.Errorf("unit %d: totals %d %d, want %d %d", u+1, b, p, want.totalBytes, want.totalPackets)
		}
	}
}

// TestDirectoryFull: candidates beyond the shared directory are counted and not reported;
// the report still gives the heaviest of those published.
func TestDirectoryFull(t *testing.T) {
	c, m, _ := newChain(t, "{top: 2, candidates: 4}", nil, 0)
	testtrace.Process(c, genFlows(10, t0))
	if testtrace.Metric(c, 0, "candidates_published") != 4 || testtrace.Metric(c, 0, "directory_full") == 0 {
		t.Errorf("published %d full %d", testtrace.Metric(c, 0, "candidates_published"), testtrace.Metric(c, 0, "directory_full"))
	}
	if len(m.Candidates()) != 4 || len(m.Top()) != 2 {
		t.Errorf("candidates %d top %d", len(m.Candidates()), len(m.Top()))
	}
}

// TestMalformedPasses: malformed IP packets pass uncounted.
func TestMalformedPasses(t *testing.T) {
	c, m, _ := newChain(t, "", nil, 0)
	f := pkttest.TCP(client, server, 1, 2, pkttest.SYN, nil)
	out := c.Process(pkttest.Batch(t0, f[:20], f[:40], f), nil)
	if len(out) != 3 || testtrace.Metric(c, 0, "malformed") != 2 || testtrace.Metric(c, 0, "packets") != 1 {
		t.Errorf("out %d malformed %d packets %d", len(out), testtrace.Metric(c, 0, "malformed"), testtrace.Metric(c, 0, "packets"))
	}
	if _, p, _ := m.Totals(); p != 1 {
		t.Errorf("packets %d", p)
	}
}

func TestConfigErrors(t *testing.T) {
	for cfg, field := range map[string]string{
		"{width: 8}":                  "width",
		"{depth: 0}":                  "depth",
		"{depth: 17}":                 "depth",
		"{top: 0}":                    "top",
		"{top: 10, candidates: 19}":   "candidates",
		"{flush: 0s}":                 "flush",
		"{window: 3}":                 "window",
		"{width: wide}":               "width",
		"{width: 16777216, depth: 1}": "width",
	} {
		testtrace.ConfigError(t, "monitor", cfg, field)
	}
}

// TestNoAllocs: after warm-up, a batch allocates nothing (flushes included).
// (With the embedded store: a Redis client allocates for each counter flush it sends.)
func TestNoAllocs(t *testing.T) {
	c, _, _ := newChain(t, "{flush: 10ms}", store.NewEmbedded(), 0)
	batch := genFlows(8, t0)[:64]
	out := make([]*packet.Packet, 0, 128)
	var clock uint64
	run := func() {
		for i := range batch {
			clock++
			batch[i].Clock = clock
			batch[i].Time += int64(64 * time.Millisecond)
		}
		out = c.Process(batch, out[:0])
	}
	for range 3 {
		run()
	}
	if n := testtrace.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per batch", n)
	}
	if testtrace.Metric(c, 0, "flushes") < 100 {
		t.Errorf("only %d flushes: the test must cover them", testtrace.Metric(c, 0, "flushes"))
	}
}
