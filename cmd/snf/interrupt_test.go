package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
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

// TestRunCompareInterrupted: run --compare interrupted (its paced runs waiting for their
// next packet) exits 130 saying so, not 1 with "context canceled".
func TestRunCompareInterrupted(t *testing.T) {
	code, _, stderr := runCancelled(t, time.Second, 30*time.Second,
		"run", "--compare", "--speed", "1e-9", "--packets", "1000", "--capacity", "2000", "--quiet")
	if code != 130 || stderr != "snf: interrupted\n" {
		t.Errorf("exit %d, stderr %q; want 130, interrupted", code, stderr)
	}
}

// endlessInput is an input that never ends (one frame per Read, its timestamps 1 ms apart);
// it calls onRead with the number of Reads so far.
type endlessInput struct {
	frame  []byte
	reads  int
	onRead func(int)
}

func (e *endlessInput) Read(pkts []packet.Packet) (int, error) {
	e.reads++
	e.onRead(e.reads)
	pkts[0].SetData(e.frame, int64(e.reads)*1e6, 0)
	return 1, nil
}

func (e *endlessInput) Close() error { return nil }

// TestVerifyInterrupted: --verify reads its input into memory, then runs the reference:
// interrupted while it reads, it reads no further and the run ends as cancelled (with a
// large input it read on to the end, then ran the whole reference, before it looked).
func TestVerifyInterrupted(t *testing.T) {
	spec, err := loadSpec("", "firewall")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := &endlessInput{frame: pkttest.UDP(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1000, 53, nil)}
	const cancelAt = 100
	in.onRead = func(n int) {
		if n == cancelAt {
			cancel()
		}
		if n > 100*cancelAt {
			panic("--verify reads on after the run was interrupted")
		}
	}
	pol, _ := newPolicy("snf", 2)
	_, _, err = runVerified(ctx, engine.LiveConfig{Spec: spec, In: in, Policy: pol, MaxUnits: 2, Capacity: 2000}, nil, false, io.Discard, true)
	if !errors.Is(err, context.Canceled) || in.reads > cancelAt+1 {
		t.Errorf("%v after %d reads; want context.Canceled, the input read no further than the interrupt (%d)", err, in.reads, cancelAt)
	}
}

// TestTraceGenInterrupted: trace gen interrupted mid-run (a trace of an hour: minutes of
// work) stops within a batch, says so in one line with how much it wrote, and exits 130.
func TestTraceGenInterrupted(t *testing.T) {
	code, stdout, stderr := runCancelled(t, 500*time.Millisecond, 30*time.Second,
		"trace", "gen", "--out", os.DevNull, "--duration", "1h", "--load", "0.3")
	if code != 130 || stdout != "" || strings.Count(stderr, "\n") != 1 ||
		!regexp.MustCompile(`^snf: trace gen: interrupted; `+regexp.QuoteMeta(os.DevNull)+` holds the \d+ packets written so far\n$`).MatchString(stderr) {
		t.Errorf("exit %d, stdout %q, stderr %q; want 130 and one line saying how much was written", code, stdout, stderr)
	}
}

// TestTraceInterruptedOutputs: interrupted (here before they start), trace gen and compose
// close their outputs cleanly — valid captures, of the packets written so far — and trace
// stats says where it stopped; each exits 130 with one line.
func TestTraceInterruptedOutputs(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.pcap")
	runOK(t, "trace", "gen", "--out", in, "--packets", "500")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gen, comp := filepath.Join(dir, "gen.pcapng"), filepath.Join(dir, "comp.pcap")
	for _, c := range []struct {
		args []string
		out  string // the capture written, or ""
		want string
	}{
		// (--packets: a bounded output, should the interrupt go unseen)
		{[]string{"trace", "gen", "--out", gen, "--packets", "2000"}, gen, "trace gen: interrupted; " + gen + " holds the 0 packets written so far ("},
		{[]string{"trace", "compose", "--out", comp, in, in + ",shift=1s"}, comp, "trace compose: interrupted; " + comp + " holds the 0 packets written so far ("},
		{[]string{"trace", "stats", in}, "", "trace stats: interrupted in " + in + " after 0 packets"},
	} {
		var out, errb bytes.Buffer
		code := runMain(ctx, c.args, &out, &errb)
		if code != 130 || strings.Count(errb.String(), "\n") != 1 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("snf %v: exit %d, stderr %q; want 130 and %q", c.args, code, errb.String(), c.want)
		}
		if c.out != "" {
			if recs, err := readAll(t, c.out); err != nil || len(recs) != 0 {
				t.Errorf("snf %v: the output holds %d packets, %v: want a valid, empty capture", c.args, len(recs), err)
			}
		}
	}
}
