package trojan_test

import (
	"io"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/trace"
)

// A piece is one real capture (or one flow of it) holding one step of the scenario, and
// the address of its client: the side that opens the connections.
type piece struct {
	file   string
	client netip.Addr
	flow   *packet.Key // only this flow of the file (canonical key), or nil for all
}

var (
	// ssh/single-conn.pcap: one SSH session from 192.150.186.169 to 131.159.14.23:22.
	pieceSSH = piece{file: "trojan_ingredients/zeek_ssh_single-conn.pcap", client: netip.MustParseAddr("192.150.186.169")}
	// A real text/html download: one keep-alive connection of the browsing capture
	// (10.0.0.6:53075 → 212.199.202.53:80; its first response is text/html, then CSS and
	// images). The README's "HTML" ingredient, zeek_http_get.pcap, is in fact text/plain.
	pieceHTML = piece{file: "pcapplusplus_example.pcap", client: netip.MustParseAddr("10.0.0.6"),
		flow: canon(packet.KeyFrom(netip.MustParseAddr("10.0.0.6"), netip.MustParseAddr("212.199.202.53"), 53075, 80, packet.ProtoTCP))}
	// zip/test.pcap: an HTTP download of application/zip by 192.168.7.120.
	pieceZIP = piece{file: "trojan_ingredients/zeek_zip_test.pcap", client: netip.MustParseAddr("192.168.7.120")}
	// pe/pe-single.pcap: passive FTP by 192.168.1.31, RETR NOTEPAD.EXE, VMwareXferlogs.exe
	// (whose data connection, starting with MZ, is captured) and two other files.
	pieceEXE = piece{file: "trojan_ingredients/zeek_pe_pe-single.pcap", client: netip.MustParseAddr("192.168.1.31")}
	// irc-basic.pcap: NICK, USER, JOIN from 192.168.6.110 to 130.239.18.119:6667.
	pieceIRC = piece{file: "trojan_ingredients/zeek_irc-basic.pcap", client: netip.MustParseAddr("192.168.6.110")}
	// irc-dcc-send.pcapng: IRC from 10.0.0.7 to 10.0.0.22:6667 with DCC transfers.
	pieceIRCDCC = piece{file: "trojan_ingredients/zeek_irc-dcc-send.pcapng", client: netip.MustParseAddr("10.0.0.7")}
	// http/get.pcap: a GET of a text/plain file by 141.142.228.5: not an HTML download.
	piecePlain = piece{file: "trojan_ingredients/zeek_http_get.pcap", client: netip.MustParseAddr("141.142.228.5")}
	// ftp/retr.pcap: RETR /README by 141.142.228.5: not a download that counts.
	pieceREADME = piece{file: "trojan_ingredients/zeek_ftp_retr.pcap", client: netip.MustParseAddr("141.142.228.5")}
	// The whole browsing capture, as background traffic.
	pieceBackground = piece{file: "pcapplusplus_example.pcap"}
)

func canon(k packet.Key) *packet.Key {
	c, _ := k.Canonical()
	return &c
}

// flowFilter is a port.Reader of the packets of one flow of another reader.
type flowFilter struct {
	r   port.Reader
	k   packet.Key
	buf []packet.Packet
	err error
}

func (f *flowFilter) Read(pkts []packet.Packet) (int, error) {
	if len(f.buf) < len(pkts) {
		f.buf = make([]packet.Packet, len(pkts))
	}
	for f.err == nil {
		n, err := f.r.Read(f.buf[:len(pkts)])
		f.err = err
		m := 0
		for i := range f.buf[:n] {
			if k, _ := f.buf[i].Key.Canonical(); k == f.k {
				pkts[m].SetData(f.buf[i].Data, f.buf[i].Time, f.buf[i].WireLen)
				m++
			}
		}
		if m > 0 {
			return m, nil
		}
	}
	return 0, f.err
}

func (f *flowFilter) Close() error { return f.r.Close() }

// at places a piece: its client becomes host, and its first packet is at offset from the
// scenario's start.
type at struct {
	p      piece
	host   netip.Addr
	offset time.Duration
}

var scenarioStart = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// build composes a scenario into a capture under t.TempDir with trace.Compose.
func build(t *testing.T, name string, parts ...at) string {
	t.Helper()
	var inputs []trace.ComposeInput
	for _, a := range parts {
		r, err := pcapfile.Open(testtrace.Path(t, a.p.file))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		var in port.Reader = r
		if a.p.flow != nil {
			in = &flowFilter{r: r, k: *a.p.flow}
		}
		ci := trace.ComposeInput{Reader: in, Start: scenarioStart.Add(a.offset)}
		if a.p.client.IsValid() {
			ci.Rewrite = map[netip.Addr]netip.Addr{a.p.client: a.host}
		}
		inputs = append(inputs, ci)
	}
	path := filepath.Join(t.TempDir(), name+".pcap")
	w, err := pcapfile.Create(path, pcapfile.FormatPcap, pcapfile.LinkTypeEthernet, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trace.Compose(inputs, w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCapture runs a capture through a chain of one trojan detector in batches of 64 and
// returns its alerts and the chain.
func runCapture(t testing.TB, path, config string) ([]snf.Alert, *snf.Chain) {
	t.Helper()
	alerts := &testtrace.Alerts{}
	c := testtrace.Chain(t, testtrace.OneNF("trojan", config), snf.ChainOptions{Alerts: alerts})
	r, err := pcapfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	batch := make([]packet.Packet, 64)
	var out []*packet.Packet
	var in, passed int
	for {
		n, err := r.Read(batch)
		out = c.Process(batch[:n], out[:0])
		in, passed = in+n, passed+len(out)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if in != passed {
		t.Fatalf("%d packets in, %d out: the detector must pass everything", in, passed)
	}
	return alerts.Snapshot(), c
}

var (
	hostV1 = netip.MustParseAddr("10.66.0.7")
	hostV2 = netip.MustParseAddr("10.66.0.8")
)

// steps places pieces for host h every gap from 0.
func steps(h netip.Addr, gap time.Duration, ps ...piece) []at {
	var r []at
	for i, p := range ps {
		r = append(r, at{p, h, time.Duration(i) * gap})
	}
	return r
}

// TestRealTraceScenarios builds the scenario from the real pieces re-addressed to victim
// hosts: exactly one alert, naming the victim, on the positives; silence on every negative.
func TestRealTraceScenarios(t *testing.T) {
	const gap = 20 * time.Second
	ssh, html, zip, exe, irc := pieceSSH, pieceHTML, pieceZIP, pieceEXE, pieceIRC
	cases := []struct {
		name   string
		config string
		parts  []at
		alert  netip.Addr // the host of the one alert; invalid for none
	}{
		{"positive", "", steps(hostV1, gap, ssh, html, zip, exe, irc), hostV1},
		{"positive, IRC with DCC (pcapng)", "", steps(hostV1, gap, ssh, html, zip, exe, pieceIRCDCC), hostV1},
		{"positive, downloads in another order", "", steps(hostV1, gap, ssh, exe, html, zip, irc), hostV1},
		{"positive within a 2m window", "{window: 2m}", steps(hostV1, gap, ssh, html, zip, exe, irc), hostV1},
		{"positive amid background traffic", "", append(steps(hostV2, gap, ssh, html, zip, exe, irc), at{pieceBackground, netip.Addr{}, 5 * time.Second}), hostV2},

		{"no ssh", "", steps(hostV1, gap, html, zip, exe, irc), netip.Addr{}},
		{"no html", "", steps(hostV1, gap, ssh, zip, exe, irc), netip.Addr{}},
		{"no zip", "", steps(hostV1, gap, ssh, html, exe, irc), netip.Addr{}},
		{"no exe", "", steps(hostV1, gap, ssh, html, zip, irc), netip.Addr{}},
		{"no irc", "", steps(hostV1, gap, ssh, html, zip, exe), netip.Addr{}},
		{"irc before ssh", "", steps(hostV1, 60*time.Second, irc, ssh, html, zip, exe), netip.Addr{}},
		{"downloads before ssh", "", steps(hostV1, gap, html, zip, exe, ssh, irc), netip.Addr{}},
		{"spread beyond the 2m window", "{window: 2m}", steps(hostV1, 40*time.Second, ssh, html, zip, exe, irc), netip.Addr{}},
		{"split over two hosts", "", append(steps(hostV1, gap, ssh, html, zip), at{exe, hostV2, 3 * gap}, at{irc, hostV2, 4 * gap}), netip.Addr{}},
		{"ssh on another host", "", append(steps(hostV2, gap, ssh), steps(hostV1, gap, ssh, html, zip, exe, irc)[1:]...), netip.Addr{}},
		{"text/plain instead of html", "", steps(hostV1, gap, ssh, piecePlain, zip, exe, irc), netip.Addr{}},
		{"ftp README instead of exe", "", steps(hostV1, gap, ssh, html, zip, pieceREADME, irc), netip.Addr{}},
		{"in order required, got exe first", "{downloads_in_order: true}", steps(hostV1, gap, ssh, exe, html, zip, irc), netip.Addr{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := build(t, "scenario", tc.parts...)
			alerts, c := runCapture(t, path, tc.config)
			if !tc.alert.IsValid() {
				if len(alerts) != 0 {
					t.Fatalf("%d alerts, want none; first: %v", len(alerts), alerts[0].Details)
				}
				return
			}
			if len(alerts) != 1 {
				t.Fatalf("%d alerts, want exactly 1", len(alerts))
			}
			a := alerts[0]
			if a.Rule != "trojan" || a.Details["host"] != tc.alert.String() || a.Flow.DstAddr() != tc.alert {
				t.Errorf("alert %+v, want one naming %s on its IRC connection", a, tc.alert)
			}
			for _, m := range []string{"downloads_html", "downloads_zip", "downloads_exe"} {
				if testtrace.Metric(c, 0, m) == 0 {
					t.Errorf("%s = 0", m)
				}
			}
			t.Logf("alert: %v", a.Details)
		})
	}
}

// TestNoAlertOnBrowsing: real web browsing (HTML pages among many downloads, no SSH, no
// IRC) raises nothing, while the HTTP parser follows every response.
func TestNoAlertOnBrowsing(t *testing.T) {
	alerts, c := runCapture(t, testtrace.Path(t, "pcapplusplus_example.pcap"), "")
	if len(alerts) != 0 {
		t.Fatalf("%d alerts on web browsing", len(alerts))
	}
	// tcpdump shows 337 requests and 337 segments starting with a response; 16 responses
	// are text/html.
	if r, h := testtrace.Metric(c, 0, "http_responses"), testtrace.Metric(c, 0, "downloads_html"); r < 337 || h != 16 {
		t.Errorf("http_responses %d (want >= 337), downloads_html %d (want 16)", r, h)
	}
	if g := testtrace.Metric(c, 0, "stream_gaps"); g != 0 {
		t.Errorf("stream_gaps %d, want 0 on a capture without loss", g)
	}
}
