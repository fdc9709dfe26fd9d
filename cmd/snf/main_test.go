package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/report"
)

func tracesDir(t *testing.T) string {
	d, _ := filepath.Abs("../../../shared/traces")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("real captures not found at %s (they sit beside the repository in CI): %v", d, err)
	}
	return d
}

// snf runs the command in-process and returns its exit status, stdout and stderr.
func runSnf(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runMain(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// runOK runs snf with args, fails the test unless it exits 0, and returns its stdout.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := runSnf(args...)
	if code != 0 {
		t.Fatalf("snf %v: exit %d\n%s\n%s", args, code, stdout, stderr)
	}
	return stdout
}

// wantAll reports each of wants that out lacks.
func wantAll(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

type rec struct {
	data    []byte
	ts      int64
	wireLen int
}

func readAll(t *testing.T, path string) ([]rec, error) {
	t.Helper()
	r, err := pcapfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var all []rec
	batch := make([]packet.Packet, 50)
	for {
		n, err := r.Read(batch)
		for _, p := range batch[:n] {
			all = append(all, rec{append([]byte(nil), p.Data...), p.Time, p.WireLen})
		}
		if err != nil {
			if err.Error() == "EOF" {
				return all, nil
			}
			return all, err
		}
	}
}

// TestEmptyChainIsACopy: every capture through the empty chain comes out with the same frames,
// byte for byte, in the same order, with the same timestamps.
func TestEmptyChainIsACopy(t *testing.T) {
	dir := tracesDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	more, _ := filepath.Glob(filepath.Join(dir, "*", "*.pcap*"))
	files = append(files, more...)
	if len(files) < 10 {
		t.Fatalf("found only %d captures in %s", len(files), dir)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out"+filepath.Ext(in))
			if code, _, stderr := runSnf("run", "--nfs", "none", "--in", in, "--out", out, "--quiet"); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			a, err := readAll(t, in)
			if err != nil {
				t.Fatal(err)
			}
			b, err := readAll(t, out)
			if err != nil {
				t.Fatal(err)
			}
			if len(a) != len(b) {
				t.Fatalf("%d frames in, %d out", len(a), len(b))
			}
			for i := range a {
				if !bytes.Equal(a[i].data, b[i].data) || a[i].ts != b[i].ts || a[i].wireLen != b[i].wireLen {
					t.Fatalf("frame %d differs", i)
				}
			}
		})
	}
}

// TestNATFirewallOnRealCapture is the README's example: a real capture through nat and
// firewall. Outbound packets carry the public address, replies reach the inside host,
// tcpdump reads the output, and the firewall's rules decide what is dropped.
func TestNATFirewallOnRealCapture(t *testing.T) {
	in := filepath.Join(tracesDir(t), "pcapplusplus_example.pcap")
	tmp := t.TempDir()
	chain := filepath.Join(tmp, "chain.yaml")
	os.WriteFile(chain, []byte(`nfs:
  - nf: nat
    config:
      public: 203.0.113.77
  - nf: firewall
    config:
      default: allow
      rules:
        - {action: deny, proto: udp, dst_ports: 53}
`), 0o644)
	out := filepath.Join(tmp, "out.pcap")
	code, stdout, stderr := runSnf("run", "--chain", chain, "--in", in, "--out", out, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"packets  4631 in", "nat ", "firewall ", "translated_out=", "rule0_hits="} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	inRecs, _ := readAll(t, in)
	outRecs, err := readAll(t, out)
	if err != nil {
		t.Fatal(err)
	}
	public := netip.MustParseAddr("203.0.113.77")
	private := netip.MustParsePrefix("10.0.0.0/8")
	var dnsIn, outbound, replies int
	for _, r := range inRecs {
		var p packet.Packet
		p.SetData(r.data, 0, 0)
		if p.Key.Proto == packet.ProtoUDP && (p.Key.DstPort == 53 || p.Key.SrcPort == 53) {
			dnsIn++
		}
	}
	for i, r := range outRecs {
		var p packet.Packet
		p.SetData(r.data, 0, 0)
		k := p.Key
		if k.Proto == packet.ProtoUDP && (k.DstPort == 53 || k.SrcPort == 53) {
			t.Fatalf("output packet %d is DNS (%s): the firewall rule denies it", i, k)
		}
		if private.Contains(k.SrcAddr()) && !private.Contains(k.DstAddr()) {
			t.Fatalf("output packet %d leaves with an inside source: %s", i, k)
		}
		if k.SrcAddr() == public {
			outbound++
		}
		if private.Contains(k.DstAddr()) && !private.Contains(k.SrcAddr()) {
			replies++
		}
	}
	if len(outRecs) != len(inRecs)-dnsIn || outbound < 1000 || replies < 1000 {
		t.Errorf("in %d (dns %d), out %d, outbound from public %d, replies to inside %d", len(inRecs), dnsIn, len(outRecs), outbound, replies)
	}
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		cmd := exec.Command(tcpdump, "-n", "-r", out)
		o, err := cmd.Output()
		if err != nil {
			t.Fatalf("tcpdump -r: %v", err)
		}
		if n := strings.Count(string(o), "\n"); n != len(outRecs) || !strings.Contains(string(o), "IP 203.0.113.77.") {
			t.Errorf("tcpdump read %d packets (want %d) or shows no public source", n, len(outRecs))
		}
	} else {
		t.Log("tcpdump not installed: skipped reading the output with it (.ci/run installs it)")
	}
}

func TestGeneratedTrafficByDefault(t *testing.T) {
	code, stdout, stderr := runSnf("run", "--packets", "5000", "--quiet")
	if code != 0 || !strings.Contains(stdout, "packets  5000 in") || !strings.Contains(stdout, "chain    nat → firewall") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "translated_out=") {
		t.Errorf("generated traffic should be translated by the default NAT:\n%s", stdout)
	}
}

// TestGeneratedWorkloadInput: --in gen:SPEC streams a generated workload into the run, the
// same for the same spec.
func TestGeneratedWorkloadInput(t *testing.T) {
	args := []string{"run", "--nfs", "firewall", "--quiet", "--in", "gen:websearch,load=0.3,link=1Gbps,duration=1s,seed=3"}
	code, out1, stderr := runSnf(args...)
	if code != 0 || !strings.Contains(out1, "packets  ") || strings.Contains(out1, "packets  0 in") {
		t.Fatalf("exit %d\n%s\n%s", code, out1, stderr)
	}
	_, out2, _ := runSnf(args...)
	line := func(s string) string {
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, "packets") {
				return l
			}
		}
		return ""
	}
	if line(out1) != line(out2) {
		t.Errorf("the same workload spec gave %q, then %q", line(out1), line(out2))
	}
}

func TestBadInputs(t *testing.T) {
	tmp := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	bad := write("bad.yaml", "nfs:\n  - nf: firewall\n    config: {rulez: []}\n")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", "--nfs", "nat,bogus"}, 1, `unknown NF "bogus"`},
		{[]string{"run", "--chain", bad}, 1, bad + `: nfs[0] (firewall): config: unknown field "rulez"`},
		{[]string{"run", "--chain", filepath.Join(tmp, "none.yaml")}, 1, "none.yaml"},
		{[]string{"run", "--in", filepath.Join(tmp, "missing.pcap")}, 1, "missing.pcap"},
		{[]string{"run", "--in", write("garbage.pcap", "this is not a capture at all")}, 1, "garbage.pcap"},
		{[]string{"run", "--nfs", "nat", "--chain", bad}, 2, "not both"},
		{[]string{"run", "--speed", "-1"}, 2, "--speed"},
		{[]string{"run", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"run", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"nfs", "bogus"}, 1, `unknown NF "bogus"`},
		{[]string{"run", "--in", "gen:bogus"}, 2, `unknown flow-size distribution "bogus"`},
		{[]string{"run", "--in", "gen:websearch,duration=soon"}, 2, "duration"},
	}
	for _, c := range cases {
		code, _, stderr := runSnf(c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("snf %v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
		if c.code == 1 && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("snf %v: error is not one line: %q", c.args, stderr)
		}
	}
}

// TestOutputIsAnInput: an output that is the same file as an input (by name, cleaned, or
// through a link) or as another output is refused with status 2 before anything is written:
// the input is left whole.
func TestOutputIsAnInput(t *testing.T) {
	tmp := t.TempDir()
	in := filepath.Join(tmp, "in.pcap")
	runOK(t, "trace", "gen", "--out", in, "--packets", "300")
	orig, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "link.pcap")
	if err := os.Symlink(in, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(tmp, "hard.pcap")
	if err := os.Link(in, hard); err != nil {
		t.Fatal(err)
	}
	chain := filepath.Join(tmp, "chain.yaml")
	os.WriteFile(chain, []byte("nfs:\n  - nf: portscan\n"), 0o644)
	other := filepath.Join(tmp, "out.pcap")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--nfs", "none", "--in", in, "--out", in}, "run: --in and --out name the same file"},
		{[]string{"run", "--nfs", "none", "--in", in, "--out", filepath.Join(tmp, "x", "..", "in.pcap")}, "run: --in and --out name the same file"},
		{[]string{"run", "--nfs", "none", "--in", in, "--out", link}, "run: --in and --out name the same file"},
		{[]string{"run", "--nfs", "none", "--in", hard, "--out", in}, "run: --in and --out name the same file"},
		{[]string{"run", "--policy", "snf", "--in", in, "--out", in}, "run: --in and --out name the same file"},
		{[]string{"run", "--nfs", "portscan", "--in", in, "--alerts", link}, "run: --in and --alerts name the same file"},
		{[]string{"run", "--chain", chain, "--in", in, "--alerts", chain}, "run: --chain and --alerts name the same file"},
		{[]string{"run", "--in", in, "--out", other, "--alerts", other}, "run: --out and --alerts name the same file"},
		{[]string{"trace", "compose", "--out", in, other, in + ",shift=1s"}, "trace compose: the input " + in + " and --out name the same file"},
		{[]string{"trace", "compose", "--out", link, in}, "trace compose: the input " + in + " and --out name the same file"},
	} {
		code, _, stderr := runSnf(c.args...)
		if code != 2 || !strings.HasPrefix(stderr, "snf: "+c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("snf %v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
		if b, _ := os.ReadFile(in); !bytes.Equal(b, orig) {
			t.Fatalf("snf %v: the input was changed", c.args)
		}
		if b, _ := os.ReadFile(chain); !strings.Contains(string(b), "portscan") {
			t.Fatalf("snf %v: the chain file was changed", c.args)
		}
	}
	// A device is not truncated by its writer: both outputs may be /dev/null.
	runOK(t, "run", "--nfs", "portscan", "--in", in, "--out", os.DevNull, "--alerts", os.DevNull, "--quiet")
}

// TestBadNumbers: non-finite, negative or meaningless numbers are refused with status 2 and
// one line naming the flag, by run and sim alike (NaN was taken as --speed max, and run took
// any --capacity).
func TestBadNumbers(t *testing.T) {
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"run", "--speed", "NaN"}, "--speed"},
		{[]string{"run", "--speed", "Inf"}, "--speed"},
		{[]string{"run", "--speed", "0"}, "--speed"},
		{[]string{"run", "--capacity", "NaN"}, "--capacity"},
		{[]string{"run", "--capacity", "Inf"}, "--capacity"},
		{[]string{"run", "--capacity", "0.0001"}, "--capacity"},
		{[]string{"run", "--capacity", "-1"}, "--capacity"},
		{[]string{"run", "--packets", "-5"}, "--packets"},
		{[]string{"sim", "--speed", "NaN"}, "--speed"},
		{[]string{"sim", "--capacity", "NaN"}, "--capacity"},
		{[]string{"sim", "--capacity", "0.5"}, "--capacity"},
		{[]string{"sim", "--busy-after", "-3"}, "--busy-after"},
		{[]string{"sim", "--max-backlog", "-1ms"}, "--max-backlog"},
	} {
		// (Harmless defaults first, so that a flag taken is a short run: the case's flag wins.)
		args := []string{c.args[0], "--packets", "1000", "--quiet"}
		if c.args[0] == "sim" {
			args = []string{"sim", "--capacity", "1000", "--duration", "10ms"}
		}
		code, stdout, stderr := runSnf(append(args, c.args[1:]...)...)
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "snf: "+c.args[0]+": "+c.flag) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("snf %v: exit %d, stderr %q, stdout %.200q", c.args, code, stderr, stdout)
		}
	}
	// The limits themselves are accepted.
	runOK(t, "run", "--capacity", "1", "--packets", "0", "--quiet", "--policy", "snf")
}

// TestElasticFlagsNeedElastic: the elastic runs' flags, given to a run on one chain (which
// would ignore them), are refused with status 2, as --report is.
func TestElasticFlagsNeedElastic(t *testing.T) {
	for _, args := range [][]string{{"--report", t.TempDir()}, {"--capacity", "2000"}, {"--flowlet-gap", "1ms"}, {"--checkpoint", "10ms"}} {
		code, stdout, stderr := runSnf(append([]string{"run", "--packets", "1000", "--quiet"}, args...)...)
		if want := "snf: run: " + args[0] + " needs an elastic run (--policy, --units or --compare)\n"; code != 2 || stdout != "" || stderr != want {
			t.Errorf("%v: exit %d, stderr %q, stdout %.100q", args, code, stderr, stdout)
		}
	}
	runOK(t, "run", "--packets", "1000", "--quiet", "--units", "2", "--capacity", "2000", "--flowlet-gap", "1ms", "--checkpoint", "10ms")
}

// TestTruncatedInput: a capture cut mid-record ends the run with an error naming the file
// and the offset, after every good packet before it was processed and written.
func TestTruncatedInput(t *testing.T) {
	src := filepath.Join(tracesDir(t), "tcpreplay_test.pcap")
	data, _ := os.ReadFile(src)
	tmp := t.TempDir()
	cut := filepath.Join(tmp, "cut.pcap")
	os.WriteFile(cut, data[:len(data)/2], 0o644)
	out := filepath.Join(tmp, "out.pcap")
	code, stdout, stderr := runSnf("run", "--nfs", "none", "--in", cut, "--out", out, "--quiet")
	if code != 1 || !strings.Contains(stderr, cut) || !strings.Contains(stderr, "offset") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	full, _ := readAll(t, src)
	got, err := readAll(t, out)
	if err != nil {
		t.Fatal(err)
	}
	// Count the complete records in the first half.
	off, complete := 24, 0
	for off+16 <= len(data)/2 {
		n := int(uint32(data[off+8]) | uint32(data[off+9])<<8 | uint32(data[off+10])<<16 | uint32(data[off+11])<<24)
		if off+16+n > len(data)/2 {
			break
		}
		off += 16 + n
		complete++
	}
	if len(got) != complete || complete == 0 || !bytes.Equal(got[complete-1].data, full[complete-1].data) {
		t.Errorf("wrote %d packets, the cut file has %d complete ones", len(got), complete)
	}
	if !strings.Contains(stdout, "packets  ") {
		t.Errorf("no summary printed:\n%s", stdout)
	}
	// The same on elastic units, and verified: the packets before the cut go through and
	// out (--verify read none of them once: it stopped at the input's error), COE holds for
	// them, and the error is the run's.
	for _, extra := range [][]string{{"--policy", "snf"}, {"--policy", "snf", "--verify"}, {"--policy", "snf", "--verify", "--fail", "unit=0@20"}} {
		out := filepath.Join(tmp, "out-elastic.pcap")
		code, stdout, stderr := runSnf(append([]string{"run", "--nfs", "nat", "--in", cut, "--out", out, "--quiet"}, extra...)...)
		if code != 1 || !strings.Contains(stderr, "offset") {
			t.Fatalf("%v: exit %d, stderr %q", extra, code, stderr)
		}
		got, err := readAll(t, out)
		if err != nil || len(got) != complete {
			t.Errorf("%v: wrote %d packets (%v), the cut file has %d complete ones", extra, len(got), err, complete)
		}
		if slices.Contains(extra, "--verify") && !strings.Contains(stdout, "COE holds: the same "+strconv.Itoa(complete)+" packets") {
			t.Errorf("%v: no verdict on the %d packets:\n%s", extra, complete, stdout)
		}
	}
}

// TestHelp: help asked for is printed on stdout with exit status 0 ('snf help run | less');
// help shown for a usage error goes to stderr with status 2.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"run", "--help"}, {"help", "run"}, {"run", "-h"},
		{"sim", "--help"}, {"help", "sim"}, {"nfs", "--help"}, {"help", "nfs"}, {"nfs", "nat", "--help"},
		{"trace", "--help"}, {"help", "trace"}, {"trace", "stats", "--help"}, {"trace", "compose", "--help"},
		{"trace", "gen", "--help"}, {"help", "trace", "gen"}} {
		code, stdout, stderr := runSnf(args...)
		if code != 0 || !strings.Contains(stdout, "Usage") || !strings.Contains(stdout, "snf") || stderr != "" {
			t.Errorf("snf %v: exit %d, %d bytes on stdout, stderr %.80q", args, code, len(stdout), stderr)
		}
	}
	for _, args := range [][]string{{}, {"trace"}} {
		if code, stdout, stderr := runSnf(args...); code != 2 || stdout != "" || !strings.Contains(stderr, "Usage") {
			t.Errorf("snf %v: exit %d, stdout %q, stderr\n%s", args, code, stdout, stderr)
		}
	}
	// A command's flags are listed; nfs has none, so no empty "Flags:" section.
	if _, stdout, _ := runSnf("run", "--help"); !strings.Contains(stdout, "\nFlags:\n") || !strings.Contains(stdout, "-units string\n    \telastic pool size: N (1 to N), or MIN-MAX") {
		t.Errorf("run --help: no flags, or --units N unexplained:\n%s", stdout)
	}
	if _, stdout, _ := runSnf("nfs", "--help"); strings.Contains(stdout, "Flags:") || stdout != nfsHelp {
		t.Errorf("nfs --help:\n%s", stdout)
	}
	_, stdout, _ := runSnf("nfs", "nat")
	for _, want := range []string{"public", "192.0.2.1", "ports", "read-write", "mapping", "per flow"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("snf nfs nat lacks %q:\n%s", want, stdout)
		}
	}
}

// TestHelpOfHelp: a help word asking for the help of a help word prints the usage; it does
// not recurse ('snf help --help' once overflowed the stack).
func TestHelpOfHelp(t *testing.T) {
	for _, args := range [][]string{{"help", "--help"}, {"--help", "--help"}, {"-h", "-h"}, {"help", "help"},
		{"-help", "-h", "run"}, {"help", "-h", "-h"}} {
		code, stdout, stderr := runSnf(args...)
		if code != 0 || stdout != usage || stderr != "" {
			t.Errorf("snf %v: exit %d, stderr %q, stdout\n%s", args, code, stderr, stdout)
		}
	}
	// 'snf help trace gen' is the help of trace gen.
	if code, stdout, _ := runSnf("help", "trace", "gen"); code != 0 || !strings.Contains(stdout, "snf trace gen --out FILE [flags]") {
		t.Errorf("snf help trace gen: exit %d\n%s", code, stdout)
	}
}

// TestAllNFsChain runs every NF of the library in one chain over a real capture.
func TestAllNFsChain(t *testing.T) {
	in := filepath.Join(tracesDir(t), "pcapplusplus_example.pcap")
	alerts := filepath.Join(t.TempDir(), "alerts.jsonl")
	code, stdout, stderr := runSnf("run", "--nfs", "nat,firewall,lb,ratelimit,portscan,monitor,trojan,ids",
		"--in", in, "--alerts", alerts, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, nf := range []string{"nat", "firewall", "lb", "ratelimit", "portscan", "monitor", "trojan", "ids"} {
		if !strings.Contains(stdout, "\n"+nf+" ") || !strings.Contains(stdout, nf+"  ") && !strings.Contains(stdout, nf+" ") {
			t.Errorf("summary lacks %s:\n%s", nf, stdout)
		}
	}
	if !strings.Contains(stdout, "packets  4631 in") || !strings.Contains(stdout, "monitor report:") || !strings.Contains(stdout, "212.199.202.9:80") {
		t.Errorf("summary or monitor report missing:\n%s", stdout)
	}
	if _, err := os.Stat(alerts); err != nil {
		t.Errorf("--alerts file not written: %v", err)
	}
}

// TestAlertsFile: a scan in a real capture gives a portscan alert in the JSON lines file.
func TestAlertsFile(t *testing.T) {
	in := filepath.Join(tracesDir(t), "nmap_synscan.pcap")
	alerts := filepath.Join(t.TempDir(), "alerts.jsonl")
	code, stdout, stderr := runSnf("run", "--nfs", "portscan", "--in", in, "--alerts", alerts, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(alerts)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"nf":"portscan"`) || !strings.Contains(lines[0], `"rule":"scanner"`) ||
		!strings.Contains(lines[0], `"src":"172.16.0.8:`) || !strings.Contains(stdout, "alerts   1") {
		t.Errorf("alerts %q\n%s", b, stdout)
	}
}

// TestAlertsWriteError: alerts that cannot be written (a full disk: /dev/full) end the run
// with status 1 and a one-line error, on one chain and on elastic units alike.
func TestAlertsWriteError(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skipf("no /dev/full on this system: %v", err)
	}
	base := []string{"run", "--nfs", "ratelimit", "--packets", "20000", "--quiet"} // (one rate-limit alert)
	good := filepath.Join(t.TempDir(), "alerts.jsonl")
	for _, mode := range [][]string{nil, {"--policy", "snf", "--units", "1-2"}} {
		args := append(append(slices.Clone(base), mode...), "--alerts", good)
		runOK(t, args...)
		if b, err := os.ReadFile(good); err != nil || !strings.Contains(string(b), `"nf":"ratelimit"`) {
			t.Fatalf("%v: alerts %q, %v", mode, b, err)
		}
		args[len(args)-1] = "/dev/full"
		code, stdout, stderr := runSnf(args...)
		if code != 1 || stderr != "snf: write alerts to /dev/full: write /dev/full: no space left on device\n" {
			t.Errorf("%v: exit %d, stderr %q\n%s", mode, code, stderr, stdout)
		}
	}
}

// TestVerifyAlerts: with --verify, the alerts still reach the --alerts file (the checker
// records them too), and a failed write of them still fails the run.
func TestVerifyAlerts(t *testing.T) {
	alerts := filepath.Join(t.TempDir(), "alerts.jsonl")
	args := []string{"run", "--nfs", "ratelimit", "--packets", "20000", "--quiet", "--units", "1-2", "--verify", "--alerts", alerts}
	stdout := runOK(t, args...)
	wantAll(t, stdout, "verify    COE holds", "1 alerts")
	if b, err := os.ReadFile(alerts); err != nil || strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), `"nf":"ratelimit"`) {
		t.Errorf("alerts file %q, %v", b, err)
	}
	if _, err := os.Stat("/dev/full"); err == nil {
		args[len(args)-1] = "/dev/full"
		if code, _, stderr := runSnf(args...); code != 1 || !strings.HasPrefix(stderr, "snf: write alerts to /dev/full: ") {
			t.Errorf("--alerts /dev/full: exit %d, stderr %q", code, stderr)
		}
	}
}

func TestTraceCommands(t *testing.T) {
	dir := tracesDir(t)
	code, stdout, stderr := runSnf("trace", "stats", "--gap", "1ms", filepath.Join(dir, "tcpreplay_test.pcap"))
	if code != 0 || !strings.Contains(stdout, "packets:              179") || !strings.Contains(stdout, "flows:                19 TCP/UDP (TCP 7, UDP 12)") || !strings.Contains(stdout, "flowlets:             77 at gap 1ms") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	out := filepath.Join(t.TempDir(), "composed.pcapng")
	ing := filepath.Join(dir, "trojan_ingredients")
	code, stdout, stderr = runSnf("trace", "compose", "--out", out,
		filepath.Join(ing, "zeek_ssh_single-conn.pcap")+",map=192.150.186.169=10.9.9.9",
		filepath.Join(ing, "zeek_http_get.pcap")+",shift=20s")
	if code != 0 || !strings.Contains(stdout, "108 packets from 2 inputs") {
		t.Fatalf("compose: exit %d\n%s\n%s", code, stdout, stderr)
	}
	recs, err := readAll(t, out)
	if err != nil || len(recs) != 108 {
		t.Fatalf("composed capture: %d packets, %v", len(recs), err)
	}
	seen := false
	for i, r := range recs {
		if i > 0 && r.ts < recs[i-1].ts {
			t.Fatalf("packet %d out of time order", i)
		}
		var p packet.Packet
		p.SetData(r.data, 0, 0)
		if p.Key.SrcAddr() == netip.MustParseAddr("10.9.9.9") || p.Key.DstAddr() == netip.MustParseAddr("10.9.9.9") {
			seen = true
		}
		if p.Key.SrcAddr() == netip.MustParseAddr("192.150.186.169") {
			t.Fatal("an address that was mapped is still there")
		}
	}
	if !seen {
		t.Error("the mapped address is not in the output")
	}
	for _, bad := range [][]string{
		{"trace", "compose", "--out", out, "x.pcap,shift=soon"},
		{"trace", "compose", "--out", out, "x.pcap,map=1.2.3.4=::1"},
		{"trace", "compose", "x.pcap"},
		{"trace", "frob"},
		{"trace", "stats"},
	} {
		if code, _, stderr := runSnf(bad...); code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stderr == "" {
			t.Errorf("snf %v: exit %d, stderr %q", bad, code, stderr)
		}
	}
}

// TestRunFailGenerated: with a packet log, generated traffic (the built-in generator, and a
// workload: gen:) is read so that the log keeps positions, not copies — a replay builds the
// frames again (trace.GenConfig.Rereadable).
func TestRunFailGenerated(t *testing.T) {
	for _, in := range [][]string{{"--packets", "20000"}, {"--in", "gen:websearch,load=0.1,duration=2s,packets=20000"}} {
		code, stdout, stderr := runSnf(append([]string{"run", "--nfs", "nat,firewall", "--units", "1-4", "--quiet",
			"--fail", "unit=0@3000", "--fail", "unit=0@12000"}, in...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", in, code, stdout, stderr)
		}
		// (At least the two kills: a loaded machine may stall a unit past the 100 ms timeout.)
		m := regexp.MustCompile(`recovery  (\d+) units failed and replaced, (\d+) packets replayed`).FindStringSubmatch(stdout)
		if m == nil {
			t.Fatalf("%v: no recovery line in\n%s", in, stdout)
		}
		if failed, _ := strconv.Atoi(m[1]); failed < 2 || m[2] == "0" || !strings.Contains(stdout, "their positions in the input") {
			t.Errorf("%v: want 2 or more units failed, packets replayed, the log keeping positions in the input:\n%s", in, stdout)
		}
	}
}

// TestRunReadOnce: --read-once takes the input as one read once (a pipe): the packet log keeps
// copies of the frames — for nat,firewall (NFs that read only headers) their headers once
// written — and a kill is recovered from them, COE holding; without a log it is refused.
func TestRunReadOnce(t *testing.T) {
	stdout := runOK(t, "run", "--packets", "20000", "--units", "1-4", "--quiet", "--read-once",
		"--fail", "unit=0@5000", "--verify")
	wantAll(t, stdout, "verify    COE holds", "bytes (arena ", "; headers only for ")
	if strings.Contains(stdout, "positions in the input") || strings.Contains(stdout, "recovery  0 units failed") {
		t.Errorf("the log kept positions, or no unit failed:\n%s", stdout)
	}
	code, _, stderr := runSnf("run", "--read-once")
	if code != 2 || stderr != "snf: run: --read-once applies to the packet log: give --recovery (or --fail)\n" {
		t.Errorf("--read-once without a log: exit %d, stderr %q", code, stderr)
	}
}

// TestRunFailPastEnd: a fault the run never reaches (past the input's last packet, or its
// capture time) is not silent: the summary and a warning name it, after a run that went on.
func TestRunFailPastEnd(t *testing.T) {
	code, stdout, stderr := runSnf("run", "--packets", "5000", "--units", "1-2", "--quiet",
		"--fail", "unit=0@3000", "--fail", "unit=0@9000", "--fail", "unit=1@1h")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if want := "faults    2 not injected, the run ended first (at packet 5000): unit=0@9000, unit=1@1h0m0s\n"; !strings.Contains(stdout, want) {
		t.Errorf("no %q in\n%s", want, stdout)
	}
	if want := "snf: warning: --fail unit=0@9000, unit=1@1h0m0s: not injected, the run ended first (at packet 5000)\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	// (At least the one kill: a loaded machine may stall a unit past the 100 ms timeout.)
	if !strings.Contains(stdout, "recovery  ") || strings.Contains(stdout, "recovery  0 units failed") {
		t.Errorf("the fault in range was not injected:\n%s", stdout)
	}
}

// TestRunFailVerify: --fail kills units and forces scale events and moves during an elastic
// run, --verify checks chain output equivalence against one chain and says so; a fault
// outside the pool is refused.
func TestRunFailVerify(t *testing.T) {
	stdout := runOK(t, "run", "--nfs", "nat,firewall,portscan", "--packets", "20000", "--units", "1-4", "--quiet",
		"--fail", "unit=0@3000", "--fail", "unit=1@9000", "--fail", "stall=0@15000/100ms",
		"--fail", "scale=+3@5000", "--fail", "move=0@5100", "--fail", "scale=-2@5200", "--verify")
	wantAll(t, stdout, "verify    COE holds", "recovery  ", "units failed and replaced")
	if strings.Contains(stdout, "recovery  0 units failed") || strings.Contains(stdout, "not injected") {
		t.Errorf("no unit failed, or a fault was not injected:\n%s", stdout)
	}
	for _, bad := range [][]string{
		{"run", "--fail", "unit=7@10", "--units", "4"},
		{"run", "--fail", "unit=1"},
		{"run", "--fail", "reboot=1@10"},
		{"run", "--fail", "scale=2@10"},
		{"run", "--fail", "move=7@10", "--units", "4"},
		{"run", "--compare", "--verify"},
	} {
		code, _, stderr := runSnf(bad...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("snf %v: exit %d, stderr %q; want 2 and one line", bad, code, stderr)
		}
	}
}

// TestCompareRefusesOnePolicyFlags: flags --compare does not use (an output capture, alerts,
// checkpoints, a store) are refused with status 2, not silently ignored; nothing is written.
func TestCompareRefusesOnePolicyFlags(t *testing.T) {
	tmp := t.TempDir()
	out, alerts := filepath.Join(tmp, "x.pcap"), filepath.Join(tmp, "x.jsonl")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--out", out}, "--out applies"},
		{[]string{"--alerts", alerts}, "--alerts applies"},
		{[]string{"--alerts", "-"}, "--alerts applies"},
		{[]string{"--checkpoint", "1ms"}, "--checkpoint applies"},
		{[]string{"--store", "redis://127.0.0.1:1"}, "--store applies"},
		{[]string{"--out", out, "--alerts", alerts}, "--out, --alerts apply"},
	} {
		args := append([]string{"run", "--compare", "--packets", "1000", "--quiet"}, c.args...)
		code, stdout, stderr := runSnf(args...)
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "snf: run: --compare writes only its table (and --report): "+c.want+" to one policy's run (--policy)") ||
			strings.Count(stderr, "\n") != 1 {
			t.Errorf("snf %v: exit %d, stderr %q, stdout %q", args, code, stderr, stdout)
		}
	}
	for _, f := range []string{out, alerts} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s was written", f)
		}
	}
}

// TestPerPacketRefusals: --recovery, --fail and --verify with --policy perpacket are refused
// up front (status 2, one line, nothing run or printed): the policy's per-packet store writes
// cannot be replayed, and it does not keep chain output equivalence.
func TestPerPacketRefusals(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--recovery"}, "run: --recovery does not support --policy perpacket"},
		{[]string{"--fail", "unit=0@100"}, "run: --fail (which turns on --recovery) does not support --policy perpacket"},
		{[]string{"--verify"}, "run: --verify checks chain output equivalence, which --policy perpacket does not keep"},
	} {
		args := append([]string{"run", "--policy", "perpacket", "--packets", "2000", "--units", "1-2"}, c.args...)
		code, stdout, stderr := runSnf(args...)
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "snf: "+c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("snf %v: exit %d, stderr %q, stdout\n%s", args, code, stderr, stdout)
		}
	}
	_, help, _ := runSnf("run", "--help")
	wantAll(t, help, "perpacket takes no --recovery, --fail or --verify")
	// The other policies take them.
	wantAll(t, runOK(t, "run", "--policy", "perflow", "--packets", "2000", "--units", "1-2", "--quiet", "--verify"), "verify    COE holds")
}

// TestRunTimelineSaturated: at full speed the timeline marks the saturated ticks (≥), with a
// note saying what it means. (Whether a tick is saturated is the engine's tests' business:
// at capture pace, a root slowed down by -race and a loaded machine falls behind too.)
func TestRunTimelineSaturated(t *testing.T) {
	dir := t.TempDir()
	stdout := runOK(t, "run", "--packets", "100000", "--policy", "snf", "--units", "1-2", "--quiet", "--report", dir)
	wantAll(t, stdout, "≥", "the load shown is what the pool took")
	// The report marks those intervals on its load plot, and says what they mean.
	load, err := os.ReadFile(filepath.Join(dir, report.LoadPlot))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	wantAll(t, string(load), "input waiting on the pool")
	wantAll(t, string(page), "their load and oracle are lower bounds")
	for _, sat := range []bool{false, true} { // the note only for a run that had such intervals
		notes := strings.Join(liveNotes("in", 1, 2, time.Millisecond, 1e6, sat), "\n")
		if strings.Contains(notes, "lower bounds") != sat {
			t.Errorf("saturated %v: notes\n%s", sat, notes)
		}
	}
}

// TestBatchMemoryBound: an elastic run whose batches would not fit in memory (units × 16
// batches × --batch packets × 2 KB) is refused with one line, not killed out of memory; one
// chain has one batch, and may take the largest.
func TestBatchMemoryBound(t *testing.T) {
	code, _, stderr := runSnf("run", "--policy", "snf", "--batch", "65536", "--packets", "100", "--quiet")
	if code != 2 || !strings.Contains(stderr, "GB of packet buffers") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("elastic, --batch 65536: exit %d, %q", code, stderr)
	}
	if code, stdout, stderr := runSnf("run", "--batch", "65536", "--packets", "100", "--quiet"); code != 0 || !strings.Contains(stdout, "100 in") {
		t.Errorf("one chain, --batch 65536: exit %d, %s", code, stderr)
	}
	if code, _, stderr := runSnf("run", "--policy", "snf", "--units", "2", "--batch", "4096", "--packets", "100", "--quiet"); code != 0 {
		t.Errorf("elastic, 2 units, --batch 4096: exit %d, %s", code, stderr)
	}
}

// TestRunLiveFlags: the live interface's flags are refused without one, and what a live
// interface cannot do is refused with it, each in one line (status 2); an interface that does
// not exist is one line too (status 1).
func TestRunLiveFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ring", "1024"}, "--ring applies to a live interface (--in if:IFACE)"},
		{[]string{"--count", "5"}, "--count applies to a live interface"},
		{[]string{"--idle", "1s"}, "--idle applies to a live interface"},
		{[]string{"--in", "if:lo", "--speed", "1"}, "--speed paces a capture"},
		{[]string{"--in", "if:lo", "--verify"}, "--verify reads its input into memory"},
		{[]string{"--in", "if:lo", "--compare"}, "--compare runs every policy on the same input"},
		{[]string{"--in", "if:lo", "--ring", "10"}, "--ring must be between"},
		{[]string{"--in", "if:lo", "--idle", "-1s"}, "--count and --idle must be >= 0"},
	} {
		code, stdout, stderr := runSnf(append([]string{"run"}, c.args...)...)
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "snf: run: "+c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("run %v: exit %d, %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	code, _, stderr := runSnf("run", "--in", "if:snf-no-such-if", "--quiet")
	if code != 1 || !strings.Contains(stderr, "snf-no-such-if") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("a missing interface: exit %d, %q", code, stderr)
	}
}
