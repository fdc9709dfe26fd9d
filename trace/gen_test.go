package trace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/snf-dev/snf/packet"
)

type frame struct {
	data []byte
	ts   int64
}

// collect reads every frame of a generator for cfg in batches of batch.
func collect(t testing.TB, cfg GenConfig, batch int) []frame {
	t.Helper()
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	pkts := make([]packet.Packet, batch)
	var out []frame
	for {
		n, err := g.Read(pkts)
		for i := range pkts[:n] {
			out = append(out, frame{bytes.Clone(pkts[i].Data), pkts[i].Time})
		}
		if err == io.EOF {
			if n != 0 {
				t.Fatalf("Read returned n=%d with io.EOF", n)
			}
			return out
		}
		if err != nil || n == 0 {
			t.Fatalf("Read = %d, %v", n, err)
		}
	}
}

func testConfig(packets int) GenConfig {
	cfg := DefaultGenConfig()
	cfg.Packets = packets
	return cfg
}

func digest(frames []frame) uint64 {
	h := fnv.New64a()
	var ts [8]byte
	for _, f := range frames {
		h.Write(f.data)
		binary.LittleEndian.PutUint64(ts[:], uint64(f.ts))
		h.Write(ts[:])
	}
	return h.Sum64()
}

func TestDeterministic(t *testing.T) {
	cfg := testConfig(20000)
	a := collect(t, cfg, 64)
	b := collect(t, cfg, 7) // the batch size does not matter
	if len(a) != len(b) {
		t.Fatalf("lengths differ: %d, %d", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].data, b[i].data) || a[i].ts != b[i].ts {
			t.Fatalf("frame %d differs between two runs with the same seed", i)
		}
	}
	cfg.Seed = 2
	c := collect(t, cfg, 64)
	if digest(c) == digest(a) {
		t.Fatal("seeds 1 and 2 produce the same trace")
	}
	same := 0
	for i := range c {
		if bytes.Equal(a[i].data, c[i].data) {
			same++
		}
	}
	if same > len(c)/100 {
		t.Errorf("seeds 1 and 2 share %d of %d frames", same, len(c))
	}
}

func TestCount(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 65, 1000} {
		for _, batch := range []int{1, 64} {
			if got := len(collect(t, testConfig(n), batch)); got != n {
				t.Errorf("Packets %d, batch %d: got %d frames", n, batch, got)
			}
		}
	}
	g, err := NewGenerator(testConfig(10))
	if err != nil {
		t.Fatal(err)
	}
	pkts := make([]packet.Packet, 4)
	total := 0
	for range 3 {
		n, err := g.Read(pkts)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != 10 {
		t.Fatalf("3 Reads of 4 gave %d of 10 packets", total)
	}
	for range 3 {
		if n, err := g.Read(pkts); n != 0 || err != io.EOF {
			t.Fatalf("Read after the end = %d, %v; want 0, io.EOF", n, err)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := g.Read(pkts); n != 0 || !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close = %d, %v; want 0, ErrClosed", n, err)
	}
}

func TestTimestamps(t *testing.T) {
	cfg := testConfig(20000)
	frames := collect(t, cfg, 64)
	if frames[0].ts != cfg.Start.UnixNano() {
		t.Errorf("first timestamp %d, want Start %d", frames[0].ts, cfg.Start.UnixNano())
	}
	for i := 1; i < len(frames); i++ {
		if frames[i].ts <= frames[i-1].ts {
			t.Fatalf("timestamp %d: %d after %d", i, frames[i].ts, frames[i-1].ts)
		}
	}
	span := float64(frames[len(frames)-1].ts-frames[0].ts) / 1e9
	if rate := float64(len(frames)-1) / span; math.Abs(rate/cfg.Rate-1) > 0.03 {
		t.Errorf("rate %.0f packets/s, want %.0f ± 3%%", rate, cfg.Rate)
	}
}

// TestValid decodes every frame with gopacket and re-serializes its IP packet with computed
// lengths and checksums: the bytes must be the same.
func TestValid(t *testing.T) {
	dns := 0
	for i, f := range collect(t, testConfig(20000), 64) {
		p := gopacket.NewPacket(f.data, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil {
			t.Fatalf("frame %d: no IPv4 layer: %v", i, p)
		}
		if int(ip.Length) != len(f.data)-14 || ip.IHL != 5 || ip.Flags != layers.IPv4DontFragment {
			t.Fatalf("frame %d: IP length %d, IHL %d, flags %v for a %d-byte frame", i, ip.Length, ip.IHL, ip.Flags, len(f.data))
		}
		var l4 gopacket.SerializableLayer
		var payload []byte
		switch ip.Protocol {
		case layers.IPProtocolTCP:
			tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			tcp.SetNetworkLayerForChecksum(ip)
			l4, payload = tcp, tcp.Payload
		case layers.IPProtocolUDP:
			udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			udp.SetNetworkLayerForChecksum(ip)
			l4, payload = udp, udp.Payload
			if udp.DstPort == 53 || udp.SrcPort == 53 {
				// Decode explicitly: gopacket may pick the other port's protocol.
				var d layers.DNS
				if err := d.DecodeFromBytes(udp.Payload, gopacket.NilDecodeFeedback); err != nil ||
					len(d.Questions) != 1 || d.QR != (udp.SrcPort == 53) ||
					(d.QR && (len(d.Answers) != 1 || d.Answers[0].IP == nil)) {
					t.Fatalf("frame %d: bad DNS message (%v): %x", i, err, udp.Payload)
				}
				dns++
			}
		case layers.IPProtocolICMPv4:
			icmp := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if tc := icmp.TypeCode.Type(); tc != layers.ICMPv4TypeEchoRequest && tc != layers.ICMPv4TypeEchoReply {
				t.Fatalf("frame %d: ICMP type %d", i, tc)
			}
			l4, payload = icmp, icmp.Payload
		default:
			t.Fatalf("frame %d: protocol %v", i, ip.Protocol)
		}
		buf := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		if err := gopacket.SerializeLayers(buf, opts, ip, l4, gopacket.Payload(payload)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(buf.Bytes(), f.data[14:]) {
			t.Fatalf("frame %d: re-serialized IP packet differs (bad length or checksum)\n got %x\nwant %x", i, f.data[14:], buf.Bytes())
		}
	}
	if dns == 0 {
		t.Error("no DNS messages")
	}
}

func TestParse(t *testing.T) {
	for i, f := range collect(t, testConfig(20000), 64) {
		var p packet.Packet
		p.SetData(f.data, f.ts, 0)
		if !p.IP() || !p.Is(packet.IPv4|packet.HasL4) || p.Flags&(packet.Truncated|packet.Fragment|packet.VLAN) != 0 {
			t.Fatalf("frame %d: flags %b", i, p.Flags)
		}
	}
}

// flowState follows one flow of a trace in a test.
type flowState struct {
	orig        packet.Key // the key of the flow's first packet
	next        [2]uint32  // TCP: next sequence number per direction
	syn, synAck bool
	fin         [2]bool
	done        bool
	packets     int
}

// flowStats is what analyze found in a trace.
type flowStats struct {
	packets                           int
	protos                            [256]int
	small, large, dnsQueries, longUDP int
	finished                          []int // packets of each finished TCP flow
}

// analyze generates a trace for cfg and checks every packet's direction and addresses, ICMP
// types, and the TCP state machine (handshake first, then exact sequence and acknowledgement
// numbers, FIN both ways, last ACK, then nothing).
func analyze(t *testing.T, cfg GenConfig) flowStats {
	t.Helper()
	frames := collect(t, cfg, 64)
	flows := map[packet.Key]*flowState{}
	st := flowStats{packets: len(frames)}
	for i, fr := range frames {
		var p packet.Packet
		p.SetData(fr.data, fr.ts, 0)
		st.protos[p.Proto]++
		ck, _ := p.Key.Canonical()
		fs := flows[ck]
		tcpFlags := p.TCPFlags()
		if fs == nil || (p.Proto == packet.ProtoTCP && tcpFlags == packet.TCPSyn) {
			fs = &flowState{orig: p.Key}
			flows[ck] = fs
		}
		fs.packets++
		dir := 0
		if p.Key != fs.orig {
			dir = 1
		}
		src, dst := p.Key.SrcAddr(), p.Key.DstAddr()
		if in, out := [2]netip.Prefix{cfg.Inside, cfg.Outside}[dir], [2]netip.Prefix{cfg.Outside, cfg.Inside}[dir]; !in.Contains(src) || !out.Contains(dst) {
			t.Fatalf("frame %d: %v in direction %d: want %v > %v", i, p.Key, dir, in, out)
		}
		switch p.Proto {
		case packet.ProtoUDP:
			if p.Key.DstPort == 53 {
				st.dnsQueries++
			} else if p.Key.DstPort == 443 {
				st.longUDP++
			}
		case packet.ProtoICMP:
			if want := [2]uint8{8, 0}[dir]; p.ICMPType() != want {
				t.Fatalf("frame %d: ICMP type %d in direction %d", i, p.ICMPType(), dir)
			}
		case packet.ProtoTCP:
			if n := len(p.Data); n <= 66 {
				st.small++
			} else if n >= 1500 {
				st.large++
			}
			d := p.Data[p.L4Off:]
			seq, ack := binary.BigEndian.Uint32(d[4:]), binary.BigEndian.Uint32(d[8:])
			switch {
			case tcpFlags == packet.TCPSyn:
				if dir != 0 || ack != 0 {
					t.Fatalf("frame %d: bad SYN (dir %d, ack %d)", i, dir, ack)
				}
				fs.syn, fs.next[0] = true, seq+1
				continue
			case tcpFlags == packet.TCPSyn|packet.TCPAck:
				if dir != 1 || !fs.syn || ack != fs.next[0] {
					t.Fatalf("frame %d: bad SYN-ACK (dir %d, ack %d, want %d)", i, dir, ack, fs.next[0])
				}
				fs.synAck, fs.next[1] = true, seq+1
				continue
			case !fs.synAck:
				t.Fatalf("frame %d: %v flags %#x before the handshake", i, p.Key, tcpFlags)
			case seq != fs.next[dir] || ack != fs.next[1-dir] || tcpFlags&packet.TCPAck == 0:
				t.Fatalf("frame %d: seq %d ack %d, want %d %d", i, seq, ack, fs.next[dir], fs.next[1-dir])
			case fs.done:
				t.Fatalf("frame %d: packet after the close", i)
			}
			fs.next[dir] += uint32(len(p.Payload()))
			if tcpFlags&packet.TCPFin != 0 {
				fs.fin[dir] = true
				fs.next[dir]++
			} else if fs.fin[0] && fs.fin[1] {
				fs.done = true // the last ACK
				st.finished = append(st.finished, fs.packets)
			}
		}
	}
	for k, fs := range flows {
		if k.Proto == packet.ProtoTCP && (fs.fin[0] || fs.fin[1]) && (!fs.syn || !fs.synAck) {
			t.Errorf("%v: FIN without SYN and SYN-ACK", fs.orig)
		}
	}
	return st
}

// TestFlows checks the mix and the shapes of the flows.
func TestFlows(t *testing.T) {
	st := analyze(t, testConfig(20000))
	n := float64(st.packets)
	for _, c := range []struct {
		proto uint8
		want  float64
	}{{packet.ProtoTCP, 0.70}, {packet.ProtoUDP, 0.25}, {packet.ProtoICMP, 0.05}} {
		if got := float64(st.protos[c.proto]) / n; math.Abs(got-c.want) > 0.02 {
			t.Errorf("%s: %.3f of packets, want %.2f ± 0.02", packet.ProtoName(c.proto), got, c.want)
		}
	}
	tcp := float64(st.protos[packet.ProtoTCP])
	if len(st.finished) < 200 || float64(st.small)/tcp < 0.2 || float64(st.large)/tcp < 0.2 {
		t.Errorf("%d finished TCP flows, %.2f of TCP frames small, %.2f large", len(st.finished), float64(st.small)/tcp, float64(st.large)/tcp)
	}
	if st.dnsQueries < 500 || st.longUDP < 500 {
		t.Errorf("%d DNS queries, %d packets of long UDP flows", st.dnsQueries, st.longUDP)
	}
}

// TestHeavyTail runs few flows for long enough that long flows finish too.
func TestHeavyTail(t *testing.T) {
	cfg := testConfig(60000)
	cfg.Flows = 10
	st := analyze(t, cfg)
	l := st.finished
	slices.Sort(l)
	if len(l) < 100 || l[len(l)-1] < 20*l[len(l)/2] {
		t.Errorf("%d finished TCP flows: median %d packets, longest %d", len(l), l[len(l)/2], l[len(l)-1])
	}
	t.Logf("%d finished TCP flows: min %d, median %d, p90 %d, p99 %d, max %d packets",
		len(l), l[0], l[len(l)/2], l[len(l)*9/10], l[len(l)*99/100], l[len(l)-1])
}

func TestConcurrentFlows(t *testing.T) {
	cfg := testConfig(20000)
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pkts := make([]packet.Packet, 64)
	for {
		if _, err := g.Read(pkts); err != nil {
			break
		}
	}
	active := 0
	for _, pool := range g.pools {
		for i := range pool {
			if pool[i].kind != kindNone {
				active++
			}
		}
	}
	if active < cfg.Flows*85/100 || active > cfg.Flows {
		t.Errorf("%d active flows, want about %d", active, cfg.Flows)
	}
}

// TestOtherConfigs runs tiny and non-default configurations through analyze.
func TestOtherConfigs(t *testing.T) {
	for _, c := range []struct {
		flows, hosts    int
		inside, outside string
	}{
		{1, 1, "192.168.1.0/30", "203.0.113.8/30"},
		{2, 2, "192.168.1.0/30", "203.0.113.8/30"},
		{3, 1, "192.168.1.0/30", "203.0.113.8/30"},
		{19, 5, "172.16.9.9/12", "100.64.1.2/10"}, // prefixes with host bits set
		{5000, 4000, "10.0.0.0/8", "198.18.0.0/15"},
	} {
		cfg := testConfig(5000)
		cfg.Flows, cfg.Hosts = c.flows, c.hosts
		cfg.Inside, cfg.Outside = netip.MustParsePrefix(c.inside), netip.MustParsePrefix(c.outside)
		if st := analyze(t, cfg); st.packets != cfg.Packets {
			t.Errorf("%+v: %d packets", c, st.packets)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		change func(*GenConfig)
		want   string
	}{
		{func(c *GenConfig) { c.Packets = -1 }, "Packets is -1"},
		{func(c *GenConfig) { c.Flows = 0 }, "Flows is 0"},
		{func(c *GenConfig) { c.Flows = MaxFlows + 1 }, "Flows is"},
		{func(c *GenConfig) { c.Hosts = 0 }, "Hosts is 0"},
		{func(c *GenConfig) { c.Rate = 0 }, "Rate is 0"},
		{func(c *GenConfig) { c.Rate = -5 }, "Rate is -5"},
		{func(c *GenConfig) { c.Rate = math.NaN() }, "Rate is NaN"},
		{func(c *GenConfig) { c.Rate = math.Inf(1) }, "Rate is +Inf"},
		{func(c *GenConfig) { c.Start = time.Time{} }, "Start 0001-01-01"},
		{func(c *GenConfig) { c.Inside = netip.Prefix{} }, "Inside prefix invalid Prefix is not an IPv4 prefix"},
		{func(c *GenConfig) { c.Inside = netip.MustParsePrefix("fd00::/64") }, "Inside prefix fd00::/64 is not"},
		{func(c *GenConfig) { c.Outside = netip.MustParsePrefix("::ffff:198.18.0.0/111") }, "Outside prefix ::ffff:198.18.0.0/111 is not"},
		{func(c *GenConfig) { c.Inside = netip.MustParsePrefix("10.0.0.0/25") }, "Inside prefix 10.0.0.0/25 has room for 126 hosts, want 200"},
		{func(c *GenConfig) { c.Outside = netip.MustParsePrefix("198.18.0.0/31") }, "Outside prefix 198.18.0.0/31 has no room"},
		{func(c *GenConfig) { c.Outside = netip.MustParsePrefix("10.0.128.0/17") }, "overlap"},
	} {
		cfg := DefaultGenConfig()
		c.change(&cfg)
		g, err := NewGenerator(cfg)
		if err == nil || g != nil {
			t.Errorf("want an error containing %q, got %v", c.want, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, "trace: ") || strings.Contains(msg, "\n") {
			t.Errorf("error %q, want one line containing %q", msg, c.want)
		}
	}
	if err := DefaultGenConfig().Validate(); err != nil {
		t.Errorf("DefaultGenConfig: %v", err)
	}
}

func TestNoAllocs(t *testing.T) {
	g, err := NewGenerator(testConfig(1 << 30))
	if err != nil {
		t.Fatal(err)
	}
	pkts := make([]packet.Packet, 64)
	for range 1000 { // warm-up: grow the Packets' buffers, start every flow
		g.Read(pkts)
	}
	if a := testing.AllocsPerRun(1000, func() { g.Read(pkts) }); a != 0 {
		t.Errorf("%v allocations per Read of 64 packets", a)
	}
}

// BenchmarkGenerate reports the time per generated packet (one op = one packet).
func BenchmarkGenerate(b *testing.B) {
	cfg := DefaultGenConfig()
	cfg.Packets = b.N
	g, err := NewGenerator(cfg)
	if err != nil {
		b.Fatal(err)
	}
	pkts := make([]packet.Packet, 64)
	var size int64
	b.ReportAllocs()
	b.ResetTimer()
	for {
		n, err := g.Read(pkts)
		for i := range pkts[:n] {
			size += int64(len(pkts[i].Data))
		}
		if err != nil {
			break
		}
	}
	b.ReportMetric(float64(size)/float64(b.N), "B/packet")
}
