package snf_test

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/flowtable"
	"github.com/snf-dev/snf/packet"
)

// probe is a test NF that exercises the Context: it records what it saw.
type probeConfig struct {
	EmitEvery int          `json:"emit_every"`
	EndOnRST  bool         `json:"end_on_rst"`
	Idle      snf.Duration `json:"idle"`
}

type probeState struct{ n uint32 }

func (s *probeState) AppendBinary(b []byte) ([]byte, error) {
	return append(b, byte(s.n>>24), byte(s.n>>16), byte(s.n>>8), byte(s.n)), nil
}

func (s *probeState) UnmarshalBinary(b []byte) error {
	if len(b) != 4 {
		return errors.New("probe: bad state")
	}
	s.n = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return nil
}

type probe struct {
	cfg    probeConfig
	st     *snf.FlowState[probeState, *probeState]
	rands  []uint64
	dirs   []snf.Dir
	counts []uint32
	ended  []packet.Key
	endClk []uint64
}

func init() {
	snf.Register("probe", "test NF", func() *probeConfig { return &probeConfig{} },
		func(env *snf.Env, cfg *probeConfig) (snf.NF, error) {
			return &probe{cfg: *cfg, st: snf.NewFlowState[probeState](env, "n")}, nil
		})
}

func (p *probe) Process(ctx *snf.Context, pk *packet.Packet) snf.Verdict {
	s := p.st.GetOrCreate(ctx)
	if s == nil {
		return snf.Drop
	}
	s.n++
	p.counts = append(p.counts, s.n)
	p.dirs = append(p.dirs, ctx.Dir())
	p.rands = append(p.rands, ctx.Rand())
	if p.cfg.EmitEvery > 0 && int(s.n)%p.cfg.EmitEvery == 0 {
		ctx.Emit([]byte{1, 2, 3})
	}
	if p.cfg.EndOnRST && pk.TCPFlags()&packet.TCPRst != 0 {
		ctx.EndFlow()
	}
	return snf.Forward
}

func (p *probe) FlowEnd(ctx *snf.Context) {
	p.ended = append(p.ended, ctx.FlowKey())
	p.endClk = append(p.endClk, ctx.Clock())
}

func (p *probe) FlowTimeouts() flowtable.Timeouts {
	d := time.Duration(p.cfg.Idle)
	return flowtable.Timeouts{d, d, d}
}

var (
	hostA = netip.MustParseAddr("10.0.0.1")
	hostB = netip.MustParseAddr("192.0.2.9")
)

func newChain(t *testing.T, yaml string) *snf.Chain {
	t.Helper()
	spec, err := snf.ParseChain([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func batchOf(frames ...[]byte) []packet.Packet {
	b := make([]packet.Packet, len(frames))
	for i, f := range frames {
		b[i].SetData(f, int64(i)*int64(time.Millisecond), 0)
		b[i].Clock = uint64(i + 1)
	}
	return b
}

func TestSpecErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"nfs:\n  - nf: nope\n", `test.yaml: nfs[0]: unknown NF "nope"`},
		{"nfs:\n  - nf: count\n    config: {max_packetz: 3}\n", `test.yaml: nfs[0] (count): config: unknown field "max_packetz"`},
		{"nfs:\n  - nf: count\n    config: {max_packets: abc}\n", `test.yaml: nfs[0] (count): config: field "max_packets"`},
		{"nfs:\n  - nf: count\n    config: {max_packets: 0}\n", `test.yaml: nfs[0] (count): config: invalid config: max_packets: must be > 0`},
		{"nfs:\n  - nf: count\n    name: a\n  - nf: count\n    name: a\n", `duplicate instance name "a"`},
		{"nfs:\n  - name: a\n", `test.yaml: nfs[0]: missing "nf:"`},
		{"nfz: []\n", `test.yaml: line 1: unknown field "nfz"`},
		{"", `test.yaml: empty chain file`},
		{"nfs: []\n", `test.yaml: no NFs`},
		{"nfs:\n  - nf: count\n    config: 3\n", `config must be a mapping`},
		{"nfs: [\n", `test.yaml:`},
	}
	for _, c := range cases {
		_, err := snf.ParseChain([]byte(c.yaml), "test.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseChain(%q) = %v, want error containing %q", c.yaml, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}
	if _, err := snf.ChainFromNames("count,bogus"); err == nil || !strings.Contains(err.Error(), `--nfs: nfs[1]: unknown NF "bogus" (known:`) {
		t.Errorf("ChainFromNames: %v", err)
	}
	spec, err := snf.ChainFromNames("count,count")
	if err != nil || spec.NFs[1].Name != "count2" {
		t.Fatalf("two of a kind: %v %+v", err, spec)
	}
	if _, err := snf.LoadChainFile("/nonexistent/chain.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/chain.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestFlowStateBothDirections(t *testing.T) {
	c := newChain(t, "nfs:\n  - nf: probe\n")
	out := c.Process(batchOf(
		udpFrame(hostA, hostB, 1000, 53),
		udpFrame(hostB, hostA, 53, 1000),
		udpFrame(hostA, hostB, 1000, 53),
		udpFrame(hostA, hostB, 1001, 53),
	), nil)
	if len(out) != 4 {
		t.Fatalf("out %d", len(out))
	}
	p := c.NF(0).(*probe)
	if want := []uint32{1, 2, 3, 1}; !equal(p.counts, want) {
		t.Errorf("per-flow counts %v, want %v", p.counts, want)
	}
	if want := []snf.Dir{snf.Orig, snf.Reply, snf.Orig, snf.Orig}; !equal(p.dirs, want) {
		t.Errorf("dirs %v, want %v", p.dirs, want)
	}
}

func TestRandIsAFunctionOfTheClock(t *testing.T) {
	run := func() []uint64 {
		c := newChain(t, "nfs:\n  - nf: probe\n")
		c.Process(batchOf(udpFrame(hostA, hostB, 1, 2), udpFrame(hostA, hostB, 1, 2)), nil)
		return c.NF(0).(*probe).rands
	}
	a, b := run(), run()
	if !equal(a, b) || a[0] == a[1] {
		t.Errorf("rands %v and %v: want equal runs and different packets", a, b)
	}
}

func TestEmitAndEndFlow(t *testing.T) {
	c := newChain(t, "nfs:\n  - nf: probe\n    config: {emit_every: 2, end_on_rst: true}\n")
	in := batchOf(
		tcpFrame(hostA, hostB, 1000, 80, true, false, false, false),
		tcpFrame(hostB, hostA, 80, 1000, true, true, false, false),
		tcpFrame(hostA, hostB, 1000, 80, false, false, false, true),
		tcpFrame(hostA, hostB, 1000, 80, false, true, false, false),
	)
	out := c.Process(in, nil)
	// Packet 2 emits right after itself; packet 3 (RST) ends the flow, so packet 4 starts a
	// new flow with count 1.
	if len(out) != 5 || out[1] != &in[1] || !bytes.Equal(out[2].Data, []byte{1, 2, 3}) || out[3] != &in[2] {
		t.Fatalf("out order wrong: %d packets", len(out))
	}
	p := c.NF(0).(*probe)
	if want := []uint32{1, 2, 3, 1}; !equal(p.counts, want) {
		t.Errorf("counts %v, want %v", p.counts, want)
	}
	if len(p.ended) != 1 || p.endClk[0] != 3 {
		t.Errorf("FlowEnd calls %v at clocks %v", p.ended, p.endClk)
	}
	if s := c.Stats(); s.In != 4 || s.Out != 4 || s.Emitted != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestIdleExpiryRunsFlowEnd(t *testing.T) {
	c := newChain(t, "nfs:\n  - nf: probe\n    config: {idle: 10s}\n")
	a := udpFrame(hostA, hostB, 1000, 53)
	b := udpFrame(hostA, hostB, 2000, 53)
	var batch [3]packet.Packet
	batch[0].SetData(a, 0, 0)
	batch[1].SetData(b, int64(40*time.Second), 0) // UDP default idle is 1m: a lives
	batch[2].SetData(b, int64(70*time.Second), 0) // now a is idle 70s > 1m: expired
	batch[2].Clock = 77
	c.Process(batch[:], nil)
	p := c.NF(0).(*probe)
	if len(p.ended) != 1 || p.ended[0].SrcPort != 1000 || p.endClk[0] != 77 {
		t.Fatalf("ended %v clocks %v", p.ended, p.endClk)
	}
	if fs := c.FlowStats(); fs.Active != 1 || fs.Expired != 1 {
		t.Errorf("flow stats %+v", fs)
	}
}

func TestExportImportFlow(t *testing.T) {
	a := newChain(t, "nfs:\n  - nf: probe\n  - nf: count\n")
	b := newChain(t, "nfs:\n  - nf: probe\n  - nf: count\n")
	f := udpFrame(hostA, hostB, 1000, 53)
	a.Process(batchOf(f, f, f), nil)
	var k packet.Packet
	k.SetData(f, 0, 0)
	state, err := a.ExportFlow(k.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ImportFlow(state); err != nil {
		t.Fatal(err)
	}
	b.Process(batchOf(f), nil)
	if got := b.NF(0).(*probe).counts; !equal(got, []uint32{4}) {
		t.Errorf("after import the flow's count continues: got %v, want [4]", got)
	}
	if err := b.ImportFlow(state); err != nil || len(b.NF(0).(*probe).ended) != 1 || b.FlowStats().Active != 1 {
		t.Errorf("importing over an existing flow must end the old one and take its place: %v", err)
	}
	b.Process(batchOf(f), nil) // the count continues from the imported state, not the replaced one
	if got := b.NF(0).(*probe).counts; !equal(got, []uint32{4, 4}) {
		t.Errorf("counts %v, want [4 4]", got)
	}
	c := newChain(t, "nfs:\n  - nf: probe\n  - nf: count\n")
	for _, bad := range [][]byte{nil, state[:3], state[:40], state[:len(state)-1], append(append([]byte(nil), state...), 9)} {
		if err := c.ImportFlow(bad); err == nil {
			t.Errorf("importing %x must fail", bad)
		}
	}
	if c.FlowStats().Active != 0 {
		t.Error("a failed import left a flow behind")
	}
	// MoveOut removes the flow without FlowEnd hooks; moving it back restores it.
	moved, found, err := b.MoveOut(k.Key.Reverse(), nil)
	if err != nil || !found || b.FlowStats().Active != 0 || len(b.NF(0).(*probe).ended) != 1 {
		t.Fatalf("MoveOut: %v %v active %d ended %v", err, found, b.FlowStats().Active, b.NF(0).(*probe).ended)
	}
	if _, found, _ := b.MoveOut(k.Key, nil); found {
		t.Error("a moved-out flow is still found")
	}
	if err := c.ImportFlow(moved); err != nil {
		t.Fatal(err)
	}
	c.Process(batchOf(f), nil)
	if got := c.NF(0).(*probe).counts; !equal(got, []uint32{5}) {
		t.Errorf("after MoveOut/ImportFlow the count continues: got %v, want [5]", got)
	}
	if _, err := a.ExportFlow(k.Key.Reverse(), nil); err != nil {
		t.Errorf("exporting by the reply key: %v", err)
	}
	k.SetData(udpFrame(hostA, hostB, 3000, 53), 0, 0)
	if _, err := a.ExportFlow(k.Key, nil); err == nil {
		t.Error("exporting an unknown flow must fail")
	}
}

func TestProcessAllocatesNothing(t *testing.T) {
	c := newChain(t, "nfs:\n  - nf: count\n    config: {max_packets: 1000000000}\n")
	var frames [][]byte
	for i := range 64 {
		frames = append(frames, udpFrame(hostA, hostB, uint16(1000+i), 53))
	}
	batch := batchOf(frames...)
	out := make([]*packet.Packet, 0, 128)
	c.Process(batch, out)
	if n := testing.AllocsPerRun(100, func() { out = c.Process(batch, out[:0]) }); n != 0 {
		t.Errorf("Process allocates %v per batch", n)
	}
}

func TestNonIPAndMalformed(t *testing.T) {
	c := newChain(t, "nfs:\n  - nf: probe\n")
	good := udpFrame(hostA, hostB, 1, 2)
	bad := append([]byte(nil), good[:14+20]...) // IPv4 header, no UDP header
	bad[14+2], bad[14+3] = 0, 28                // total length says 28
	in := batchOf([]byte{1, 2, 3, 4}, bad, good)
	out := c.Process(in, nil)
	if s := c.Stats(); s.NonIP != 1 || s.Malformed != 1 || len(out) != 2 || out[0] != &in[0] {
		t.Errorf("stats %+v out %d: want the runt passed untouched and the malformed packet dropped by probe", s, len(out))
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ender counts packets and flow ends in shared counters (key 1 per packet, key 2 per flow
// end): their tags must never repeat, or a deduplicating store drops them.
type ender struct{ c *snf.Counters }

func init() {
	snf.Register("ender", "test NF", func() *probeConfig { return &probeConfig{} },
		func(env *snf.Env, _ *probeConfig) (snf.NF, error) {
			c, err := snf.NewCounters(env, "n")
			return &ender{c: c}, err
		})
}

func (e *ender) Process(ctx *snf.Context, _ *packet.Packet) snf.Verdict {
	e.c.Add(ctx, 1, 1)
	return snf.Forward
}

func (e *ender) FlowEnd(ctx *snf.Context) { e.c.Add(ctx, 2, 1) }

// TestFlowEndsOutsidePacketsKeepTheirUpdates: flows that end outside any packet — evicted
// by an imported flow, expired by Chain.Expire — count their ends; none of those updates
// reuses the tag of a packet's update or of another end.
func TestFlowEndsOutsidePacketsKeepTheirUpdates(t *testing.T) {
	spec, _ := snf.ChainFromNames("ender")
	a, _ := snf.NewChain(spec, snf.ChainOptions{})
	defer a.Close()
	other := udpFrame(hostA, hostB, 9, 53)
	a.Process(batchOf(other), nil)
	var k packet.Packet
	k.SetData(other, 0, 0)
	moved, _, err := a.MoveOut(k.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := snf.NewChain(spec, snf.ChainOptions{MaxFlows: 1})
	defer b.Close()
	in := batchOf(udpFrame(hostA, hostB, 1, 53))
	in[0].Clock = 7
	b.Process(in, nil)
	b.Expire(int64(time.Millisecond))           // nothing idle yet
	if err := b.ImportFlow(moved); err != nil { // the table is full: the flow of clock 7 is evicted
		t.Fatal(err)
	}
	b.Expire(int64(time.Hour)) // the imported flow expires
	c := b.NF(0).(*ender).c
	if c.Get(1) != 1 || c.Get(2) != 2 {
		t.Errorf("packets %d (want 1), flow ends %d (want 2: one evicted, one expired)", c.Get(1), c.Get(2))
	}
}
