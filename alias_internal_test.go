package snf

import (
	"net/netip"
	"testing"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
)

// announcer announces one reply key for every packet's flow, every time (as a NAT translates
// every packet): its reply key, to the next port.
type announcer struct{}

type announcerConfig struct{}

func init() {
	Register("announcer", "test NF", func() *announcerConfig { return &announcerConfig{} },
		func(env *Env, cfg *announcerConfig) (NF, error) { return announcer{}, nil })
}

func (announcer) Process(ctx *Context, p *packet.Packet) Verdict {
	k := p.Key.Reverse()
	k.DstPort++
	ctx.ExpectReply(k)
	return Forward
}

// TestAliasTakesWrap: when the count of takes wraps, no flow noted under a count that comes
// back is taken as noted in the take under way (noteAlias).
func TestAliasTakesWrap(t *testing.T) {
	spec, err := ChainFromNames("announcer")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewChain(spec, ChainOptions{ReportAliases: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := pkttest.UDP(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1000, 53, nil)
	process := func() int {
		var p [1]packet.Packet
		p[0].SetData(f, 0, 0)
		c.Process(p[:], nil)
		return len(c.TakeAliases(nil))
	}
	if n := process(); n != 1 { // noted under count 1
		t.Fatalf("the first take has %d notes, want 1", n)
	}
	c.aliasTakes = ^uint32(0) // the next take wraps: the count is 1 again
	if n := len(c.TakeAliases(nil)); n != 0 {
		t.Fatalf("the take at the wrap has %d notes, want none", n)
	}
	if c.aliasTakes != 1 {
		t.Fatalf("the count after the wrap is %d, want 1", c.aliasTakes)
	}
	if n := process(); n != 1 {
		t.Errorf("the take after the wrap has %d notes, want 1: the flow noted under count 1 before it", n)
	}
}
