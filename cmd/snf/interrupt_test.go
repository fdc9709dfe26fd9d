package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"
)

// runCancelled runs snf in-process with a context cancelled after `after` (a Ctrl-C), and
// fails the test unless it returns within limit. It returns the exit status, stdout and
// stderr.
func runCancelled(t *testing.T, after, limit time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- runMain(ctx, args, &out, &errb) }()
	time.AfterFunc(after, cancel)
	select {
	case code := <-done:
		return code, out.String(), errb.String()
	case <-time.After(limit):
		t.Fatalf("snf %v: still running %s after its context was cancelled", args, limit-after)
	}
	panic("unreachable")
}

// TestRunPacedInterrupted: a paced replay waiting for its next packet (generated traffic at
// a billionth of its pace: hours between packets) ends at once when interrupted, with exit
// status 130 and its output a valid capture of the packets processed — on one chain and on
// elastic units.
func TestRunPacedInterrupted(t *testing.T) {
	// (--capacity: no calibration before the first packet.)
	for _, mode := range [][]string{nil, {"--policy", "snf", "--capacity", "2000"}, {"--recovery", "--capacity", "2000"}} {
		out := filepath.Join(t.TempDir(), "out.pcap")
		args := append([]string{"run", "--speed", "1e-9", "--packets", "1000", "--quiet", "--out", out}, mode...)
		code, stdout, stderr := runCancelled(t, 2*time.Second, 30*time.Second, args...)
		if code != 130 {
			t.Fatalf("%v: exit %d, want 130\n%s\n%s", mode, code, stdout, stderr)
		}
		wantAll(t, stderr, "interrupted; the output holds the packets processed so far")
		recs, err := readAll(t, out)
		if err != nil || len(recs) == 0 || len(recs) >= 1000 {
			t.Errorf("%v: the output holds %d packets (%v), want the few before the interrupt", mode, len(recs), err)
		}
	}
}
