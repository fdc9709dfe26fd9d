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

// TestErrorsNameFlags: a bad value is reported in the words the user typed — trace gen's
// flag, a gen: spec's key — not as a config field ("ScanFrac is 1.5"); an empty name in --nfs
// is a usage error of the flag, not a chain file's "missing nf:".
func TestErrorsNameFlags(t *testing.T) {
	out := filepath.Join(t.TempDir(), "g.pcap")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "gen", "--out", out, "--packets", "-5"}, "trace gen: --packets -5: want 0 (no limit) or more"},
		{[]string{"trace", "gen", "--out", out, "--scan-frac", "1.5"}, "trace gen: --scan-frac 1.5: want 0 to below 1"},
		{[]string{"trace", "gen", "--out", out, "--udp-frac", "NaN"}, "trace gen: --udp-frac NaN: want 0 to 1"},
		{[]string{"trace", "gen", "--out", out, "--small-frac", "2"}, "trace gen: --small-frac 2: want 0 to 1"},
		{[]string{"trace", "gen", "--out", out, "--mtu", "9000"}, "trace gen: --mtu 9000: want 576 to 1500"},
		{[]string{"trace", "gen", "--out", out, "--flow-rate", "1bps"}, "trace gen: --flow-rate 1 bit/s: want 0 (the link rate) or 1e3 to 1e13"},
		{[]string{"trace", "gen", "--out", out, "--warmup", "-1s"}, "trace gen: --warmup -1s: want 0 to 24h"},
		{[]string{"trace", "gen", "--out", out, "--clients", "0"}, "trace gen: --clients 0: want 1 to "},
		{[]string{"trace", "gen", "--out", out, "--dist", "fb_hadoop", "--load", "100", "--link", "10Tbps"}, "flows/s arrive at the profile's peak, more than 1e+08: lower --load or --link"},
		{[]string{"run", "--in", "gen:websearch,scan=1.5"}, `--in: workload "websearch,scan=1.5": scan=1.5: want 0 to below 1`},
		{[]string{"sim", "--in", "gen:websearch,udp=2"}, `sim: --in: workload "websearch,udp=2": udp=2: want 0 to 1`},
		{[]string{"run", "--nfs", "nat,,firewall"}, "--nfs: empty NF name at position 2 "},
		{[]string{"run", "--nfs", "nat,"}, "--nfs: empty NF name at position 2 "},
		{[]string{"sim", "--nfs", " ,nat"}, "--nfs: empty NF name at position 1 "},
	} {
		code, stdout, stderr := runSnf(c.args...)
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "snf: ") || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("snf %v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s was written", out)
	}
}
