package ids_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/ids"
	"github.com/snf-dev/snf/packet"
)

var (
	client  = netip.MustParseAddr("192.168.1.10")
	server  = netip.MustParseAddr("198.51.100.7")
	client6 = netip.MustParseAddr("2001:db8::10")
	server6 = netip.MustParseAddr("2001:db8::7")
)

// rules returns the rule lines of a chain file ("" for the defaults).
func chainYAML(rules string) string {
	y := "nfs:\n  - nf: ids\n"
	if rules != "" {
		y += "    config:\n      rules:\n" + rules
	}
	return y
}

func newIDS(t testing.TB, rules string) (*snf.Chain, *testtrace.Alerts) {
	t.Helper()
	alerts := &testtrace.Alerts{}
	return testtrace.Chain(t, chainYAML(rules), snf.ChainOptions{Alerts: alerts}), alerts
}

// result is what happened to one frame: whether it passed and the rules it alerted on.
type result struct {
	passed bool
	rules  string // alerted rules, comma-separated in order
}

// run sends frames through c one at a time.
func run(c *snf.Chain, s *testtrace.Alerts, frames ...[]byte) []result {
	res := make([]result, len(frames))
	var p [1]packet.Packet
	for i, f := range frames {
		before := s.Len()
		p[0].SetData(f, int64(i+1)*1e6, 0)
		res[i].passed = len(c.Process(p[:], nil)) == 1
		var rs []string
		for _, a := range s.Snapshot()[before:] {
			rs = append(rs, a.Rule)
		}
		res[i].rules = strings.Join(rs, ",")
	}
	return res
}

func check(t *testing.T, got []result, want ...result) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("frame %d: passed=%v alerts=%q, want passed=%v alerts=%q", i, got[i].passed, got[i].rules, want[i].passed, want[i].rules)
		}
	}
}

func pass(rules string) result { return result{true, rules} }
func drop(rules string) result { return result{false, rules} }

func tcp(dport uint16, payload string) []byte {
	return pkttest.TCP(client, server, 40000, dport, "PA", []byte(payload))
}

func udp(dport uint16, payload string) []byte {
	return pkttest.UDP(client, server, 40000, dport, []byte(payload))
}

func TestConfigErrorsNameRuleAndField(t *testing.T) {
	cases := []struct{ rules, want string }{
		{`        - {id: hex, content: ["ab|4g|"]}`, `rules[0] (hex): content[0]: bad hex escape`},
		{`        - {id: ok, content: [a]}
        - {id: odd, content: [x, "|4d 5|"]}`, `rules[1] (odd): content[1]: bad hex escape at byte 5 of "|4d 5|": odd number of hex digits`},
		{`        - {id: split, content: ["|4 d|"]}`, `rules[0] (split): content[0]: bad hex escape`},
		{`        - {id: open, content: ["|4d 5a"]}`, `rules[0] (open): content[0]: unterminated |hex| block`},
		{`        - {id: pipes, content: ["a||b"]}`, `rules[0] (pipes): content[0]: empty |hex| block`},
		{`        - {id: none, content: []}`, `rules[0] (none): content: want at least one string`},
		{`        - {id: missing}`, `rules[0] (missing): content: want at least one string`},
		{`        - {id: empty, content: [abc, ""]}`, `rules[0] (empty): content[1]: empty string`},
		{`        - {id: long, content: ["` + strings.Repeat("a", ids.MaxContentLen+1) + `"]}`, `rules[0] (long): content[0]: 1025 bytes`},
		{`        - {id: bigport, proto: tcp, dst_ports: "80,70000", content: [a]}`, `rules[0] (bigport): dst_ports: bad port "70000"`},
		{`        - {id: backwards, proto: tcp, src_ports: "2000-1000", content: [a]}`, `rules[0] (backwards): src_ports: bad port range "2000-1000"`},
		{`        - {id: word, proto: udp, dst_ports: [53, "dns"], content: [a]}`, `rules[0] (word): dst_ports: bad port "dns"`},
		{`        - {id: icmp, proto: icmp, content: [a]}`, `rules[0] (icmp): proto: want tcp, udp or any, have "icmp"`},
		{`        - {id: reject, action: reject, content: [a]}`, `rules[0] (reject): action: want alert or drop, have "reject"`},
		{`        - {content: [a]}`, `rules[0]: id: required`},
		{`        - {id: "a b", content: [a]}`, `rules[0] (a b): id: "a b" has ' '`},
		{`        - {id: twice, content: [a]}
        - {id: twice, content: [b]}`, `rules[1] (twice): id: "twice" is also the id of rules[0]`},
		{`        - {id: typo, contents: [a]}`, `unknown field "contents"`},
	}
	for _, tc := range cases {
		_, err := snf.ParseChain([]byte(chainYAML(tc.rules+"\n")), "x.yaml")
		if err == nil {
			t.Errorf("%s: no error, want %q", tc.rules, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "x.yaml: nfs[0] (ids): config:") {
			t.Errorf("%s:\n  error %q\n  want  %q", tc.rules, err, tc.want)
		}
	}
}

func TestParseContent(t *testing.T) {
	for in, want := range map[string]string{
		"abc":                 "abc",
		"|4d 5a 90 00|":       "MZ\x90\x00",
		"|4D5a|":              "MZ",
		"a|7c|b":              "a|b",
		"|00|x| 01  02 |":     "\x00x\x01\x02",
		"GET |2f|index.html ": "GET /index.html ",
	} {
		got, err := ids.ParseContent(in)
		if err != nil || string(got) != want {
			t.Errorf("ParseContent(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestDefaultConfigRules(t *testing.T) {
	c, s := newIDS(t, "")
	got := run(c, s,
		tcp(21, "USER anonymous\r\n"),
		tcp(21, "PASS s3cret\r\n"),                                    // cleartext FTP password
		tcp(2121, "PASS s3cret\r\n"),                                  // not to port 21
		pkttest.TCP(server, client, 21, 40000, "PA", []byte("PASS ")), // from port 21, not to it
		tcp(20, "MZ\x90\x00\x03\x00\x00\x00 This program cannot be run in DOS mode"),
		udp(69, "MZ\x90\x00"), // PE header, but the rule is TCP only
		tcp(80, "GET / HTTP/1.1\r\nUser-Agent: ${JNDI:ldap://x/a}\r\n\r\n"),
		udp(53, "${jndi:dns://x}"),
		tcp(80, "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"),
	)
	check(t, got,
		pass(""), pass("ftp-cleartext-pass"), pass(""), pass(""), pass("pe-executable"), pass(""),
		pass("log4shell-jndi"), pass("log4shell-jndi"), pass(""))
	a := s.Snapshot()[0]
	if a.NF != "ids" || a.Rule != "ftp-cleartext-pass" || a.Details["msg"] != "cleartext FTP password" ||
		a.Details["action"] != "alert" || a.Flow.DstPort != 21 || a.Flow.SrcAddr() != client || a.Time != 2e6 {
		t.Errorf("alert %+v", a)
	}
	m := testtrace.Metrics(c, 0)
	if m["rule.ftp-cleartext-pass"] != 1 || m["rule.pe-executable"] != 1 || m["rule.log4shell-jndi"] != 2 ||
		m["matched"] != 4 || m["dropped"] != 0 {
		t.Errorf("metrics %v", m)
	}
}

const semantics = `        - {id: both, content: [abc, xyz]}
        - {id: hexmix, proto: udp, content: ["|00 01|key|ff|"]}
        - {id: nocase, nocase: true, content: [SeLeCt, "|46|ROM"]}
        - {id: exact, content: [Secret]}
        - {id: web, proto: tcp, dst_ports: "80,8000-8080", content: [attack]}
        - {id: fromdns, proto: any, src_ports: 53, content: [evil]}
        - {id: tcponly, proto: tcp, content: [tcp-only]}
        - {id: udponly, proto: udp, content: [udp-only]}
        - {id: anyproto, content: [anywhere]}
        - {id: blocker, action: drop, msg: blocked, content: [BLOCKME]}
        - {id: twice, content: [dup, dup]}
`

func TestMatchingSemantics(t *testing.T) {
	c, s := newIDS(t, semantics)
	got := run(c, s,
		tcp(1, "xx abc yy"),       // 0: one of two contents
		tcp(1, "xyz ... abc"),     // 1: both, in another order
		tcp(1, "abcxyz"),          // 2: both, adjacent
		udp(1, "\x00\x01key\xff"), // 3: hex bytes, the whole payload
		tcp(1, "\x00\x01key\xff"), // 4: hex rule is UDP only
		tcp(1, "sElEcT * from t"), // 5: nocase, both contents
		tcp(1, "select * fro m"),  // 6: nocase, one content missing
		tcp(1, "my secret"),       // 7: case-sensitive: no
		tcp(1, "my Secret"),       // 8
		tcp(80, "attack"),         // 9: port list
		tcp(8080, "attack"),       // 10: port range, upper bound
		tcp(8081, "attack"),       // 11: outside
		udp(80, "attack"),         // 12: proto tcp
		pkttest.UDP(server, client, 53, 5353, []byte("evil")),       // 13: src port, proto any = udp
		pkttest.TCP(server, client, 53, 5353, "PA", []byte("evil")), // 14: or tcp
		udp(53, "evil"),             // 15: dst port 53 is not src port 53
		tcp(1, "tcp-only udp-only"), // 16
		udp(1, "tcp-only udp-only"), // 17
		pkttest.TCP(client6, server6, 1, 2, "PA", []byte("anywhere")), // 18: IPv6
		pkttest.Echo(client, server, 7, false),                        // 19: ICMP echo "ping": nothing
		tcp(1, "please BLOCKME now"),                                  // 20: drop rule
		tcp(1, "BLOCKME abc xyz"),                                     // 21: drop and alert rules together: both alert, dropped
		tcp(1, "dup"),                                                 // 22: a content listed twice is needed once
	)
	check(t, got,
		pass(""), pass("both"), pass("both"), pass("hexmix"), pass(""), pass("nocase"), pass(""),
		pass(""), pass("exact"), pass("web"), pass("web"), pass(""), pass(""), pass("fromdns"),
		pass("fromdns"), pass(""), pass("tcponly"), pass("udponly"), pass("anyproto"), pass(""),
		drop("blocker"), drop("both,blocker"), pass("twice"))
	for _, a := range s.Snapshot() {
		if a.Rule == "blocker" && (a.Details["msg"] != "blocked" || a.Details["action"] != "drop") {
			t.Errorf("drop alert %+v", a)
		}
	}
	m := testtrace.Metrics(c, 0)
	if m["rule.both"] != 3 || m["rule.web"] != 2 || m["rule.blocker"] != 2 || m["matched"] != 15 || m["dropped"] != 2 {
		t.Errorf("metrics %v", m)
	}
	if st := c.Stats(); st.Dropped != 2 || st.Alerts != 16 {
		t.Errorf("chain stats %+v", st)
	}
}

func TestProtoAnyIncludesICMP(t *testing.T) {
	c, s := newIDS(t, "        - {id: ping, content: [ing]}\n        - {id: ported, dst_ports: 0-65535, content: [ing]}\n")
	check(t, run(c, s, pkttest.Echo(client, server, 7, false)), pass("ping"))
}

// Contents that overlap, nest and share prefixes and suffixes are each found: the search
// reports overlapping occurrences, not only the leftmost.
func TestOverlappingContents(t *testing.T) {
	c, s := newIDS(t, `        - {id: abcd, content: [abcd]}
        - {id: bc, content: [bc]}
        - {id: cd, content: [cd]}
        - {id: abc, content: [abc]}
        - {id: bcd, content: [bcd]}
        - {id: d, content: [d]}
        - {id: aa, content: [aa]}
        - {id: aaa, content: [aaa]}
        - {id: nested, content: [abcd, bc, d]}
        - {id: ci-bc, nocase: true, content: [BC]}
`)
	got := run(c, s,
		tcp(1, "abcd"),
		tcp(1, "abce"),
		tcp(1, "xbcdx"),
		tcp(1, "aa"),
		tcp(1, "aaaa"),
		tcp(1, "a"),
		tcp(1, "d"),
	)
	check(t, got,
		pass("abcd,bc,cd,abc,bcd,d,nested,ci-bc"),
		pass("bc,abc,ci-bc"),
		pass("bc,cd,bcd,d,ci-bc"),
		pass("aa"),
		pass("aa,aaa"),
		pass(""),
		pass("d"),
	)
}

// A content matches at the very first and last bytes of the payload, and as the whole
// payload, but never in the headers or in Ethernet padding after the IP packet.
func TestPayloadBoundaries(t *testing.T) {
	c, s := newIDS(t, `        - {id: first, content: ["|01|"]}
        - {id: last, content: ["|ff|"]}
        - {id: whole, content: ["|01 02 03 ff|"]}
        - {id: port, content: ["|9c 40|"]}
        - {id: pad, content: [PADPAD]}
`)
	padded := udp(1, "\x05") // 43 bytes, padded by the frame builder to the Ethernet minimum of 60
	if len(padded) < 14+20+8+1+6 {
		t.Fatalf("frame of %d bytes has no room for padding", len(padded))
	}
	copy(padded[14+20+8+1:], "PADPAD") // the content in the padding
	got := run(c, s,
		udp(1, "\x01\x02\x03\xff"),
		udp(1, "\x01xx"),
		udp(1, "xx\xff"),
		udp(1, "\x02\x03"), // the source port 40000 = 9c 40 is in the header, not the payload
		padded,
		pkttest.TCP(client, server, 1, 2, "S", nil),             // no payload
		pkttest.IPProto(client, server, 47, []byte("\x01\xff")), // GRE: no L4 payload parsed
	)
	check(t, got, pass("first,last,whole"), pass("first"), pass("last"), pass(""), pass(""), pass(""), pass(""))
}

// A payload cut by the capture's snaplen is scanned as captured: a content past the cut is
// not found.
func TestTruncatedPayload(t *testing.T) {
	c, s := newIDS(t, "        - {id: tail, content: [TAIL]}\n        - {id: head, content: [HEAD]}\n")
	f := tcp(1, "HEAD......TAIL")
	var p [1]packet.Packet
	p[0].SetData(f[:len(f)-3], 1, len(f))
	c.Process(p[:], nil)
	if s.Len() != 1 || s.Snapshot()[0].Rule != "head" {
		t.Errorf("alerts %+v, want only head", s.Snapshot())
	}
}

func TestBadFramesPass(t *testing.T) {
	c, s := newIDS(t, "        - {id: x, content: [x]}\n")
	good := tcp(1, "xxxx")
	cut := append([]byte(nil), good[:14+20+10]...) // TCP header cut short: malformed
	got := run(c, s, []byte{1, 2, 3}, cut, good[:20], good)
	check(t, got, pass(""), pass(""), pass(""), pass("x"))
}

func TestNoRules(t *testing.T) {
	spec, err := snf.ParseChain([]byte("nfs:\n  - nf: ids\n    config: {rules: []}\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := pkttest.Batch(0, tcp(21, "PASS x"))
	if out := c.Process(b, nil); len(out) != 1 {
		t.Error("a rule-less IDS must pass everything")
	}
}

func TestProcessAllocatesNothing(t *testing.T) {
	c, _ := newIDS(t, semantics+"        - {id: nc, nocase: true, content: [NOTHERE]}\n")
	var frames [][]byte
	for i := range 64 {
		frames = append(frames, tcp(uint16(80+i), strings.Repeat("GET /index.html HTTP/1.1 ", 1+i%40)))
	}
	batch := pkttest.Batch(0, frames...)
	out := make([]*packet.Packet, 0, 128)
	c.Process(batch, out)
	if n := testtrace.AllocsPerRun(100, func() { out = c.Process(batch, out[:0]) }); n != 0 {
		t.Errorf("Process allocates %v per batch of 64", n)
	}
}

// When some content occurs (whether or not its rule then matches), the library's one-pass
// search returns its list of occurrences in a new slice: this measures that cost.
func TestAllocationOnContentHit(t *testing.T) {
	c, _ := newIDS(t, semantics)
	batch := pkttest.Batch(0, tcp(1, "xx abc yy")) // "abc" occurs; rule both needs xyz too
	out := make([]*packet.Packet, 0, 4)
	c.Process(batch, out)
	n := testtrace.AllocsPerRun(100, func() { out = c.Process(batch, out[:0]) })
	if n > 1 {
		t.Errorf("a packet with one content occurrence allocates %v times, want at most 1", n)
	}
	t.Logf("a packet in which one content occurs: %v allocation(s) (the search's match list)", n)
}

func TestDocumentedDefaults(t *testing.T) {
	f, err := snf.Lookup("ids")
	if err != nil {
		t.Fatal(err)
	}
	d := ids.DefaultConfig()
	if err := d.Validate(); err != nil || len(d.Rules) < 3 {
		t.Errorf("default config: %v", err)
	}
	var buf bytes.Buffer
	for _, fl := range f.Fields() {
		buf.WriteString(fl.Name + " ")
	}
	for _, want := range []string{"rules[].id", "rules[].content", "rules[].nocase", "rules[].dst_ports", "rules[].action", "rules[].msg"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("fields %s lack %s", buf.String(), want)
		}
	}
}
