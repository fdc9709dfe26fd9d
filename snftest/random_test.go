package snftest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/store"
)

// chains the random schedules run: one that moves flows at flowlet ends (exact COE), one
// with every kind of shared state — a NAT's pool, a scan detector's Scoped state, a monitor's
// counters — compared up to the values the pool hands out.
var chains = []struct {
	nfs  string
	mode Mode
}{
	{"firewall,lb", Exact},
	{"nat,portscan,monitor", UpToShared},
}

// inputs returns the inputs of the random-fault runs: generated traffic, and every real
// capture when they are beside the repository.
func inputs(t *testing.T) map[string][]mem.Frame {
	in := map[string][]mem.Frame{}
	g, err := LoadInput("generated:5000", "")
	if err != nil {
		t.Fatal(err)
	}
	in["generated:5000"] = g
	dir := tracesDir()
	if dir == "" {
		t.Log("real captures not found beside the repository (../shared/traces): generated traffic only")
		return in
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
	more, _ := filepath.Glob(filepath.Join(dir, "trojan_ingredients", "*.pcap*"))
	for _, f := range append(files, more...) {
		fr, err := LoadInput(f, "")
		if err != nil {
			t.Fatal(err)
		}
		in[filepath.Base(f)] = fr
	}
	return in
}

// TestRandomFaults draws fault schedules — kills and stalls of random units at random
// packets, one to four per run, and in about half the runs a scale storm (3 to 8 forced
// scale events and flowlet moves within a few hundred packets: units started and drained
// several at a time, every flow of a unit moved), on pools of 2 to 6 units under the snf,
// perflow and static policies — and checks COE (billing included) for each: 100 schedules
// per input (rapid's default; more with -rapid.checks=N), on the embedded store and, when
// redis-server is installed, on Redis, where about one schedule in five also restarts the
// server (killed, back 50 to 150 ms later; the units wait through the outage: retry=).
// It is heavy (about 3,000 runs): it skips under -race; scripts/test runs it without.
func TestRandomFaults(t *testing.T) {
	if raceEnabled {
		t.Skip("thousands of runs: scripts/test runs this without -race (the scenario and engine recovery tests cover the race detector)")
	}
	stores := []string{"embedded"}
	if _, err := exec.LookPath("redis-server"); err == nil {
		stores = append(stores, "redis")
	} else {
		t.Log("redis-server not installed: the embedded store only")
	}
	ins := inputs(t)
	names := make([]string, 0, len(ins))
	for n := range ins {
		names = append(names, n)
	}
	sort.Strings(names)
	var total, storms, restarts, scales, moves, copiedRuns, genRuns, headerRuns int
	var shortened, tailed, tailedPkts uint64
	for _, stName := range stores {
		// Redis: one server for the schedules without a restart, and, per input, one that
		// persists what it acknowledges (append-only file) for those with one: a restart
		// must lose nothing (and a fresh one has little to load when it restarts).
		var st store.Store
		if stName == "redis" {
			var err error
			if st, err = store.Open(testtrace.RedisServer(t)); err != nil {
				t.Fatal(err)
			}
			defer st.Close()
		}
		for _, name := range names {
			frames := ins[name]
			refs := make([]Result, len(chains))
			for i, c := range chains {
				refs[i] = reference(t, c.nfs, frames)
			}
			t.Run(stName+"/"+name, func(t *testing.T) {
				var rst store.Store
				var rsrv *testtrace.Redis
				if st != nil {
					rsrv = testtrace.StartRedis(t, true)
					var err error
					if rst, err = store.Open(rsrv.URL + "?timeout=500ms&retry=10s"); err != nil {
						t.Fatal(err)
					}
					defer rst.Close()
				}
				runs, restartRuns := 0, 0
				var restartTime time.Duration
				check := func(rt *rapid.T) {
					ci := rapid.IntRange(0, len(chains)-1).Draw(rt, "chain")
					units := rapid.IntRange(2, 6).Draw(rt, "units")
					pol := rapid.SampledFrom([]string{"snf", "perflow", "static"}).Draw(rt, "policy")
					nf := rapid.IntRange(1, 4).Draw(rt, "faults")
					n := len(frames)
					var faults []engine.Fault
					for range nf {
						f := engine.Fault{Kind: engine.FaultKill, Unit: rapid.IntRange(0, units-1).Draw(rt, "unit"),
							AtPacket: uint64(rapid.IntRange(1, n).Draw(rt, "at"))}
						if rapid.IntRange(0, 3).Draw(rt, "kind") == 0 {
							f.Kind, f.For = engine.FaultStall, time.Duration(rapid.IntRange(40, 120).Draw(rt, "ms"))*time.Millisecond
						}
						faults = append(faults, f)
					}
					if rapid.Bool().Draw(rt, "storm") {
						faults = append(faults, storm(rt, n, units)...)
						storms++
					}
					// A tight timeout, whatever the schedule: a unit the loaded machine leaves
					// unscheduled is declared failed and replaced (a straggler), which COE must
					// survive too; this test counts no more failures than the kills.
					opt := Options{Copied: rapid.Bool().Draw(rt, "copied"), FailTimeout: 30 * time.Millisecond}
					if opt.Copied {
						copiedRuns++
					} else if strings.HasPrefix(name, "generated:") && rapid.Bool().Draw(rt, "generator") {
						opt.Generator = true // (read from the generator itself, Rereadable)
						genRuns++
					}
					if st != nil {
						opt.Store = store.Namespaced(st, fmt.Sprintf("%s/%d", t.Name(), runs))
					}
					var wg sync.WaitGroup
					restarted := false
					if rst != nil && rapid.IntRange(0, 4).Draw(rt, "restart") == 0 {
						outage := time.Duration(rapid.IntRange(50, 150).Draw(rt, "outage ms")) * time.Millisecond
						faults = append(faults, engine.Fault{Kind: engine.FaultCall, AtPacket: uint64(rapid.IntRange(1, n).Draw(rt, "restart at")),
							Do: func() {
								rsrv.Stop()
								wg.Add(1)
								go func() {
									defer wg.Done()
									time.Sleep(outage)
									rsrv.Start()
								}()
							}})
						opt.Store = store.Namespaced(rst, fmt.Sprintf("%s/%d", t.Name(), runs))
						restarted = true
						restarts++
					}
					for _, f := range faults {
						switch f.Kind {
						case engine.FaultScale:
							scales++
						case engine.FaultMove:
							moves++
						}
					}
					sc := Scenario{Name: fmt.Sprint(faults), Input: name, NFs: chains[ci].nfs, Policy: pol, Units: units, Mode: chains[ci].mode, Faults: faults}
					runs++
					start := time.Now()
					// A run that hangs says which one it is, with every goroutine's stack, rather
					// than leaving the test to its timeout.
					hung := time.AfterFunc(90*time.Second, func() {
						fmt.Fprintf(os.Stderr, "snftest: a run has not ended after 90 s: %s on %s, policy %s, %d units, faults %v\n", chains[ci].nfs, name, pol, units, faults)
						_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
						panic("snftest: a run hangs (its schedule and the goroutines are above)")
					})
					rep := Run(context.Background(), sc, frames, refs[ci], opt)
					hung.Stop()
					wg.Wait()
					if restarted {
						waitStore(t, rst) // the next run builds its chains at once
						restartRuns++
						restartTime += time.Since(start)
					}
					if rep.Err != nil {
						rt.Fatalf("%s on %s, policy %s, %d units, faults %v: %v", chains[ci].nfs, name, pol, units, faults, rep.Err)
					}
					kills := 0
					for _, f := range faults {
						if f.Kind == engine.FaultKill {
							kills++
						}
					}
					if rep.Summary.Failures < uint64(kills) {
						rt.Fatalf("faults %v: %d failures recovered, %d kills", faults, rep.Summary.Failures, kills)
					}
					// Frames copied into the log, for a chain whose NFs read only headers: the
					// log forgets them once the egress wrote their batch (snf.HeaderReader).
					// Not for one that reads payloads (portscan).
					if opt.Copied {
						headers := chains[ci].nfs == "firewall,lb"
						if !headers && rep.Summary.LogShortened > 0 {
							rt.Fatalf("%s: the log forgot the payloads of %d batches", chains[ci].nfs, rep.Summary.LogShortened)
						}
						if headers {
							headerRuns++
							shortened += rep.Summary.LogShortened
							tailed += rep.Summary.LogTailed
							tailedPkts += rep.Summary.LogTailedPackets
						}
					}
				}
				rapid.Check(t, check)
				total += runs
				t.Logf("%d schedules, COE held in every one (%d with a store restart, %v of wall time)", runs, restartRuns, restartTime.Round(time.Millisecond))
			})
		}
	}
	t.Logf("%d runs in all: %d with a scale storm (%d scale events, %d forced moves), %d with a store restart, %d with the frames copied into the log (the others: kept in the input), %d reading generated traffic from its generator (its frames built again to replay)", total, storms, scales, moves, restarts, copiedRuns, genRuns)
	t.Logf("of the runs with frames copied into the log, %d had a chain reading only headers: its log kept the headers only of %d batches once written (%d with payloads kept, of %d packets: held or replayed)", headerRuns, shortened, tailed, tailedPkts)
	if headerRuns > 0 && shortened == 0 {
		t.Errorf("no run's log kept headers only")
	}
}

// storm draws a scale storm: 3 to 8 forced scale events and flowlet moves within a few
// hundred packets of a run of n packets on units units, ups and downs mixed (the first
// starts units, the second drains some).
func storm(rt *rapid.T, n, units int) []engine.Fault {
	start := rapid.IntRange(1, n).Draw(rt, "storm at")
	events := rapid.IntRange(3, 8).Draw(rt, "storm events")
	var fs []engine.Fault
	for i := range events {
		at := uint64(min(n, start+rapid.IntRange(0, 300).Draw(rt, "storm offset")))
		kind := i // 0: up, 1: down, then drawn
		if i >= 2 {
			kind = rapid.IntRange(0, 2).Draw(rt, "storm kind")
		}
		switch kind {
		case 0:
			fs = append(fs, engine.Fault{Kind: engine.FaultScale, Scale: rapid.IntRange(1, units).Draw(rt, "up"), AtPacket: at})
		case 1:
			fs = append(fs, engine.Fault{Kind: engine.FaultScale, Scale: -rapid.IntRange(1, units).Draw(rt, "down"), AtPacket: at})
		default:
			fs = append(fs, engine.Fault{Kind: engine.FaultMove, Unit: rapid.IntRange(0, units-1).Draw(rt, "move"), AtPacket: at})
		}
	}
	return fs
}

// waitStore waits until st answers again after a restart (its client fails operations at
// once for a while after it lost the server).
func waitStore(t *testing.T, st store.Store) {
	tb, err := st.Table("test", "probe")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); tb.Set("k", []byte("v")) != nil; {
		if time.Now().After(deadline) {
			t.Fatal("the store did not come back after its restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
