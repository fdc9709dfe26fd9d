package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTraceGen(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "gen.pcap")
	args := []string{"trace", "gen", "--out", out, "--dist", "alistorage", "--link", "1Gbps", "--duration", "300ms",
		"--profile", "diurnal:min=0.2,max=1+bursts:x=3,len=20ms,rate=5", "--seed", "9", "--scan-frac", "0.1"}
	code, stdout, stderr := runSnf(args...)
	if code != 0 || !strings.Contains(stdout, out+": ") || !strings.Contains(stdout, " flows started (") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	recs, err := readAll(t, out)
	if err != nil || len(recs) < 1000 {
		t.Fatalf("generated capture: %d packets, %v", len(recs), err)
	}
	code, stats, stderr := runSnf("trace", "stats", out)
	if code != 0 || !strings.Contains(stats, "packets:") || !strings.Contains(stats, "flowlets:") {
		t.Fatalf("stats: exit %d\n%s\n%s", code, stats, stderr)
	}
	// The same flags give the same bytes; another seed other bytes.
	again := filepath.Join(dir, "again.pcap")
	args[3] = again
	if code, _, stderr := runSnf(args...); code != 0 {
		t.Fatal(stderr)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("two runs with the same seed wrote different captures")
	}
	args[len(args)-3] = "10"
	if code, _, stderr := runSnf(args...); code != 0 {
		t.Fatal(stderr)
	}
	if b, _ = os.ReadFile(again); bytes.Equal(a, b) {
		t.Error("seeds 9 and 10 wrote the same capture")
	}
	// pcapng by name; --packets.
	ng := filepath.Join(dir, "gen.pcapng")
	if code, stdout, stderr := runSnf("trace", "gen", "--out", ng, "--packets", "500"); code != 0 || !strings.Contains(stdout, "500 packets") {
		t.Fatalf("pcapng: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if recs, err := readAll(t, ng); err != nil || len(recs) != 500 {
		t.Fatalf("pcapng: %d packets, %v", len(recs), err)
	}
	if code, help, _ := runSnf("trace", "gen", "--help"); code != 0 || !strings.Contains(help, "diurnal:min=0.2,max=1") || !strings.Contains(help, "-scan-frac") {
		t.Errorf("--help: exit %d\n%s", code, help)
	}
	for _, bad := range [][]string{
		{"trace", "gen"},
		{"trace", "gen", "--out", out, "--dist", "nosuch"},
		{"trace", "gen", "--out", out, "--profile", "weekly"},
		{"trace", "gen", "--out", out, "--profile", "diurnal:min=2,max=1"},
		{"trace", "gen", "--out", out, "--load", "0"},
		{"trace", "gen", "--out", out, "--link", "fast"},
		{"trace", "gen", "--out", out, "--flow-rate", "1Xbps"},
		{"trace", "gen", "--out", out, "--scan-frac", "1.5"},
		{"trace", "gen", "--out", out, "--gap", "pareto"},
		{"trace", "gen", "--out", out, "--duration", "-1s"},
		{"trace", "gen", "--out", out, "extra"},
	} {
		if code, _, stderr := runSnf(bad...); code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stderr == "" {
			t.Errorf("snf %v: exit %d, stderr %q", bad, code, stderr)
		}
	}
	if code, _, stderr := runSnf("trace", "gen", "--out", out, "--nosuchflag"); code != 2 || stderr == "" {
		t.Errorf("unknown flag: exit %d, stderr %q", code, stderr)
	}
}
