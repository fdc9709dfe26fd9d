package snf_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
)

// replier is a test NF that announces or withdraws a reply key for its packet's flow, by the
// packet's payload: "e" announces the key from 192.0.2.1 to the packet's source, with the
// source port plus 10,000 (as a NAT maps a reply key); "f" withdraws it; "g" announces
// another (the port plus 20,000).
type replier struct{}

type replierConfig struct{}

func init() {
	snf.Register("replier", "test NF", func() *replierConfig { return &replierConfig{} },
		func(env *snf.Env, cfg *replierConfig) (snf.NF, error) { return replier{}, nil })
}

func replyKey(p *packet.Packet) packet.Key {
	return packet.KeyFrom(netip.MustParseAddr("192.0.2.1"), p.Key.SrcAddr(), p.Key.DstPort, p.Key.SrcPort+10000, p.Key.Proto)
}

func (replier) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if int(p.PayloadOff) >= len(p.Data) {
		return snf.Forward
	}
	switch p.Data[p.PayloadOff] { // (the frame may be padded)
	case 'e':
		ctx.ExpectReply(replyKey(p))
	case 'f':
		ctx.ForgetReply(replyKey(p))
	case 'g': // another key
		k := replyKey(p)
		k.DstPort += 10000
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
