package trace

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/port/pcapfile"
)

var (
	hostA = netip.MustParseAddr("10.0.0.1")
	hostB = netip.MustParseAddr("10.0.0.2")
	srvX  = netip.MustParseAddr("198.51.100.1")
	srvY  = netip.MustParseAddr("198.51.100.2")
	v6a   = netip.MustParseAddr("2001:db8::1")
	v6b   = netip.MustParseAddr("2001:db8::2")
)

const ms = int64(time.Millisecond)

// TestStatsBuiltFrames checks every count on a capture whose answers are known by
// construction.
func TestStatsBuiltFrames(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	arp := make([]byte, 60)
	arp[12], arp[13] = 0x08, 0x06
	bad := pkttest.TCP(hostA, srvX, 1, 2, pkttest.ACK, nil)[:14+20+10] // TCP header cut short
	frag := pkttest.UDP(hostA, srvX, 5, 6, []byte("0123456789abcdef"))
	frag[14+7] = 2 // fragment offset 16 bytes: a non-first fragment
	frames := []mem.Frame{
		// TCP flow 1: A → X:80, SYN, SYN-ACK, ACK, data after a 2 ms gap, then exactly 5 ms.
		{Data: pkttest.TCP(hostA, srvX, 4000, 80, pkttest.SYN, nil), Time: t0},
		{Data: pkttest.TCP(srvX, hostA, 80, 4000, pkttest.SYNACK, nil), Time: t0 + 1*ms},
		{Data: pkttest.TCP(hostA, srvX, 4000, 80, pkttest.ACK, nil), Time: t0 + 2*ms},
		{Data: pkttest.TCP(hostA, srvX, 4000, 80, "PA", []byte("GET /")), Time: t0 + 4*ms},
		{Data: pkttest.TCP(srvX, hostA, 80, 4000, "PA", make([]byte, 1000)), Time: t0 + 9*ms},
		// UDP flow 2: B → Y:53 and back; IPv6 UDP flow 3.
		{Data: pkttest.UDP(hostB, srvY, 5353, 53, []byte("q")), Time: t0 + 3*ms},
		{Data: pkttest.UDP(srvY, hostB, 53, 5353, []byte("a")), Time: t0 + 20*ms},
		{Data: pkttest.UDP(v6a, v6b, 1, 2, []byte("x")), Time: t0 + 30*ms},
		// ICMP echo: another flow, not TCP/UDP; its source does not count as a source.
		{Data: pkttest.Echo(srvY, hostB, 7, false), Time: t0 + 31*ms},
		// TCP flow 4: B → X:443, a SYN only; a retransmitted SYN 40 ms later.
		{Data: pkttest.TCP(hostB, srvX, 4001, 443, pkttest.SYN, nil), Time: t0 + 50*ms},
		{Data: pkttest.TCP(hostB, srvX, 4001, 443, pkttest.SYN, nil), Time: t0 + 90*ms},
		{Data: arp, Time: t0 + 95*ms},
		{Data: bad, Time: t0 + 96*ms},
		{Data: frag, Time: t0 + 97*ms},
		// A snap-length cut frame: 60 bytes captured of 1514.
		{Data: pkttest.UDP(hostB, srvY, 5353, 53, make([]byte, 1400))[:60], Time: t0 + 100*ms, WireLen: 1514},
	}
	var wire, stored uint64
	for _, f := range frames {
		wire += uint64(max(f.WireLen, len(f.Data)))
		stored += uint64(len(f.Data))
	}
	s, err := Stats(mem.NewReader(frames), 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := TraceStats{
		Packets: 15, Bytes: wire, Stored: stored,
		IP: 13, IPv4: 12, IPv6: 1, NonIP: 1, Malformed: 1, Fragments: 1,
		TCPPackets: 7, UDPPackets: 4, OtherPackets: 2,
		Flows: 4, TCPFlows: 2, UDPFlows: 2, OtherFlows: 1,
		Gap: 5 * time.Millisecond,
		// Flow 1: gaps 1, 1, 2, 5 ms: one flowlet (the 5 ms gap is a tie, not above the gap).
		// Flow 2 (UDP B↔Y): the reply 17 ms later, then the cut frame 80 ms later: 3.
		// Flow 3: 1. Flow 4: the retransmitted SYN 40 ms later: 2.
		Flowlets: 7, GapTies: 1,
		SYNs: 3, // flow 1's SYN and flow 4's two; not the SYN-ACK
		// Sources of TCP/UDP packets: A, X, B, Y, v6a. The malformed packet and the
		// fragment count for nothing.
		SrcAddrs: 5,
		// Active intervals (ms): flow 1 [0, 9], flow 2 [3, 100], flow 3 [30, 30], flow 4
		// [50, 90]: never more than two at once.
		MaxConcurrent: 2,
		First:         time.Unix(0, t0).UTC(),
		Last:          time.Unix(0, t0+100*ms).UTC(),
		Duration:      100 * time.Millisecond,
	}
	want.PacketsPerSec = 15 / 0.1
	want.BitsPerSec = float64(wire) * 8 / 0.1
	if math.Abs(s.PacketsPerSec-want.PacketsPerSec) > 1e-6 || math.Abs(s.BitsPerSec-want.BitsPerSec) > 1e-3 {
		t.Errorf("rates %f pkt/s %f bit/s, want %f and %f", s.PacketsPerSec, s.BitsPerSec, want.PacketsPerSec, want.BitsPerSec)
	}
	s.PacketsPerSec, s.BitsPerSec = want.PacketsPerSec, want.BitsPerSec
	if s != want {
		t.Errorf("stats\n got %+v\nwant %+v", s, want)
	}

	// At a 1 ms gap the exact 1 ms gaps are ties; the 2 ms gap and the later ones split.
	s1, _ := Stats(mem.NewReader(frames), time.Millisecond)
	// Flow 1: 0,1,2,4,9 → gaps 1(tie),1(tie),2,5 → 3 flowlets; flow 2: 3 flowlets; 3: 1; 4: 2.
	if s1.Flowlets != 9 || s1.GapTies != 2 {
		t.Errorf("at 1ms: %d flowlets, %d ties; want 9 and 2", s1.Flowlets, s1.GapTies)
	}
}

func TestStatsEmptyAndError(t *testing.T) {
	s, err := Stats(mem.NewReader(nil), time.Millisecond)
	if err != nil || s.Packets != 0 || !s.First.IsZero() || s.Duration != 0 || s.PacketsPerSec != 0 {
		t.Errorf("empty capture: %+v, %v", s, err)
	}
	var buf bytes.Buffer
	if err := s.Format(&buf); err != nil || !strings.Contains(buf.String(), "packets:") {
		t.Errorf("Format of empty stats: %q, %v", buf.String(), err)
	}
	boom := errors.New("disk on fire")
	frames := []mem.Frame{{Data: pkttest.UDP(hostA, srvX, 1, 2, nil), Time: 1}, {Data: pkttest.UDP(hostA, srvX, 1, 2, nil), Time: 2}}
	s, err = Stats(mem.NewReaderError(frames, boom), time.Millisecond)
	if !errors.Is(err, boom) || s.Packets != 2 || s.Flows != 1 {
		t.Errorf("read error: %+v, %v; want the 2 packets before it and the error", s, err)
	}
}

func TestStatsGenerator(t *testing.T) {
	cfg := testConfig(20000)
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Stats(g, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// The generator keeps about cfg.Flows flows alive, 95% of them TCP or UDP, with every
	// TCP flow opened by one SYN from an inside host.
	if s.Packets != 20000 || s.IP != 20000 || s.NonIP+s.Malformed != 0 {
		t.Fatalf("%+v", s)
	}
	if s.TCPFlows == 0 || s.UDPFlows == 0 || s.OtherFlows == 0 || s.SYNs != uint64(s.TCPFlows) {
		t.Errorf("TCP %d UDP %d other %d flows, %d SYNs (want one per TCP flow)", s.TCPFlows, s.UDPFlows, s.OtherFlows, s.SYNs)
	}
	if s.MaxConcurrent < cfg.Flows*8/10 || s.MaxConcurrent > cfg.Flows {
		t.Errorf("max concurrent %d, want about %d", s.MaxConcurrent, cfg.Flows*95/100)
	}
	if r := s.PacketsPerSec; r < cfg.Rate*0.95 || r > cfg.Rate*1.05 {
		t.Errorf("%.0f packets/s, want about %.0f", r, cfg.Rate)
	}
}

// readmeRow is a row of the table in ../shared/traces/README.md.
type readmeRow struct {
	file                        string
	pkts, flows, tcp, udp       int
	duration                    float64 // seconds, as rounded in the table
	srcs, syn, maxConc          int
	flowlets05, flowlets1, fl50 int // -1: not listed
}

var readmeTable = []readmeRow{
	{"ndpi_gnutella.pcap", 3905, 750, 137, 613, 600.2, 129, 291, 174, 2813, 2776, 2433},
	{"pcapplusplus_tls2.pcap", 7451, 334, 334, 0, 145.8, 167, 0, 77, 4410, 3866, 1080},
	{"pcapplusplus_example.pcap", 4631, 136, 66, 70, 15.6, 26, 65, 21, 2528, 1350, 503},
	{"tcpreplay_test.pcap", 179, 19, 7, 12, 3.26, 7, 6, 5, 101, 77, 37},
	{"nmap_synscan.pcap", 2011, 1994, 1994, 0, 23.1, 2, 1994, 5, -1, -1, -1},
	{"ddos_synflood_spoofed.pcap", 37841, 37669, 37669, 0, 23.7, 37623, 37841, 51, -1, -1, -1},
}

const tracesDir = "../../shared/traces"

func tracePath(t *testing.T, name string) string {
	t.Helper()
	path, _ := filepath.Abs(filepath.Join(tracesDir, name))
	if _, err := os.Stat(path); err != nil {
		t.Skipf("real capture not found at %s (it sits beside the repository in CI): %v", path, err)
	}
	return path
}

func fileStats(t *testing.T, path string, gap time.Duration) TraceStats {
	t.Helper()
	r, err := pcapfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := Stats(r, gap)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

// TestStatsREADME checks Stats against the table of the real captures' README. Every
// number matches exactly except flowlets, where the README's tool compared float64
// seconds: gaps of exactly δ (GapTies) fall on either side by rounding, so the README's
// count lies within [Flowlets, Flowlets+GapTies].
func TestStatsREADME(t *testing.T) {
	for _, row := range readmeTable {
		t.Run(row.file, func(t *testing.T) {
			path := tracePath(t, row.file)
			gaps := []time.Duration{500 * time.Microsecond, time.Millisecond, 50 * time.Millisecond}
			want := []int{row.flowlets05, row.flowlets1, row.fl50}
			for i, gap := range gaps {
				if i > 0 && want[i] < 0 {
					break
				}
				s := fileStats(t, path, gap)
				if i == 0 {
					got := []int{int(s.Packets), s.Flows, s.TCPFlows, s.UDPFlows, s.SrcAddrs, int(s.SYNs), s.MaxConcurrent}
					exp := []int{row.pkts, row.flows, row.tcp, row.udp, row.srcs, row.syn, row.maxConc}
					names := []string{"packets", "flows", "TCP flows", "UDP flows", "source addresses", "SYNs", "max concurrent"}
					for j := range got {
						if got[j] != exp[j] {
							t.Errorf("%s = %d, README says %d", names[j], got[j], exp[j])
						}
					}
					// The table rounds durations to 3 significant digits or 0.1 s.
					if d := s.Duration.Seconds(); math.Abs(d-row.duration) > 0.051 {
						t.Errorf("duration %.3f s, README says %.2f", d, row.duration)
					}
				}
				if want[i] < 0 {
					continue
				}
				if s.Flowlets > want[i] || want[i] > s.Flowlets+s.GapTies {
					t.Errorf("flowlets at %s: %d (+%d ties), README says %d", gap, s.Flowlets, s.GapTies, want[i])
				}
			}
		})
	}
}

// TestStatsFormat checks the printed form on a real capture.
func TestStatsFormat(t *testing.T) {
	s := fileStats(t, tracePath(t, "pcapplusplus_example.pcap"), time.Millisecond)
	var buf bytes.Buffer
	if err := s.Format(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"packets:              4631 (IP 4631",
		"flows:                136 TCP/UDP (TCP 66, UDP 70), 0 other",
		"flowlets:             1348 at gap 1ms (4 gaps exactly 1ms)",
		"SYNs:                 65",
		"source addresses:     26",
		"max concurrent flows: 21",
		"first:                2013-05-02T",
		"Mbit/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Format output lacks %q:\n%s", want, out)
		}
	}
	if s.BitsPerSec < 1.8e6 || s.BitsPerSec > 2.1e6 {
		t.Errorf("%.0f bit/s; the README says about 1.9 Mbit/s", s.BitsPerSec)
	}
}
