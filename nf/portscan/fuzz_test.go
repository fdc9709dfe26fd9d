package portscan_test

import (
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/snf-dev/snf/internal/pkttest"
)

// FuzzPortscan feeds arbitrary frames to the detector, each on its own and wrapped as the
// quoted packet of an ICMP and an ICMPv6 destination unreachable (the payload it parses),
// between real attempts so that quoted keys may hit tracked contacts. Nothing may panic and
// every packet must pass (block is off).
func FuzzPortscan(f *testing.F) {
	syn := pkttest.TCP(scanner, target, 40000, 22, pkttest.SYN, nil)
	syn6 := pkttest.TCP(scanner6, target6, 40000, 22, pkttest.SYN, nil)
	for _, s := range [][]byte{
		syn, syn6, syn[14:], syn6[14:], unreachable(syn), unreachable(syn6),
		pkttest.UDP(scanner, target, 1, 53, []byte("x"))[14:],
		pkttest.Echo(scanner, target, 9, false)[14:],
		syn[14:30], syn6[14:50], {0x45}, {0x60}, nil,
	} {
		f.Add(s)
	}
	h := newHarness(f, "")
	f.Fuzz(func(t *testing.T, b []byte) {
		h.t = t
		frames := [][]byte{
			syn, syn6,
			b,
			pkttest.Frame(router, scanner, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 1)}, b),
			pkttest.Frame(router6, scanner6, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 0)}, append([]byte{0, 0, 0, 0}, b...)),
		}
		if len(b) >= 14 {
			frames = append(frames, append(append([]byte(nil), syn[:14]...), b...))
		}
		for _, fr := range frames {
			if !h.send(time.Millisecond, fr) {
				t.Fatalf("frame %x dropped", fr)
			}
		}
	})
}
