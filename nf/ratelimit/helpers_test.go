package ratelimit_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/snf-dev/snf"
	_ "github.com/snf-dev/snf/nf/ratelimit"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
)

// sink collects the chain's alerts.
type sink struct{ got []snf.Alert }

func (s *sink) Alert(a *snf.Alert) { s.got = append(s.got, *a) }

// newRL builds a chain of one rate limiter; config is a YAML flow mapping ("{rate: 10}") or "".
func newRL(t testing.TB, config string) (*snf.Chain, *sink) {
	t.Helper()
	y := "nfs:\n  - nf: ratelimit\n"
	if config != "" {
		y += "    config: " + config + "\n"
	}
	spec, err := snf.ParseChain([]byte(y), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{}
	c, err := snf.NewChain(spec, snf.ChainOptions{Alerts: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, s
}

func metric(c *snf.Chain, name string) uint64 {
	for _, m := range c.Report()[0].Metrics {
		if m.Name == name {
			return m.Value
		}
	}
	panic("no metric " + name)
}

// send processes one frame at time ts (ns) and reports whether it passed.
func send(c *snf.Chain, frame []byte, ts int64) bool {
	var p [1]packet.Packet
	p[0].SetData(frame, ts, 0)
	return len(c.Process(p[:], nil)) == 1
}

// readCapture returns the packets of a real capture, or skips the test when it is absent.
func readCapture(t testing.TB, name string) []packet.Packet {
	t.Helper()
	path, _ := filepath.Abs(filepath.Join("../../../shared/traces", name))
	if _, err := os.Stat(path); err != nil {
		t.Skipf("real capture not found at %s (it sits beside the repository in CI): %v", path, err)
	}
	r, err := pcapfile.Open(path)
	if err != nil {
		t.Fatal(err)
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
		if err != nil {
			return all
		}
	}
}
