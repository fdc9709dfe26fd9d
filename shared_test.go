package snf_test

import (
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// tableWatch rebuilds what it derives from a shared table when Changed reports a change: a
// test NF for the Table handle's change version.
type tableWatch struct {
	tb       *snf.Table
	seen     uint64
	rebuilds int
	val      string
}

func init() {
	snf.Register("tablewatch", "test NF", func() *perSourceConfig { return &perSourceConfig{} },
		func(env *snf.Env, _ *perSourceConfig) (snf.NF, error) {
			tb, err := snf.NewTable(env, "cfg")
			return &tableWatch{tb: tb}, err
		})
}

func (n *tableWatch) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if v, changed := n.tb.Changed(n.seen); changed {
		n.seen = v
		n.rebuilds++
		b, _ := n.tb.Get(ctx, "k")
		n.val = string(b)
	}
	return snf.Forward
}

func TestTableHandleChanged(t *testing.T) {
	spec, _ := snf.ChainFromNames("tablewatch")
	c, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := c.NF(0).(*tableWatch)
	port := uint16(1)
	step := func(wantRebuilds int, wantVal string) {
		t.Helper()
		port++
		c.Process(batchOf(udpFrame(hostA, hostB, port, 53), udpFrame(hostA, hostB, port, 53)), nil)
		if n.rebuilds != wantRebuilds || n.val != wantVal {
			t.Fatalf("after packets: %d rebuilds, value %q; want %d, %q", n.rebuilds, n.val, wantRebuilds, wantVal)
		}
	}
	step(1, "") // the first look (seen 0) is a change
	step(1, "")
	if err := n.tb.Set("k", []byte("a")); err != nil {
		t.Fatal(err)
	}
	step(2, "a")
	step(2, "a")
	if err := n.tb.Delete("k"); err != nil {
		t.Fatal(err)
	}
	step(3, "")
	if v := n.tb.Version(); v != n.seen || v == 0 {
		t.Fatalf("Version %d, seen %d", v, n.seen)
	}
	if _, changed := n.tb.Changed(n.seen); changed {
		t.Fatal("Changed without a change")
	}
}
