package testtrace_test

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	_ "github.com/snf-dev/snf/nf/nat"
	_ "github.com/snf-dev/snf/nf/ratelimit"
)

var (
	inside = netip.MustParseAddr("10.0.0.1")
	remote = netip.MustParseAddr("198.51.100.1")
)

// TestDirFromAnyDepth: the captures are found from the module root, whatever the package's
// depth, and a missing directory skips, naming where it was looked for.
func TestDirFromAnyDepth(t *testing.T) {
	tmp := t.TempDir()
	mod := filepath.Join(tmp, "repo")
	deep := filepath.Join(mod, "a", "b", "c")
	traces := filepath.Join(tmp, "shared", "traces")
	for _, d := range []string{deep, traces} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, wd := range []string{mod, deep} {
		t.Run(filepath.Base(wd), func(t *testing.T) {
			t.Chdir(wd)
			if got := testtrace.Dir(t); got != traces {
				t.Errorf("Dir from %s = %s, want %s", wd, got, traces)
			}
		})
	}

	var missingDir, missingFile *testing.T
	t.Run("no traces", func(t *testing.T) {
		missingDir = t
		t.Chdir(deep)
		if err := os.Rename(traces, traces+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(traces+".away", traces)
		testtrace.Dir(t)
		t.Error("Dir did not skip")
	})
	t.Run("no capture", func(t *testing.T) {
		missingFile = t
		t.Chdir(deep)
		testtrace.Packets(t, "missing.pcap")
		t.Error("Packets did not skip")
	})
	if !missingDir.Skipped() || !missingFile.Skipped() {
		t.Errorf("skipped: no directory %v, no capture %v", missingDir.Skipped(), missingFile.Skipped())
	}
}

// TestPackets: every capture beside the repository reads to its end, each packet in its own
// buffer, parsed, with its time.
func TestPackets(t *testing.T) {
	dir := testtrace.Dir(t)
	var names []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (filepath.Ext(path) == ".pcap" || filepath.Ext(path) == ".pcapng") {
			rel, _ := filepath.Rel(dir, path)
			names = append(names, rel)
		}
		return err
	})
	if err != nil || len(names) == 0 {
		t.Fatalf("%d captures in %s: %v", len(names), dir, err)
	}
	for _, name := range names {
		pkts := testtrace.Packets(t, name)
		if len(pkts) == 0 {
			t.Errorf("%s: no packets", name)
			continue
		}
		if len(pkts) > 1 && &pkts[0].Data[0] == &pkts[1].Data[0] {
			t.Errorf("%s: packets share a buffer", name)
		}
		if pkts[0].Time == 0 || pkts[len(pkts)-1].Time < pkts[0].Time {
			t.Errorf("%s: times %d .. %d", name, pkts[0].Time, pkts[len(pkts)-1].Time)
		}
	}
	if p := testtrace.Path(t, "nmap_synscan.pcap"); !filepath.IsAbs(p) || filepath.Dir(p) != dir {
		t.Errorf("Path = %s", p)
	}
}

// TestChainAlertsMetrics: a chain built from a chain file or an --nfs list runs, its
// alerts are kept (from several goroutines too), and its metrics read by name.
func TestChainAlertsMetrics(t *testing.T) {
	if got := testtrace.OneNF("ratelimit", "{rate: 1, burst: 1}"); got != "nfs:\n  - nf: ratelimit\n    config: {rate: 1, burst: 1}\n" {
		t.Errorf("OneNF = %q", got)
	}
	alerts := &testtrace.Alerts{}
	c := testtrace.Chain(t, "nfs:\n  - nf: nat\n  - nf: ratelimit\n    config: {rate: 1, burst: 1}\n", snf.ChainOptions{Alerts: alerts})
	f := pkttest.UDP(inside, remote, 1000, 53, nil)
	out := testtrace.Process(c, pkttest.Batch(0, f, f, f))
	if len(out) != 1 || testtrace.Metric(c, 1, "dropped") != 2 || testtrace.Metrics(c, 0)["translated_out"] != 3 {
		t.Errorf("%d out; metrics %v %v", len(out), testtrace.Metrics(c, 0), testtrace.Metrics(c, 1))
	}
	if got := alerts.Snapshot(); len(got) != 1 || got[0].Rule != "rate_exceeded" || alerts.Len() != 1 {
		t.Errorf("alerts %+v", got)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				alerts.Alert(&snf.Alert{Rule: "x"})
				alerts.Snapshot()
			}
		})
	}
	wg.Wait()
	if alerts.Len() != 401 {
		t.Errorf("%d alerts, want 401", alerts.Len())
	}
	alerts.Reset()
	if alerts.Len() != 0 || len(alerts.Snapshot()) != 0 {
		t.Error("Reset kept alerts")
	}
	defer func() {
		if recover() == nil {
			t.Error("Metric of a name the NF lacks did not panic")
		}
	}()
	testtrace.Metric(c, 0, "no such metric")
}

// TestReplay: batches of 64 with new clocks, each pass shifted in time, the tail left out,
// and with RestoreHeaders the frames as they were at the start of every batch.
func TestReplay(t *testing.T) {
	frames := make([][]byte, 150)
	for i := range frames {
		frames[i] = pkttest.UDP(inside, remote, uint16(1000+i), 53, nil)
	}
	pkts := pkttest.Batch(5e9, frames...)
	if testtrace.Span(pkts) != 149*time.Millisecond {
		t.Errorf("span %s", testtrace.Span(pkts))
	}
	r := testtrace.NewReplay(pkts, time.Hour).RestoreHeaders()
	if r.Batches() != 2 || r.Packets() != 128 {
		t.Fatalf("%d batches, %d packets", r.Batches(), r.Packets())
	}
	c := testtrace.ChainOf(t, "none", snf.ChainOptions{})
	for call := range 5 {
		r.Batch(c)
		pass, first := call/2, call%2*64
		if r.Passes() != pass+1 {
			t.Errorf("batch %d: %d passes", call, r.Passes())
		}
		for j := range 64 {
			i := first + j
			p := &pkts[i]
			if p.Clock != uint64(call*64+j+1) || p.Time != 5e9+int64(i)*1e6+int64(pass)*int64(time.Hour) {
				t.Fatalf("batch %d packet %d: clock %d time %d", call, j, p.Clock, p.Time)
			}
			if !bytes.Equal(p.Data, frames[i]) || p.Key.SrcPort != uint16(1000+i) {
				t.Fatalf("batch %d packet %d not restored", call, j)
			}
			p.SetSrcPort(1) // as an NF rewrites it
		}
	}
	if p := pkts[149]; p.Clock != 150 || p.Time != 5e9+149e6 { // as pkttest.Batch stamped it
		t.Errorf("the packets past the last whole batch were replayed: clock %d time %d", p.Clock, p.Time)
	}
}

// BenchmarkBatches: the NAT over a replay, as the NF packages measure themselves.
func BenchmarkBatches(b *testing.B) {
	frames := make([][]byte, 256)
	for i := range frames {
		frames[i] = pkttest.UDP(inside, remote, uint16(1000+i), 53, nil)
	}
	r := testtrace.NewReplay(pkttest.Batch(0, frames...), time.Second).RestoreHeaders()
	c := testtrace.ChainOf(b, "nat", snf.ChainOptions{})
	testtrace.BenchBatches(b, r.Batches(), func() { r.Batch(c) })
}
