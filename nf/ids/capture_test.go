package ids_test

import (
	"encoding/binary"
	"testing"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
)

// fixTCPChecksum recomputes the TCP checksum of a complete IPv4 or IPv6 packet.
func fixTCPChecksum(p *packet.Packet) {
	d, l3, l4 := p.Data, int(p.L3Off), int(p.L4Off)
	var end int
	var pseudo uint32
	words := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			pseudo += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	if p.Flags&packet.IPv4 != 0 {
		end = l3 + int(binary.BigEndian.Uint16(d[l3+2:]))
		words(d[l3+12 : l3+20])
	} else {
		end = l3 + 40 + int(binary.BigEndian.Uint16(d[l3+4:]))
		words(d[l3+8 : l3+40])
	}
	pseudo += packet.ProtoTCP + uint32(end-l4)
	binary.BigEndian.PutUint16(d[l4+16:], 0)
	binary.BigEndian.PutUint16(d[l4+16:], packet.Checksum(d[l4:end], pseudo))
}

const canaryRule = `        - {id: canary, proto: tcp, content: ["snf-canary-4b1d", "|de ad be ef|"], msg: planted}
`

// TestPlantedContentInRealCapture plants a rule's contents in the payload of one TCP packet
// of a real capture (fixing its checksum, so the packet stays valid): the IDS must alert on
// exactly that packet, and on no other; the unmodified capture raises no alert.
func TestPlantedContentInRealCapture(t *testing.T) {
	pkts := testtrace.Packets(t, "pcapplusplus_example.pcap")
	// The victim: the first valid TCP packet past the middle of the capture with 100+ bytes
	// of payload.
	victim := -1
	for i := len(pkts) / 2; i < len(pkts); i++ {
		p := &pkts[i]
		if p.Proto == packet.ProtoTCP && p.Flags&packet.Truncated == 0 && len(p.Payload()) >= 100 &&
			pkttest.VerifyChecksums(p.Data) == nil {
			victim = i
			break
		}
	}
	if victim < 0 {
		t.Fatal("no TCP packet with a payload in the capture")
	}
	v := &pkts[victim]
	pl := v.Payload()
	copy(pl[10:], "snf-canary-4b1d")
	copy(pl[60:], []byte{0xde, 0xad, 0xbe, 0xef})
	fixTCPChecksum(v)
	if err := pkttest.VerifyChecksums(v.Data); err != nil {
		t.Fatalf("planted packet: %v", err)
	}
	t.Logf("planted in packet %d of %d, flow %s, %d payload bytes", victim, len(pkts), v.Key, len(pl))

	c, s := newIDS(t, canaryRule)
	out := testtrace.Process(c, pkts)
	if s.Len() != 1 {
		t.Fatalf("%d alerts, want exactly 1: %+v", s.Len(), s.Snapshot())
	}
	a := s.Snapshot()[0]
	if a.Rule != "canary" || a.Clock != uint64(victim+1) || a.Flow != v.Key || a.Time != v.Time || a.Details["msg"] != "planted" {
		t.Errorf("alert %+v, want rule canary on packet %d (clock %d) of flow %s", a, victim, victim+1, v.Key)
	}
	if len(out) != len(pkts) {
		t.Errorf("%d of %d packets passed; an alert rule drops nothing", len(out), len(pkts))
	}
	if m := testtrace.Metrics(c, 0); m["rule.canary"] != 1 || m["matched"] != 1 || m["scanned"] < 1000 {
		t.Errorf("metrics %v", m)
	}

	// The same plant with a drop rule: exactly that packet is missing from the output.
	c2, s2 := newIDS(t, `        - {id: canary, proto: tcp, action: drop, content: ["snf-canary-4b1d", "|de ad be ef|"]}
`)
	for i := range pkts {
		pkts[i].Clock = 0
	}
	out = testtrace.Process(c2, pkts)
	if s2.Len() != 1 || len(out) != len(pkts)-1 {
		t.Fatalf("drop rule: %d alerts, %d of %d packets out", s2.Len(), len(out), len(pkts))
	}
	for _, p := range out {
		if p == v {
			t.Fatal("the planted packet passed a drop rule")
		}
	}

	// The unmodified capture: no alert.
	c3, s3 := newIDS(t, canaryRule)
	testtrace.Process(c3, testtrace.Packets(t, "pcapplusplus_example.pcap"))
	if s3.Len() != 0 {
		t.Errorf("unmodified capture: %d alerts: %+v", s3.Len(), s3.Snapshot())
	}
}

// The default rules are silent on ordinary web browsing, and scanning it allocates nothing.
func TestDefaultRulesOnWebTraffic(t *testing.T) {
	pkts := testtrace.Packets(t, "pcapplusplus_example.pcap")
	c, s := newIDS(t, "")
	testtrace.Process(c, pkts)
	if s.Len() != 0 {
		t.Errorf("%d alerts on web traffic: %+v", s.Len(), s.Snapshot()[0])
	}
	m := testtrace.Metrics(c, 0)
	if m["scanned"] < 2000 || m["scanned_bytes"] < 1<<20 {
		t.Errorf("metrics %v: the payloads were not scanned", m)
	}
	out := make([]*packet.Packet, 0, 128)
	i := 0
	if n := testtrace.AllocsPerRun(200, func() {
		if i+64 > len(pkts) {
			i = 0
		}
		out = c.Process(pkts[i:i+64], out[:0])
		i += 64
	}); n != 0 {
		t.Errorf("Process allocates %v per batch of 64 real packets", n)
	}
}

// The default rules on real captures that hold what they look for: an FTP login and an
// FTP download of a Windows executable.
func TestDefaultRulesOnRealPositives(t *testing.T) {
	for _, tc := range []struct {
		file string
		want map[string]int
	}{
		{"trojan_ingredients/zeek_ftp_retr.pcap", map[string]int{"ftp-cleartext-pass": 1}},
		{"trojan_ingredients/zeek_pe_pe-single.pcap", map[string]int{"ftp-cleartext-pass": 1, "pe-executable": 1}},
	} {
		c, s := newIDS(t, "")
		testtrace.Process(c, testtrace.Packets(t, tc.file))
		got := map[string]int{}
		for _, a := range s.Snapshot() {
			got[a.Rule]++
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: alerts %v, want %v", tc.file, got, tc.want)
		}
		for r, n := range tc.want {
			if got[r] != n {
				t.Errorf("%s: %d alerts of %s, want %d (all: %v)", tc.file, got[r], r, n, got)
			}
		}
	}
}
