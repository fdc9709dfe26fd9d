package packet_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/snf-dev/snf/packet"
)

// flowSpec describes a generated frame; build makes it with gopacket (checksums computed
// from scratch), so a rewritten frame can be compared byte for byte with a fresh one.
type flowSpec struct {
	kind     string // "tcp", "udp", "echo"
	src, dst netip.Addr
	sp, dp   uint16 // ports, or sp = echo identifier
	reply    bool
	payload  []byte
}

func (s flowSpec) build(tb testing.TB) []byte {
	tb.Helper()
	switch s.kind {
	case "tcp":
		return tcpFrame(tb, s.src, s.dst, s.sp, s.dp, s.payload)
	case "udp":
		return udpFrame(tb, s.src, s.dst, s.sp, s.dp, s.payload)
	case "echo":
		return echoFrame(tb, s.src, s.dst, s.sp, 99, s.reply, s.payload)
	}
	tb.Fatalf("unknown kind %q", s.kind)
	return nil
}

func (s flowSpec) String() string {
	return fmt.Sprintf("%s %v:%d > %v:%d", s.kind, s.src, s.sp, s.dst, s.dp)
}

// checkFullChecksums verifies the IPv4 header checksum and the L4 checksum of p against a
// recomputation from scratch.
func checkFullChecksums(t testing.TB, p *packet.Packet, what string) {
	t.Helper()
	if p.Is(packet.IPv4) {
		l3 := int(p.L3Off)
		if got, want := binary.BigEndian.Uint16(p.Data[l3+10:]), ip4HeaderChecksum(p); got != want {
			t.Errorf("%s: IPv4 header checksum %#04x, recomputed %#04x", what, got, want)
		}
	}
	if off, _, ok := l4CsumField(p); ok {
		got := binary.BigEndian.Uint16(p.Data[off:])
		if p.Proto == packet.ProtoUDP && p.Is(packet.IPv4) && got == 0 {
			return // no checksum
		}
		if want, ok := l4Checksum(p); ok && got != want {
			t.Errorf("%s: L4 checksum %#04x, recomputed %#04x", what, got, want)
		}
	}
}

// rewriteTo applies the rewrites that turn from into to, checking each return value.
func rewriteTo(t testing.TB, p *packet.Packet, from, to flowSpec) {
	t.Helper()
	if !p.SetSrcAddr(to.src) {
		t.Fatalf("%v: SetSrcAddr(%v) = false", from, to.src)
	}
	if !p.SetDstAddr(to.dst) {
		t.Fatalf("%v: SetDstAddr(%v) = false", from, to.dst)
	}
	if from.kind == "echo" {
		if !p.SetEchoID(to.sp) {
			t.Fatalf("%v: SetEchoID = false", from)
		}
		if p.SetSrcPort(to.sp) || p.SetDstPort(to.sp) {
			t.Fatalf("%v: SetSrcPort/SetDstPort on ICMP = true", from)
		}
		return
	}
	if !p.SetSrcPort(to.sp) || !p.SetDstPort(to.dp) {
		t.Fatalf("%v: SetSrcPort/SetDstPort = false", from)
	}
	if p.SetEchoID(1) {
		t.Fatalf("%v: SetEchoID on %s = true", from, from.kind)
	}
}

// wantKey is the key Parse gives a frame built from s.
func (s flowSpec) wantKey() packet.Key {
	switch s.kind {
	case "tcp":
		return packet.KeyFrom(s.src, s.dst, s.sp, s.dp, packet.ProtoTCP)
	case "udp":
		return packet.KeyFrom(s.src, s.dst, s.sp, s.dp, packet.ProtoUDP)
	}
	proto := uint8(packet.ProtoICMP)
	if s.src.Is6() {
		proto = packet.ProtoICMPv6
	}
	return packet.KeyFrom(s.src, s.dst, s.sp, s.sp, proto)
}

// TestRewriteMatchesFreshFrame is the property test: a frame rewritten in place (with
// incremental checksum updates) is byte for byte the frame gopacket builds from scratch
// with the new addresses and ports, for many random values. Each single rewrite is checked
// against a full checksum recomputation, and snaplen-cut copies are rewritten too.
func TestRewriteMatchesFreshFrame(t *testing.T) {
	r := rand.New(rand.NewPCG(2024, 6))
	n := 1500
	if testing.Short() {
		n = 200
	}
	for i := range n {
		v6 := i%2 == 1
		kind := []string{"tcp", "udp", "echo"}[i%3]
		addr := randAddr4
		if v6 {
			addr = randAddr6
		}
		pl := make([]byte, r.IntN(200))
		for j := range pl {
			pl[j] = byte(r.Uint32())
		}
		from := flowSpec{kind: kind, src: addr(r), dst: addr(r), sp: uint16(r.Uint32()), dp: uint16(r.Uint32()), reply: r.IntN(2) == 0, payload: pl}
		to := from
		to.src, to.dst, to.sp, to.dp = addr(r), addr(r), uint16(r.Uint32()), uint16(r.Uint32())
		switch r.IntN(4) { // some rewrites change only part of a field or nothing
		case 0:
			to.src = from.src
		case 1:
			b := from.dst.AsSlice()
			b[len(b)-1]++
			to.dst, _ = netip.AddrFromSlice(b)
		case 2:
			to.sp = from.sp
		}

		orig := from.build(t)
		want := to.build(t)
		data := append([]byte(nil), orig...)
		p := parsed(data)
		rewriteTo(t, p, from, to)
		if !bytes.Equal(data, want) {
			t.Fatalf("%v → %v: rewritten frame differs from a fresh one\n got % x\nwant % x", from, to, data, want)
		}
		if p.Key != to.wantKey() {
			t.Fatalf("%v → %v: Key %s after the rewrite, want %s", from, to, p.Key, to.wantKey())
		}

		// One rewrite at a time, each checked against a full recomputation.
		data = append(data[:0], orig...)
		p = parsed(data)
		steps := []func() bool{
			func() bool { return p.SetSrcAddr(to.src) },
			func() bool { return p.SetDstAddr(to.dst) },
			func() bool { return p.SetSrcPort(to.sp) },
			func() bool { return p.SetDstPort(to.dp) },
			func() bool { return p.SetEchoID(to.sp) },
		}
		for j, step := range steps {
			step()
			checkFullChecksums(t, p, fmt.Sprintf("%v → %v step %d", from, to, j))
		}

		// A snaplen-cut copy: the same rewrite gives the same prefix as the fresh frame.
		cut := int(p.PayloadOff) + len(pl)/2
		if cut < ipEnd(parsed(orig)) { // gopacket pads short frames: cut payload, not padding
			data = append(data[:0], orig[:cut]...)
			p = parsed(data)
			if !p.Is(packet.Truncated | packet.HasL4) {
				t.Fatalf("%v cut to %d: flags %#x", from, cut, p.Flags)
			}
			rewriteTo(t, p, from, to)
			if !bytes.Equal(data, want[:cut]) {
				t.Fatalf("%v → %v cut to %d: rewritten prefix differs from a fresh frame's", from, to, cut)
			}
		}
	}
}

// TestRewriteUDPChecksum covers the two UDP special cases: a zero checksum over IPv4 means
// "none" and stays zero, and a computed checksum of zero is sent as 0xffff.
func TestRewriteUDPChecksum(t *testing.T) {
	t.Run("zero stays zero", func(t *testing.T) {
		data := udpFrame(t, v4a, v4b, 5353, 53, payload100)
		data[34+6], data[34+7] = 0, 0
		p := parsed(data)
		if !p.SetSrcAddr(v4b) || !p.SetDstAddr(v4a) || !p.SetSrcPort(1) || !p.SetDstPort(2) {
			t.Fatal("rewrite refused")
		}
		if c := binary.BigEndian.Uint16(data[34+6:]); c != 0 {
			t.Errorf("UDP checksum %#04x after rewrite, want 0 (none)", c)
		}
		checkFullChecksums(t, p, "UDP without checksum")
		want := udpFrame(t, v4b, v4a, 1, 2, payload100)
		want[34+6], want[34+7] = 0, 0
		if !bytes.Equal(data, want) {
			t.Errorf("rewritten frame differs from a fresh one")
		}
	})
	for _, fam := range [][2]netip.Addr{{v4a, v4b}, {v6a, v6b}} {
		t.Run("computed zero is 0xffff/"+fam[0].String(), func(t *testing.T) {
			// Find the source port whose checksum computes to zero by rewriting port 0.
			base := udpFrame(t, fam[0], fam[1], 0, 53, payload100[:33])
			p := parsed(append([]byte(nil), base...))
			off := int(p.L4Off) + 6
			found := -1
			for port := 1; port < 1<<16; port++ {
				p.SetSrcPort(uint16(port))
				if c := binary.BigEndian.Uint16(p.Data[off:]); c == 0 {
					t.Fatalf("port %d: UDP checksum became 0", port)
				} else if c == 0xffff {
					found = port
					break
				}
			}
			if found < 0 {
				t.Fatal("no port gives a zero checksum")
			}
			want := udpFrame(t, fam[0], fam[1], uint16(found), 53, payload100[:33])
			if !bytes.Equal(p.Data, want) {
				t.Errorf("port %d: rewritten frame differs from a fresh one (checksum %#04x, fresh %#04x)",
					found, binary.BigEndian.Uint16(p.Data[off:]), binary.BigEndian.Uint16(want[off:]))
			}
			checkFullChecksums(t, p, "UDP with a computed zero checksum")
			// And away from it again.
			p.SetSrcPort(7)
			if !bytes.Equal(p.Data, udpFrame(t, fam[0], fam[1], 7, 53, payload100[:33])) {
				t.Errorf("rewriting away from a 0xffff checksum differs from a fresh frame")
			}
		})
	}
}

// TestRewriteRefused: rewrites that do not apply return false and change nothing.
func TestRewriteRefused(t *testing.T) {
	check := func(name string, frame []byte, fn func(p *packet.Packet) bool) {
		t.Helper()
		data := append([]byte(nil), frame...)
		p := parsed(data)
		key := p.Key
		if fn(p) {
			t.Errorf("%s: rewrite returned true", name)
		}
		if !bytes.Equal(data, frame) || p.Key != key {
			t.Errorf("%s: a refused rewrite changed the packet", name)
		}
	}
	t4 := tcpFrame(t, v4a, v4b, 1, 2, nil)
	t6 := tcpFrame(t, v6a, v6b, 1, 2, nil)
	mapped := netip.AddrFrom16(v4a.As16())
	check("v6 address on IPv4", t4, func(p *packet.Packet) bool { return p.SetSrcAddr(v6a) })
	check("v4-mapped address on IPv4", t4, func(p *packet.Packet) bool { return p.SetDstAddr(mapped) })
	check("v4 address on IPv6", t6, func(p *packet.Packet) bool { return p.SetDstAddr(v4a) })
	check("v4-mapped address on IPv6", t6, func(p *packet.Packet) bool { return p.SetSrcAddr(mapped) })
	check("invalid address", t4, func(p *packet.Packet) bool { return p.SetSrcAddr(netip.Addr{}) })
	check("echo id on TCP", t4, func(p *packet.Packet) bool { return p.SetEchoID(5) })
	check("port on ICMP", echoFrame(t, v4a, v4b, 1, 1, false, nil), func(p *packet.Packet) bool { return p.SetSrcPort(5) || p.SetDstPort(5) })
	unreach := parseCaseByName(t, "icmp/dest-unreachable")
	check("echo id on an ICMP error", unreach, func(p *packet.Packet) bool { return p.SetEchoID(5) })
	for _, name := range []string{"arp", "runt", "ipv4/ihl-4", "ipv4/tcp/l4-header-cut", "tcp/data-offset-3", "ipv6/ext-header-too-long"} {
		f := parseCaseByName(t, name)
		check(name, f, func(p *packet.Packet) bool {
			return p.SetSrcAddr(v4a) || p.SetDstAddr(v6a) || p.SetSrcPort(1) || p.SetDstPort(1) || p.SetEchoID(1)
		})
	}
	for _, name := range []string{"ipv4/fragment-last", "ipv6/hbh+fragment-non-first", "ipv4/gre"} {
		check(name+" ports", parseCaseByName(t, name), func(p *packet.Packet) bool { return p.SetSrcPort(1) || p.SetDstPort(1) })
	}
}

func parseCaseByName(t testing.TB, name string) []byte {
	t.Helper()
	for _, c := range parseCases(t) {
		if c.name == name {
			return c.frame
		}
	}
	t.Fatalf("no parse case %q", name)
	return nil
}

// TestRewriteFragments: address rewrites of fragments update the IPv4 header checksum and
// leave the L4 bytes (which are not there, or are covered by a checksum over the whole
// datagram) alone; a first fragment's L4 checksum is updated like any other.
func TestRewriteFragments(t *testing.T) {
	for _, name := range []string{"ipv4/fragment-last", "ipv4/fragment-middle/tcp", "ipv6/hbh+fragment-non-first"} {
		orig := parseCaseByName(t, name)
		data := append([]byte(nil), orig...)
		p := parsed(data)
		src, dst := v4b, v4a
		if p.Is(packet.IPv6) {
			src, dst = v6b, v6a
		}
		if !p.SetSrcAddr(src) || !p.SetDstAddr(dst) {
			t.Fatalf("%s: address rewrite refused", name)
		}
		checkFullChecksums(t, p, name)
		if !bytes.Equal(data[p.L4Off:], orig[p.L4Off:]) {
			t.Errorf("%s: rewriting addresses changed the fragment's payload", name)
		}
		if p.Key.SrcAddr() != src || p.Key.DstAddr() != dst {
			t.Errorf("%s: key %s after the rewrite", name, p.Key)
		}
	}
	// A first fragment: the UDP checksum covers the datagram, and the incremental update
	// keeps it equal to what a fresh datagram with the new address would carry.
	orig := parseCaseByName(t, "ipv4/fragment-first/udp")
	data := append([]byte(nil), orig...)
	p := parsed(data)
	p.SetSrcAddr(v4b)
	p.SetSrcPort(9)
	if c := checksums(p); !c.ipValid {
		t.Errorf("first fragment: IPv4 header checksum invalid after rewrite")
	}
	// The fragment here holds the whole datagram: clear MF (fixing the header checksum) and
	// the L4 checksum is checkable over this packet.
	data[14+6] &^= 0x20
	binary.BigEndian.PutUint16(data[14+10:], ip4HeaderChecksum(p))
	checkFullChecksums(t, p, "first fragment")
}

// TestRewriteKeyFollows: after any rewrite, Key equals what a fresh Parse of the frame says.
func TestRewriteKeyFollows(t *testing.T) {
	for _, c := range parseCases(t) {
		data := append([]byte(nil), c.frame...)
		p := parsed(data)
		if !p.IP() {
			continue
		}
		src, dst := v4b, v4a
		if p.Is(packet.IPv6) {
			src, dst = v6b, v6a
		}
		p.SetSrcAddr(src)
		p.SetDstAddr(dst)
		p.SetSrcPort(1111)
		p.SetDstPort(2222)
		p.SetEchoID(3333)
		q := parsed(data)
		if q.Key != p.Key || q.Flags != p.Flags {
			t.Errorf("%s: Key %s flags %#x after rewrites, a fresh parse gives %s %#x", c.name, p.Key, p.Flags, q.Key, q.Flags)
		}
		before := checksums(parsed(c.frame))
		after := checksums(p)
		if before.ipValid != after.ipValid || before.l4Valid != after.l4Valid {
			t.Errorf("%s: checksum validity changed: %+v → %+v", c.name, before, after)
		}
	}
}

// TestChecksum checks Checksum against known values and its odd-length and initial-value
// handling.
func TestChecksum(t *testing.T) {
	// RFC 1071 §3 example: the sum of 0001 f203 f4f5 f6f7 is ddf2 (checksum 220d).
	if got := packet.Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != 0x220d {
		t.Errorf("RFC 1071 example: %#04x, want 0x220d", got)
	}
	if got := packet.Checksum([]byte{0x12}, 0); got != ^uint16(0x1200) {
		t.Errorf("odd byte: %#04x", got)
	}
	if got := packet.Checksum(nil, 0x1234); got != ^uint16(0x1234) {
		t.Errorf("initial only: %#04x", got)
	}
	if got := packet.Checksum([]byte{0xff, 0xff, 0x00, 0x02}, 0); got != ^uint16(0x0002) {
		t.Errorf("end-around carry: %#04x", got)
	}
	// A buffer long enough to overflow a 32-bit accumulator.
	big := bytes.Repeat([]byte{0xff, 0xfe}, 1<<17)
	// 0xfffe repeated n times folds to 0xfffe*n mod 0xffff = (-1*n) mod 0xffff.
	n := uint32(1 << 17)
	want := ^uint16(0xffff - n%0xffff)
	if got := packet.Checksum(big, 0); got != want {
		t.Errorf("256 KiB of 0xfffe: %#04x, want %#04x", got, want)
	}
}
