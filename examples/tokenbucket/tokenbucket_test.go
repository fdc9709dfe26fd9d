package tokenbucket

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	_ "github.com/snf-dev/snf/nf/firewall"
	_ "github.com/snf-dev/snf/nf/ratelimit"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/port/pcapfile"
)

// frame builds an Ethernet/IPv4 frame around a UDP or TCP header with gopacket, lengths and
// checksums computed.
func frame(src, dst string, proto layers.IPProtocol, l4 interface {
	gopacket.SerializableLayer
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	l4.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, l4, gopacket.Payload("snf")); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func dns(src string) []byte {
	return frame(src, "198.51.100.1", layers.IPProtocolUDP, &layers.UDP{SrcPort: 40000, DstPort: 53})
}

func telnet(src string) []byte {
	syn := &layers.TCP{SrcPort: 40000, DstPort: 23, SYN: true, Window: 65535}
	return frame(src, "198.51.100.1", layers.IPProtocolTCP, syn)
}

// alerts collects a chain's alerts.
type alerts struct{ got []snf.Alert }

func (a *alerts) Alert(x *snf.Alert) { a.got = append(a.got, *x) }

// newChain builds a chain from a chain file's text.
func newChain(t testing.TB, yaml string) (*snf.Chain, *alerts) {
	t.Helper()
	spec, err := snf.ParseChain([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := &alerts{}
	c, err := snf.NewChain(spec, snf.ChainOptions{Alerts: a})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, a
}

// metric returns the value of the i-th NF's metric name.
func metric(c *snf.Chain, i int, name string) uint64 {
	for _, m := range c.Report()[i].Metrics {
		if m.Name == name {
			return m.Value
		}
	}
	panic("no metric " + name)
}

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

const ms = int64(time.Millisecond)

// TestChainFile runs chain.yaml (firewall, then tokenbucket at 100 packets/s, burst 10) over
// generated frames with the sequential engine, as `snf run` would.
func TestChainFile(t *testing.T) {
	spec, err := snf.LoadChainFile("chain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := &alerts{}
	chain, err := snf.NewChain(spec, snf.ChainOptions{Alerts: got})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()

	var frames []mem.Frame
	send := func(n int, at int64, f []byte) {
		for range n {
			frames = append(frames, mem.Frame{Data: f, Time: t0 + at})
		}
	}
	send(50, 0, dns("10.0.0.1"))       // 10 pass: the burst
	send(5, 0, dns("10.0.0.2"))        // 5 pass: another source, its own bucket
	send(5, 0, telnet("10.0.0.3"))     // 0 pass: the firewall drops them
	send(50, 50*ms, dns("10.0.0.1"))   // 5 pass: 50 ms of refill at 100/s
	send(50, 1000*ms, dns("10.0.0.1")) // 10 pass: full again, and never more than the burst
	out := mem.NewWriter()
	sum, err := engine.Run(context.Background(), engine.Config{Chain: chain, In: mem.NewReader(frames), Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Packets != 160 || sum.Chain.Out != 30 || len(out.Frames()) != 30 {
		t.Errorf("in %d, out %d (%d written), want 160 in and 30 out", sum.Packets, sum.Chain.Out, len(out.Frames()))
	}
	fw, tb := chain.Report()[0].Stats, chain.Report()[1].Stats
	if fw.Dropped != 5 || tb.In != 155 || tb.Dropped != 125 {
		t.Errorf("firewall dropped %d; tokenbucket saw %d, dropped %d; want 5, 155, 125", fw.Dropped, tb.In, tb.Dropped)
	}
	// One alert per episode: 10.0.0.1 is limited at 0 s, its bucket is not full at 50 ms
	// (same episode), and full again at 1 s (a new one).
	if len(got.got) != 2 || metric(chain, 1, "limited") != 2 {
		t.Fatalf("%d alerts, limited %d; want 2", len(got.got), metric(chain, 1, "limited"))
	}
	for i, at := range []int64{0, 1000 * ms} {
		a := got.got[i]
		if a.NF != "tokenbucket" || a.Rule != "rate_exceeded" || a.Time != t0+at ||
			a.Details["source"] != "10.0.0.1" || a.Details["rate"] != 100.0 || a.Details["burst"] != uint32(10) {
			t.Errorf("alert %d: %+v", i, a)
		}
	}
}

// TestBurstThenRate: a source offering 100 packets/s to a 10/s, burst-5 limit passes the
// burst at once, then exactly one packet per 100 ms.
func TestBurstThenRate(t *testing.T) {
	c, _ := newChain(t, "nfs:\n  - nf: tokenbucket\n    config: {rate: 10, burst: 5}\n")
	var passedAt []int64
	for i := range int64(200) { // 2 s, one packet every 10 ms
		var p [1]packet.Packet
		p[0].SetData(dns("10.0.0.1"), t0+i*10*ms, 0)
		if len(c.Process(p[:], nil)) == 1 {
			passedAt = append(passedAt, i*10)
		}
	}
	want := []int64{0, 10, 20, 30, 40} // the burst
	for at := int64(100); at < 2000; at += 100 {
		want = append(want, at) // then the rate: one token per 100 ms
	}
	if fmt.Sprint(passedAt) != fmt.Sprint(want) {
		t.Errorf("passed at (ms) %v\nwant %v", passedAt, want)
	}
	if metric(c, 0, "passed") != 24 || metric(c, 0, "dropped") != 176 {
		t.Errorf("passed %d dropped %d, want 24 and 176", metric(c, 0, "passed"), metric(c, 0, "dropped"))
	}
}

// TestConfig: decoding is strict and Validate names the field.
func TestConfig(t *testing.T) {
	for config, want := range map[string]string{
		"{rate: 10, brust: 5}":          `unknown field "brust"`,
		"{rate: 0}":                     "rate: want packets per second",
		"{rate: 2e9}":                   "rate: want packets per second",
		"{burst: 0}":                    "burst: must be >= 1",
		"{rate: 0.001, burst: 1000}":    "take more than a day to refill",
		"{rate: '10'}":                  `field "rate"`,
		"{rate: 10, burst: 4294967296}": `field "burst"`,
	} {
		_, err := snf.ParseChain([]byte("nfs:\n  - nf: tokenbucket\n    config: "+config+"\n"), "x.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %s: error %v, want it to contain %q", config, err, want)
		}
	}
	spec, err := snf.ParseChain([]byte("nfs:\n  - nf: tokenbucket\n    config: {rate: 5}\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := spec.NFs[0].Config().(*Config); *cfg != (Config{Rate: 5, Burst: 2000}) {
		t.Errorf("config %+v: a field left out must keep its default", *cfg)
	}
}

// TestStateCodec: a bucket survives a move (or a checkpoint) byte for byte; bad state is
// refused.
func TestStateCodec(t *testing.T) {
	in := bucket{deficit: 123456789, last: t0, limited: true}
	b, err := in.AppendBinary([]byte("prefix"))
	if err != nil || len(b) != len("prefix")+bucketSize {
		t.Fatalf("AppendBinary: %d bytes, %v", len(b), err)
	}
	var out bucket
	if err := out.UnmarshalBinary(b[len("prefix"):]); err != nil || out != in {
		t.Errorf("round trip: %+v, %v; want %+v", out, err, in)
	}
	for _, bad := range [][]byte{nil, b[6 : len(b)-1], append(b[6:len(b)-1:len(b)-1], 2)} {
		if err := out.UnmarshalBinary(bad); err == nil {
			t.Errorf("UnmarshalBinary(%x) accepted", bad)
		}
	}
}

// TestZeroAllocs: in steady state — sources known, flows in the table, every source held at
// its limit — a batch through the chain allocates nothing.
func TestZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation may allocate")
	}
	c, _ := newChain(t, "nfs:\n  - nf: tokenbucket\n    config: {rate: 100, burst: 10}\n")
	batch := make([]packet.Packet, 64)
	for i := range batch { // 64 sources, each offering 1000 packets/s
		batch[i].SetData(dns(fmt.Sprintf("10.0.1.%d", i)), 0, 0)
	}
	out := make([]*packet.Packet, 0, len(batch))
	var clock uint64
	now := t0
	run := func() {
		now += ms
		for i := range batch {
			clock++
			batch[i].Clock, batch[i].Time = clock, now
		}
		out = c.Process(batch, out[:0])
	}
	for range 100 { // warm up: buckets created, every source limited
		run()
	}
	if a := testing.AllocsPerRun(1000, run); a != 0 {
		t.Errorf("%v allocations per batch", a)
	}
	if metric(c, 0, "passed") == 0 || metric(c, 0, "dropped") == 0 {
		t.Error("the batches must both pass and drop packets")
	}
}

// traces is where the real captures sit, beside the repository (in CI).
const traces = "../../../shared/traces"

// readCapture returns the packets of a real capture, or skips the test when it is absent.
func readCapture(t *testing.T, name string) []packet.Packet {
	t.Helper()
	path := filepath.Join(traces, name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("real capture not found at %s: %v", path, err)
	}
	r, err := pcapfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var all []packet.Packet
	batch := make([]packet.Packet, 64)
	for {
		n, err := r.Read(batch)
		for i := range batch[:n] { // copy: the reader reuses batch's buffers
			var p packet.Packet
			p.SetData(batch[i].Data, batch[i].Time, batch[i].WireLen)
			all = append(all, p)
		}
		if err != nil {
			return all
		}
	}
}

// TestSameAsRatelimit: on real captures, tokenbucket decides every well-formed packet as
// nf/ratelimit does with one bucket per address — the same token bucket, kept in another
// form.
func TestSameAsRatelimit(t *testing.T) {
	for _, name := range []string{"pcapplusplus_example.pcap", "pcapplusplus_tls2.pcap", "nmap_synscan.pcap"} {
		pkts := readCapture(t, name)
		ours, ourAlerts := newChain(t, "nfs:\n  - nf: tokenbucket\n    config: {rate: 20, burst: 10}\n")
		full, fullAlerts := newChain(t, "nfs:\n  - nf: ratelimit\n    config: {rate: 20, burst: 10, prefix_v6: 128}\n")
		differ, dropped := 0, 0
		for i := range pkts {
			if !pkts[i].IP() { // nf/ratelimit also limits malformed packets; tokenbucket does not
				continue
			}
			a := len(ours.Process(pkts[i:i+1], nil))
			b := len(full.Process(pkts[i:i+1], nil))
			if a != b {
				differ++
			}
			dropped += 1 - a
		}
		if differ != 0 || len(ourAlerts.got) != len(fullAlerts.got) {
			t.Errorf("%s: %d packets decided differently, alerts %d and %d", name, differ, len(ourAlerts.got), len(fullAlerts.got))
		}
		if dropped == 0 {
			t.Errorf("%s: nothing dropped: the comparison proves little", name)
		}
		t.Logf("%s: %d packets, %d dropped, %d alerts", name, len(pkts), dropped, len(ourAlerts.got))
	}
}

// TestSameAsRatelimitOutOfOrder: the same comparison on generated traffic whose timestamps
// often go backwards (the captures above are in order).
func TestSameAsRatelimitOutOfOrder(t *testing.T) {
	ours, _ := newChain(t, "nfs:\n  - nf: tokenbucket\n    config: {rate: 50, burst: 4}\n")
	full, _ := newChain(t, "nfs:\n  - nf: ratelimit\n    config: {rate: 50, burst: 4}\n")
	frames := [][]byte{dns("10.0.2.1"), dns("10.0.2.2"), dns("10.0.2.3")}
	rng := rand.New(rand.NewPCG(1, 2)) // the test's own seeded generator, not the NF's
	var p [1]packet.Packet
	now, differ, dropped := t0, 0, 0
	for range 20000 {
		now += rng.Int64N(40*ms) - 15*ms // forward 25 ms on average, back up to 15 ms
		p[0].SetData(frames[rng.IntN(len(frames))], now, 0)
		a := len(ours.Process(p[:], nil))
		if a != len(full.Process(p[:], nil)) {
			differ++
		}
		dropped += 1 - a
	}
	if differ != 0 || dropped == 0 {
		t.Errorf("%d packets decided differently (%d dropped)", differ, dropped)
	}
}
