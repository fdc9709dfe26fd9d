package trojan_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
)

type step func(netip.Addr) [][]byte

// play sends steps of host h in order, gap apart.
func (s *sim) play(h netip.Addr, gap time.Duration, steps ...step) {
	s.t.Helper()
	for _, st := range steps {
		s.send(st(h)...)
		s.wait(gap)
	}
}

func TestSequenceAlertsOnce(t *testing.T) {
	s := newSim(t, "")
	// Each step's event comes with its connection's second packet (the SYN-ACK).
	sshAt := s.now + int64(time.Millisecond)
	s.play(victim, 10*time.Second, sshStep, htmlStep, zipStep, exeStep)
	ircAt := s.now + int64(time.Millisecond)
	s.play(victim, 0, ircStep)
	if s.sink.Len() != 1 {
		t.Fatalf("%d alerts, want 1", s.sink.Len())
	}
	a := s.sink.Snapshot()[0]
	if a.NF != "trojan" || a.Rule != "trojan" || a.Details["host"] != victim.String() {
		t.Errorf("alert %+v, want rule trojan naming host %s", a, victim)
	}
	// The alert comes with the IRC connection's first server packet: the SYN-ACK.
	if a.Flow.SrcPort != 6667 || a.Flow.DstAddr() != victim || a.Time != ircAt {
		t.Errorf("alert on %s at %d, want the IRC server's SYN-ACK at %d", a.Flow, a.Time, ircAt)
	}
	if e, want := a.Details["elapsed"], time.Duration(ircAt-sshAt).String(); e != want || want != "40.038s" {
		t.Errorf("elapsed %v, want %s = 40.038s (4 gaps of 10 s and 38 packets 1 ms apart)", e, want)
	}
	for _, k := range []string{"ssh_at", "html_at", "zip_at", "exe_at", "irc_at"} {
		if a.Details[k] == nil {
			t.Errorf("alert lacks %s: %v", k, a.Details)
		}
	}
	for name, want := range map[string]uint64{"ssh": 1, "downloads_html": 1, "downloads_zip": 1, "downloads_exe": 1, "irc": 1, "alerts": 1, "sequences_started": 1} {
		if got := s.metric(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	// The host's state is gone: more IRC, or the whole sequence's tail again, is silent.
	s.play(victim, time.Second, htmlStep, zipStep, exeStep, ircStep, ircStep)
	if s.sink.Len() != 1 {
		t.Errorf("%d alerts after the state was cleared, want still 1", s.sink.Len())
	}
	// A whole new sequence alerts again.
	s.play(victim, time.Second, sshStep, exeStep, zipStep, htmlStep, ircStep)
	if s.sink.Len() != 2 {
		t.Errorf("%d alerts after a second full sequence, want 2", s.sink.Len())
	}
}

// TestNegatives: every incomplete or disordered variant is silent.
func TestNegatives(t *testing.T) {
	cases := map[string][]step{
		"no ssh":              {htmlStep, zipStep, exeStep, ircStep},
		"no html":             {sshStep, zipStep, exeStep, ircStep},
		"no zip":              {sshStep, htmlStep, exeStep, ircStep},
		"no exe":              {sshStep, htmlStep, zipStep, ircStep},
		"no irc":              {sshStep, htmlStep, zipStep, exeStep},
		"irc before ssh":      {ircStep, sshStep, htmlStep, zipStep, exeStep},
		"downloads first":     {htmlStep, zipStep, exeStep, sshStep, ircStep},
		"irc before the exe":  {sshStep, htmlStep, zipStep, ircStep, exeStep},
		"one download before": {htmlStep, sshStep, zipStep, exeStep, ircStep},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSim(t, "")
			s.play(victim, 5*time.Second, steps...)
			if s.sink.Len() != 0 {
				t.Errorf("%d alerts, want none: %+v", s.sink.Len(), s.sink.Snapshot()[0])
			}
		})
	}
}

func TestWindow(t *testing.T) {
	// 5 steps 30 s apart take 2 min: inside a 2m1s window, outside a 1m59s one.
	s := newSim(t, "{window: 2m1s}")
	s.play(victim, 30*time.Second, sshStep, htmlStep, zipStep, exeStep, ircStep)
	if s.sink.Len() != 1 {
		t.Errorf("inside the window: %d alerts, want 1", s.sink.Len())
	}
	s = newSim(t, "{window: 1m59s}")
	s.play(victim, 30*time.Second, sshStep, htmlStep, zipStep, exeStep, ircStep)
	if s.sink.Len() != 0 || s.metric("sequences_expired") != 1 {
		t.Errorf("beyond the window: %d alerts, %d expired; want 0 and 1", s.sink.Len(), s.metric("sequences_expired"))
	}
	// A second SSH inside the first one's window starts a second sequence that takes over
	// when the first expires: SSH at 0 and 50 s, downloads from 60 s, IRC at 110 s, window 100 s.
	s = newSim(t, "{window: 100s}")
	s.play(victim, 50*time.Second, sshStep)
	s.play(victim, 10*time.Second, sshStep, htmlStep, zipStep, exeStep)
	s.wait(20 * time.Second)
	s.play(victim, 0, ircStep)
	if s.sink.Len() != 1 || s.metric("sequences_started") != 2 {
		t.Errorf("second sequence: %d alerts, %d started; want 1 and 2", s.sink.Len(), s.metric("sequences_started"))
	}
}

func TestDownloadOrder(t *testing.T) {
	reversed := []step{sshStep, exeStep, zipStep, htmlStep, ircStep}
	s := newSim(t, "")
	s.play(victim, time.Second, reversed...)
	if s.sink.Len() != 1 {
		t.Errorf("any order (default): %d alerts, want 1", s.sink.Len())
	}
	s = newSim(t, "{downloads_in_order: true}")
	s.play(victim, time.Second, reversed...)
	if s.sink.Len() != 0 {
		t.Errorf("downloads_in_order, reversed: %d alerts, want 0", s.sink.Len())
	}
	// In order, with out-of-order extras around it: HTML, EXE (too early), ZIP, EXE.
	s = newSim(t, "{downloads_in_order: true}")
	s.play(victim, time.Second, sshStep, htmlStep, exeStep, zipStep, exeStep, ircStep)
	if s.sink.Len() != 1 {
		t.Errorf("downloads_in_order, in order: %d alerts, want 1", s.sink.Len())
	}
}

// TestHostsApart: the steps split over two hosts, and interleaved sequences of two hosts.
func TestHostsApart(t *testing.T) {
	s := newSim(t, "")
	s.play(victim, time.Second, sshStep, htmlStep, zipStep)
	s.play(victim2, time.Second, exeStep, ircStep)
	if s.sink.Len() != 0 {
		t.Fatalf("steps split over two hosts: %d alerts", s.sink.Len())
	}
	s = newSim(t, "")
	for _, st := range []step{sshStep, htmlStep, zipStep, exeStep, ircStep} {
		s.play(v6host, time.Second, st)
		s.play(victim2, time.Second, st)
	}
	if s.sink.Len() != 2 || s.sink.Snapshot()[0].Details["host"] != v6host.String() || s.sink.Snapshot()[1].Details["host"] != victim2.String() {
		t.Fatalf("two interleaved sequences: %+v", s.sink.Snapshot())
	}
}

// TestInside: only the watched hosts' sequences alert.
func TestInside(t *testing.T) {
	s := newSim(t, "{inside: [10.66.0.8/32, fd00::/8]}")
	for _, h := range []netip.Addr{victim, victim2, v6host} {
		s.play(h, time.Second, sshStep, htmlStep, zipStep, exeStep, ircStep)
	}
	if s.sink.Len() != 2 || s.sink.Snapshot()[0].Details["host"] != victim2.String() || s.sink.Snapshot()[1].Details["host"] != v6host.String() {
		t.Errorf("alerts %+v, want for %s and %s only", s.sink.Snapshot(), victim2, v6host)
	}
	if s.metric("ssh") != 2 {
		t.Errorf("ssh = %d, want 2 (the unwatched host's are not counted)", s.metric("ssh"))
	}
}

// TestDetection checks what each kind of connection counts as, one connection at a time.
func TestDetection(t *testing.T) {
	type want struct {
		metric string
		n      uint64
	}
	get := "<GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := []struct {
		name  string
		frame func() [][]byte
		want  []want // metrics that must be these values; every other download metric 0
	}{
		{"http text/html", func() [][]byte {
			return newConn(victim, server, 80).session(get, ">"+httpResponse("200 OK", "Content-Type: TEXT/HTML\r\n", "<p>"))
		},
			[]want{{"downloads_html", 1}}},
		{"http xhtml", func() [][]byte {
			return newConn(victim, server, 80).session(get, ">"+httpResponse("200 OK", "content-type:application/xhtml+xml\r\n", "<p>"))
		}, []want{{"downloads_html", 1}}},
		{"http text/plain", func() [][]byte {
			return newConn(victim, server, 80).session("<GET /a.html HTTP/1.1\r\n\r\n", ">"+httpResponse("200 OK", "Content-Type: text/plain\r\n", "<p>"))
		}, nil},
		{"http text/htmlx is not html", func() [][]byte {
			return newConn(victim, server, 80).session(get, ">"+httpResponse("200 OK", "Content-Type: text/htmlx\r\n", "<p>"))
		}, nil},
		{"http 404 html", func() [][]byte {
			return newConn(victim, server, 80).session(get, ">"+httpResponse("404 Not Found", "Content-Type: text/html\r\n", "<p>"))
		}, nil},
		{"http HEAD html", func() [][]byte {
			return newConn(victim, server, 80).session("<HEAD /x.html HTTP/1.1\r\n\r\n", ">HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 500\r\n\r\n")
		}, nil},
		{"http x-zip-compressed", func() [][]byte {
			return newConn(victim, server, 80).session(get, ">"+httpResponse("200 OK", "Content-Type: application/x-zip-compressed\r\n", "data"))
		}, []want{{"downloads_zip", 1}}},
		{"http x-msdownload", func() [][]byte {
			return newConn(victim, server, 80).session(get, ">"+httpResponse("200 OK", "Content-Type: application/x-msdownload\r\n", "data"))
		}, []want{{"downloads_exe", 1}}},
		{"http octet-stream + .exe path", func() [][]byte {
			return newConn(victim, server, 8080).session("<GET /dl/setup.EXE?x=1 HTTP/1.1\r\n\r\n", ">"+httpResponse("200 OK", "Content-Type: application/octet-stream\r\n", "data"))
		}, []want{{"downloads_exe", 1}}},
		{"http octet-stream + .exe in a query", func() [][]byte {
			return newConn(victim, server, 80).session("<GET /get.php?file=tool.exe&v=2 HTTP/1.1\r\n\r\n", ">"+httpResponse("200 OK", "Content-Type: application/octet-stream\r\n", "data"))
		}, []want{{"downloads_exe", 1}}},
		{"http octet-stream + .exe.txt path", func() [][]byte {
			return newConn(victim, server, 80).session("<GET /setup.exe.txt HTTP/1.1\r\n\r\n", ">"+httpResponse("200 OK", "Content-Type: application/octet-stream\r\n", "data"))
		}, nil},
		{"http MZ body", func() [][]byte {
			return newConn(victim, server, 80).session(get, ">"+httpResponse("200 OK", "Content-Type: application/octet-stream\r\n", "MZ\x90\x00"))
		}, []want{{"downloads_exe", 1}}},
		{"http PK body without type, magic split over segments", func() [][]byte {
			c := newConn(victim, server, 80)
			f := c.open()
			f = append(f, c.data(0, get), c.data(1, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nP"), c.data(1, "K\x03"), c.data(1, "\x04zipzip"))
			return append(f, c.close()...)
		}, []want{{"downloads_zip", 1}}},
		{"http PK but not a local header", func() [][]byte {
			return newConn(victim, server, 80).session(get, ">"+httpResponse("200 OK", "", "PK\x05\x06"))
		}, nil},
		{"http chunked PK, headers split mid-line", func() [][]byte {
			c := newConn(victim, server, 80)
			f := c.open()
			f = append(f, c.data(0, get), c.data(1, "HTTP/1.1 200 OK\r\nTransfer-Enc"), c.data(1, "oding: chunked\r\n\r\n4;ext=1\r\nPK\x03\x04\r\n"),
				c.data(1, "3\r\nabc\r\n0\r\n\r\n"))
			return append(f, c.close()...)
		}, []want{{"downloads_zip", 1}, {"http_responses", 1}}},
		{"http keep-alive: css, 304, chunked jpeg, then html", func() [][]byte {
			return newConn(victim, server, 80).session(get,
				">"+httpResponse("200 OK", "Content-Type: text/css\r\n", "p{}"), get,
				">HTTP/1.1 304 Not Modified\r\nContent-Type: text/html\r\n\r\n", get,
				">HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\xff\xd8jpg\r\n0\r\n\r\n", get,
				">"+httpResponse("200 OK", "Content-Type: text/html\r\n", "<p>"))
		}, []want{{"downloads_html", 1}, {"http_responses", 4}}},
		{"http EXE disguised as a jpeg", func() [][]byte {
			return newConn(victim, server, 80).session(get, ">"+httpResponse("200 OK", "Content-Type: image/jpeg\r\n", "MZ\x90\x00"))
		}, []want{{"downloads_exe", 1}}},
		{"http pipelined requests in one segment", func() [][]byte {
			return newConn(victim, server, 80).session("<GET /a.css HTTP/1.1\r\n\r\nGET /b.exe HTTP/1.1\r\n\r\n",
				">"+httpResponse("200 OK", "Content-Type: text/css\r\n", "p{}")+httpResponse("200 OK", "Content-Type: application/octet-stream\r\n", "zz"))
		}, []want{{"downloads_exe", 1}, {"http_responses", 2}}},
		{"http 100 continue", func() [][]byte {
			return newConn(victim, server, 80).session("<POST /up HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
				">HTTP/1.1 100 Continue\r\n\r\n", "<abc", ">"+httpResponse("200 OK", "Content-Type: text/html\r\n", "ok"))
		}, []want{{"downloads_html", 1}, {"http_responses", 1}}},
		{"http over IPv6", func() [][]byte {
			return newConn(v6host, v6srv, 80).session(get, ">"+httpResponse("200 OK", "Content-Type: application/zip\r\n", "x"))
		}, []want{{"downloads_zip", 1}}},
		{"http picked up mid-stream, after the request", func() [][]byte {
			c := newConn(victim, server, 80)
			c.data(0, get) // not captured
			return [][]byte{c.frame(0, "A", nil), c.data(1, httpResponse("200 OK", "Content-Type: text/html\r\n", "<p>")),
				c.data(0, get[1:]), c.data(1, httpResponse("200 OK", "Content-Type: application/zip\r\n", "z"))}
		}, []want{{"downloads_html", 1}, {"downloads_zip", 1}}},
		{"ftp retr zip", func() [][]byte {
			return newConn(victim, server, 21).session(">220 hi\r\n", "<RETR /pub/a.zip\r\n", ">150 ok\r\n", ">226 done\r\n")
		}, []want{{"downloads_zip", 1}, {"ftp_retr", 1}}},
		{"ftp retr html, reply split", func() [][]byte {
			return newConn(victim, server, 21).session(">220 hi\r\n", "<RETR ind", "<ex.html\r\n", ">150 ok\r\n22", ">6 done\r\n")
		}, []want{{"downloads_html", 1}, {"ftp_retr", 1}}},
		{"ftp retr refused", func() [][]byte {
			return newConn(victim, server, 21).session(">220 hi\r\n", "<RETR a.exe\r\n", ">550 no such file\r\n", ">226 done\r\n")
		}, []want{{"ftp_retr", 1}}},
		{"ftp retr other file", func() [][]byte {
			return newConn(victim, server, 21).session(">220 hi\r\n", "<RETR /README\r\n", ">226 done\r\n")
		}, []want{{"ftp_retr", 1}}},
		{"ftp on another port (220 then USER)", func() [][]byte {
			return newConn(victim, server, 2121).session(">220 hi\r\n", "<USER anonymous\r\n", ">331 pw\r\n", "<RETR x.zip\r\n", ">226 ok\r\n")
		}, []want{{"downloads_zip", 1}, {"ftp_retr", 1}, {"irc", 0}}},
		{"ftp data connection (passive)", func() [][]byte { return newConn(victim, server, 50123).session(">MZ\x90\x00\x03") },
			[]want{{"downloads_exe", 1}, {"raw_downloads", 1}}},
		{"server MZ after the client spoke is not a download", func() [][]byte {
			return newConn(victim, server, 50123).session("<hello", ">MZ\x90\x00\x03")
		}, nil},
		{"ssh by banner on another port", func() [][]byte { return newConn(victim, server, 2222).session(">SSH-2.0-x\r\n") },
			[]want{{"ssh", 1}}},
		{"ssh port without an answer", func() [][]byte { c := newConn(victim, server, 22); return [][]byte{c.frame(0, "S", nil)} },
			[]want{{"ssh", 0}}},
		{"irc by NICK on another port", func() [][]byte { return newConn(victim, server, 7000).session("<CAP LS\r\nNICK x\r\n") },
			[]want{{"irc", 1}}},
		{"irc by USER without a banner", func() [][]byte { return newConn(victim, server, 7000).session("<USER a b c :d\r\n") },
			[]want{{"irc", 1}}},
		{"pop3 USER is not irc", func() [][]byte { return newConn(victim, server, 110).session(">+OK ready\r\n", "<USER bob\r\n") },
			[]want{{"irc", 0}}},
		{"irc port", func() [][]byte { return newConn(victim, server, 6697).session() }, []want{{"irc", 1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, "")
			s.send(tc.frame()...)
			checked := map[string]bool{}
			for _, w := range tc.want {
				checked[w.metric] = true
				if got := s.metric(w.metric); got != w.n {
					t.Errorf("%s = %d, want %d", w.metric, got, w.n)
				}
			}
			for _, m := range []string{"downloads_html", "downloads_zip", "downloads_exe", "stream_gaps"} {
				if !checked[m] && s.metric(m) != 0 {
					t.Errorf("%s = %d, want 0", m, s.metric(m))
				}
			}
		})
	}
}

// TestStreams: retransmissions are not parsed twice, and lost bytes inside a body of known
// length are skipped without losing the next response.
func TestStreams(t *testing.T) {
	s := newSim(t, "")
	c := newConn(victim, server, 80)
	s.send(c.open()...)
	s.send(c.data(0, "GET /a HTTP/1.1\r\n\r\n"))
	body := make([]byte, 3000)
	resp1 := httpResponse("200 OK", "Content-Type: text/css\r\n", string(body))
	first := c.data(1, resp1[:1000])
	s.send(first, first) // a retransmission
	c.seq[1] += 1000     // 1000 bytes lost
	s.send(c.data(1, resp1[2000:]))
	s.send(c.data(0, "GET /b HTTP/1.1\r\n\r\n"))
	s.send(c.data(1, httpResponse("200 OK", "Content-Type: text/html\r\n", "<p>")))
	if s.metric("downloads_html") != 1 || s.metric("http_responses") != 2 || s.metric("stream_gaps") != 0 {
		t.Errorf("html %d, responses %d, gaps %d; want 1, 2, 0", s.metric("downloads_html"), s.metric("http_responses"), s.metric("stream_gaps"))
	}
	// Lost bytes in the headers: the stream resynchronises on the next response.
	c.seq[1] += 10
	s.send(c.data(1, "tent-Type: text/html\r\n\r\n"))
	s.send(c.data(0, "GET /c HTTP/1.1\r\n\r\n"))
	s.send(c.data(1, httpResponse("200 OK", "Content-Type: application/zip\r\n", "z")))
	if s.metric("stream_gaps") != 1 || s.metric("downloads_zip") != 1 || s.metric("downloads_html") != 1 {
		t.Errorf("after a gap: gaps %d, zip %d, html %d; want 1, 1, 1", s.metric("stream_gaps"), s.metric("downloads_zip"), s.metric("downloads_html"))
	}
	// A snap length cut a segment inside a body: the uncaptured bytes are skipped over.
	s.send(c.data(0, "GET /d HTTP/1.1\r\n\r\n"))
	s.send(c.data(1, httpResponse("200 OK", "Content-Type: text/css\r\n", string(body)))[:300])
	s.send(c.data(0, "GET /e.exe HTTP/1.1\r\n\r\n"))
	s.send(c.data(1, httpResponse("200 OK", "", "xx")))
	if s.metric("downloads_exe") != 1 || s.metric("stream_gaps") != 1 {
		t.Errorf("after a cut body: exe %d, gaps %d; want 1, 1", s.metric("downloads_exe"), s.metric("stream_gaps"))
	}
	// A cut inside the headers: resynchronised at the next response.
	s.send(c.data(0, "GET /f HTTP/1.1\r\n\r\n"))
	s.send(c.data(1, httpResponse("200 OK", "Content-Type: text/css\r\n", string(body)))[:14+20+20+20])
	s.send(c.data(0, "GET /g HTTP/1.1\r\n\r\n"))
	s.send(c.data(1, httpResponse("200 OK", "Content-Type: text/html\r\n", "<p>")))
	if s.metric("downloads_html") != 2 || s.metric("stream_gaps") != 2 {
		t.Errorf("after cut headers: html %d, gaps %d; want 2, 2", s.metric("downloads_html"), s.metric("stream_gaps"))
	}
}

// TestBadPackets: non-IP, malformed, non-TCP and garbage payloads pass, counted.
func TestBadPackets(t *testing.T) {
	s := newSim(t, "")
	arp := make([]byte, 60)
	arp[12], arp[13] = 0x08, 0x06
	cut := pkttest.TCP(victim, server, 1, 22, pkttest.SYN, nil)[:14+20+8]
	s.send(arp, cut, pkttest.UDP(victim, server, 1, 6667, []byte("NICK x\r\n")), pkttest.Echo(victim, server, 1, false))
	if s.metric("malformed") != 1 || s.metric("not_tcp") != 2 || s.metric("irc") != 0 {
		t.Errorf("malformed %d, not_tcp %d, irc %d; want 1, 2, 0", s.metric("malformed"), s.metric("not_tcp"), s.metric("irc"))
	}
	c := newConn(victim, server, 80)
	s.send(c.open()...)
	s.send(c.data(0, "GET / HTTP/1.1\r\n\r\n"), c.data(1, "HTTP/1.1 abc\r\n\r\n"), c.data(1, "\x00\xff garbage\n\n\n"),
		c.data(1, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
	if s.metric("stream_gaps") != 2 {
		t.Errorf("stream_gaps %d, want 2 (a bad status line, a bad chunk size)", s.metric("stream_gaps"))
	}
}

func TestConfigValidation(t *testing.T) {
	for cfg, want := range map[string]string{
		"{window: 0s}":         "window",
		"{window: soon}":       "bad duration",
		"{ssh_ports: [0]}":     "ssh_ports[0]",
		"{irc_ports: [70000]}": "irc_ports",
		"{max_hosts: 0}":       "max_hosts",
		// snf's decoder does not name the field of a value that fails to parse as text.
		"{inside: [nope]}": `"nope"`,
		"{windw: 1m}":      `unknown field "windw"`,
	} {
		testtrace.ConfigError(t, "trojan", cfg, want)
	}
}

// TestStateMoves: a flow moved to another unit mid-response keeps its parser state, and a
// host's sequence survives the codec.
func TestStateMoves(t *testing.T) {
	a, b := newSim(t, ""), newSim(t, "")
	c := newConn(victim, server, 80)
	a.send(c.open()...)
	a.send(c.data(0, "GET /x.exe HTTP/1.1\r\n\r\n"), c.data(1, "HTTP/1.1 200 OK\r\nContent-Type: appli"))
	k := keyOf(c.frame(0, "A", nil))
	st, err := a.c.ExportFlow(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.c.ImportFlow(st); err != nil {
		t.Fatal(err)
	}
	b.send(c.data(1, "cation/octet-stream\r\nContent-Length: 2\r\n\r\nzz"))
	if b.metric("downloads_exe") != 1 {
		t.Errorf("after the move: downloads_exe = %d, want 1", b.metric("downloads_exe"))
	}
	// Corrupt state is refused.
	c2 := newConn(victim, server, 80)
	a.send(c2.open()...)
	a.send(c2.data(0, "GET /x.exe HTTP/1.1\r\n\r\n"))
	st, err = a.c.ExportFlow(keyOf(c2.frame(0, "A", nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.c.ImportFlow(st[:len(st)-3]); err == nil {
		t.Error("truncated flow state accepted")
	}
}
