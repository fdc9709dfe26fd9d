package trojan_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	_ "github.com/snf-dev/snf/nf/trojan"
	"github.com/snf-dev/snf/packet"
)

// sim runs frames one at a time through a chain holding one trojan detector.
type sim struct {
	t     testing.TB
	c     *snf.Chain
	sink  *testtrace.Alerts
	now   int64
	clock uint64
	p     [1]packet.Packet
}

var t0 = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC).UnixNano()

func newSim(t testing.TB, config string) *sim {
	t.Helper()
	s := &sim{t: t, sink: &testtrace.Alerts{}, now: t0}
	s.c = testtrace.Chain(t, testtrace.OneNF("trojan", config), snf.ChainOptions{Alerts: s.sink})
	return s
}

// send processes frames 1 ms apart from the current time; every frame must come out
// unchanged (the detector only watches).
func (s *sim) send(frames ...[]byte) {
	s.t.Helper()
	for _, f := range frames {
		s.p[0].SetData(f, s.now, 0)
		s.clock++
		s.p[0].Clock = s.clock
		out := s.c.Process(s.p[:], nil)
		if len(out) != 1 || string(out[0].Data) != string(f) {
			s.t.Fatalf("a frame was dropped or changed")
		}
		s.now += int64(time.Millisecond)
	}
}

// wait moves the clock on.
func (s *sim) wait(d time.Duration) { s.now += int64(d) }

func (s *sim) metric(name string) uint64 { return testtrace.Metric(s.c, 0, name) }

// tcpConn builds the frames of one TCP connection with consistent sequence numbers.
type tcpConn struct {
	cli, srv     netip.Addr
	cport, sport uint16
	seq          [2]uint32 // next sequence number of the client (0) and the server (1)
}

var nextPort uint16 = 40000

func newConn(cli, srv netip.Addr, sport uint16) *tcpConn {
	nextPort++
	return &tcpConn{cli: cli, srv: srv, cport: nextPort, sport: sport, seq: [2]uint32{1000, 900000}}
}

func (c *tcpConn) frame(dir int, flags string, payload []byte) []byte {
	src, dst, sp, dp := c.cli, c.srv, c.cport, c.sport
	if dir == 1 {
		src, dst, sp, dp = dst, src, dp, sp
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: c.seq[dir], Ack: c.seq[1-dir], Window: 65535}
	for _, f := range flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'P':
			tcp.PSH = true
		case 'F':
			tcp.FIN = true
		}
	}
	c.seq[dir] += uint32(len(payload))
	if tcp.SYN || tcp.FIN {
		c.seq[dir]++
	}
	return pkttest.Frame(src, dst, tcp, payload)
}

// open returns the three-way handshake.
func (c *tcpConn) open() [][]byte {
	return [][]byte{c.frame(0, "S", nil), c.frame(1, "SA", nil), c.frame(0, "A", nil)}
}

// data returns a segment from the client (0) or the server (1).
func (c *tcpConn) data(dir int, payload string) []byte { return c.frame(dir, "PA", []byte(payload)) }

func (c *tcpConn) close() [][]byte {
	return [][]byte{c.frame(0, "FA", nil), c.frame(1, "FA", nil), c.frame(0, "A", nil)}
}

// session returns a whole connection: handshake, the segments (each "<" from the client,
// ">" from the server), and the close.
func (c *tcpConn) session(segs ...string) [][]byte {
	f := c.open()
	for _, s := range segs {
		dir := 0
		if s[0] == '>' {
			dir = 1
		}
		f = append(f, c.data(dir, s[1:]))
	}
	return append(f, c.close()...)
}

var (
	victim  = netip.MustParseAddr("10.66.0.7")
	victim2 = netip.MustParseAddr("10.66.0.8")
	v6host  = netip.MustParseAddr("fd00::66")
	server  = netip.MustParseAddr("198.51.100.20")
	v6srv   = netip.MustParseAddr("2001:db8::20")
)

func httpResponse(status, headers, body string) string {
	return "HTTP/1.1 " + status + "\r\n" + headers + "Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// srv returns the server address of h's family.
func srv(h netip.Addr) netip.Addr {
	if h.Is6() {
		return v6srv
	}
	return server
}

// The five steps, as whole connections of host h.
func sshStep(h netip.Addr) [][]byte {
	return newConn(h, srv(h), 22).session(">SSH-2.0-OpenSSH_9.6\r\n", "<SSH-2.0-OpenSSH_9.6\r\n")
}

func htmlStep(h netip.Addr) [][]byte {
	return newConn(h, srv(h), 80).session("<GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
		">"+httpResponse("200 OK", "Content-Type: text/html; charset=utf-8\r\n", "<!doctype html><p>hi</p>"))
}

func zipStep(h netip.Addr) [][]byte {
	return newConn(h, srv(h), 80).session("<GET /files/pack.zip HTTP/1.1\r\nHost: x\r\n\r\n",
		">"+httpResponse("200 OK", "Content-Type: application/zip\r\n", "PK\x03\x04rest-of-zip"))
}

func exeStep(h netip.Addr) [][]byte {
	return newConn(h, srv(h), 21).session(">220 ftp ready\r\n", "<USER anonymous\r\n", ">331 pass\r\n", "<PASS x\r\n",
		">230 ok\r\n", "<RETR Setup.EXE\r\n", ">150 Opening BINARY mode data connection\r\n", ">226 Transfer complete.\r\n")
}

func ircStep(h netip.Addr) [][]byte {
	return newConn(h, srv(h), 6667).session("<NICK bot\r\nUSER bot 0 * :bot\r\n", ">:irc.example 001 bot :Welcome\r\n", "<JOIN #cc\r\n")
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// keyOf returns the key of a frame.
func keyOf(frame []byte) packet.Key {
	var p packet.Packet
	p.SetData(frame, 0, 0)
	return p.Key
}
