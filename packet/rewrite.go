package packet

import (
	"encoding/binary"
	"net/netip"
)

// Header rewrites change the frame in place and update the IPv4 header checksum and the L4
// checksum incrementally (RFC 1624: HC' = ~(~HC + ~m + m')), so the cost does not depend on
// the packet's length and a snaplen-cut capture stays consistent. Key follows the rewrite.

// csumAdjust returns checksum sum updated for a 16-bit word changing from old to new.
func csumAdjust(sum, old, new uint16) uint16 {
	s := uint32(^sum) + uint32(^old) + uint32(new)
	s = (s & 0xffff) + (s >> 16)
	s = (s & 0xffff) + (s >> 16)
	return ^uint16(s)
}

// adjustAt applies csumAdjust to the big-endian checksum stored at b[off:off+2].
func adjustAt(b []byte, off int, old, new uint16) {
	c := binary.BigEndian.Uint16(b[off:])
	binary.BigEndian.PutUint16(b[off:], csumAdjust(c, old, new))
}

// l4CsumOff returns the offset of the L4 checksum, whether it covers the IP pseudo-header,
// and ok=false when there is none to update (no complete L4 header, or UDP/IPv4 with the
// checksum disabled).
func (p *Packet) l4CsumOff() (off int, pseudo, ok bool) {
	if p.Flags&HasL4 == 0 {
		return 0, false, false
	}
	l4 := int(p.L4Off)
	switch p.Proto {
	case ProtoTCP:
		return l4 + 16, true, true
	case ProtoUDP:
		if p.Flags&IPv4 != 0 && binary.BigEndian.Uint16(p.Data[l4+6:]) == 0 {
			return 0, false, false
		}
		return l4 + 6, true, true
	case ProtoICMP:
		return l4 + 2, false, true
	case ProtoICMPv6:
		return l4 + 2, true, true
	}
	return 0, false, false
}

// fixUDPZero keeps a UDP checksum from becoming 0 (which means "none" over IPv4).
func (p *Packet) fixUDPZero(off int) {
	if p.Proto == ProtoUDP && binary.BigEndian.Uint16(p.Data[off:]) == 0 {
		binary.BigEndian.PutUint16(p.Data[off:], 0xffff)
	}
}

// rewriteWords replaces the 16-bit words at b[at:at+len(new)] and folds each change into
// the IPv4 header checksum (when ipCsum >= 0) and the L4 checksum (when l4 >= 0).
func rewriteWords(b []byte, at int, new []byte, ipCsum, l4 int) {
	for i := 0; i+1 < len(new); i += 2 {
		o := binary.BigEndian.Uint16(b[at+i:])
		n := binary.BigEndian.Uint16(new[i:])
		if o == n {
			continue
		}
		if ipCsum >= 0 {
			adjustAt(b, ipCsum, o, n)
		}
		if l4 >= 0 {
			adjustAt(b, l4, o, n)
		}
		binary.BigEndian.PutUint16(b[at+i:], n)
	}
}

// Rewritable returns the length of the frame's prefix that the rewrites (SetSrcAddr,
// SetDstAddr, SetSrcPort, SetDstPort, SetEchoID) may change: the IP header's addresses and
// checksum (an IPv6 header's first 40 bytes) and, with an L4 header, up to its payload — at
// most len(Data). Bytes past it are never written by the rewrites: a packet log that lends
// its frames to be rewritten in place keeps a copy of this prefix only (replay.Log.Keep,
// Entry.Prepare).
func (p *Packet) Rewritable() int {
	if p.Flags&(IPv4|IPv6) == 0 {
		return 0 // not IP: nothing to rewrite
	}
	n := int(p.L3Off) + 40
	if p.Flags&HasL4 != 0 {
		n = max(n, int(p.PayloadOff))
	}
	return min(n, len(p.Data))
}

// SetSrcAddr rewrites the source address. It returns false (and changes nothing) when the
// packet is not IP or a is of the other family.
func (p *Packet) SetSrcAddr(a netip.Addr) bool { return p.setAddr(a, true) }

// SetDstAddr rewrites the destination address, as SetSrcAddr.
func (p *Packet) SetDstAddr(a netip.Addr) bool { return p.setAddr(a, false) }

func (p *Packet) setAddr(a netip.Addr, src bool) bool {
	l3 := int(p.L3Off)
	l4, pseudo, ok := p.l4CsumOff()
	if !ok || !pseudo {
		l4 = -1
	}
	switch {
	case p.Flags&IPv4 != 0 && a.Is4():
		b := a.As4()
		at := l3 + 16
		if src {
			at = l3 + 12
		}
		rewriteWords(p.Data, at, b[:], l3+10, l4)
		if src {
			copy(p.Key.Src[:4], b[:])
		} else {
			copy(p.Key.Dst[:4], b[:])
		}
	case p.Flags&IPv6 != 0 && a.Is6() && !a.Is4In6():
		b := a.As16()
		at := l3 + 24
		if src {
			at = l3 + 8
		}
		rewriteWords(p.Data, at, b[:], -1, l4)
		if src {
			p.Key.Src = b
		} else {
			p.Key.Dst = b
		}
	default:
		return false
	}
	if l4 >= 0 {
		p.fixUDPZero(l4)
	}
	return true
}

// SetSrcPort rewrites the TCP or UDP source port; false when the packet has none.
func (p *Packet) SetSrcPort(port uint16) bool { return p.setPort(port, 0) }

// SetDstPort rewrites the TCP or UDP destination port; false when the packet has none.
func (p *Packet) SetDstPort(port uint16) bool { return p.setPort(port, 2) }

func (p *Packet) setPort(port uint16, at int) bool {
	if p.Proto != ProtoTCP && p.Proto != ProtoUDP {
		return false
	}
	l4, _, ok := p.l4CsumOff()
	if p.Flags&HasL4 == 0 {
		return false
	}
	if !ok {
		l4 = -1
	}
	var w [2]byte
	binary.BigEndian.PutUint16(w[:], port)
	rewriteWords(p.Data, int(p.L4Off)+at, w[:], -1, l4)
	if l4 >= 0 {
		p.fixUDPZero(l4)
	}
	if at == 0 {
		p.Key.SrcPort = port
	} else {
		p.Key.DstPort = port
	}
	return true
}

// EchoID returns the identifier of an ICMP/ICMPv6 echo request or reply.
func (p *Packet) EchoID() (uint16, bool) {
	if !p.IsEcho() {
		return 0, false
	}
	return binary.BigEndian.Uint16(p.Data[p.L4Off+4:]), true
}

// SetEchoID rewrites the identifier of an ICMP/ICMPv6 echo (both key ports follow it).
func (p *Packet) SetEchoID(id uint16) bool {
	if !p.IsEcho() {
		return false
	}
	var w [2]byte
	binary.BigEndian.PutUint16(w[:], id)
	rewriteWords(p.Data, int(p.L4Off)+4, w[:], -1, int(p.L4Off)+2)
	p.Key.SrcPort, p.Key.DstPort = id, id
	return true
}

// Checksum computes the Internet checksum (RFC 1071) of b folded onto initial.
func Checksum(b []byte, initial uint32) uint16 {
	// A 64-bit accumulator: 32 bits overflow (and lose carries) past 128 KiB of input.
	s := uint64(initial)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		s += v>>48 + v>>32&0xffff + v>>16&0xffff + v&0xffff
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	for s > 0xffff {
		s = (s & 0xffff) + (s >> 16)
	}
	return ^uint16(s)
}
