package packet_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/snf-dev/snf/packet"
)

// tracesDir is where the shared real captures live, relative to this package's directory.
const tracesDir = "../../shared/traces"

// benchTrace is the capture the benchmarks run over.
const benchTrace = "pcapplusplus_example.pcap"

// traceFrame is one captured frame.
type traceFrame struct {
	data    []byte
	wireLen int
}

// traceFiles lists every capture under tracesDir (classic pcap and pcapng, in
// tracesDir and tracesDir/trojan_ingredients), or skips the test when the directory is
// absent.
func traceFiles(tb testing.TB) []string {
	tb.Helper()
	if _, err := os.Stat(tracesDir); err != nil {
		tb.Skipf("real captures not available: %s is absent (%v)", tracesDir, err)
	}
	var files []string
	for _, dir := range []string{tracesDir, filepath.Join(tracesDir, "trojan_ingredients")} {
		for _, pat := range []string{"*.pcap", "*.pcapng"} {
			m, err := filepath.Glob(filepath.Join(dir, pat))
			if err != nil {
				tb.Fatal(err)
			}
			files = append(files, m...)
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		tb.Skipf("real captures not available: no .pcap/.pcapng file in %s", tracesDir)
	}
	return files
}

// loadTrace reads every frame of a capture into memory. It skips the test when the file is
// absent.
func loadTrace(tb testing.TB, path string) []traceFrame {
	tb.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		tb.Skipf("real capture not available: %s is absent", path)
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	type reader interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var r reader
	var link layers.LinkType
	if strings.HasSuffix(path, ".pcapng") {
		ng, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		r, link = ng, ng.LinkType()
	} else {
		pr, err := pcapgo.NewReader(f)
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		r, link = pr, pr.LinkType()
	}
	if link != layers.LinkTypeEthernet {
		tb.Skipf("%s: link type %v, not Ethernet", path, link)
	}
	var frames []traceFrame
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatalf("%s: frame %d: %v", path, len(frames), err)
		}
		frames = append(frames, traceFrame{data: append([]byte(nil), data...), wireLen: ci.Length})
	}
	if len(frames) == 0 {
		tb.Fatalf("%s: no frames", path)
	}
	return frames
}

// Addresses and MACs used by generated frames.
var (
	mac1 = []byte{0x02, 0, 0, 0, 0, 1}
	mac2 = []byte{0x02, 0, 0, 0, 0, 2}
	v4a  = netip.MustParseAddr("192.0.2.1")
	v4b  = netip.MustParseAddr("198.51.100.7")
	v6a  = netip.MustParseAddr("2001:db8::1")
	v6b  = netip.MustParseAddr("2001:db8:ffff::2")
)

// serialize builds a frame from layers with lengths and checksums computed by gopacket.
func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ethLayer(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: t}
}

func ip4Layer(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

func ip6Layer(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, FlowLabel: 0x12345, NextHeader: next,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// netLayer returns the IP layer of the family of src, carrying proto.
func netLayer(src, dst netip.Addr, proto layers.IPProtocol) (gopacket.NetworkLayer, gopacket.SerializableLayer) {
	if src.Is4() {
		ip := ip4Layer(src, dst, proto)
		return ip, ip
	}
	ip := ip6Layer(src, dst, proto)
	return ip, ip
}

func ethTypeOf(a netip.Addr) layers.EthernetType {
	if a.Is4() {
		return layers.EthernetTypeIPv4
	}
	return layers.EthernetTypeIPv6
}

// tcpFrame builds an Ethernet/IP/TCP frame with MSS, SACK-permitted and window-scale
// options (a 32-byte TCP header) and the given payload.
func tcpFrame(tb testing.TB, src, dst netip.Addr, sp, dp uint16, payload []byte) []byte {
	tb.Helper()
	nl, ip := netLayer(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: 0x01020304,
		Ack: 0x0a0b0c0d, ACK: true, PSH: true, Window: 4096, Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		}}
	if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, ethLayer(ethTypeOf(src)), ip, tcp, gopacket.Payload(payload))
}

// udpFrame builds an Ethernet/IP/UDP frame.
func udpFrame(tb testing.TB, src, dst netip.Addr, sp, dp uint16, payload []byte) []byte {
	tb.Helper()
	nl, ip := netLayer(src, dst, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
	if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, ethLayer(ethTypeOf(src)), ip, udp, gopacket.Payload(payload))
}

// echoFrame builds an ICMP (IPv4) or ICMPv6 echo request (reply=false) or reply.
func echoFrame(tb testing.TB, src, dst netip.Addr, id, seq uint16, reply bool, payload []byte) []byte {
	tb.Helper()
	if src.Is4() {
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
		return serialize(tb, ethLayer(layers.EthernetTypeIPv4), ip4Layer(src, dst, layers.IPProtocolICMPv4),
			icmp, gopacket.Payload(payload))
	}
	typ := uint8(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	ip := ip6Layer(src, dst, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	echo := &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}
	return serialize(tb, ethLayer(layers.EthernetTypeIPv6), ip, icmp, echo, gopacket.Payload(payload))
}

// parsed returns a Packet parsed over b (no copy).
func parsed(b []byte) *packet.Packet {
	p := &packet.Packet{Data: b}
	p.Parse()
	return p
}

// ipEnd returns the offset where the IP packet of a parsed IP packet ends (as captured).
func ipEnd(p *packet.Packet) int {
	l3 := int(p.L3Off)
	end := len(p.Data)
	switch {
	case p.Flags&packet.IPv4 != 0:
		end = min(end, l3+int(binary.BigEndian.Uint16(p.Data[l3+2:])))
	case p.Flags&packet.IPv6 != 0:
		end = min(end, l3+40+int(binary.BigEndian.Uint16(p.Data[l3+4:])))
	}
	return end
}

// ip4HeaderChecksum recomputes the IPv4 header checksum of p from scratch.
func ip4HeaderChecksum(p *packet.Packet) uint16 {
	l3 := int(p.L3Off)
	hdr := append([]byte(nil), p.Data[l3:l3+int(p.Data[l3]&0x0f)*4]...)
	hdr[10], hdr[11] = 0, 0
	return packet.Checksum(hdr, 0)
}

// l4CsumField returns the offset of the L4 checksum and whether it covers a pseudo-header;
// ok=false when the packet has no complete L4 header with a checksum.
func l4CsumField(p *packet.Packet) (off int, pseudo, ok bool) {
	if !p.Is(packet.HasL4) {
		return 0, false, false
	}
	l4 := int(p.L4Off)
	switch p.Proto {
	case packet.ProtoTCP:
		return l4 + 16, true, true
	case packet.ProtoUDP:
		return l4 + 6, true, true
	case packet.ProtoICMP:
		return l4 + 2, false, true
	case packet.ProtoICMPv6:
		return l4 + 2, true, true
	}
	return 0, false, false
}

// l4Checksum recomputes the L4 checksum of a complete (not Truncated) packet from scratch:
// the pseudo-header (when the protocol has one) and the L4 header and payload up to the end
// of the IP packet, with the checksum field taken as zero. A UDP result of 0 is returned as
// 0xffff, as it is transmitted. ok=false when there is nothing to compute.
func l4Checksum(p *packet.Packet) (sum uint16, ok bool) {
	off, pseudo, ok := l4CsumField(p)
	if !ok || p.Is(packet.Truncated) {
		return 0, false
	}
	l4 := append([]byte(nil), p.Data[p.L4Off:ipEnd(p)]...)
	c := off - int(p.L4Off)
	l4[c], l4[c+1] = 0, 0
	var buf []byte
	if pseudo {
		buf = pseudoHeader(p, len(l4))
	}
	buf = append(buf, l4...)
	sum = packet.Checksum(buf, 0)
	if sum == 0 && p.Proto == packet.ProtoUDP {
		sum = 0xffff
	}
	return sum, true
}

// checksumState records, for the IPv4 header and the L4 header, whether the stored
// checksum is checkable and valid: the one's-complement sum over everything it covers,
// itself included, is zero (so 0x0000 and 0xffff, the two forms of zero, are both valid
// where the arithmetic allows; exact values are checked by checkFullChecksums).
type checksumState struct {
	ipCheckable, ipValid bool
	l4Checkable, l4Valid bool
	udpNone              bool // UDP over IPv4 with checksum 0 (none)
}

func checksums(p *packet.Packet) checksumState {
	var s checksumState
	if p.Is(packet.IPv4) {
		l3 := int(p.L3Off)
		s.ipCheckable = true
		s.ipValid = packet.Checksum(p.Data[l3:l3+int(p.Data[l3]&0x0f)*4], 0) == 0
	}
	off, pseudo, ok := l4CsumField(p)
	if !ok || p.Is(packet.Truncated) {
		return s
	}
	if p.Proto == packet.ProtoUDP && p.Is(packet.IPv4) && binary.BigEndian.Uint16(p.Data[off:]) == 0 {
		s.udpNone = true
		return s
	}
	// An IPv4 first fragment's L4 checksum covers the whole datagram.
	if p.Is(packet.IPv4) && p.Data[int(p.L3Off)+6]&0x20 != 0 {
		return s
	}
	l4 := p.Data[p.L4Off:ipEnd(p)]
	var buf []byte
	if pseudo {
		buf = pseudoHeader(p, len(l4))
	}
	s.l4Checkable = true
	s.l4Valid = packet.Checksum(append(buf, l4...), 0) == 0
	return s
}

// pseudoHeader returns the IPv4 or IPv6 pseudo-header for an L4 segment of n bytes.
func pseudoHeader(p *packet.Packet, n int) []byte {
	var buf []byte
	l3 := int(p.L3Off)
	if p.Is(packet.IPv4) {
		buf = append(buf, p.Data[l3+12:l3+20]...)
		buf = append(buf, 0, p.Proto)
		return binary.BigEndian.AppendUint16(buf, uint16(n))
	}
	buf = append(buf, p.Data[l3+8:l3+40]...)
	return append(buf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, p.Proto)
}
