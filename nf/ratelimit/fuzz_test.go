package ratelimit_test

import (
	"bytes"
	"testing"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
)

// FuzzRatelimit: any bytes as a frame, at any time, go through the chain without a panic,
// come out unchanged or not at all, and are counted exactly once.
func FuzzRatelimit(f *testing.F) {
	for _, fr := range [][]byte{
		syn(src1, 1), syn(v6a, 2), pkttest.UDP(src2, victim, 5, 53, []byte("q")), pkttest.Echo(v6b, v6dst, 7, false),
		syn(src1, 1)[:14+20+4], syn(v6a, 1)[:14+40], syn(src1, 1)[:14+8], {0x45},
	} {
		f.Add(fr, int64(0))
	}
	c, _ := newRL(f, "{rate: 100, burst: 3, prefix_v4: 24, prefix_v6: 48, exempt: [10.0.1.0/24, 'fd00::/8'], max_sources: 64}")
	var p [1]packet.Packet
	var counted uint64
	f.Fuzz(func(t *testing.T, frame []byte, ts int64) {
		p[0].SetData(frame, ts, 0)
		out := c.Process(p[:], nil)
		if len(out) > 1 || len(out) == 1 && !bytes.Equal(out[0].Data, frame) {
			t.Fatalf("%d packets out, or the frame changed", len(out))
		}
		counted++
		if got := c.Stats().In; got != counted {
			t.Fatalf("chain saw %d packets, sent %d", got, counted)
		}
		if p[0].IP() || p[0].Flags&packet.Malformed != 0 {
			n := testtrace.Metric(c, 0, "passed") + testtrace.Metric(c, 0, "dropped") + testtrace.Metric(c, 0, "exempt") + testtrace.Metric(c, 0, "unreadable")
			if n != counted-c.Stats().NonIP {
				t.Fatalf("ratelimit counted %d of %d packets it saw", n, counted-c.Stats().NonIP)
			}
		}
	})
}
