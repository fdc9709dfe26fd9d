package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Key is a directional 5-tuple. IPv4 addresses occupy the first four bytes of Src and Dst
// (the rest are zero). For ICMP/ICMPv6 echo, both ports hold the echo identifier so that a
// reply's key is the reverse of its request's; other ICMP messages have zero ports.
// Key is comparable and is used directly as a map key.
type Key struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
	V6               bool
}

// Reverse returns the key of the opposite direction.
func (k Key) Reverse() Key {
	k.Src, k.Dst = k.Dst, k.Src
	k.SrcPort, k.DstPort = k.DstPort, k.SrcPort
	return k
}

// Canonical returns the direction-independent form of k: the same value for both directions
// of a flow (the endpoint that sorts lower first), and whether k had to be reversed to get it.
func (k Key) Canonical() (Key, bool) {
	if k.less() {
		return k, false
	}
	return k.Reverse(), true
}

func (k Key) less() bool {
	for i := range k.Src {
		if k.Src[i] != k.Dst[i] {
			return k.Src[i] < k.Dst[i]
		}
	}
	return k.SrcPort <= k.DstPort
}

// Hash returns a 64-bit hash of k that is the same for both directions of the flow.
// It is stable across processes and runs (dispatch decisions may depend on it).
//
// Each endpoint (address, port) is hashed on its own and the two hashes are added, which is
// symmetric without losing information: combining the raw addresses with XOR, as an earlier
// version did, made every pair (A, B) collide with (A^x, B^x) for any x.
func (k Key) Hash() uint64 {
	h := endpointHash(&k.Src, k.SrcPort) + endpointHash(&k.Dst, k.DstPort)
	return mix(h ^ uint64(k.Proto)<<32 ^ 0x9e3779b97f4a7c15)
}

// endpointHash hashes one endpoint of a key.
func endpointHash(a *[16]byte, port uint16) uint64 {
	lo := binary.LittleEndian.Uint64(a[0:])
	hi := binary.LittleEndian.Uint64(a[8:])
	// The port joins after the address is mixed: XORed into raw address bits it would make
	// (address, port) pairs that differ by the same bits collide.
	return mix(mix(mix(lo^0x2545f4914f6cdd1d)^hi) ^ uint64(port))
}

// mix is the splitmix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// SrcAddr returns the source address.
func (k Key) SrcAddr() netip.Addr { return k.addr(&k.Src) }

// DstAddr returns the destination address.
func (k Key) DstAddr() netip.Addr { return k.addr(&k.Dst) }

func (k Key) addr(b *[16]byte) netip.Addr {
	if k.V6 {
		return netip.AddrFrom16(*b)
	}
	return netip.AddrFrom4([4]byte(b[:4]))
}

// KeyFrom builds a key from addresses (both of one family) and ports.
func KeyFrom(src, dst netip.Addr, sport, dport uint16, proto uint8) Key {
	k := Key{SrcPort: sport, DstPort: dport, Proto: proto, V6: src.Is6() && !src.Is4In6()}
	if k.V6 {
		k.Src, k.Dst = src.As16(), dst.As16()
	} else {
		s, d := src.Unmap().As4(), dst.Unmap().As4()
		copy(k.Src[:], s[:])
		copy(k.Dst[:], d[:])
	}
	return k
}

// String formats k as "proto src:sport > dst:dport".
func (k Key) String() string {
	return fmt.Sprintf("%s %s > %s", ProtoName(k.Proto),
		netip.AddrPortFrom(k.SrcAddr(), k.SrcPort), netip.AddrPortFrom(k.DstAddr(), k.DstPort))
}

// ProtoName names common IP protocols ("tcp", "udp", "icmp", "icmpv6"), else the number.
func ProtoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	}
	return fmt.Sprintf("proto-%d", p)
}
