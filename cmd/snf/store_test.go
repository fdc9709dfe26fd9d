package main

import (
	"bufio"
	"fmt"
	"net"
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

// TestRunsShareRedis: runs one after the other on one Redis server, each with a unit
// killed, write every packet: each keeps its state under a namespace of its own, and
// deletes it when it ends. (Before, the second run's replacement restored the first run's
// last checkpoint, and the log replayed nothing before its clock: 896 of 4,631 packets lost,
// exit status 0.)
func TestRunsShareRedis(t *testing.T) {
	in := filepath.Join(tracesDir(t), "pcapplusplus_example.pcap")
	url := testtrace.RedisServer(t)
	for i := range 3 {
		code, stdout, stderr := runSnf("run", "--nfs", "nat,monitor", "--fail", "unit=0@1000", "--in", in, "--store", url, "--quiet")
		if code != 0 || !strings.Contains(stdout, "packets   4631 in, 4631 out") || !strings.Contains(stdout, "1 units failed and replaced") {
			t.Fatalf("run %d: exit %d, %s\n%s", i, code, stderr, stdout)
		}
		if n := dbSize(t, strings.TrimPrefix(url, "redis://")); n != 0 {
			t.Fatalf("run %d left %d keys in the store", i, n)
		}
	}
}

// dbSize returns the number of keys of the Redis server at addr (DBSIZE).
func dbSize(t *testing.T, addr string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprint(c, "*1\r\n$6\r\nDBSIZE\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	var n int
	if _, err2 := fmt.Sscanf(line, ":%d", &n); err != nil || err2 != nil {
		t.Fatalf("DBSIZE: %q %v %v", line, err, err2)
	}
	return n
}
