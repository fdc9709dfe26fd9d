package portscan_test

import (
	"strings"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
)

// TestRegistered: the NF is registered with a summary, every config field is documented,
// and the chain of --nfs portscan (defaults) builds, runs and reports.
func TestRegistered(t *testing.T) {
	f, err := snf.Lookup("portscan")
	if err != nil || f.Summary == "" {
		t.Fatalf("lookup: %v %q", err, f.Summary)
	}
	for _, fd := range f.Fields() {
		if fd.Doc == "" || fd.Default == "" {
			t.Errorf("field %s: doc %q default %q", fd.Name, fd.Doc, fd.Default)
		}
	}
	c := testtrace.ChainOf(t, "portscan", snf.ChainOptions{})
	out := c.Process(pkttest.Batch(0, pkttest.UDP(bystander, target, 1, 53, []byte("q")), pkttest.UDP(target, bystander, 53, 1, []byte("a"))), nil)
	if len(out) != 2 {
		t.Errorf("%d of 2 packets out", len(out))
	}
	var sb strings.Builder
	if err := c.WriteReports(&sb); err != nil || !strings.Contains(sb.String(), "portscan report:") {
		t.Errorf("report %q: %v", sb.String(), err)
	}
}
