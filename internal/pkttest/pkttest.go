// Package pkttest builds valid frames for tests with gopacket and checks checksums.
package pkttest

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/snf-dev/snf/packet"
)

var (
	MACA = []byte{0x02, 0, 0, 0, 0, 1}
	MACB = []byte{0x02, 0, 0, 0, 0, 2}
)

// TCP flag sets for TCP.
const (
	SYN    = "S"
	SYNACK = "SA"
	ACK    = "A"
	FINACK = "FA"
	RST    = "R"
)

// UDP returns an Ethernet/IP/UDP frame (IPv4 or IPv6 by the addresses).
func UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	return Frame(src, dst, &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, payload)
}

// TCP returns an Ethernet/IP/TCP frame with the flags given as letters (S, A, F, R, P).
func TCP(src, dst netip.Addr, sport, dport uint16, flags string, payload []byte) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Window: 65535, Seq: 1000, Ack: 2000}
	for _, f := range flags {
		switch f {
		case 'S':
			t.SYN = true
		case 'A':
			t.ACK = true
		case 'F':
			t.FIN = true
		case 'R':
			t.RST = true
		case 'P':
			t.PSH = true
		default:
			panic("pkttest: bad TCP flag " + string(f))
		}
	}
	return Frame(src, dst, t, payload)
}

// Echo returns an ICMP (or ICMPv6) echo request (reply=false) or reply with identifier id.
func Echo(src, dst netip.Addr, id uint16, reply bool) []byte {
	if src.Is4() {
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		return Frame(src, dst, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: 1}, []byte("ping"))
	}
	typ := uint8(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	return Frame(src, dst, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)},
		append([]byte{byte(id >> 8), byte(id), 0, 1}, "ping"...))
}

// IPProto returns an IPv4 frame of another protocol (GRE = 47, …) with a payload.
func IPProto(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	return Frame(src, dst, nil, payload, layers.IPProtocol(proto))
}

// Frame serializes Ethernet, IPv4 or IPv6, l4 (nil for none) and payload with lengths and
// checksums computed.
func Frame(src, dst netip.Addr, l4 gopacket.SerializableLayer, payload []byte, proto ...layers.IPProtocol) []byte {
	eth := &layers.Ethernet{SrcMAC: MACA, DstMAC: MACB}
	var ip interface {
		gopacket.SerializableLayer
		gopacket.NetworkLayer
	}
	var p layers.IPProtocol
	switch l4.(type) {
	case *layers.TCP:
		p = layers.IPProtocolTCP
	case *layers.UDP:
		p = layers.IPProtocolUDP
	case *layers.ICMPv4:
		p = layers.IPProtocolICMPv4
	case *layers.ICMPv6:
		p = layers.IPProtocolICMPv6
	}
	if len(proto) > 0 {
		p = proto[0]
	}
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: p, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: p, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	ls := []gopacket.SerializableLayer{eth, ip}
	if l4 != nil {
		if c, ok := l4.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			c.SetNetworkLayerForChecksum(ip)
		}
		ls = append(ls, l4)
	}
	ls = append(ls, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// VerifyChecksums checks the IPv4 header checksum and the TCP, UDP, ICMP or ICMPv6
// checksum of a complete (not snaplen-cut) frame. It returns nil for frames it cannot
// check (non-IP, fragments).
func VerifyChecksums(frame []byte) error {
	var p packet.Packet
	p.Data = frame
	p.Parse()
	if !p.IP() || p.Flags&packet.Fragment != 0 {
		return nil
	}
	if p.Flags&packet.Truncated != 0 {
		return fmt.Errorf("frame is cut short; cannot verify")
	}
	l3 := int(p.L3Off)
	var end int
	var pseudo uint32
	if p.Flags&packet.IPv4 != 0 {
		ihl := int(frame[l3]&0xf) * 4
		if c := packet.Checksum(frame[l3:l3+ihl], 0); c != 0 {
			return fmt.Errorf("bad IPv4 header checksum")
		}
		end = l3 + int(binary.BigEndian.Uint16(frame[l3+2:]))
		pseudo = sum(frame[l3+12:l3+20]) + uint32(p.Proto) + uint32(end-int(p.L4Off))
	} else {
		end = l3 + 40 + int(binary.BigEndian.Uint16(frame[l3+4:]))
		pseudo = sum(frame[l3+8:l3+40]) + uint32(p.Proto) + uint32(end-int(p.L4Off))
	}
	if p.Flags&packet.HasL4 == 0 {
		return nil
	}
	l4 := frame[p.L4Off:end]
	switch p.Proto {
	case packet.ProtoUDP:
		if p.Flags&packet.IPv4 != 0 && binary.BigEndian.Uint16(l4[6:]) == 0 {
			return nil
		}
	case packet.ProtoICMP:
		pseudo = 0
	case packet.ProtoTCP, packet.ProtoICMPv6:
	default:
		return nil
	}
	if c := packet.Checksum(l4, pseudo); c != 0 {
		return fmt.Errorf("bad %s checksum", packet.ProtoName(p.Proto))
	}
	return nil
}

func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return s
}

// Batch returns packets holding frames, timestamps 1 ms apart from t0 and clocks from 1.
func Batch(t0 int64, frames ...[]byte) []packet.Packet {
	b := make([]packet.Packet, len(frames))
	for i, f := range frames {
		b[i].SetData(f, t0+int64(i)*1e6, 0)
		b[i].Clock = uint64(i + 1)
	}
	return b
}
