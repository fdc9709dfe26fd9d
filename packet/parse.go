package packet

import "encoding/binary"

// EtherTypes the parser knows.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeIPv6  = 0x86DD
	EtherTypeVLAN  = 0x8100
	EtherTypeQinQ  = 0x88A8
	ethHeaderLen   = 14
	maxVLANTags    = 2
	maxIPv6ExtHdrs = 8
)

// Parse decodes the frame in p.Data and sets Flags, EtherType, Proto, the offsets and Key.
// It never panics and never allocates. The rule for bad frames:
//   - shorter than an Ethernet header, or not IPv4/IPv6 after up to two VLAN tags: NonIP;
//   - IP EtherType but an IP or L4 header that is cut short or inconsistent: Malformed.
//
// Parse is a hand-written fast path over the headers snf needs; full decoding of anything
// else is gopacket's job (see BenchmarkParse* for why the hot path does not use gopacket).
func (p *Packet) Parse() {
	p.Flags, p.EtherType, p.Proto = 0, 0, 0
	p.L3Off, p.L4Off, p.PayloadOff = 0, 0, 0
	p.Key = Key{}
	d := p.Data
	if len(d) < ethHeaderLen {
		p.Flags = NonIP
		return
	}
	off := 12
	et := binary.BigEndian.Uint16(d[off:])
	for tags := 0; (et == EtherTypeVLAN || et == EtherTypeQinQ) && tags < maxVLANTags; tags++ {
		p.Flags |= VLAN
		off += 4
		if len(d) < off+2 {
			p.Flags = NonIP | VLAN
			return
		}
		et = binary.BigEndian.Uint16(d[off:])
	}
	off += 2
	p.EtherType = et
	p.L3Off = uint16(off)
	switch et {
	case EtherTypeIPv4:
		p.parseIPv4(d, off)
	case EtherTypeIPv6:
		p.parseIPv6(d, off)
	default:
		p.Flags |= NonIP
	}
}

func (p *Packet) parseIPv4(d []byte, off int) {
	if len(d) < off+20 || d[off]>>4 != 4 {
		p.Flags |= Malformed
		return
	}
	ihl := int(d[off]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(d[off+2:]))
	if ihl < 20 || len(d) < off+ihl || total < ihl {
		p.Flags |= Malformed
		return
	}
	p.Flags |= IPv4
	if len(d) < off+total {
		p.Flags |= Truncated
	}
	k := &p.Key
	copy(k.Src[:4], d[off+12:off+16])
	copy(k.Dst[:4], d[off+16:off+20])
	k.Proto = d[off+9]
	p.Proto = k.Proto
	l4 := off + ihl
	p.L4Off = uint16(l4)
	if binary.BigEndian.Uint16(d[off+6:])&0x1fff != 0 { // fragment offset
		p.Flags |= Fragment
		return
	}
	// L4 is bounded by the IP total length, not by Ethernet padding.
	end := off + total
	if end > len(d) {
		end = len(d)
	}
	p.parseL4(d[:end], l4)
}

func (p *Packet) parseIPv6(d []byte, off int) {
	if len(d) < off+40 || d[off]>>4 != 6 {
		p.Flags |= Malformed
		return
	}
	p.Flags |= IPv6
	plen := int(binary.BigEndian.Uint16(d[off+4:]))
	end := off + 40 + plen
	if end > len(d) {
		p.Flags |= Truncated
		end = len(d)
	}
	k := &p.Key
	k.V6 = true
	copy(k.Src[:], d[off+8:off+24])
	copy(k.Dst[:], d[off+24:off+40])
	next := d[off+6]
	l4 := off + 40
exts:
	for i := 0; i < maxIPv6ExtHdrs; i++ {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if end < l4+8 {
				p.malformed6()
				return
			}
			next, l4 = d[l4], l4+8+int(d[l4+1])*8
			continue
		case 44: // fragment
			if end < l4+8 {
				p.malformed6()
				return
			}
			fragOff := binary.BigEndian.Uint16(d[l4+2:]) &^ 7
			next, l4 = d[l4], l4+8
			if fragOff != 0 {
				k.Proto, p.Proto = next, next
				p.L4Off = uint16(l4)
				p.Flags |= Fragment
				return
			}
			continue
		}
		break exts // an L4 (or unknown) header: a plain break would only leave the switch
	}
	k.Proto, p.Proto = next, next
	if l4 > end {
		p.malformed6()
		return
	}
	p.L4Off = uint16(l4)
	p.parseL4(d[:end], l4)
}

// malformed6 marks an IPv6 packet whose extension headers are cut short or run past the
// packet: Malformed, with no key (as for every Malformed packet).
func (p *Packet) malformed6() {
	p.Flags = p.Flags&^IPv6 | Malformed
	p.Key = Key{}
}

// parseL4 reads the L4 header at off; d ends where the IP packet (as captured) ends.
func (p *Packet) parseL4(d []byte, off int) {
	k := &p.Key
	var hl int
	switch p.Proto {
	case ProtoTCP:
		if len(d) < off+20 {
			break
		}
		hl = int(d[off+12]>>4) * 4
		if hl < 20 || len(d) < off+hl {
			hl = 0 // a data offset below 5 words is as malformed as one past the packet
			break
		}
		k.SrcPort = binary.BigEndian.Uint16(d[off:])
		k.DstPort = binary.BigEndian.Uint16(d[off+2:])
	case ProtoUDP:
		hl = 8
		if len(d) < off+hl {
			break
		}
		k.SrcPort = binary.BigEndian.Uint16(d[off:])
		k.DstPort = binary.BigEndian.Uint16(d[off+2:])
	case ProtoICMP, ProtoICMPv6:
		hl = 8
		if len(d) < off+hl {
			break
		}
		if isEcho(p.Proto, d[off]) {
			id := binary.BigEndian.Uint16(d[off+4:])
			k.SrcPort, k.DstPort = id, id
		}
	default:
		// Another protocol: the 5-tuple is the address pair and protocol.
		return
	}
	if hl == 0 || len(d) < off+hl {
		p.Flags = p.Flags&^(IPv4|IPv6) | Malformed
		p.Key = Key{}
		return
	}
	p.Flags |= HasL4
	p.PayloadOff = uint16(off + hl)
}

// isEcho reports whether an ICMP type is an echo request or reply.
func isEcho(proto, typ uint8) bool {
	if proto == ProtoICMP {
		return typ == 8 || typ == 0
	}
	return typ == 128 || typ == 129
}

// IsEcho reports whether p is an ICMP or ICMPv6 echo request or reply.
func (p *Packet) IsEcho() bool {
	return p.Flags&HasL4 != 0 && (p.Proto == ProtoICMP || p.Proto == ProtoICMPv6) && isEcho(p.Proto, p.Data[p.L4Off])
}
