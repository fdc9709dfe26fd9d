package ids_test

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/ids"
	"github.com/snf-dev/snf/packet"
)

// fuzzRule is a rule of the fuzz chain, kept in Go so the oracle can evaluate it.
type fuzzRule struct {
	id, proto, dports string
	content           []string
	nocase, drop      bool
}

var fuzzRules = []fuzzRule{
	{id: "ftp", proto: "tcp", dports: "21", content: []string{"PASS "}},
	{id: "pe", proto: "tcp", content: []string{"|4d 5a 90 00|"}},
	{id: "jndi", content: []string{"${jndi:"}, nocase: true},
	{id: "abcd", content: []string{"abcd"}},
	{id: "bc", content: []string{"bc"}},
	{id: "nest", content: []string{"abcd", "bc", "d"}, drop: true},
	{id: "aa", proto: "udp", content: []string{"aa"}},
	{id: "ci-ab", content: []string{"AB", "|00|"}, nocase: true},
	{id: "ff", proto: "any", dports: "0-1000", content: []string{"|ff ff|"}},
	{id: "dns", proto: "udp", dports: "53", content: []string{"|00 00 01|", "a"}, drop: true},
}

func fuzzYAML() string {
	var b strings.Builder
	for _, r := range fuzzRules {
		fmt.Fprintf(&b, "        - {id: %s, proto: %q, dst_ports: %q, nocase: %v, content: [", r.id, r.proto, r.dports, r.nocase)
		for i, c := range r.content {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", c)
		}
		action := "alert"
		if r.drop {
			action = "drop"
		}
		fmt.Fprintf(&b, "], action: %s}\n", action)
	}
	return b.String()
}

// expect is the oracle: the rules that match p, found by plain substring search.
func expect(t *testing.T, p *packet.Packet) (rules []string, drop bool) {
	pl := p.Payload()
	if len(pl) == 0 {
		return nil, false
	}
	for _, r := range fuzzRules {
		switch r.proto {
		case "tcp":
			if p.Proto != packet.ProtoTCP {
				continue
			}
		case "udp":
			if p.Proto != packet.ProtoUDP {
				continue
			}
		}
		if r.dports != "" {
			lo, hi, _ := strings.Cut(r.dports, "-")
			if hi == "" {
				hi = lo
			}
			a, _ := strconv.Atoi(lo)
			b, _ := strconv.Atoi(hi)
			if (p.Proto != packet.ProtoTCP && p.Proto != packet.ProtoUDP) || int(p.Key.DstPort) < a || int(p.Key.DstPort) > b {
				continue
			}
		}
		all := true
		for _, s := range r.content {
			c, err := ids.ParseContent(s)
			if err != nil {
				t.Fatal(err)
			}
			hay := pl
			if r.nocase {
				hay, c = asciiLower(pl), asciiLower(c)
			}
			if !bytes.Contains(hay, c) {
				all = false
				break
			}
		}
		if all {
			rules = append(rules, r.id)
			drop = drop || r.drop
		}
	}
	return rules, drop
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// FuzzIDS puts the fuzzer's bytes in the payload of TCP, UDP and IPv6 frames, and uses them
// as a raw frame, and runs them through an IDS chain. Nothing may panic, and the alerts and
// verdict of every frame must be those of a plain substring-search oracle.
func FuzzIDS(f *testing.F) {
	for _, s := range []string{"", "PASS secret", "MZ\x90\x00", "${JnDi:ldap", "abcd", "xabcdbcd", "aaa",
		"Ab\x00", "\xff\xff", "\x00\x00\x01a", "\x00\x00\x01", "bcbc"} {
		f.Add([]byte(s))
	}
	// One chain for the whole run: the fuzzing engine calls the target sequentially in each
	// worker process, and reusing the chain also exercises state carried across packets.
	s := &testtrace.Alerts{}
	c := testtrace.Chain(f, chainYAML(fuzzYAML()), snf.ChainOptions{Alerts: s, MaxFlows: 4096})
	var now int64
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 9000 {
			data = data[:9000]
		}
		s.Reset()
		frames := [][]byte{
			pkttest.TCP(client, server, 40000, 21, "PA", data),
			pkttest.UDP(client, server, 40000, 53, data),
			pkttest.UDP(client, server, 40000, 5353, data),
			pkttest.TCP(client6, server6, 40000, 80, "PA", data),
			data,
		}
		var p [1]packet.Packet
		for i, fr := range frames {
			now += 1e6
			p[0].SetData(fr, now, 0)
			before := s.Len()
			passed := len(c.Process(p[:], nil)) == 1
			var got []string
			for _, a := range s.Snapshot()[before:] {
				got = append(got, a.Rule)
			}
			want, drop := expect(t, &p[0])
			if !slices.Equal(got, want) || passed == drop {
				t.Fatalf("frame %d (%s, payload %q): alerts %v passed=%v, want %v passed=%v",
					i, p[0].Key, p[0].Payload(), got, passed, want, !drop)
			}
		}
	})
}
