// Package testtrace holds what the NF packages' tests share: the real captures that sit
// beside the repository (found from any package, the test skipped when they are absent),
// chains built for a test and closed with it, an alert sink, metric lookup, and replaying
// a capture in batches for allocation tests and benchmarks.
package testtrace

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
)

// BatchSize is the number of packets in a batch of Process, Replay and BenchBatches: a
// port's batch.
const BatchSize = 64

// Dir returns the absolute path of the real captures, shared/traces beside the module (at
// ../shared/traces from the directory of go.mod, looked for upward from the test's working
// directory), or skips tb when it is absent: in CI the captures sit beside the repository,
// not in it.
func Dir(tb testing.TB) string {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatalf("testtrace: %v", err)
	}
	root, ok := moduleRoot(wd)
	if !ok {
		tb.Fatalf("testtrace: no go.mod in %s or above it", wd)
	}
	dir := filepath.Join(filepath.Dir(root), "shared", "traces")
	if _, err := os.Stat(dir); err != nil {
		tb.Skipf("real captures not found at %s (they sit beside the repository in CI): %v", dir, err)
	}
	return dir
}

// moduleRoot returns the nearest directory at or above dir that holds a go.mod.
func moduleRoot(dir string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", false
		}
		dir = up
	}
}

// Path returns the absolute path of the capture name ("nmap_synscan.pcap",
// "trojan_ingredients/zeek_ftp_retr.pcap") in Dir, or skips tb when it is absent.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	path := filepath.Join(Dir(tb), name)
	if _, err := os.Stat(path); err != nil {
		tb.Skipf("real capture not found at %s (it sits beside the repository in CI): %v", path, err)
	}
	return path
}

// Packets returns every packet of the capture name, parsed, with its time and wire length,
// each in its own buffer (the tests may rewrite them); it skips tb when the capture is
// absent.
func Packets(tb testing.TB, name string) []packet.Packet {
	tb.Helper()
	r, err := pcapfile.Open(Path(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	var all []packet.Packet
	batch := make([]packet.Packet, BatchSize)
	for {
		n, err := r.Read(batch)
		for i := range batch[:n] { // copies: the reader reuses batch's buffers
			var p packet.Packet
			p.SetData(batch[i].Data, batch[i].Time, batch[i].WireLen)
			all = append(all, p)
		}
		if err == io.EOF {
			return all
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// OneNF returns the chain file of one NF of type nf with config, a YAML flow mapping
// ("{rate: 10, burst: 5}"), or "" for the defaults.
func OneNF(nf, config string) string {
	y := "nfs:\n  - nf: " + nf + "\n"
	if config != "" {
		y += "    config: " + config + "\n"
	}
	return y
}

// Chain builds the chain of a chain file's text with opt, and closes it when the test
// ends; an error fails tb.
func Chain(tb testing.TB, yaml string, opt snf.ChainOptions) *snf.Chain {
	tb.Helper()
	spec, err := snf.ParseChain([]byte(yaml), "test.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return newChain(tb, spec, opt)
}

// ChainOf builds the chain of an --nfs list ("monitor", "nat,firewall"; "none" is the
// empty chain: its flow table alone) with opt, and closes it when the test ends.
func ChainOf(tb testing.TB, nfs string, opt snf.ChainOptions) *snf.Chain {
	tb.Helper()
	spec, err := snf.ChainFromNames(nfs)
	if err != nil {
		tb.Fatal(err)
	}
	return newChain(tb, spec, opt)
}

func newChain(tb testing.TB, spec *snf.ChainSpec, opt snf.ChainOptions) *snf.Chain {
	tb.Helper()
	if opt.Store == nil {
		opt.Store = envStore(tb)
	}
	c, err := snf.NewChain(spec, opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Alerts is an snf.AlertSink that keeps a copy of every alert. It is safe for concurrent
// use.
type Alerts struct {
	mu  sync.Mutex
	got []snf.Alert
}

var _ snf.AlertSink = (*Alerts)(nil)

// Alert keeps a copy of a.
func (s *Alerts) Alert(a *snf.Alert) {
	s.mu.Lock()
	s.got = append(s.got, *a)
	s.mu.Unlock()
}

// Snapshot returns a copy of the alerts so far, in order.
func (s *Alerts) Snapshot() []snf.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// Len returns the number of alerts so far.
func (s *Alerts) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// Reset forgets the alerts so far.
func (s *Alerts) Reset() {
	s.mu.Lock()
	s.got = s.got[:0]
	s.mu.Unlock()
}

// Metric returns the value of the metric name of c's nf-th NF. A name the NF does not have
// is a mistake in the test: Metric panics.
func Metric(c *snf.Chain, nf int, name string) uint64 {
	for _, m := range c.Report()[nf].Metrics {
		if m.Name == name {
			return m.Value
		}
	}
	panic(fmt.Sprintf("testtrace: NF %d of the chain has no metric %q", nf, name))
}

// Metrics returns every metric of c's nf-th NF by name.
func Metrics(c *snf.Chain, nf int) map[string]uint64 {
	m := map[string]uint64{}
	for _, v := range c.Report()[nf].Metrics {
		m[v.Name] = v.Value
	}
	return m
}

// Process runs pkts through c in batches of BatchSize and returns the packets that came
// out.
func Process(c *snf.Chain, pkts []packet.Packet) []*packet.Packet {
	var out []*packet.Packet
	for i := 0; i < len(pkts); i += BatchSize {
		out = c.Process(pkts[i:min(i+BatchSize, len(pkts))], out)
	}
	return out
}

// Span returns the time from the first of pkts to the last.
func Span(pkts []packet.Packet) time.Duration {
	return time.Duration(pkts[len(pkts)-1].Time - pkts[0].Time)
}

// restoreBytes is how much of each frame a Replay with RestoreHeaders copies back before
// a pass: more than any header an NF rewrites.
const restoreBytes = 128

// Replay feeds packets (a capture held in memory) to a chain in batches of BatchSize, pass
// after pass, as a longer capture would: every packet gets a new clock, and each pass is
// shift later in packet time than the one before, so that time keeps going forward. The
// packets past the last whole batch are left out.
type Replay struct {
	pkts    []packet.Packet
	times   []int64  // the packets' times in the first pass
	headers [][]byte // with RestoreHeaders, the start of each frame as it was
	shift   int64
	n       int // the next batch's first packet
	pass    int
	clock   uint64
	out     []*packet.Packet
}

// NewReplay returns a Replay of pkts (at least one batch), whose times now are those of
// the first pass. It stamps pkts in place.
func NewReplay(pkts []packet.Packet, shift time.Duration) *Replay {
	if len(pkts) < BatchSize {
		panic(fmt.Sprintf("testtrace: a replay of %d packets, less than a batch", len(pkts)))
	}
	r := &Replay{pkts: pkts, shift: int64(shift), out: make([]*packet.Packet, 0, 2*BatchSize)}
	for i := range pkts {
		r.times = append(r.times, pkts[i].Time)
	}
	return r
}

// RestoreHeaders makes each batch start from its frames as they are now (their first 128
// bytes copied back and parsed again), for NFs that rewrite headers in place: each pass
// must see the captured packets again. It returns r.
func (r *Replay) RestoreHeaders() *Replay {
	r.headers = make([][]byte, len(r.pkts))
	for i := range r.pkts {
		d := r.pkts[i].Data
		r.headers[i] = slices.Clone(d[:min(restoreBytes, len(d))])
	}
	return r
}

// next returns the next batch, restored (with RestoreHeaders) and stamped with new clocks
// and its pass's times, starting the next pass after the last whole batch.
func (r *Replay) next() []packet.Packet {
	if r.n+BatchSize > len(r.pkts) {
		r.n = 0
		r.pass++
	}
	b := r.pkts[r.n : r.n+BatchSize]
	for j := range b {
		p := &b[j]
		if r.headers != nil {
			copy(p.Data, r.headers[r.n+j])
			p.Parse()
		}
		r.clock++
		p.Clock, p.Time = r.clock, r.times[r.n+j]+int64(r.pass)*r.shift
	}
	r.n += BatchSize
	return b
}

// Batch runs the next batch through c.
func (r *Replay) Batch(c *snf.Chain) {
	r.out = c.Process(r.next(), r.out[:0])
}

// RunPass runs the next Batches() batches through c: a whole pass when the replay is at
// a pass's start.
func (r *Replay) RunPass(c *snf.Chain) {
	for range r.Batches() {
		r.Batch(c)
	}
}

// Batches returns the number of batches in a pass.
func (r *Replay) Batches() int { return len(r.pkts) / BatchSize }

// Packets returns the number of packets in a pass.
func (r *Replay) Packets() int { return r.Batches() * BatchSize }

// Passes returns the number of passes begun so far.
func (r *Replay) Passes() int { return r.pass + 1 }

// BenchBatches benchmarks batch, which runs one batch of BatchSize packets through a
// chain: it calls it warmup times first (flows created, tables and buffers grown), then
// reports allocations and ns/pkt.
func BenchBatches(b *testing.B, warmup int, batch func()) {
	for range warmup {
		batch()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		batch()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*BatchSize), "ns/pkt")
}

// ConfigError checks that a one-NF chain file with config (a YAML flow mapping) is refused
// with a one-line error that names the file, the NF and the config, and contains want.
func ConfigError(tb testing.TB, nf, config, want string) {
	tb.Helper()
	_, err := snf.ParseChain([]byte(OneNF(nf, config)), "x.yaml")
	prefix := "x.yaml: nfs[0] (" + nf + "): config:"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), prefix) || strings.Contains(err.Error(), "\n") {
		tb.Errorf("%s %s: error %v, want one line starting %q and containing %q", nf, config, err, prefix, want)
	}
}

// AllocsPerRun is testing.AllocsPerRun, the fewest of three measurements. testing's counts
// the whole process's allocations, and with SNF_TEST_STORE the process holds a Redis
// client whose goroutines allocate now and then in the background (under -race, half the
// runs of a 37,000-packet pass counted 2): an allocation of f's own shows in every
// measurement, one of theirs in few.
func AllocsPerRun(runs int, f func()) float64 {
	best := testing.AllocsPerRun(runs, f)
	for i := 1; i < 3 && best > 0; i++ {
		best = min(best, testing.AllocsPerRun(runs, f))
	}
	return best
}
