package snf_test

import (
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	macA = []byte{0, 1, 2, 3, 4, 5}
	macB = []byte{0, 1, 2, 3, 4, 6}
)

// udpFrame builds a valid Ethernet/IPv4/UDP frame with a small payload.
func udpFrame(src, dst netip.Addr, sport, dport uint16) []byte {
	return frame(src, dst, &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, []byte("payload"))
}

// tcpFrame builds a valid Ethernet/IPv4/TCP frame.
func tcpFrame(src, dst netip.Addr, sport, dport uint16, syn, ack, fin, rst bool) []byte {
	return frame(src, dst, &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport),
		SYN: syn, ACK: ack, FIN: fin, RST: rst, Window: 1000}, nil)
}

func frame(src, dst netip.Addr, l4 gopacket.SerializableLayer, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	switch l := l4.(type) {
	case *layers.UDP:
		ip.Protocol = layers.IPProtocolUDP
		l.SetNetworkLayerForChecksum(ip)
	case *layers.TCP:
		ip.Protocol = layers.IPProtocolTCP
		l.SetNetworkLayerForChecksum(ip)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, l4, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
