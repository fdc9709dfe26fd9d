package snf_test

import (
	"net/netip"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
)

// taker is a test NF: a packet to port 4000 makes its flow take over the key of the flow
// 10.0.0.1:1000 → 10.0.0.2:2000 (ExpectReply: as a NAT maps a reply key). It counts the
// FlowEnd hooks it runs in takerEnds.
type taker struct{}

type takerConfig struct{}

var (
	takerEnds int
	takerKey  = packet.KeyFrom(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1000, 2000, packet.ProtoUDP)
)

func init() {
	snf.Register("taker", "test NF", func() *takerConfig { return &takerConfig{} },
		func(env *snf.Env, cfg *takerConfig) (snf.NF, error) { return taker{}, nil })
}

func (taker) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if p.Key.DstPort == 4000 {
		ctx.ExpectReply(takerKey)
	}
	return snf.Forward
}

func (taker) FlowEnd(*snf.Context) { takerEnds++ }

// TestRestoreRunsNoHooks: a record whose flows collide — one took the other's key — restores
// without FlowEnd hooks (the record is the state, not events).
func TestRestoreRunsNoHooks(t *testing.T) {
	spec, err := snf.ChainFromNames("taker")
	if err != nil {
		t.Fatal(err)
	}
	a, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h1, h2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	h3, h4 := netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")
	// Flow i; flow j, which takes i's key; i's reply, so that i is the more recent and a
	// full record lists j first.
	b := batchOf(pkttest.UDP(h1, h2, 1000, 2000, nil), pkttest.UDP(h3, h4, 3000, 4000, nil), pkttest.UDP(h2, h1, 2000, 1000, nil))
	a.Process(b, nil)
	rec, _, err := a.Checkpoint(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	takerEnds = 0
	r, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Restore(rec); err != nil {
		t.Fatal(err)
	}
	if takerEnds != 0 {
		t.Errorf("the restore ran %d FlowEnd hooks", takerEnds)
	}
}
