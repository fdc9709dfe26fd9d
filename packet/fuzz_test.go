package packet_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/snf-dev/snf/packet"
)

// FuzzParse feeds arbitrary bytes to Parse and then to every rewrite. Parse must not panic
// and its result must satisfy parseInvariants; rewrites must not panic, must keep Key equal
// to a fresh parse of the rewritten frame, must not change the frame's structure (flags),
// must not touch the bytes of a packet they refuse, and must keep a valid checksum valid.
//
// Seeded with every generated frame of parseCases (and run with
// go test -run x -fuzz FuzzParse -fuzztime 5m ./packet/).
func FuzzParse(f *testing.F) {
	for _, c := range parseCases(f) {
		f.Add(c.frame)
	}
	f.Add(tcpFrame(f, v6a, v6b, 1, 2, payload100)[:70])
	f.Add(echoFrame(f, v6a, v6b, 1, 2, true, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		b = b[:len(b):len(b)] // no slack capacity for an out-of-range reslice to hide in
		orig := append([]byte(nil), b...)
		p := &packet.Packet{Data: b}
		p.Parse()
		if err := parseInvariants(p); err != nil {
			t.Fatalf("%v (flags %#x, frame % x)", err, p.Flags, b)
		}
		// Parse is a pure function of the bytes.
		q := &packet.Packet{Data: orig}
		q.Parse()
		if q.Flags != p.Flags || q.Key != p.Key || q.L4Off != p.L4Off || q.PayloadOff != p.PayloadOff {
			t.Fatalf("two parses of the same bytes differ")
		}
		_ = p.Payload()
		_ = p.TCPFlags()
		_ = p.ICMPType()
		_, _ = p.EchoID()

		before := checksums(p)
		flags := p.Flags
		n := uint16(len(b))
		var src, dst netip.Addr
		if p.Is(packet.IPv6) {
			src, dst = v6b, v6a
		} else {
			src, dst = v4b, v4a
		}
		did := p.SetSrcAddr(src)
		did = p.SetDstAddr(dst) || did
		did = p.SetSrcPort(n) || did
		did = p.SetDstPort(^n) || did
		did = p.SetEchoID(n*7) || did
		// The other family and invalid addresses are refused whatever the packet.
		if p.SetSrcAddr(netip.Addr{}) || (p.Is(packet.IPv4) && p.SetDstAddr(v6a)) || (p.Is(packet.IPv6) && p.SetDstAddr(v4a)) {
			t.Fatalf("a rewrite with an address of the wrong family succeeded")
		}
		if !did {
			if !bytes.Equal(b, orig) {
				t.Fatalf("refused rewrites changed the frame")
			}
			return
		}
		if !p.IP() {
			t.Fatalf("a rewrite succeeded on a non-IP packet (flags %#x)", p.Flags)
		}
		if p.Flags != flags {
			t.Fatalf("rewrites changed Flags")
		}
		r := &packet.Packet{Data: b}
		r.Parse()
		if r.Flags != p.Flags || r.Key != p.Key || r.L4Off != p.L4Off || r.PayloadOff != p.PayloadOff {
			t.Fatalf("after rewrites, Key %s flags %#x; a fresh parse: %s %#x", p.Key, p.Flags, r.Key, r.Flags)
		}
		after := checksums(p)
		if before.ipValid && !after.ipValid {
			t.Fatalf("a valid IPv4 header checksum became invalid")
		}
		if before.l4Checkable && before.l4Valid && !after.l4Valid {
			t.Fatalf("a valid L4 checksum became invalid (%s)", p.Key)
		}
		if before.udpNone && !after.udpNone {
			t.Fatalf("an absent UDP checksum was set")
		}
		if p.Is(packet.HasL4) && len(b) > int(p.PayloadOff) && !bytes.Equal(b[p.PayloadOff:], orig[p.PayloadOff:]) {
			t.Fatalf("rewrites changed the payload")
		}
	})
}
