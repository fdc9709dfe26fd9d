package packet_test

// Benchmarks over the frames of a real capture (../../shared/traces/pcapplusplus_example.pcap,
// dense web browsing: HTTP, DNS, a little TLS), loaded into memory once. Every benchmark
// handles one packet per b.N iteration, cycling through the frames, so ns/op is ns/packet.
//
//	go test -run x -bench . -benchmem ./packet/

import (
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/snf-dev/snf/packet"
)

var benchFrames [][]byte

// loadBenchFrames returns the frames of benchTrace (read once per process), or skips.
func loadBenchFrames(b *testing.B) [][]byte {
	b.Helper()
	if benchFrames == nil {
		for _, f := range loadTrace(b, filepath.Join(tracesDir, benchTrace)) {
			benchFrames = append(benchFrames, f.data)
		}
	}
	return benchFrames
}

var sink uint64

// tuple4 is the IPv4 5-tuple of the floor benchmark.
type tuple4 struct {
	src, dst uint32
	sp, dp   uint16
	proto    uint8
}

// BenchmarkFloor is the reference floor: a minimal hand parse of the IPv4 5-tuple at fixed
// offsets (no VLAN, no IPv6, no validation beyond lengths) plus one Go map update per packet.
func BenchmarkFloor(b *testing.B) {
	frames := loadBenchFrames(b)
	counts := make(map[tuple4]uint64)
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for range b.N {
		d := frames[j]
		if j++; j == len(frames) {
			j = 0
		}
		if len(d) < 34 || binary.BigEndian.Uint16(d[12:]) != 0x0800 {
			continue
		}
		t := tuple4{src: binary.BigEndian.Uint32(d[26:]), dst: binary.BigEndian.Uint32(d[30:]), proto: d[23]}
		if l4 := 14 + int(d[14]&0x0f)*4; (t.proto == 6 || t.proto == 17) && len(d) >= l4+4 {
			t.sp, t.dp = binary.BigEndian.Uint16(d[l4:]), binary.BigEndian.Uint16(d[l4+2:])
		}
		counts[t]++
	}
	sink += uint64(len(counts))
}

// BenchmarkParse is packet.Packet.Parse over the frame in place (no copy).
func BenchmarkParse(b *testing.B) {
	frames := loadBenchFrames(b)
	var p packet.Packet
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for range b.N {
		p.Data = frames[j]
		if j++; j == len(frames) {
			j = 0
		}
		p.Parse()
		sink += uint64(p.Key.SrcPort)
	}
}

// BenchmarkParseGopacketDLP is gopacket's DecodingLayerParser (preallocated layers, no
// per-packet allocation by design) extracting the same 5-tuple.
func BenchmarkParseGopacketDLP(b *testing.B) {
	frames := loadBenchFrames(b)
	var (
		eth   layers.Ethernet
		dot1q layers.Dot1Q
		ip4   layers.IPv4
		ip6   layers.IPv6
		tcp   layers.TCP
		udp   layers.UDP
		icmp4 layers.ICMPv4
		icmp6 layers.ICMPv6
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip4, &ip6, &tcp, &udp, &icmp4, &icmp6)
	parser.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 8)
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for range b.N {
		d := frames[j]
		if j++; j == len(frames) {
			j = 0
		}
		_ = parser.DecodeLayers(d, &decoded)
		var k packet.Key
		for _, lt := range decoded {
			switch lt {
			case layers.LayerTypeIPv4:
				copy(k.Src[:], ip4.SrcIP.To4())
				copy(k.Dst[:], ip4.DstIP.To4())
				k.Proto = uint8(ip4.Protocol)
			case layers.LayerTypeIPv6:
				copy(k.Src[:], ip6.SrcIP)
				copy(k.Dst[:], ip6.DstIP)
				k.Proto, k.V6 = uint8(ip6.NextHeader), true
			case layers.LayerTypeTCP:
				k.SrcPort, k.DstPort = uint16(tcp.SrcPort), uint16(tcp.DstPort)
			case layers.LayerTypeUDP:
				k.SrcPort, k.DstPort = uint16(udp.SrcPort), uint16(udp.DstPort)
			}
		}
		sink += uint64(k.SrcPort)
	}
}

// BenchmarkParseGopacketNewPacket is gopacket.NewPacket with gopacket.Default (eager
// decoding, frame copied) plus reading the network and transport flows.
func BenchmarkParseGopacketNewPacket(b *testing.B) {
	benchNewPacket(b, gopacket.Default)
}

// BenchmarkParseGopacketNewPacketLazyNoCopy is the same with gopacket's cheapest options.
func BenchmarkParseGopacketNewPacketLazyNoCopy(b *testing.B) {
	benchNewPacket(b, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
}

func benchNewPacket(b *testing.B, opts gopacket.DecodeOptions) {
	frames := loadBenchFrames(b)
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for range b.N {
		d := frames[j]
		if j++; j == len(frames) {
			j = 0
		}
		pkt := gopacket.NewPacket(d, layers.LayerTypeEthernet, opts)
		if nl := pkt.NetworkLayer(); nl != nil {
			src, dst := nl.NetworkFlow().Endpoints()
			sink += uint64(len(src.Raw()) + len(dst.Raw()))
		}
		if tl := pkt.TransportLayer(); tl != nil {
			src, dst := tl.TransportFlow().Endpoints()
			sink += uint64(len(src.Raw()) + len(dst.Raw()))
		}
	}
}

// BenchmarkRewriteNAT is a source NAT of the capture's TCP/UDP IPv4 packets: SetSrcAddr plus
// SetSrcPort with incremental checksum updates, on parsed packets copied once into working
// buffers.
func BenchmarkRewriteNAT(b *testing.B) {
	var pkts []packet.Packet
	for _, f := range loadBenchFrames(b) {
		var p packet.Packet
		p.SetData(f, 0, 0)
		if p.Is(packet.IPv4|packet.HasL4) && (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP) {
			pkts = append(pkts, p)
		}
	}
	if len(pkts) == 0 {
		b.Skip("no TCP/UDP IPv4 packets in " + benchTrace)
	}
	addrs := [4]netip.Addr{
		netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2"),
		netip.MustParseAddr("203.0.113.3"), netip.MustParseAddr("203.0.113.4"),
	}
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for i := range b.N {
		p := &pkts[j]
		if j++; j == len(pkts) {
			j = 0
		}
		p.SetSrcAddr(addrs[i&3])
		p.SetSrcPort(uint16(i))
	}
}

// BenchmarkKeyHash is the direction-independent flow hash of the capture's keys.
func BenchmarkKeyHash(b *testing.B) {
	var keys []packet.Key
	for _, f := range loadBenchFrames(b) {
		if p := parsed(f); p.IP() {
			keys = append(keys, p.Key)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for range b.N {
		sink += keys[j].Hash()
		if j++; j == len(keys) {
			j = 0
		}
	}
}
