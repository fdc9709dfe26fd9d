package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestRunSurvivesRedisRestart: Redis dies in the middle of a run and comes back. The run
// reports the outage (the NAT counts the pool operations that failed and drops those new
// connections; nothing hangs), goes on when the server is back, and finishes. (That acknowledged
// pool operations survive a restart with persistence on is the store's own test.)
func TestRunSurvivesRedisRestart(t *testing.T) {
	r := testtrace.StartRedis(t, true)
	done := make(chan struct{})
	var code int
	var stdout, stderr string
	go func() {
		defer close(done)
		// Generated traffic at its pace: 2 s, new flows all along.
		code, stdout, stderr = runSnf("run", "--nfs", "nat", "--packets", "200000", "--speed", "1", "--store", r.URL, "--quiet")
	}()
	time.Sleep(700 * time.Millisecond)
	r.Stop()
	time.Sleep(500 * time.Millisecond)
	r.Start()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the run did not finish after Redis came back")
	}
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var errs, created int
	for _, f := range strings.Fields(stdout) {
		fmt.Sscanf(f, "ports_store_errors=%d", &errs)
		fmt.Sscanf(f, "mappings_created=%d", &created)
	}
	if errs == 0 || created == 0 || !strings.Contains(stdout, "packets  200000 in") {
		t.Errorf("want store errors reported during the outage and mappings before and after it:\n%s", stdout)
	}
	t.Logf("%d pool operations failed during the outage; %d mappings created", errs, created)
}
