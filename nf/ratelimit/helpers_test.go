package ratelimit_test

import (
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	_ "github.com/snf-dev/snf/nf/ratelimit"
	"github.com/snf-dev/snf/packet"
)

// newRL builds a chain of one rate limiter; config is a YAML flow mapping ("{rate: 10}") or "".
func newRL(t testing.TB, config string) (*snf.Chain, *testtrace.Alerts) {
	t.Helper()
	alerts := &testtrace.Alerts{}
	return testtrace.Chain(t, testtrace.OneNF("ratelimit", config), snf.ChainOptions{Alerts: alerts}), alerts
}

// send processes one frame at time ts (ns) and reports whether it passed.
func send(c *snf.Chain, frame []byte, ts int64) bool {
	var p [1]packet.Packet
	p[0].SetData(frame, ts, 0)
	return len(c.Process(p[:], nil)) == 1
}
