package all_test

import (
	"strings"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/trace"
)

// TestEveryNF: every NF of the library is registered with a summary, documents every config
// field, builds from its defaults, runs generated traffic through them (the defaults make
// `--nfs NAME` sensible anywhere), and, when it has a report, writes it.
func TestEveryNF(t *testing.T) {
	names := snf.Names()
	for _, want := range []string{"firewall", "ids", "lb", "monitor", "nat", "portscan", "ratelimit", "trojan"} {
		if !strings.Contains(strings.Join(names, ","), want) {
			t.Errorf("%s is not registered (have %v)", want, names)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			f, err := snf.Lookup(name)
			if err != nil || f.Summary == "" {
				t.Fatalf("lookup: %v, summary %q", err, f.Summary)
			}
			for _, fd := range f.Fields() {
				if fd.Doc == "" || fd.Default == "" {
					t.Errorf("field %s: doc %q, default %q", fd.Name, fd.Doc, fd.Default)
				}
			}
			spec, err := snf.ChainFromNames(name)
			if err != nil {
				t.Fatal(err)
			}
			c, err := snf.NewChain(spec, snf.ChainOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cfg := trace.DefaultGenConfig()
			cfg.Packets = 2000
			g, err := trace.NewGenerator(cfg)
			if err != nil {
				t.Fatal(err)
			}
			batch := make([]packet.Packet, 64)
			for {
				n, err := g.Read(batch)
				c.Process(batch[:n], nil)
				if err != nil {
					break
				}
			}
			if s := c.Stats(); s.In != 2000 || s.Out+s.Dropped != s.In {
				t.Errorf("stats %+v", s)
			}
			var sb strings.Builder
			if err := c.WriteReports(&sb); err != nil {
				t.Fatal(err)
			}
			if _, ok := c.NF(0).(snf.Reporter); ok && !strings.Contains(sb.String(), name+" report:") {
				t.Errorf("report %q", sb.String())
			}
		})
	}
}
