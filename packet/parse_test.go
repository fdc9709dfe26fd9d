package packet_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/snf-dev/snf/packet"
)

// parseCase is a generated frame and what Parse must find in it.
type parseCase struct {
	name       string
	frame      []byte
	flags      packet.Flags
	etherType  uint16
	proto      uint8
	l3, l4     int
	payloadOff int
	key        packet.Key
	payload    []byte // wanted Payload() when HasL4 (nil: not checked beyond its length)
}

var payload100 = func() []byte {
	b := make([]byte, 100)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}()

// Extension headers built by hand (gopacket does not serialize all of them).
func hopByHop(next uint8) []byte { // 8 bytes: a PadN option filling the header
	return []byte{next, 0, 1, 4, 0, 0, 0, 0}
}

func destOpts16(next uint8) []byte { // 16 bytes: Hdr Ext Len 1
	return []byte{next, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
}

func routing24(next uint8) []byte { // 24 bytes: type 0 with one address, segments left 0
	b := make([]byte, 24)
	b[0], b[1], b[2], b[3] = next, 2, 0, 0
	return b
}

func fragHdr(next uint8, offset8 uint16, more bool, id uint32) []byte {
	b := []byte{next, 0, 0, 0, 0, 0, 0, 0}
	w := offset8 << 3
	if more {
		w |= 1
	}
	binary.BigEndian.PutUint16(b[2:], w)
	binary.BigEndian.PutUint32(b[4:], id)
	return b
}

// ip6ExtFrame builds Ethernet/IPv6/ext…/L4 with the L4 checksum computed over the real
// pseudo-header (gopacket uses the IPv6 addresses and the L4 protocol).
func ip6ExtFrame(tb testing.TB, first layers.IPProtocol, ext []byte, l4 ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	ip := ip6Layer(v6a, v6b, first)
	for _, l := range l4 {
		switch l := l.(type) {
		case *layers.TCP:
			l.SetNetworkLayerForChecksum(ip)
		case *layers.UDP:
			l.SetNetworkLayerForChecksum(ip)
		case *layers.ICMPv6:
			l.SetNetworkLayerForChecksum(ip)
		}
	}
	ls := []gopacket.SerializableLayer{ethLayer(layers.EthernetTypeIPv6), ip, gopacket.Payload(ext)}
	return serialize(tb, append(ls, l4...)...)
}

func parseCases(tb testing.TB) []parseCase {
	tb.Helper()
	k4tcp := packet.KeyFrom(v4a, v4b, 40000, 443, packet.ProtoTCP)
	k4udp := packet.KeyFrom(v4a, v4b, 5353, 53, packet.ProtoUDP)
	k6tcp := packet.KeyFrom(v6a, v6b, 40000, 443, packet.ProtoTCP)
	k6udp := packet.KeyFrom(v6a, v6b, 5353, 53, packet.ProtoUDP)
	const ip4, ip6, l4 = packet.IPv4, packet.IPv6, packet.HasL4
	var cs []parseCase

	cs = append(cs,
		parseCase{name: "ipv4/tcp", frame: tcpFrame(tb, v4a, v4b, 40000, 443, payload100),
			flags: ip4 | l4, etherType: 0x0800, proto: 6, l3: 14, l4: 34, payloadOff: 66, key: k4tcp, payload: payload100},
		parseCase{name: "ipv4/udp", frame: udpFrame(tb, v4a, v4b, 5353, 53, payload100),
			flags: ip4 | l4, etherType: 0x0800, proto: 17, l3: 14, l4: 34, payloadOff: 42, key: k4udp, payload: payload100},
		parseCase{name: "ipv6/tcp", frame: tcpFrame(tb, v6a, v6b, 40000, 443, payload100),
			flags: ip6 | l4, etherType: 0x86dd, proto: 6, l3: 14, l4: 54, payloadOff: 86, key: k6tcp, payload: payload100},
		parseCase{name: "ipv6/udp", frame: udpFrame(tb, v6a, v6b, 5353, 53, payload100),
			flags: ip6 | l4, etherType: 0x86dd, proto: 17, l3: 14, l4: 54, payloadOff: 62, key: k6udp, payload: payload100},
	)

	// Short packets padded to the Ethernet minimum: padding is not payload.
	{
		f := udpFrame(tb, v4a, v4b, 5353, 53, []byte{1, 2})
		f = append(f, make([]byte, 60-len(f))...)
		cs = append(cs, parseCase{name: "ipv4/udp/ethernet-padding", frame: f,
			flags: ip4 | l4, etherType: 0x0800, proto: 17, l3: 14, l4: 34, payloadOff: 42, key: k4udp, payload: []byte{1, 2}})
		f = tcpFrame(tb, v4a, v4b, 40000, 443, nil)
		f = append(f, 0xaa, 0xbb) // a trailer (FCS-like) after the IP packet
		cs = append(cs, parseCase{name: "ipv4/tcp/trailer", frame: f,
			flags: ip4 | l4, etherType: 0x0800, proto: 6, l3: 14, l4: 34, payloadOff: 66, key: k4tcp, payload: []byte{}})
	}

	// VLAN: one tag, QinQ (802.1ad outer + 802.1Q inner), and three tags (too many).
	{
		ip := ip4Layer(v4a, v4b, layers.IPProtocolUDP)
		udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
		udp.SetNetworkLayerForChecksum(ip)
		f := serialize(tb, ethLayer(layers.EthernetTypeDot1Q),
			&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload(payload100))
		cs = append(cs, parseCase{name: "vlan/ipv4/udp", frame: f,
			flags: packet.VLAN | ip4 | l4, etherType: 0x0800, proto: 17, l3: 18, l4: 38, payloadOff: 46, key: k4udp, payload: payload100})

		ipv6 := ip6Layer(v6a, v6b, layers.IPProtocolTCP)
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, SYN: true, Window: 1000}
		tcp.SetNetworkLayerForChecksum(ipv6)
		f = serialize(tb, ethLayer(layers.EthernetTypeQinQ),
			&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 20, Type: layers.EthernetTypeIPv6}, ipv6, tcp)
		cs = append(cs, parseCase{name: "qinq/ipv6/tcp", frame: f,
			flags: packet.VLAN | ip6 | l4, etherType: 0x86dd, proto: 6, l3: 22, l4: 62, payloadOff: 82, key: k6tcp, payload: []byte{}})

		f = serialize(tb, ethLayer(layers.EthernetTypeQinQ),
			&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 20, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 30, Type: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload(payload100))
		cs = append(cs, parseCase{name: "three-vlan-tags", frame: f,
			flags: packet.VLAN | packet.NonIP, etherType: 0x8100, l3: 22})

		cs = append(cs, parseCase{name: "vlan-tag-cut", frame: f[:17],
			flags: packet.VLAN | packet.NonIP})
	}

	// IPv4 options: router alert (4 bytes) and a 7-byte record route padded to 12.
	{
		ip := ip4Layer(v4a, v4b, layers.IPProtocolTCP)
		ip.Options = []layers.IPv4Option{
			{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}},
			{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}},
		}
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, ACK: true, Window: 1000}
		tcp.SetNetworkLayerForChecksum(ip)
		f := serialize(tb, ethLayer(layers.EthernetTypeIPv4), ip, tcp, gopacket.Payload(payload100))
		if ihl := f[14] & 0x0f; ihl != 8 {
			tb.Fatalf("IPv4 options: IHL %d, want 8", ihl)
		}
		cs = append(cs, parseCase{name: "ipv4-options/tcp", frame: f,
			flags: ip4 | l4, etherType: 0x0800, proto: 6, l3: 14, l4: 46, payloadOff: 66, key: k4tcp, payload: payload100})
	}

	// IPv6 extension headers.
	{
		udp := func() *layers.UDP { return &layers.UDP{SrcPort: 5353, DstPort: 53} }
		tcp := func() *layers.TCP { return &layers.TCP{SrcPort: 40000, DstPort: 443, ACK: true, Window: 1000} }
		f := ip6ExtFrame(tb, layers.IPProtocolIPv6HopByHop, hopByHop(17), udp(), gopacket.Payload(payload100))
		cs = append(cs, parseCase{name: "ipv6/hop-by-hop/udp", frame: f,
			flags: ip6 | l4, etherType: 0x86dd, proto: 17, l3: 14, l4: 62, payloadOff: 70, key: k6udp, payload: payload100})

		ext := append(hopByHop(43), routing24(60)...)
		ext = append(ext, destOpts16(6)...)
		f = ip6ExtFrame(tb, layers.IPProtocolIPv6HopByHop, ext, tcp(), gopacket.Payload(payload100))
		cs = append(cs, parseCase{name: "ipv6/hbh+routing+dstopts/tcp", frame: f,
			flags: ip6 | l4, etherType: 0x86dd, proto: 6, l3: 14, l4: 54 + 48, payloadOff: 54 + 48 + 20, key: k6tcp, payload: payload100})

		f = ip6ExtFrame(tb, layers.IPProtocolIPv6Fragment, fragHdr(17, 0, true, 0xabcd), udp(), gopacket.Payload(payload100))
		cs = append(cs, parseCase{name: "ipv6/fragment-first/udp", frame: f,
			flags: ip6 | l4, etherType: 0x86dd, proto: 17, l3: 14, l4: 62, payloadOff: 70, key: k6udp, payload: payload100})

		f = ip6ExtFrame(tb, layers.IPProtocolIPv6HopByHop, append(hopByHop(44), fragHdr(17, 185, false, 0xabcd)...), gopacket.Payload(payload100))
		k := k6udp
		k.SrcPort, k.DstPort = 0, 0
		cs = append(cs, parseCase{name: "ipv6/hbh+fragment-non-first", frame: f,
			flags: ip6 | packet.Fragment, etherType: 0x86dd, proto: 17, l3: 14, l4: 70, key: k})

		// An extension header whose length runs past the packet.
		bad := hopByHop(17)
		bad[1] = 200
		f = ip6ExtFrame(tb, layers.IPProtocolIPv6HopByHop, bad, udp(), gopacket.Payload(payload100))
		cs = append(cs, parseCase{name: "ipv6/ext-header-too-long", frame: f,
			flags: packet.Malformed, etherType: 0x86dd, l3: 14})
		// An extension header cut short.
		f = ip6ExtFrame(tb, layers.IPProtocolIPv6HopByHop, []byte{17, 0, 1, 0})
		cs = append(cs, parseCase{name: "ipv6/ext-header-cut", frame: f,
			flags: packet.Malformed, etherType: 0x86dd, l3: 14})
		// No next header (59): an IPv6 packet with no L4.
		f = ip6ExtFrame(tb, layers.IPProtocolNoNextHeader, nil)
		cs = append(cs, parseCase{name: "ipv6/no-next-header", frame: f,
			flags: ip6, etherType: 0x86dd, proto: 59, l3: 14, l4: 54, key: packet.KeyFrom(v6a, v6b, 0, 0, 59)})
	}

	// IPv4 fragments.
	{
		ip := ip4Layer(v4a, v4b, layers.IPProtocolUDP)
		ip.Flags = layers.IPv4MoreFragments
		udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
		udp.SetNetworkLayerForChecksum(ip)
		f := serialize(tb, ethLayer(layers.EthernetTypeIPv4), ip, udp, gopacket.Payload(payload100))
		cs = append(cs, parseCase{name: "ipv4/fragment-first/udp", frame: f,
			flags: ip4 | l4, etherType: 0x0800, proto: 17, l3: 14, l4: 34, payloadOff: 42, key: k4udp, payload: payload100})

		ip = ip4Layer(v4a, v4b, layers.IPProtocolUDP)
		ip.Flags, ip.FragOffset = 0, 185
		f = serialize(tb, ethLayer(layers.EthernetTypeIPv4), ip, gopacket.Payload(payload100))
		k := k4udp
		k.SrcPort, k.DstPort = 0, 0
		cs = append(cs, parseCase{name: "ipv4/fragment-last", frame: f,
			flags: ip4 | packet.Fragment, etherType: 0x0800, proto: 17, l3: 14, l4: 34, key: k})

		// A non-first fragment whose payload happens to look like a TCP header is still
		// only a fragment.
		ip = ip4Layer(v4a, v4b, layers.IPProtocolTCP)
		ip.Flags, ip.FragOffset = layers.IPv4MoreFragments, 1
		f = serialize(tb, ethLayer(layers.EthernetTypeIPv4), ip, gopacket.Payload(tcpFrame(tb, v4a, v4b, 1, 2, nil)[34:]))
		k = packet.KeyFrom(v4a, v4b, 0, 0, packet.ProtoTCP)
		cs = append(cs, parseCase{name: "ipv4/fragment-middle/tcp", frame: f,
			flags: ip4 | packet.Fragment, etherType: 0x0800, proto: 6, l3: 14, l4: 34, key: k})
	}

	// ICMP: echo (ports = identifier) and errors (ports 0).
	{
		f := echoFrame(tb, v4a, v4b, 0x4242, 1, false, payload100[:56])
		cs = append(cs, parseCase{name: "icmp/echo-request", frame: f,
			flags: ip4 | l4, etherType: 0x0800, proto: 1, l3: 14, l4: 34, payloadOff: 42,
			key: packet.KeyFrom(v4a, v4b, 0x4242, 0x4242, packet.ProtoICMP), payload: payload100[:56]})
		f = echoFrame(tb, v4b, v4a, 0x4242, 1, true, payload100[:56])
		cs = append(cs, parseCase{name: "icmp/echo-reply", frame: f,
			flags: ip4 | l4, etherType: 0x0800, proto: 1, l3: 14, l4: 34, payloadOff: 42,
			key: packet.KeyFrom(v4b, v4a, 0x4242, 0x4242, packet.ProtoICMP), payload: payload100[:56]})
		f = echoFrame(tb, v6a, v6b, 0x0707, 9, false, payload100[:32])
		cs = append(cs, parseCase{name: "icmpv6/echo-request", frame: f,
			flags: ip6 | l4, etherType: 0x86dd, proto: 58, l3: 14, l4: 54, payloadOff: 62,
			key: packet.KeyFrom(v6a, v6b, 0x0707, 0x0707, packet.ProtoICMPv6), payload: payload100[:32]})
		f = echoFrame(tb, v6b, v6a, 0x0707, 9, true, payload100[:32])
		cs = append(cs, parseCase{name: "icmpv6/echo-reply", frame: f,
			flags: ip6 | l4, etherType: 0x86dd, proto: 58, l3: 14, l4: 54, payloadOff: 62,
			key: packet.KeyFrom(v6b, v6a, 0x0707, 0x0707, packet.ProtoICMPv6), payload: payload100[:32]})

		inner := udpFrame(tb, v4b, v4a, 5353, 53, nil)[14:]
		unreach := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}
		f = serialize(tb, ethLayer(layers.EthernetTypeIPv4), ip4Layer(v4a, v4b, layers.IPProtocolICMPv4), unreach, gopacket.Payload(inner))
		cs = append(cs, parseCase{name: "icmp/dest-unreachable", frame: f,
			flags: ip4 | l4, etherType: 0x0800, proto: 1, l3: 14, l4: 34, payloadOff: 42,
			key: packet.KeyFrom(v4a, v4b, 0, 0, packet.ProtoICMP), payload: inner})

		ip := ip6Layer(v6a, v6b, layers.IPProtocolICMPv6)
		ptb := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)}
		ptb.SetNetworkLayerForChecksum(ip)
		inner = udpFrame(tb, v6b, v6a, 5353, 53, nil)[14:]
		body := append([]byte{0, 0, 5, 0}, inner...) // MTU 1280
		f = serialize(tb, ethLayer(layers.EthernetTypeIPv6), ip, ptb, gopacket.Payload(body))
		cs = append(cs, parseCase{name: "icmpv6/packet-too-big", frame: f,
			flags: ip6 | l4, etherType: 0x86dd, proto: 58, l3: 14, l4: 54, payloadOff: 62,
			key: packet.KeyFrom(v6a, v6b, 0, 0, packet.ProtoICMPv6), payload: inner})
	}

	// Snaplen cuts: headers complete, payload cut.
	{
		f := tcpFrame(tb, v4a, v4b, 40000, 443, payload100)
		cs = append(cs, parseCase{name: "ipv4/tcp/snaplen-cut", frame: f[:80],
			flags: ip4 | l4 | packet.Truncated, etherType: 0x0800, proto: 6, l3: 14, l4: 34, payloadOff: 66, key: k4tcp, payload: payload100[:14]})
		cs = append(cs, parseCase{name: "ipv4/tcp/snaplen-cut-at-payload", frame: f[:66],
			flags: ip4 | l4 | packet.Truncated, etherType: 0x0800, proto: 6, l3: 14, l4: 34, payloadOff: 66, key: k4tcp, payload: []byte{}})
		f = udpFrame(tb, v6a, v6b, 5353, 53, payload100)
		cs = append(cs, parseCase{name: "ipv6/udp/snaplen-cut", frame: f[:70],
			flags: ip6 | l4 | packet.Truncated, etherType: 0x86dd, proto: 17, l3: 14, l4: 54, payloadOff: 62, key: k6udp, payload: payload100[:8]})
		f = tcpFrame(tb, v4a, v4b, 40000, 443, payload100)
		cs = append(cs, parseCase{name: "ipv4/tcp/l4-header-cut", frame: f[:60],
			flags: packet.Malformed | packet.Truncated, etherType: 0x0800, proto: 6, l3: 14, l4: 34})
	}

	// Other protocols: a key with zero ports, no L4.
	{
		ip := ip4Layer(v4a, v4b, layers.IPProtocolGRE)
		f := serialize(tb, ethLayer(layers.EthernetTypeIPv4), ip, gopacket.Payload(payload100[:24]))
		cs = append(cs, parseCase{name: "ipv4/gre", frame: f,
			flags: ip4, etherType: 0x0800, proto: 47, l3: 14, l4: 34, key: packet.KeyFrom(v4a, v4b, 0, 0, 47)})
	}

	// Non-IP.
	{
		arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: mac1, SourceProtAddress: v4a.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: v4b.AsSlice()}
		f := serialize(tb, ethLayer(layers.EthernetTypeARP), arp)
		cs = append(cs, parseCase{name: "arp", frame: f, flags: packet.NonIP, etherType: 0x0806, l3: 14})
		cs = append(cs, parseCase{name: "runt", frame: f[:13], flags: packet.NonIP})
		cs = append(cs, parseCase{name: "empty", frame: nil, flags: packet.NonIP})
		cs = append(cs, parseCase{name: "ethernet-only", frame: f[:12:12], flags: packet.NonIP})
	}

	// Bad IP headers.
	{
		mutate := func(f []byte, fn func(b []byte)) []byte {
			f = append([]byte(nil), f...)
			fn(f)
			return f
		}
		t4 := tcpFrame(tb, v4a, v4b, 40000, 443, payload100)
		t6 := tcpFrame(tb, v6a, v6b, 40000, 443, payload100)
		malformed := func(name string, f []byte, et uint16) {
			cs = append(cs, parseCase{name: name, frame: f, flags: packet.Malformed, etherType: et, l3: 14})
		}
		for ihl := range 5 {
			malformed(fmt.Sprintf("ipv4/ihl-%d", ihl), mutate(t4, func(b []byte) { b[14] = 0x40 | byte(ihl) }), 0x0800)
		}
		malformed("ipv4/ihl-past-frame", mutate(t4, func(b []byte) { b[14] = 0x4f })[:60], 0x0800)
		malformed("ipv4/version-6", mutate(t4, func(b []byte) { b[14] = 0x65 }), 0x0800)
		malformed("ipv4/version-0", mutate(t4, func(b []byte) { b[14] = 0x05 }), 0x0800)
		malformed("ipv4/total-length<ihl", mutate(t4, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 19) }), 0x0800)
		malformed("ipv4/total-length-0", mutate(t4, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 0) }), 0x0800)
		malformed("ipv6/version-4", mutate(t6, func(b []byte) { b[14] = 0x40 }), 0x86dd)
		malformed("ipv6/header-cut", t6[:50], 0x86dd)
		// An IPv4 total length that ends inside the TCP header.
		cs = append(cs, parseCase{name: "ipv4/total-length-cuts-tcp", frame: mutate(t4, func(b []byte) { binary.BigEndian.PutUint16(b[16:], 30) }),
			flags: packet.Malformed, etherType: 0x0800, proto: 6, l3: 14, l4: 34})
		// TCP data offsets that cannot be: below 5 words, or past the packet.
		for doff := range 5 {
			cs = append(cs, parseCase{name: fmt.Sprintf("tcp/data-offset-%d", doff), frame: mutate(t4, func(b []byte) { b[34+12] = byte(doff) << 4 }),
				flags: packet.Malformed, etherType: 0x0800, proto: 6, l3: 14, l4: 34})
		}
		small := tcpFrame(tb, v4a, v4b, 40000, 443, nil)
		cs = append(cs, parseCase{name: "tcp/data-offset-past-packet", frame: mutate(small, func(b []byte) { b[34+12] = 15 << 4 }),
			flags: packet.Malformed, etherType: 0x0800, proto: 6, l3: 14, l4: 34})
		// A UDP header cut by the IPv6 payload length.
		u6 := udpFrame(tb, v6a, v6b, 5353, 53, nil)
		cs = append(cs, parseCase{name: "ipv6/udp-cut-by-payload-length", frame: mutate(u6, func(b []byte) { binary.BigEndian.PutUint16(b[18:], 4) }),
			flags: packet.Malformed, etherType: 0x86dd, proto: 17, l3: 14, l4: 54})
	}
	return cs
}

func TestParse(t *testing.T) {
	for _, c := range parseCases(t) {
		t.Run(c.name, func(t *testing.T) {
			p := parsed(c.frame)
			if p.Flags != c.flags {
				t.Errorf("Flags %#x, want %#x", p.Flags, c.flags)
			}
			if p.EtherType != c.etherType {
				t.Errorf("EtherType %#x, want %#x", p.EtherType, c.etherType)
			}
			if c.flags&packet.NonIP != 0 {
				return // L3Off is not documented for non-IP frames
			}
			if int(p.L3Off) != c.l3 {
				t.Errorf("L3Off %d, want %d", p.L3Off, c.l3)
			}
			if p.Proto != c.proto && (c.flags&packet.Malformed == 0 || c.proto != 0) {
				t.Errorf("Proto %d, want %d", p.Proto, c.proto)
			}
			if c.flags&(packet.HasL4|packet.Fragment) != 0 || c.l4 != 0 {
				if int(p.L4Off) != c.l4 {
					t.Errorf("L4Off %d, want %d", p.L4Off, c.l4)
				}
			}
			if c.flags&packet.Malformed != 0 {
				if p.Key != (packet.Key{}) {
					// Key is documented as invalid for Malformed; Parse clears it.
					t.Errorf("Malformed packet with key %s", p.Key)
				}
				if p.Payload() != nil {
					t.Errorf("Malformed packet with a payload")
				}
				return
			}
			if p.Key != c.key {
				t.Errorf("Key %s, want %s", p.Key, c.key)
			}
			if p.Key.Proto != p.Proto {
				t.Errorf("Key.Proto %d != Proto %d", p.Key.Proto, p.Proto)
			}
			if c.flags&packet.HasL4 == 0 {
				if p.PayloadOff != 0 || p.Payload() != nil {
					t.Errorf("no L4, but PayloadOff %d, Payload %d bytes", p.PayloadOff, len(p.Payload()))
				}
				return
			}
			if int(p.PayloadOff) != c.payloadOff {
				t.Errorf("PayloadOff %d, want %d", p.PayloadOff, c.payloadOff)
			}
			if c.payload != nil && !bytes.Equal(p.Payload(), c.payload) {
				t.Errorf("Payload() = % x…, want % x…", head(p.Payload()), head(c.payload))
			}
			if !p.IP() {
				t.Errorf("IP() false")
			}
			// Cross-check with gopacket where it decodes this far.
			if err := checkAgainstGopacket(c.frame); err != nil {
				t.Errorf("gopacket: %v", err)
			}
		})
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

// TestParseAccessors covers TCPFlags, ICMPType, IsEcho and EchoID.
func TestParseAccessors(t *testing.T) {
	ip := ip4Layer(v4a, v4b, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 1, DstPort: 2, SYN: true, ACK: true, FIN: true}
	tcp.SetNetworkLayerForChecksum(ip)
	p := parsed(serialize(t, ethLayer(layers.EthernetTypeIPv4), ip, tcp))
	if got := p.TCPFlags(); got != packet.TCPSyn|packet.TCPAck|packet.TCPFin {
		t.Errorf("TCPFlags %#x", got)
	}
	if p.ICMPType() != 0xff || p.IsEcho() {
		t.Errorf("TCP packet: ICMPType %d IsEcho %v", p.ICMPType(), p.IsEcho())
	}
	if _, ok := p.EchoID(); ok {
		t.Errorf("TCP packet has an echo ID")
	}
	u := parsed(udpFrame(t, v4a, v4b, 1, 2, nil))
	if u.TCPFlags() != 0 {
		t.Errorf("UDP packet: TCPFlags %#x", u.TCPFlags())
	}
	e := parsed(echoFrame(t, v6a, v6b, 77, 1, true, nil))
	if e.ICMPType() != layers.ICMPv6TypeEchoReply || !e.IsEcho() {
		t.Errorf("ICMPv6 echo reply: ICMPType %d IsEcho %v", e.ICMPType(), e.IsEcho())
	}
	if id, ok := e.EchoID(); !ok || id != 77 {
		t.Errorf("EchoID %d %v", id, ok)
	}
	m := parsed(tcpFrame(t, v4a, v4b, 1, 2, nil)[:40]) // Malformed: TCP header cut
	if m.TCPFlags() != 0 || m.ICMPType() != 0xff || m.IsEcho() || m.Payload() != nil {
		t.Errorf("Malformed packet: accessors return data")
	}
	if !p.Is(packet.IPv4|packet.HasL4) || p.Is(packet.IPv4|packet.IPv6) {
		t.Errorf("Is: flags %#x", p.Flags)
	}
}

// TestICMPEchoKeysReverse: an echo reply's key is the reverse of its request's, so both
// directions land in one flow.
func TestICMPEchoKeysReverse(t *testing.T) {
	for _, fam := range [][2]netip.Addr{{v4a, v4b}, {v6a, v6b}} {
		req := parsed(echoFrame(t, fam[0], fam[1], 0xbeef, 3, false, payload100[:8]))
		rep := parsed(echoFrame(t, fam[1], fam[0], 0xbeef, 3, true, payload100[:8]))
		if req.Key.Reverse() != rep.Key {
			t.Errorf("%v: request key %s, reply key %s: not reverses", fam[0], req.Key, rep.Key)
		}
		if req.Key.SrcPort != 0xbeef || req.Key.DstPort != 0xbeef {
			t.Errorf("echo key ports %d/%d, want the identifier", req.Key.SrcPort, req.Key.DstPort)
		}
		rc, _ := req.Key.Canonical()
		pc, _ := rep.Key.Canonical()
		if rc != pc || req.Key.Hash() != rep.Key.Hash() {
			t.Errorf("request and reply canonical keys or hashes differ")
		}
	}
}

// TestParseEveryPrefix parses every prefix of a TCP/IPv4 frame: a cut Ethernet header is
// NonIP, a cut IP or TCP header Malformed, a cut payload Truncated with HasL4.
func TestParseEveryPrefix(t *testing.T) {
	f := tcpFrame(t, v4a, v4b, 40000, 443, payload100)
	const l4, pay = 34, 66
	for n := 0; n <= len(f); n++ {
		p := parsed(f[:n:n])
		var want packet.Flags
		switch {
		case n < 14:
			want = packet.NonIP
		case n < l4:
			want = packet.Malformed
		case n < pay:
			want = packet.Malformed | packet.Truncated
		case n < len(f):
			want = packet.IPv4 | packet.HasL4 | packet.Truncated
		default:
			want = packet.IPv4 | packet.HasL4
		}
		if p.Flags != want {
			t.Errorf("%d of %d bytes: flags %#x, want %#x", n, len(f), p.Flags, want)
		}
		if p.Is(packet.HasL4) && (int(p.PayloadOff) != pay || len(p.Payload()) != n-pay) {
			t.Errorf("%d bytes: PayloadOff %d, payload %d bytes", n, p.PayloadOff, len(p.Payload()))
		}
	}
}

// TestParseEveryPrefixAllCases cuts every generated frame at every length: Parse must not
// panic and the parse invariants hold.
func TestParseEveryPrefixAllCases(t *testing.T) {
	for _, c := range parseCases(t) {
		for n := 0; n <= len(c.frame); n++ {
			b := append([]byte(nil), c.frame[:n]...)
			p := parsed(b)
			if err := parseInvariants(p); err != nil {
				t.Fatalf("%s cut to %d bytes: %v", c.name, n, err)
			}
			full := parsed(c.frame)
			if c.flags&packet.HasL4 != 0 && n < ipEnd(full) && p.Is(packet.HasL4) && !p.Is(packet.Truncated) {
				t.Errorf("%s cut to %d bytes: not Truncated", c.name, n)
			}
		}
	}
}

// parseInvariants checks what every parse result must satisfy, whatever the input.
func parseInvariants(p *packet.Packet) error {
	f := p.Flags
	switch {
	case f&packet.NonIP != 0 && f&^(packet.NonIP|packet.VLAN) != 0:
		return fmt.Errorf("NonIP with other flags %#x", f)
	case f&packet.Malformed != 0 && f&(packet.IPv4|packet.IPv6|packet.HasL4|packet.Fragment|packet.NonIP) != 0:
		return fmt.Errorf("Malformed with flags %#x", f)
	case f&packet.Malformed != 0 && p.Key != (packet.Key{}):
		return fmt.Errorf("Malformed with key %s", p.Key)
	case f&(packet.NonIP|packet.Malformed) == 0 && (f&packet.IPv4 != 0) == (f&packet.IPv6 != 0):
		return fmt.Errorf("IP packet with flags %#x", f)
	case f&packet.HasL4 != 0 && f&packet.Fragment != 0:
		return fmt.Errorf("HasL4 and Fragment: %#x", f)
	}
	if f&packet.HasL4 != 0 {
		if int(p.PayloadOff) > len(p.Data) || p.L4Off >= p.PayloadOff {
			return fmt.Errorf("HasL4 with L4Off %d PayloadOff %d len %d", p.L4Off, p.PayloadOff, len(p.Data))
		}
		min := map[uint8]int{packet.ProtoTCP: 20, packet.ProtoUDP: 8, packet.ProtoICMP: 8, packet.ProtoICMPv6: 8}[p.Proto]
		if min == 0 || int(p.PayloadOff-p.L4Off) < min {
			return fmt.Errorf("HasL4 proto %d with an L4 header of %d bytes", p.Proto, p.PayloadOff-p.L4Off)
		}
		if pl := p.Payload(); pl == nil || len(pl) > len(p.Data)-int(p.PayloadOff) {
			return fmt.Errorf("HasL4 with Payload() of %d bytes", len(pl))
		}
	}
	if f&(packet.HasL4|packet.Fragment) != 0 && (p.L4Off <= p.L3Off || int(p.L4Off) > len(p.Data)) {
		return fmt.Errorf("L3Off %d L4Off %d len %d", p.L3Off, p.L4Off, len(p.Data))
	}
	if p.IP() {
		if p.Key.Proto != p.Proto {
			return fmt.Errorf("Key.Proto %d != Proto %d", p.Key.Proto, p.Proto)
		}
		if p.Key.V6 != (f&packet.IPv6 != 0) {
			return fmt.Errorf("Key.V6 %v with flags %#x", p.Key.V6, f)
		}
		if f&packet.HasL4 == 0 && (p.Key.SrcPort != 0 || p.Key.DstPort != 0) {
			return fmt.Errorf("ports in the key of a packet without L4: %s", p.Key)
		}
		if int(p.L3Off) < 14 || int(p.L3Off) > len(p.Data) {
			return fmt.Errorf("L3Off %d", p.L3Off)
		}
	} else if p.Key != (packet.Key{}) && f&packet.Malformed == 0 {
		return fmt.Errorf("non-IP packet with key %s", p.Key)
	}
	return nil
}

// TestSetData checks that SetData copies the frame, parses it and keeps its buffer.
func TestSetData(t *testing.T) {
	f := tcpFrame(t, v4a, v4b, 40000, 443, payload100)
	var p packet.Packet
	p.SetData(f, 12345, 0)
	if p.Time != 12345 || p.WireLen != len(f) || !p.Is(packet.HasL4) || p.Key.DstPort != 443 {
		t.Fatalf("SetData: time %d wirelen %d flags %#x key %s", p.Time, p.WireLen, p.Flags, p.Key)
	}
	f[0] ^= 0xff
	if p.Data[0] == f[0] {
		t.Errorf("SetData did not copy the frame")
	}
	buf := &p.Data[:1][0]
	small := udpFrame(t, v6a, v6b, 1, 2, payload100)
	p.Clock = 9
	p.SetData(small[:70], 1, 1500)
	if &p.Data[:1][0] != buf {
		t.Errorf("SetData reallocated for a smaller frame")
	}
	if p.WireLen != 1500 || p.Clock != 0 || !p.Is(packet.IPv6|packet.HasL4|packet.Truncated) {
		t.Errorf("second SetData: wirelen %d clock %d flags %#x", p.WireLen, p.Clock, p.Flags)
	}
	big := make([]byte, 9000)
	copy(big, f)
	p.SetData(big, 2, 0)
	if len(p.Data) != 9000 || p.Is(packet.Truncated) != false {
		t.Errorf("jumbo SetData: len %d flags %#x", len(p.Data), p.Flags)
	}
	if allocs := testing.AllocsPerRun(100, func() { p.SetData(f, 3, 0) }); allocs != 0 {
		t.Errorf("SetData allocates %v times per call into a large enough buffer", allocs)
	}
}
