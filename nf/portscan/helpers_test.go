package portscan_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/portscan"
	"github.com/snf-dev/snf/packet"
)

// flagged returns the "source" detail of every scanner alert, in order.
func flagged(alerts *testtrace.Alerts) []string {
	var out []string
	for _, a := range alerts.Snapshot() {
		if a.Rule == "scanner" {
			out = append(out, a.Details["source"].(string))
		}
	}
	return out
}

// harness is a chain of one portscan fed one packet at a time.
type harness struct {
	t     testing.TB
	c     *snf.Chain
	ps    *portscan.Portscan
	sink  *testtrace.Alerts
	now   int64
	clock uint64
	p     [1]packet.Packet
}

func newHarness(t testing.TB, config string) *harness {
	t.Helper()
	h := &harness{t: t, sink: &testtrace.Alerts{}, now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	h.c = testtrace.Chain(t, testtrace.OneNF("portscan", config), snf.ChainOptions{Alerts: h.sink})
	h.ps = h.c.NF(0).(*portscan.Portscan)
	return h
}

// send processes one frame after advancing packet time by dt; it reports whether the
// frame was forwarded.
func (h *harness) send(dt time.Duration, frame []byte) bool {
	h.now += int64(dt)
	h.clock++
	h.p[0].SetData(frame, h.now, 0)
	h.p[0].Clock = h.clock
	return len(h.c.Process(h.p[:], nil)) == 1
}

func (h *harness) metric(name string) uint64 { return testtrace.Metric(h.c, 0, name) }

func (h *harness) likelihood(a netip.Addr) float64 {
	l, ok := h.ps.Likelihood(a)
	if !ok {
		h.t.Fatalf("source %s not tracked", a)
	}
	return l
}
