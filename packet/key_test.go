package packet_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"testing/quick"

	"github.com/snf-dev/snf/packet"
)

func randKey(r *rand.Rand) packet.Key {
	protos := []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoICMPv6, 47}
	proto := protos[r.IntN(len(protos))]
	sp, dp := uint16(r.Uint32()), uint16(r.Uint32())
	if r.IntN(8) == 0 {
		dp = sp // equal ports happen (ICMP echo, DNS 53↔53)
	}
	if r.IntN(2) == 0 {
		a, b := randAddr4(r), randAddr4(r)
		if r.IntN(8) == 0 {
			b = a
		}
		return packet.KeyFrom(a, b, sp, dp, proto)
	}
	a, b := randAddr6(r), randAddr6(r)
	if r.IntN(8) == 0 {
		b = a
	}
	return packet.KeyFrom(a, b, sp, dp, proto)
}

func TestKeyReverseCanonicalHash(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 100000 {
		k := randKey(r)
		rev := k.Reverse()
		if rev.Reverse() != k {
			t.Fatalf("%s: Reverse twice is not the identity", k)
		}
		if rev.Src != k.Dst || rev.Dst != k.Src || rev.SrcPort != k.DstPort || rev.DstPort != k.SrcPort || rev.Proto != k.Proto || rev.V6 != k.V6 {
			t.Fatalf("%s: Reverse = %s", k, rev)
		}
		c1, r1 := k.Canonical()
		c2, r2 := rev.Canonical()
		if c1 != c2 {
			t.Fatalf("%s: canonical forms differ by direction: %s / %s", k, c1, c2)
		}
		if c1 != k && c1 != rev {
			t.Fatalf("%s: canonical form %s is neither direction", k, c1)
		}
		if (c1 == k) == r1 || (c2 == rev) == r2 {
			t.Fatalf("%s: reversed flags %v/%v inconsistent", k, r1, r2)
		}
		if k != rev && r1 == r2 {
			t.Fatalf("%s: both directions claim reversed=%v", k, r1)
		}
		if k.Hash() != rev.Hash() {
			t.Fatalf("%s: hash differs by direction", k)
		}
		if c1.Hash() != k.Hash() {
			t.Fatalf("%s: canonical key hashes differently", k)
		}
	}
}

func TestKeyCanonicalQuick(t *testing.T) {
	f := func(src, dst [16]byte, sp, dp uint16, proto uint8, v6 bool) bool {
		k := packet.Key{Src: src, Dst: dst, SrcPort: sp, DstPort: dp, Proto: proto, V6: v6}
		c1, _ := k.Canonical()
		c2, _ := k.Reverse().Canonical()
		return c1 == c2 && k.Hash() == k.Reverse().Hash()
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 20000, Rand: nil}); err != nil {
		t.Error(err)
	}
}

// TestKeyHashSpread: distinct flows rarely share a hash, and nearby flows (one port or one
// address bit apart) do not.
func TestKeyHashSpread(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	seen := make(map[uint64]packet.Key)
	coll := 0
	for range 200000 {
		k := randKey(r)
		c, _ := k.Canonical()
		if o, ok := seen[k.Hash()]; ok && o != c {
			coll++
		}
		seen[k.Hash()] = c
	}
	if coll > 0 {
		t.Errorf("%d 64-bit hash collisions among 200000 random flows", coll)
	}
	base := packet.KeyFrom(v4a, v4b, 40000, 443, packet.ProtoTCP)
	hs := map[uint64]bool{base.Hash(): true}
	for i := range 1000 {
		k := base
		k.SrcPort += uint16(i + 1)
		hs[k.Hash()] = true
		k = base
		k.Src[3] ^= byte(i + 1)
		k.Src[2] ^= byte((i + 1) >> 8)
		hs[k.Hash()] = true
	}
	if len(hs) != 2001 {
		t.Errorf("nearby flows share hashes: %d distinct of 2001", len(hs))
	}
	// A flow's low bits (used to pick a shard) spread evenly.
	var buckets [16]int
	for i := range 16000 {
		k := base
		k.SrcPort = uint16(i)
		buckets[k.Hash()&15]++
	}
	for b, n := range buckets {
		if n < 800 || n > 1200 {
			t.Errorf("bucket %d holds %d of 16000 flows", b, n)
		}
	}
}

// TestKeyHashNoXORCollisions: flows whose endpoints differ by the same bits on both sides
// (10.0.0.1→10.0.1.1 and 10.0.0.2→10.0.1.2), and flows from a host to itself, must not
// share a hash (an XOR of the two addresses would make them all collide).
func TestKeyHashNoXORCollisions(t *testing.T) {
	a := packet.KeyFrom(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.1"), 5000, 80, packet.ProtoTCP)
	b := packet.KeyFrom(netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.1.2"), 5000, 80, packet.ProtoTCP)
	if a.Hash() == b.Hash() {
		t.Errorf("%s and %s share hash %#x", a, b, a.Hash())
	}
	hs := map[uint64]bool{}
	for i := range 1000 {
		x := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		hs[packet.KeyFrom(x, x, 1, 2, packet.ProtoUDP).Hash()] = true
		y := netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 0, 0, byte(i >> 8), byte(i), 15: 1})
		hs[packet.KeyFrom(y, y, 1, 2, packet.ProtoUDP).Hash()] = true
		// IPv6 address bits next to where a port could be folded in.
		z := netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, byte(i >> 8), byte(i), 15: 1})
		hs[packet.KeyFrom(z, y, uint16(i), 2, packet.ProtoUDP).Hash()] = true
	}
	if len(hs) != 3000 {
		t.Errorf("self-flows and port/address variants: %d distinct hashes of 3000", len(hs))
	}
}

// TestKeyHashStable pins Hash values: dispatch decisions depend on them, so they must not
// change between builds, processes or runs.
func TestKeyHashStable(t *testing.T) {
	for _, c := range []struct {
		k    packet.Key
		want uint64
	}{
		{packet.KeyFrom(v4a, v4b, 40000, 443, packet.ProtoTCP), 0xfbc0a77750305743},
		{packet.KeyFrom(v6a, v6b, 5353, 53, packet.ProtoUDP), 0xc21a3148940b2910},
	} {
		if got := c.k.Hash(); got != c.want {
			t.Errorf("%s: Hash %#x, want %#x", c.k, got, c.want)
		}
		if got := c.k.Reverse().Hash(); got != c.want {
			t.Errorf("%s reversed: Hash %#x, want %#x", c.k, got, c.want)
		}
	}
}

func TestKeyFromAddrRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 10000 {
		var a, b netip.Addr
		if r.IntN(2) == 0 {
			a, b = randAddr4(r), randAddr4(r)
		} else {
			a, b = randAddr6(r), randAddr6(r)
		}
		sp, dp := uint16(r.Uint32()), uint16(r.Uint32())
		k := packet.KeyFrom(a, b, sp, dp, packet.ProtoUDP)
		if k.SrcAddr() != a || k.DstAddr() != b || k.SrcPort != sp || k.DstPort != dp || k.Proto != packet.ProtoUDP {
			t.Fatalf("KeyFrom(%v, %v, %d, %d) = %s", a, b, sp, dp, k)
		}
		if k.V6 != a.Is6() {
			t.Fatalf("%v: V6 = %v", a, k.V6)
		}
		if a.Is4() {
			for _, x := range [][16]byte{k.Src, k.Dst} {
				if [12]byte(x[4:]) != [12]byte{} {
					t.Fatalf("IPv4 key with bytes past the address: %x", x)
				}
			}
		}
		if rk := k.Reverse(); rk.SrcAddr() != b || rk.DstAddr() != a {
			t.Fatalf("reverse addresses %v > %v", rk.SrcAddr(), rk.DstAddr())
		}
	}
	// IPv4-mapped IPv6 addresses make an IPv4 key equal to the plain IPv4 one.
	m := packet.KeyFrom(netip.AddrFrom16(v4a.As16()), netip.AddrFrom16(v4b.As16()), 1, 2, packet.ProtoTCP)
	if m != packet.KeyFrom(v4a, v4b, 1, 2, packet.ProtoTCP) {
		t.Errorf("IPv4-mapped key %s differs from the IPv4 key", m)
	}
	// A parsed key equals KeyFrom of the frame's addresses.
	if p := parsed(udpFrame(t, v6a, v6b, 1, 2, nil)); p.Key != packet.KeyFrom(v6a, v6b, 1, 2, packet.ProtoUDP) {
		t.Errorf("parsed key %s", p.Key)
	}
}

func TestKeyString(t *testing.T) {
	for _, c := range []struct {
		k    packet.Key
		want string
	}{
		{packet.KeyFrom(v4a, v4b, 40000, 443, packet.ProtoTCP), "tcp 192.0.2.1:40000 > 198.51.100.7:443"},
		{packet.KeyFrom(v6a, v6b, 5353, 53, packet.ProtoUDP), "udp [2001:db8::1]:5353 > [2001:db8:ffff::2]:53"},
		{packet.KeyFrom(v4a, v4b, 7, 7, packet.ProtoICMP), "icmp 192.0.2.1:7 > 198.51.100.7:7"},
		{packet.KeyFrom(v6a, v6b, 0, 0, packet.ProtoICMPv6), "icmpv6 [2001:db8::1]:0 > [2001:db8:ffff::2]:0"},
		{packet.KeyFrom(v4a, v4b, 0, 0, 47), "proto-47 192.0.2.1:0 > 198.51.100.7:0"},
	} {
		if got := c.k.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
	if packet.ProtoName(132) != "proto-132" || packet.ProtoName(packet.ProtoTCP) != "tcp" {
		t.Errorf("ProtoName")
	}
}
