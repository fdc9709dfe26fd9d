package snf_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/flowtable"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/root"
)

// replier is a test NF that announces or withdraws a reply key for its packet's flow, by the
// packet's payload: "e" announces the key from 192.0.2.1 to the flow's source (its first
// packet's), with its source port plus 10,000 (as a NAT maps a reply key), from either
// direction; "f" withdraws it; "g" announces another (the port plus 20,000); "x" withdraws a
// key the flow does not hold (the port plus 10,001: nothing changes here) and then announces
// the first.
type replier struct{}

type replierConfig struct{}

func init() {
	snf.Register("replier", "test NF", func() *replierConfig { return &replierConfig{} },
		func(env *snf.Env, cfg *replierConfig) (snf.NF, error) { return replier{}, nil })
}

func replyKey(f packet.Key) packet.Key {
	return packet.KeyFrom(netip.MustParseAddr("192.0.2.1"), f.SrcAddr(), f.DstPort, f.SrcPort+10000, f.Proto)
}

func (replier) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if int(p.PayloadOff) >= len(p.Data) {
		return snf.Forward
	}
	k := replyKey(ctx.FlowKey())
	switch p.Data[p.PayloadOff] { // (the frame may be padded)
	case 'e':
		ctx.ExpectReply(k)
	case 'f':
		ctx.ForgetReply(k)
	case 'g': // another key
		k.DstPort += 10000
		ctx.ExpectReply(k)
	case 'x':
		stale := k
		stale.DstPort++
		ctx.ForgetReply(stale)
		ctx.ExpectReply(k)
	}
	return snf.Forward
}

// TestAliasNotes: the chain notes a reply key that changes its flow table every time, and
// one already in place once per flow between two TakeAliases (the root applies the notes
// taken together at once: a second note would repeat the first) — again after the next take
// (a root that forgot the flow learns it again), after a withdrawal, and for a flow that came
// in with its alias in place (an import), even into the slot of a flow noted in the same take.
func TestAliasNotes(t *testing.T) {
	spec, err := snf.ChainFromNames("replier")
	if err != nil {
		t.Fatal(err)
	}
	newC := func() *snf.Chain {
		c, err := snf.NewChain(spec, snf.ChainOptions{ReportAliases: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	h1, h2, h3 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	pkt := func(src netip.Addr, sport uint16, payload string) []byte {
		return pkttest.UDP(src, h2, sport, 53, []byte(payload))
	}
	var notes []snf.AliasNote
	take := func(c *snf.Chain) []string {
		notes = c.TakeAliases(notes[:0])
		var got []string
		for _, n := range notes {
			s := n.From.SrcAddr().String() + "+"
			if n.Forget {
				s = n.From.SrcAddr().String() + "-"
			}
			got = append(got, s)
		}
		return got
	}
	check := func(step string, got []string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: notes %v, want %v", step, got, want)
		}
	}
	c := newC()
	c.Process(batchOf(pkt(h1, 1000, "e"), pkt(h1, 1000, "e"), pkt(h1, 1000, "e")), nil)
	check("one flow, three announcements", take(c), "10.0.0.1+")
	c.Process(batchOf(pkt(h1, 1000, "e")), nil)
	check("the next take", take(c), "10.0.0.1+")
	check("an empty take", take(c))
	c.Process(batchOf(pkt(h1, 1000, "e"), pkt(h3, 1000, "e"), pkt(h1, 1000, "e"), pkt(h3, 1000, "e")), nil)
	check("two flows", take(c), "10.0.0.1+", "10.0.0.3+")
	c.Process(batchOf(pkt(h1, 1000, "e"), pkt(h1, 1000, "f"), pkt(h1, 1000, "e"), pkt(h1, 1000, "e")), nil)
	check("a withdrawal between", take(c), "10.0.0.1+", "10.0.0.1-", "10.0.0.1+")
	c.Process(batchOf(pkt(h1, 1000, "e"), pkt(h1, 1000, "g"), pkt(h1, 1000, "g"), pkt(h1, 1000, "e")), nil)
	check("another key, and back", take(c), "10.0.0.1+", "10.0.0.1+", "10.0.0.1+")
	if n := notes[1].Alias; n.DstPort != 1000+20000 || notes[2].Alias == n {
		t.Errorf("the notes' keys %v, want the second one's port %d, the third one the first's", notes, 1000+20000)
	}
	// From the reply direction, the same key: its mapping's direction changes (noted, by the
	// flow's key reversed), and changes back.
	reply := pkttest.UDP(h2, h1, 53, 1000, []byte("e"))
	c.Process(batchOf(pkt(h1, 1000, "e"), reply, reply, pkt(h1, 1000, "e"), pkt(h1, 1000, "e")), nil)
	check("the reply direction, and back", take(c), "10.0.0.1+", "10.0.0.2+", "10.0.0.1+")
	// A withdrawal that changed nothing here (a key the flow does not hold), then the alias
	// in place: both noted (TestAliasForgetThenAnnounce).
	c.Process(batchOf(pkt(h1, 1000, "e"), pkt(h1, 1000, "x"), pkt(h1, 1000, "e")), nil)
	check("a stale withdrawal", take(c), "10.0.0.1+", "10.0.0.1-", "10.0.0.1+")

	// A flow made elsewhere, with its alias: exported, and imported into the slot of a flow
	// noted in the same take (the slot its MoveOut freed, the next one used).
	a := newC()
	a.Process(batchOf(pkt(h3, 3000, "e")), nil)
	var k packet.Packet
	k.SetData(pkt(h3, 3000, ""), 0, 0)
	state, err := a.ExportFlow(k.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newC()
	b.Process(batchOf(pkt(h1, 1000, "e")), nil)
	k.SetData(pkt(h1, 1000, ""), 0, 0)
	if _, found, err := b.MoveOut(k.Key, nil); !found || err != nil {
		t.Fatalf("MoveOut: %v %v", found, err)
	}
	if err := b.ImportFlow(state); err != nil {
		t.Fatal(err)
	}
	b.Process(batchOf(pkt(h3, 3000, "e")), nil)
	check("an imported flow", take(b), "10.0.0.1+", "10.0.0.3+")
}

// nopTarget drops what the root sends (TestAliasForgetThenAnnounce).
type nopTarget struct{}

func (nopTarget) Send(int, *packet.Packet)              {}
func (nopTarget) Handover(packet.Key, uint64, int, int) {}
func (nopTarget) ScaleOut() int                         { return -1 }

// toUnit0 places every flowlet on unit 0.
type toUnit0 struct{}

func (toUnit0) Name() string    { return "unit0" }
func (toUnit0) PerPacket() bool { return false }
func (toUnit0) Elastic() bool   { return false }
func (toUnit0) Place(policy.Flowlet, *policy.Pool) policy.Decision {
	return policy.Decision{Unit: 0}
}

// TestAliasForgetThenAnnounce drives a root with a chain's notes, as the live engine does: the
// unit withdraws a key its flow does not hold (nothing changes in its table) and then
// announces the flow's alias, in place since an earlier take, while the root had forgotten
// the flow (its bound) and made it again. The root must learn the alias from that take: a
// reply to it then finds the flow, not a flow of its own.
func TestAliasForgetThenAnnounce(t *testing.T) {
	spec, err := snf.ChainFromNames("replier")
	if err != nil {
		t.Fatal(err)
	}
	c, err := snf.NewChain(spec, snf.ChainOptions{ReportAliases: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool := &policy.Pool{Target: 0.8, Units: []policy.UnitView{{ID: 0, Active: true, Capacity: 1e9}}}
	r := root.New(root.Config{Policy: toUnit0{}, Pool: pool, FlowletGap: time.Millisecond,
		Timeouts: flowtable.DefaultTimeouts, MaxFlows: 1})
	h1, h2, h9 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.9")
	now := int64(0)
	// step: the root dispatches the frames, the unit processes them as one batch, and the
	// root applies the batch's notes.
	step := func(frames ...[]byte) []packet.Packet {
		b := make([]packet.Packet, len(frames))
		for i, f := range frames {
			now += int64(time.Microsecond)
			b[i].SetData(f, now, 0)
			r.Dispatch(&b[i], nopTarget{})
		}
		c.Process(b, nil)
		for _, n := range c.TakeAliases(nil) {
			r.LearnAlias(n.From, n.Alias, n.Forget)
		}
		return b
	}
	step(pkttest.UDP(h1, h2, 1000, 53, []byte("e")))
	step(pkttest.UDP(h9, h2, 1000, 53, nil)) // another flow: the root (bound 1) forgets h1's
	again := step(pkttest.UDP(h1, h2, 1000, 53, []byte("x")))
	var k packet.Packet // a reply to the alias: 192.0.2.1:53 → 10.0.0.1:11000
	k.SetData(pkttest.UDP(netip.MustParseAddr("192.0.2.1"), h1, 53, 11000, nil), now+1, 0)
	r.Dispatch(&k, nopTarget{})
	if k.Flow != again[0].Flow {
		t.Errorf("a reply to the announced key: root flow %d, want the flow's %d (the root did not learn the alias)", k.Flow, again[0].Flow)
	}
}
