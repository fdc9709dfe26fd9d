package snf_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/pkttest"
)

// TestWorkCountsBulk: a full checkpoint record of thousands of flows, and their expiry, move
// the chain's Work (a unit's Progress adds it: a unit that builds a record of a hundred
// thousand flows is busy, not stalled), about once per 1,024 flows.
func TestWorkCountsBulk(t *testing.T) {
	c := checkpointingChains(t, "count")()
	const flows = 5000
	in, out := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("198.18.0.1")
	var clock uint64
	for i := 0; i < flows; i += 100 {
		frames := make([][]byte, 0, 100)
		for j := i; j < i+100; j++ {
			frames = append(frames, pkttest.UDP(in, out, uint16(1024+j), 53, nil))
		}
		b := pkttest.Batch(int64(i)*int64(time.Millisecond), frames...)
		for k := range b {
			clock++
			b[k].Clock = clock
		}
		c.Process(b, nil)
	}
	if n := c.FlowStats().Active; n != flows {
		t.Fatalf("%d flows, want %d", n, flows)
	}
	w0 := c.Work()
	if _, _, err := c.Checkpoint(nil, true); err != nil {
		t.Fatal(err)
	}
	w1 := c.Work()
	if w1-w0 < flows/1024 {
		t.Errorf("a full record of %d flows moved Work by %d, want at least %d", flows, w1-w0, flows/1024)
	}
	if n := c.Expire(int64(time.Hour)); n != flows {
		t.Fatalf("%d flows expired, want %d", n, flows)
	}
	if w2 := c.Work(); w2-w1 < flows/1024 {
		t.Errorf("%d flows expired moved Work by %d, want at least %d", flows, w2-w1, flows/1024)
	}
}
