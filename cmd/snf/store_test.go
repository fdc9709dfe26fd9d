package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/snf-dev/snf/internal/testtrace"
)

// TestRunOnRedis: the same run with the shared state in Redis gives the same summary as with
// the embedded store (the NAT's port pool and the monitor's counters live in the store).
func TestRunOnRedis(t *testing.T) {
	in := filepath.Join(tracesDir(t), "pcapplusplus_example.pcap")
	url := testtrace.RedisServer(t)
	run := func(store string) string {
		code, stdout, stderr := runSnf("run", "--nfs", "nat,firewall,monitor", "--in", in, "--store", store, "--quiet")
		if code != 0 {
			t.Fatalf("--store %s: exit %d: %s", store, code, stderr)
		}
		// Drop the timing line.
		var keep []string
		for _, l := range strings.Split(stdout, "\n") {
			if !strings.HasPrefix(l, "time ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	emb, red := run("embedded"), run(url)
	if emb != red {
		t.Errorf("summaries differ:\nembedded:\n%s\nredis:\n%s", emb, red)
	}
	if !strings.Contains(red, "translated_out=1750") || !strings.Contains(red, "10.0.0.6:44150") {
		t.Errorf("unexpected summary:\n%s", red)
	}
	if code, _, stderr := runSnf("run", "--store", "redis://127.0.0.1:1", "--packets", "10", "--quiet"); code != 1 || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Errorf("unreachable store: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runSnf("run", "--store", "mysql://x", "--quiet"); code != 1 || stderr == "" {
		t.Errorf("bad store URL: exit %d, %q", code, stderr)
	}
}
