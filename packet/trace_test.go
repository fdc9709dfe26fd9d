package packet_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/snf-dev/snf/packet"
)

// gpView is what gopacket decodes of a frame, reduced to what Parse computes.
type gpView struct {
	ip      gopacket.NetworkLayer // the outermost IP layer, or nil
	ipOff   int
	fragOff bool           // the IP layer announces a fragment (gopacket then decodes no L4)
	l4      gopacket.Layer // TCP or UDP directly after the outermost IP layer (and its extension headers)
	l4Off   int
	key     packet.Key
	decErr  gopacket.ErrorLayer
	// encap: the IP layer follows something other than Ethernet and 802.1Q tags (MPLS,
	// PPPoE, …), which Parse documents as NonIP.
	encap bool
}

func gopacketView(data []byte) gpView {
	var v gpView
	gp := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
	v.decErr = gp.ErrorLayer()
	off := 0
	for _, l := range gp.Layers() {
		switch l.(type) {
		case *layers.Ethernet, *layers.Dot1Q, *layers.IPv4, *layers.IPv6:
		default:
			if v.ip == nil {
				v.encap = true
			}
		}
		switch l := l.(type) {
		case *layers.IPv4:
			if v.ip != nil {
				return v
			}
			v.ip, v.ipOff = l, off
			v.fragOff = l.Flags&layers.IPv4MoreFragments != 0 || l.FragOffset != 0
			v.key.Proto = uint8(l.Protocol)
			copy(v.key.Src[:], l.SrcIP.To4())
			copy(v.key.Dst[:], l.DstIP.To4())
		case *layers.IPv6:
			if v.ip != nil {
				return v
			}
			v.ip, v.ipOff = l, off
			v.key.V6 = true
			v.key.Proto = uint8(l.NextHeader)
			copy(v.key.Src[:], l.SrcIP.To16())
			copy(v.key.Dst[:], l.DstIP.To16())
		case *layers.IPv6HopByHop:
			v.key.Proto = uint8(l.NextHeader)
		case *layers.IPv6Destination:
			v.key.Proto = uint8(l.NextHeader)
		case *layers.IPv6Routing:
			v.key.Proto = uint8(l.NextHeader)
		case *layers.IPv6Fragment:
			v.key.Proto = uint8(l.NextHeader)
			v.fragOff = true
		case *layers.TCP:
			if v.ip != nil && v.l4 == nil {
				v.l4, v.l4Off = l, off
				v.key.SrcPort, v.key.DstPort = uint16(l.SrcPort), uint16(l.DstPort)
			}
			return v
		case *layers.UDP:
			if v.ip != nil && v.l4 == nil {
				v.l4, v.l4Off = l, off
				v.key.SrcPort, v.key.DstPort = uint16(l.SrcPort), uint16(l.DstPort)
			}
			return v
		case *layers.ICMPv4, *layers.ICMPv6:
			return v
		}
		off += len(l.LayerContents())
	}
	return v
}

// TestParseMatchesGopacketOnTraces parses every frame of every real capture and checks the
// offsets and the 5-tuple against gopacket's decoding.
func TestParseMatchesGopacketOnTraces(t *testing.T) {
	for _, file := range traceFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			frames := loadTrace(t, file)
			var nTCP, nUDP, nNonIP, nOther, nMalformed, errs int
			for i, fr := range frames {
				if err := checkAgainstGopacket(fr.data); err != nil {
					t.Errorf("frame %d (%d bytes): %v", i+1, len(fr.data), err)
					if errs++; errs == 20 {
						t.Fatal("too many errors")
					}
					continue
				}
				p := parsed(fr.data)
				switch {
				case p.Is(packet.NonIP):
					nNonIP++
				case p.Is(packet.Malformed):
					nMalformed++
				case p.Is(packet.HasL4) && p.Proto == packet.ProtoTCP:
					nTCP++
				case p.Is(packet.HasL4) && p.Proto == packet.ProtoUDP:
					nUDP++
				default:
					nOther++
				}
			}
			t.Logf("%d frames: %d TCP, %d UDP, %d other IP, %d non-IP, %d malformed",
				len(frames), nTCP, nUDP, nOther, nNonIP, nMalformed)
		})
	}
}

// checkAgainstGopacket parses data with Parse and with gopacket and reports the first
// disagreement.
func checkAgainstGopacket(data []byte) error {
	p := parsed(data)
	v := gopacketView(data)
	if v.ip == nil {
		switch {
		case p.Is(packet.NonIP):
			return nil
		case p.Is(packet.Malformed) && v.decErr != nil:
			return nil // gopacket failed on the IP header too
		}
		return fmt.Errorf("gopacket finds no IP layer, Parse flags %#x (gopacket error: %v)", p.Flags, v.decErr)
	}
	if p.Is(packet.NonIP) {
		if v.encap && p.EtherType != packet.EtherTypeIPv4 && p.EtherType != packet.EtherTypeIPv6 {
			return nil // IP inside MPLS and the like: NonIP by Parse's rule
		}
		return fmt.Errorf("NonIP, but gopacket decodes %v", v.ip.LayerType())
	}
	if v.encap {
		return fmt.Errorf("flags %#x, but gopacket finds the IP layer encapsulated", p.Flags)
	}
	if int(p.L3Off) != v.ipOff {
		return fmt.Errorf("L3Off %d, gopacket %d", p.L3Off, v.ipOff)
	}
	if v.l4 == nil {
		if p.Is(packet.Malformed) {
			if v.decErr == nil {
				return fmt.Errorf("Malformed, but gopacket decodes it without error")
			}
			return nil
		}
		if p.Is(packet.HasL4) && (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP) && !v.fragOff {
			return fmt.Errorf("HasL4 %s, gopacket decodes no TCP/UDP (error: %v)", p.Key, v.decErr)
		}
		if p.Key.Proto != v.key.Proto || p.Key.Src != v.key.Src || p.Key.Dst != v.key.Dst || p.Key.V6 != v.key.V6 {
			return fmt.Errorf("key %s, gopacket %s", p.Key, v.key)
		}
		return nil
	}
	if !p.IP() || !p.Is(packet.HasL4) {
		return fmt.Errorf("flags %#x, gopacket decodes %v", p.Flags, v.l4.LayerType())
	}
	if p.Key != v.key {
		return fmt.Errorf("key %s, gopacket %s", p.Key, v.key)
	}
	if p.Proto != p.Key.Proto {
		return fmt.Errorf("Proto %d, Key.Proto %d", p.Proto, p.Key.Proto)
	}
	if int(p.L4Off) != v.l4Off {
		return fmt.Errorf("L4Off %d, gopacket %d", p.L4Off, v.l4Off)
	}
	if want := v.l4Off + len(v.l4.LayerContents()); int(p.PayloadOff) != want {
		return fmt.Errorf("PayloadOff %d, gopacket %d", p.PayloadOff, want)
	}
	want := v.l4.LayerPayload()
	if u, ok := v.l4.(*layers.UDP); ok && int(u.Length) != len(data)-v.l4Off && u.Length >= 8 {
		// gopacket bounds UDP payload by the UDP length; Parse by the IP length.
		want = data[int(p.PayloadOff):min(len(data), ipEnd(p))]
	}
	if got := p.Payload(); !bytes.Equal(got, want) {
		return fmt.Errorf("Payload() is %d bytes, gopacket's %d", len(got), len(want))
	}
	return nil
}

// TestRewriteTraces rewrites addresses, ports and echo identifiers of every IP frame of
// every capture and checks that each checksum that was valid before is still valid (and one
// that was invalid stays invalid: incremental updates carry an offload or corruption error
// along), and that Key follows the rewrite.
func TestRewriteTraces(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, file := range traceFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			var checked, ipValid, l4Valid, l4Invalid int
			for i, fr := range loadTrace(t, file) {
				data := append([]byte(nil), fr.data...)
				p := parsed(data)
				if !p.IP() {
					continue
				}
				before := checksums(p)
				var src, dst netip.Addr
				if p.Is(packet.IPv4) {
					src, dst = randAddr4(rng), randAddr4(rng)
				} else {
					src, dst = randAddr6(rng), randAddr6(rng)
				}
				if !p.SetSrcAddr(src) || !p.SetDstAddr(dst) {
					t.Fatalf("frame %d: SetSrcAddr/SetDstAddr refused an IP packet", i+1)
				}
				ports := p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP
				if got := p.SetSrcPort(uint16(rng.Uint32())); got != (ports && p.Is(packet.HasL4)) {
					t.Fatalf("frame %d: SetSrcPort = %v", i+1, got)
				}
				p.SetDstPort(uint16(rng.Uint32()))
				if got := p.SetEchoID(uint16(rng.Uint32())); got != p.IsEcho() {
					t.Fatalf("frame %d: SetEchoID = %v, IsEcho %v", i+1, got, p.IsEcho())
				}
				after := checksums(p)
				if before.ipCheckable {
					if before.ipValid != after.ipValid {
						t.Errorf("frame %d: IPv4 header checksum valid %v before the rewrite, %v after", i+1, before.ipValid, after.ipValid)
					}
					if before.ipValid {
						ipValid++
					}
				}
				if before.udpNone && !after.udpNone {
					t.Errorf("frame %d: a zero (absent) UDP checksum was changed", i+1)
				}
				if before.l4Checkable && !p.Is(packet.Truncated) {
					checked++
					if before.l4Valid {
						l4Valid++
					} else {
						l4Invalid++
					}
					if before.l4Valid != after.l4Valid {
						t.Errorf("frame %d (%s): L4 checksum valid %v before the rewrite, %v after", i+1, p.Key, before.l4Valid, after.l4Valid)
					}
				}
				// Key follows the rewrite: a fresh parse of the rewritten frame agrees.
				q := parsed(data)
				if q.Key != p.Key || q.Flags != p.Flags {
					t.Errorf("frame %d: after the rewrite Key %s flags %#x, a fresh parse %s flags %#x", i+1, p.Key, p.Flags, q.Key, q.Flags)
				}
				if q.Key.SrcAddr() != src || q.Key.DstAddr() != dst {
					t.Errorf("frame %d: addresses %v > %v after rewriting to %v > %v", i+1, q.Key.SrcAddr(), q.Key.DstAddr(), src, dst)
				}
			}
			t.Logf("IPv4 headers with a valid checksum: %d; L4 checksums checked: %d (%d valid, %d invalid before)", ipValid, checked, l4Valid, l4Invalid)
		})
	}
}

func randAddr4(r *rand.Rand) netip.Addr {
	var b [4]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return netip.AddrFrom4(b)
}

func randAddr6(r *rand.Rand) netip.Addr {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[0] = 0x20 // keep it clear of the IPv4-mapped range
	return netip.AddrFrom16(b)
}
