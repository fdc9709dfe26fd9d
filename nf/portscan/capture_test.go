package portscan_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
)

// runCapture runs a real capture through a portscan chain in batches of 64 and then ends
// the flows as the flow table would after the capture (6 minutes on, past every flow
// timeout, within the detector's idle time), so that attempts still open resolve.
func runCapture(t *testing.T, name, config string) (*harness, []packet.Packet) {
	t.Helper()
	pkts := testtrace.Packets(t, name)
	h := newHarness(t, config)
	testtrace.Process(h.c, pkts)
	h.c.Expire(pkts[len(pkts)-1].Time + int64(6*time.Minute))
	return h, pkts
}

// synSenders returns the addresses that send TCP SYNs (without ACK), with the number of
// distinct (destination, port) pairs each sends them to.
func synSenders(pkts []packet.Packet) map[netip.Addr]int {
	seen := map[packet.Key]bool{}
	n := map[netip.Addr]int{}
	for i := range pkts {
		p := &pkts[i]
		if p.TCPFlags()&(packet.TCPSyn|packet.TCPAck) != packet.TCPSyn {
			continue
		}
		k := packet.Key{Src: p.Key.Src, Dst: p.Key.Dst, DstPort: p.Key.DstPort, V6: p.Key.V6}
		if !seen[k] {
			seen[k] = true
			n[p.Key.SrcAddr()]++
		}
	}
	return n
}

// TestNmapSynScan: the scanner of nmap_synscan.pcap (172.16.0.8, the only address that
// sends SYNs: to 1000 ports of 64.13.134.52, of which 3 answer with a SYN-ACK and 4 with
// a RST) is flagged, once, within seconds of the scan's start; nothing else is.
func TestNmapSynScan(t *testing.T) {
	h, pkts := runCapture(t, "nmap_synscan.pcap", "")
	senders := synSenders(pkts)
	scan := netip.MustParseAddr("172.16.0.8")
	if len(senders) != 1 || senders[scan] != 1000 {
		t.Fatalf("capture: SYN senders %v, expected only %s to 1000 services", senders, scan)
	}
	if got := flagged(h.sink); !slices.Equal(got, []string{scan.String()}) {
		t.Fatalf("flagged %v, want [%s]", got, scan)
	}
	a := h.sink.Snapshot()[0]
	firstSYN := pkts[0].Time
	delay := time.Duration(a.Time - firstSYN)
	if delay <= 0 || delay > 3*time.Second {
		t.Errorf("alert %s after the first probe, want within 3s", delay)
	}
	if h.metric("attempts") != 1000 || h.metric("repeat_contacts") != 994 {
		t.Errorf("attempts %d repeats %d, want 1000 first contacts and 994 retransmitted probes",
			h.metric("attempts"), h.metric("repeat_contacts"))
	}
	if sc := h.ps.Scanners(); len(sc) != 1 || sc[0].Source != scan || sc[0].Likelihood < 99 {
		t.Errorf("scanners %+v", sc)
	}
	t.Logf("alert at clock %d, %s after the first probe: %v; metrics: attempts %d successes %d failures %d (timeouts %d, window %d)",
		a.Clock, delay, a.Details, h.metric("attempts"), h.metric("successes"), h.metric("failures"),
		h.metric("timeouts"), h.metric("window_overflows"))

	// With the paper's unit (distinct hosts) the port sweep of one host is one first
	// contact: not detectable.
	hh, _ := runCapture(t, "nmap_synscan.pcap", "{unit: host}")
	if hh.sink.Len() != 0 || hh.metric("attempts") != 1 {
		t.Errorf("unit host: %d alerts, %d attempts; want 0 and 1", hh.sink.Len(), hh.metric("attempts"))
	}

	// With block, every packet after the alerting one is the scanner's or a reply to it.
	hb, _ := runCapture(t, "nmap_synscan.pcap", "{block: true}")
	if hb.sink.Len() != 1 {
		t.Fatalf("block: %d alerts", hb.sink.Len())
	}
	if want := uint64(len(pkts)) - hb.sink.Snapshot()[0].Clock; hb.metric("blocked") != want {
		t.Errorf("block: %d packets dropped, want the %d after the alert", hb.metric("blocked"), want)
	}
}

// TestBenignCaptures: no host of the benign captures is flagged.
func TestBenignCaptures(t *testing.T) {
	for _, name := range []string{"pcapplusplus_example.pcap", "tcpreplay_test.pcap", "pcapplusplus_tls2.pcap"} {
		t.Run(name, func(t *testing.T) {
			h, _ := runCapture(t, name, "")
			if h.sink.Len() != 0 {
				t.Errorf("flagged %v", flagged(h.sink))
			}
			t.Logf("attempts %d successes %d failures %d benign walks %d repeats %d",
				h.metric("attempts"), h.metric("successes"), h.metric("failures"), h.metric("benign"), h.metric("repeat_contacts"))
		})
	}
}

// TestGnutella: ndpi_gnutella.pcap holds one Gnutella client (10.0.2.15) and LAN chatter.
// The client connects to peers from its host cache, most of which are gone: fewer than
// half of its first-contact SYNs are answered with a SYN-ACK, which is the scanner side of
// TRW's test (with θ0 = 0.8 and θ1 = 0.2 the walk drifts up whenever the success rate is
// below 0.5). The client, and only the client, is flagged; the LAN hosts are not.
func TestGnutella(t *testing.T) {
	h, pkts := runCapture(t, "ndpi_gnutella.pcap", "")
	client := netip.MustParseAddr("10.0.2.15")

	// The client's TCP first contacts and how many were answered, read from the capture.
	contacted := map[packet.Key]bool{}
	answered := map[packet.Key]bool{}
	for i := range pkts {
		p := &pkts[i]
		f := p.TCPFlags()
		switch {
		case f&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn && p.Key.SrcAddr() == client:
			contacted[packet.Key{Dst: p.Key.Dst, DstPort: p.Key.DstPort}] = true
		case f&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn|packet.TCPAck && p.Key.DstAddr() == client:
			answered[packet.Key{Dst: p.Key.Src, DstPort: p.Key.SrcPort}] = true
		}
	}
	rate := float64(len(answered)) / float64(len(contacted))
	if rate >= 0.5 {
		t.Fatalf("capture: the client's SYN-ACK rate is %.2f; the test's premise is < 0.5", rate)
	}
	if got := flagged(h.sink); !slices.Equal(got, []string{client.String()}) {
		t.Errorf("flagged %v, want only the Gnutella client %s", got, client)
	}
	if h.sink.Len() > 0 {
		t.Logf("client: %d TCP services contacted, %d answered (%.0f%%); alert at %s: %v",
			len(contacted), len(answered), 100*rate, time.Unix(0, h.sink.Snapshot()[0].Time).UTC().Format("15:04:05.000"), h.sink.Snapshot()[0].Details)
	}
	t.Logf("attempts %d successes %d failures %d (timeouts %d, window %d, icmp %d) multicast %d",
		h.metric("attempts"), h.metric("successes"), h.metric("failures"), h.metric("timeouts"),
		h.metric("window_overflows"), h.metric("icmp_failures"), h.metric("multicast"))
}

// TestSpoofedFlood: a SYN flood from 37,623 spoofed sources is one attempt per source:
// TRW, which tests each source on its own, flags none (a flood is a rate limiter's job).
func TestSpoofedFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("37k packets")
	}
	h, _ := runCapture(t, "ddos_synflood_spoofed.pcap", "")
	if h.sink.Len() != 0 || h.metric("attempts") < 37000 {
		t.Errorf("alerts %d attempts %d", h.sink.Len(), h.metric("attempts"))
	}
}
