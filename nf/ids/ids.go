// Package ids is a payload-signature intrusion detection NF: rules of protocol, ports and
// content strings (with Snort-style |hex| escapes, optionally case-insensitive) are matched
// against each packet's L4 payload, all rules' contents in one Aho–Corasick pass, and a
// packet that contains every content of a rule raises an alert and, for a drop rule, is
// dropped. See README.md.
package ids

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/coregx/ahocorasick"
	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// MaxContentLen bounds one content string (after |hex| decoding), in bytes: longer strings
// could not fit a packet on common links, and the automaton grows with them.
const MaxContentLen = 1024

// Config is the IDS configuration.
type Config struct {
	Rules []Rule `json:"rules" doc:"signatures; every packet with an L4 payload is checked against all of them, and each rule that matches raises its own alert"`
}

// Rule is one signature. It matches a packet whose protocol and ports fit and whose payload
// contains every content string, anywhere and in any order.
type Rule struct {
	ID       string   `json:"id" doc:"unique name: the alert's rule and the metric rule.<id> (letters, digits, - _ . :)"`
	Proto    string   `json:"proto,omitempty" doc:"tcp, udp or any (default any: every IP packet with an L4 payload, ICMP included)"`
	SrcPorts Ports    `json:"src_ports,omitempty" doc:"source ports: \"53\", \"80,443\", \"1024-65535\" (empty: any); needs tcp or udp, proto any means either"`
	DstPorts Ports    `json:"dst_ports,omitempty" doc:"destination ports, as src_ports"`
	Content  []string `json:"content" doc:"strings that must all appear in the payload; |4d 5a 90 00| writes bytes in hex (a literal | is |7c|)"`
	Nocase   bool     `json:"nocase,omitempty" doc:"match the contents ignoring ASCII letter case"`
	Action   string   `json:"action,omitempty" doc:"alert (default): raise an alert and pass the packet; drop: raise an alert and drop it"`
	Msg      string   `json:"msg,omitempty" doc:"text carried in the alert's details as msg"`
}

// Ports is a port list as written in the config: "80,443,1000-2000", a number, or a list of
// those. It is kept as text and checked by Validate, so that a bad port is reported with its
// rule and field.
type Ports string

// UnmarshalJSON accepts "80,443,1000-2000", 80, or ["80", 443, "1000-2000"].
func (p *Ports) UnmarshalJSON(b []byte) error {
	var items []json.RawMessage
	if len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &items); err != nil {
			return err
		}
	} else {
		items = []json.RawMessage{b}
	}
	parts := make([]string, 0, len(items))
	for _, it := range items {
		var s string
		if err := json.Unmarshal(it, &s); err != nil {
			var n json.Number
			if err := json.Unmarshal(it, &n); err != nil {
				return fmt.Errorf("ports: want \"80,443,1000-2000\", a number or a list, have %s", it)
			}
			s = n.String()
		}
		parts = append(parts, s)
	}
	*p = Ports(strings.Join(parts, ","))
	return nil
}

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi uint16 }

func parsePorts(s Ports) ([]portRange, error) {
	if strings.TrimSpace(string(s)) == "" {
		return nil, nil
	}
	var out []portRange
	for _, part := range strings.Split(string(s), ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
		if err != nil {
			return nil, fmt.Errorf("bad port %q (want 0-65535 or LO-HI)", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16); err != nil || b < a {
				return nil, fmt.Errorf("bad port range %q (want LO-HI with LO <= HI <= 65535)", part)
			}
		}
		out = append(out, portRange{uint16(a), uint16(b)})
	}
	return out, nil
}

func inPorts(rs []portRange, port uint16) bool {
	if len(rs) == 0 {
		return true
	}
	for _, r := range rs {
		if port >= r.lo && port <= r.hi {
			return true
		}
	}
	return false
}

// ParseContent decodes a content string: bytes between a pair of | are hex, two digits a
// byte, optionally separated by spaces ("|4d 5a|", "|4d5a|"); everything else stands for
// itself. A literal | is written |7c|.
func ParseContent(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '|' {
			out = append(out, s[i])
			continue
		}
		open := i
		n, hi := 0, -1
		for i++; ; i++ {
			if i == len(s) {
				return nil, fmt.Errorf("unterminated |hex| block at byte %d of %q", open, s)
			}
			c := s[i]
			if c == '|' {
				break
			}
			if c == ' ' {
				if hi >= 0 {
					return nil, fmt.Errorf("bad hex escape at byte %d of %q: a byte is two hex digits", i, s)
				}
				continue
			}
			v, ok := hexVal(c)
			if !ok {
				return nil, fmt.Errorf("bad hex escape at byte %d of %q: %q is not a hex digit", i, s, c)
			}
			if hi < 0 {
				hi = v
				continue
			}
			out = append(out, byte(hi<<4|v))
			hi = -1
			n++
		}
		if hi >= 0 {
			return nil, fmt.Errorf("bad hex escape at byte %d of %q: odd number of hex digits", i, s)
		}
		if n == 0 {
			return nil, fmt.Errorf("empty |hex| block at byte %d of %q (a literal | is |7c|)", open, s)
		}
	}
	return out, nil
}

func hexVal(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}

// DefaultConfig has a few signatures that are meaningful on any capture and silent on
// ordinary web traffic: a cleartext FTP password, a Windows executable in TCP, and the
// Log4Shell JNDI lookup.
func DefaultConfig() *Config {
	return &Config{Rules: []Rule{
		{ID: "ftp-cleartext-pass", Proto: "tcp", DstPorts: "21", Content: []string{"PASS "},
			Msg: "cleartext FTP password"},
		{ID: "pe-executable", Proto: "tcp", Content: []string{"|4d 5a 90 00|"},
			Msg: "Windows PE executable (MZ header) in a TCP payload"},
		{ID: "log4shell-jndi", Proto: "any", Content: []string{"${jndi:"}, Nocase: true,
			Msg: "Log4Shell JNDI lookup (CVE-2021-44228)"},
	}}
}

// Validate checks every rule; an error names the rule (index and id) and the field.
func (c *Config) Validate() error {
	ids := map[string]int{}
	for i := range c.Rules {
		r := &c.Rules[i]
		if _, err := parseRule(r); err != nil {
			return fmt.Errorf("%s: %w", where(i, r), err)
		}
		if j, dup := ids[r.ID]; dup {
			return fmt.Errorf("%s: id: %q is also the id of rules[%d]", where(i, r), r.ID, j)
		}
		ids[r.ID] = i
	}
	return nil
}

func where(i int, r *Rule) string {
	if r.ID == "" {
		return fmt.Sprintf("rules[%d]", i)
	}
	return fmt.Sprintf("rules[%d] (%s)", i, r.ID)
}

// rule is a parsed Rule.
type rule struct {
	id       string
	proto    uint8 // 0: any
	sp, dp   []portRange
	contents [][]byte // distinct, lowercased when nocase
	nocase   bool
	drop     bool
	details  []any // the alert's details, built once
}

func parseRule(r *Rule) (*rule, error) {
	if err := checkID(r.ID); err != nil {
		return nil, fmt.Errorf("id: %w", err)
	}
	out := &rule{id: r.ID, nocase: r.Nocase}
	switch strings.ToLower(r.Proto) {
	case "", "any":
	case "tcp":
		out.proto = packet.ProtoTCP
	case "udp":
		out.proto = packet.ProtoUDP
	default:
		return nil, fmt.Errorf("proto: want tcp, udp or any, have %q", r.Proto)
	}
	var err error
	if out.sp, err = parsePorts(r.SrcPorts); err != nil {
		return nil, fmt.Errorf("src_ports: %w", err)
	}
	if out.dp, err = parsePorts(r.DstPorts); err != nil {
		return nil, fmt.Errorf("dst_ports: %w", err)
	}
	switch r.Action {
	case "", "alert":
	case "drop":
		out.drop = true
	default:
		return nil, fmt.Errorf("action: want alert or drop, have %q", r.Action)
	}
	if len(r.Content) == 0 {
		return nil, fmt.Errorf("content: want at least one string (a rule matches on payload content)")
	}
	for j, s := range r.Content {
		b, err := ParseContent(s)
		if err != nil {
			return nil, fmt.Errorf("content[%d]: %w", j, err)
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("content[%d]: empty string (it would match every packet)", j)
		}
		if len(b) > MaxContentLen {
			return nil, fmt.Errorf("content[%d]: %d bytes, more than the %d allowed", j, len(b), MaxContentLen)
		}
		if r.Nocase {
			b = toLower(b, b)
		}
		if !slices.ContainsFunc(out.contents, func(c []byte) bool { return string(c) == string(b) }) {
			out.contents = append(out.contents, b)
		}
	}
	action := "alert"
	if out.drop {
		action = "drop"
	}
	out.details = []any{"msg", r.Msg, "action", action}
	return out, nil
}

func checkID(id string) error {
	if id == "" {
		return fmt.Errorf("required")
	}
	if len(id) > 64 {
		return fmt.Errorf("%q is longer than 64 characters", id)
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
		if !ok {
			return fmt.Errorf("%q has %q: use letters, digits, - _ . and :", id, c)
		}
	}
	return nil
}

// lowerTable maps ASCII upper-case letters to lower case and every other byte to itself.
var lowerTable = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if i >= 'A' && i <= 'Z' {
			t[i] = byte(i) + 'a' - 'A'
		}
	}
	return t
}()

// toLower writes the ASCII lower case of src to dst[:len(src)] and returns it; dst may be src.
func toLower(dst, src []byte) []byte {
	dst = dst[:len(src)]
	for i, c := range src {
		dst[i] = lowerTable[c]
	}
	return dst
}

func init() {
	snf.Register("ids", "payload signature IDS: rules of proto, ports and content strings, matched in one Aho–Corasick pass; alert or drop",
		DefaultConfig, New)
}

// group is the rules whose contents one automaton holds: case-sensitive or nocase.
type group struct {
	ac     *ahocorasick.Automaton // nil when the group has no rules
	pat0   int32                  // the automaton's pattern i is IDS pattern pat0+i
	rules  []int32                // the group's rules
	always bool                   // some rule fits every packet with a payload: no header pre-check
}

// ruleState is a compiled rule with its per-packet counters.
type ruleState struct {
	rule
	need  int32  // distinct contents
	seen  int32  // of them found in the current packet (valid when epoch matches)
	epoch uint32 // the packet the counter belongs to
	hits  *snf.Metric
}

// IDS is one IDS instance.
type IDS struct {
	rules     []ruleState
	cs, ci    group
	patRules  [][]int32 // IDS pattern → rules that need it
	patEpoch  []uint32  // IDS pattern → the packet it was last counted for
	epoch     uint32
	lower     []byte  // the lowercased payload (reused)
	completed []int32 // the current packet's rules whose contents were all found (reused)

	scanned, scannedBytes, contentHits, matched, dropped *snf.Metric
}

// New builds an IDS from a validated config.
func New(env *snf.Env, cfg *Config) (snf.NF, error) {
	n := &IDS{
		scanned:      env.Metric("scanned", "packets whose payload was scanned"),
		scannedBytes: env.Metric("scanned_bytes", "payload bytes scanned"),
		contentHits:  env.Metric("content_hits", "packets in which some rule's content was found (whether or not a rule matched)"),
		matched:      env.Metric("matched", "packets that matched at least one rule"),
		dropped:      env.Metric("dropped", "packets dropped by a drop rule"),
	}
	var csPats, ciPats [][]byte
	csIdx, ciIdx := map[string]int32{}, map[string]int32{}
	var csRefs, ciRefs [][]int32
	for i := range cfg.Rules {
		r, err := parseRule(&cfg.Rules[i])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where(i, &cfg.Rules[i]), err)
		}
		n.rules = append(n.rules, ruleState{rule: *r, need: int32(len(r.contents)),
			hits: env.Metric("rule."+r.id, "packets that matched rule "+r.id)})
		g, pats, idx, refs := &n.cs, &csPats, csIdx, &csRefs
		if r.nocase {
			g, pats, idx, refs = &n.ci, &ciPats, ciIdx, &ciRefs
		}
		g.rules = append(g.rules, int32(i))
		if r.proto == 0 && len(r.sp) == 0 && len(r.dp) == 0 {
			g.always = true
		}
		for _, c := range r.contents {
			k, ok := idx[string(c)]
			if !ok {
				k = int32(len(*pats))
				idx[string(c)] = k
				*pats = append(*pats, c)
				*refs = append(*refs, nil)
			}
			(*refs)[k] = append((*refs)[k], int32(i))
		}
	}
	var err error
	if n.cs.ac, err = build(csPats); err != nil {
		return nil, err
	}
	if n.ci.ac, err = build(ciPats); err != nil {
		return nil, err
	}
	n.ci.pat0 = int32(len(csPats))
	n.patRules = append(csRefs, ciRefs...)
	n.patEpoch = make([]uint32, len(n.patRules))
	n.completed = make([]int32, 0, len(n.rules))
	return n, nil
}

func build(pats [][]byte) (*ahocorasick.Automaton, error) {
	if len(pats) == 0 {
		return nil, nil
	}
	ac, err := ahocorasick.NewBuilder().AddPatterns(pats).Build()
	if err != nil {
		return nil, fmt.Errorf("building the automaton: %w", err)
	}
	return ac, nil
}

// headerMatch reports whether the packet's protocol and ports fit r.
func (r *rule) headerMatch(p *packet.Packet) bool {
	if r.proto != 0 && p.Proto != r.proto {
		return false
	}
	if len(r.sp) == 0 && len(r.dp) == 0 {
		return true
	}
	if p.Proto != packet.ProtoTCP && p.Proto != packet.ProtoUDP {
		return false
	}
	return inPorts(r.sp, p.Key.SrcPort) && inPorts(r.dp, p.Key.DstPort)
}

// applies reports whether some rule of g fits the packet's header (else g's scan is skipped).
func (n *IDS) applies(g *group, p *packet.Packet) bool {
	if g.ac == nil {
		return false
	}
	if g.always {
		return true
	}
	for _, i := range g.rules {
		if n.rules[i].headerMatch(p) {
			return true
		}
	}
	return false
}

// Process implements snf.NF.
func (n *IDS) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	pl := p.Payload()
	if len(pl) == 0 {
		return snf.Forward
	}
	scanCS, scanCI := n.applies(&n.cs, p), n.applies(&n.ci, p)
	if !scanCS && !scanCI {
		return snf.Forward
	}
	n.scanned.Inc()
	n.scannedBytes.Add(uint64(len(pl)))
	n.epoch++
	if n.epoch == 0 { // wrapped: forget every stale mark
		clear(n.patEpoch)
		for i := range n.rules {
			n.rules[i].epoch = 0
		}
		n.epoch = 1
	}
	n.completed = n.completed[:0]
	found := false
	if scanCS {
		found = n.scan(&n.cs, pl) || found
	}
	if scanCI {
		if cap(n.lower) < len(pl) {
			n.lower = make([]byte, len(pl), max(len(pl), 2048))
		}
		found = n.scan(&n.ci, toLower(n.lower, pl)) || found
	}
	if found {
		n.contentHits.Inc()
	}
	if len(n.completed) == 0 {
		return snf.Forward
	}
	slices.Sort(n.completed) // alerts in rule order
	verdict, hit := snf.Forward, false
	for _, i := range n.completed {
		r := &n.rules[i]
		if !r.headerMatch(p) {
			continue
		}
		hit = true
		r.hits.Inc()
		ctx.Alert(r.id, r.details...)
		if r.drop {
			verdict = snf.Drop
		}
	}
	if hit {
		n.matched.Inc()
	}
	if verdict == snf.Drop {
		n.dropped.Inc()
	}
	return verdict
}

// scan runs g's automaton over b once, counting each distinct content found for the rules
// that need it; a rule whose contents are all found goes to n.completed. It reports whether
// any content was found.
func (n *IDS) scan(g *group, b []byte) bool {
	// FindAllOverlapping is the library's one-pass search that reports every occurrence,
	// overlapping ones included. It returns nil, allocating nothing, when no content occurs:
	// the common case. When some does, it allocates the list it returns (see README, Limits).
	ms := g.ac.FindAllOverlapping(b)
	for _, m := range ms {
		pat := g.pat0 + int32(m.PatternID)
		if n.patEpoch[pat] == n.epoch {
			continue
		}
		n.patEpoch[pat] = n.epoch
		for _, i := range n.patRules[pat] {
			r := &n.rules[i]
			if r.epoch != n.epoch {
				r.epoch, r.seen = n.epoch, 0
			}
			r.seen++
			if r.seen == r.need {
				n.completed = append(n.completed, i)
			}
		}
	}
	return len(ms) > 0
}
