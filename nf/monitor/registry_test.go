package monitor_test

import (
	"strings"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
)

// TestRegistered: the NF is registered with a summary, every config field is documented,
// and the chain of --nfs monitor (defaults) builds, runs and reports.
func TestRegistered(t *testing.T) {
	f, err := snf.Lookup("monitor")
	if err != nil || f.Summary == "" {
		t.Fatalf("lookup: %v %q", err, f.Summary)
	}
	for _, fd := range f.Fields() {
		if fd.Doc == "" || fd.Default == "" {
			t.Errorf("field %s: doc %q default %q", fd.Name, fd.Doc, fd.Default)
		}
	}
	c := testtrace.ChainOf(t, "monitor", snf.ChainOptions{})
	out := c.Process(pkttest.Batch(0, pkttest.UDP(client, server, 1, 53, []byte("q")), pkttest.UDP(server, client, 53, 1, []byte("a"))), nil)
	if len(out) != 2 {
		t.Errorf("%d of 2 packets out", len(out))
	}
	var sb strings.Builder
	if err := c.WriteReports(&sb); err != nil || !strings.Contains(sb.String(), "monitor report:") {
		t.Errorf("report %q: %v", sb.String(), err)
	}
}
