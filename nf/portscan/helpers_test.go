package portscan_test

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/nf/portscan"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
)

// sink collects alerts.
type sink struct{ alerts []*snf.Alert }

func (s *sink) Alert(a *snf.Alert) { s.alerts = append(s.alerts, a) }

// flagged returns the "source" detail of every scanner alert, in order.
func (s *sink) flagged() []string {
	var out []string
	for _, a := range s.alerts {
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
	sink  *sink
	now   int64
	clock uint64
	p     [1]packet.Packet
}

func newHarness(t testing.TB, config string) *harness {
	t.Helper()
	y := "nfs:\n  - nf: portscan\n"
	if config != "" {
		y += "    config: " + config + "\n"
	}
	spec, err := snf.ParseChain([]byte(y), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sink: &sink{}, now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	h.c, err = snf.NewChain(spec, snf.ChainOptions{Alerts: h.sink})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.c.Close() })
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

func (h *harness) metric(name string) uint64 {
	for _, m := range h.c.Report()[0].Metrics {
		if m.Name == name {
			return m.Value
		}
	}
	h.t.Fatalf("no metric %s", name)
	return 0
}

func (h *harness) likelihood(a netip.Addr) float64 {
	l, ok := h.ps.Likelihood(a)
	if !ok {
		h.t.Fatalf("source %s not tracked", a)
	}
	return l
}

// capturePath returns the path of a real capture, or skips.
func capturePath(tb testing.TB, name string) string {
	tb.Helper()
	path, _ := filepath.Abs(filepath.Join("../../../shared/traces", name))
	if _, err := os.Stat(path); err != nil {
		tb.Skipf("real capture not found at %s (it sits beside the repository in CI): %v", path, err)
	}
	return path
}

// readCapture returns every packet of a real capture, each with its own buffer.
func readCapture(tb testing.TB, name string) []packet.Packet {
	tb.Helper()
	r, err := pcapfile.Open(capturePath(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	var all []packet.Packet
	batch := make([]packet.Packet, 64)
	for {
		n, err := r.Read(batch)
		for i := range batch[:n] {
			var p packet.Packet
			p.SetData(batch[i].Data, batch[i].Time, batch[i].WireLen)
			all = append(all, p)
		}
		if err == io.EOF {
			return all
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}
