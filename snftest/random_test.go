package snftest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
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
// packets, one to four per run, on pools of 2 to 6 units under the snf, perflow and static
// policies — and checks COE for each: 100 schedules per input (rapid's default; more with
// -rapid.checks=N), on the embedded store and, when redis-server is installed, on Redis.
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
	total := 0
	for _, stName := range stores {
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
				runs := 0
				check := func(rt *rapid.T) {
					ci := rapid.IntRange(0, len(chains)-1).Draw(rt, "chain")
					units := rapid.IntRange(2, 6).Draw(rt, "units")
					pol := rapid.SampledFrom([]string{"snf", "perflow", "static"}).Draw(rt, "policy")
					nf := rapid.IntRange(1, 4).Draw(rt, "faults")
					var faults []engine.Fault
					for range nf {
						f := engine.Fault{Kind: engine.FaultKill, Unit: rapid.IntRange(0, units-1).Draw(rt, "unit"),
							AtPacket: uint64(rapid.IntRange(1, len(frames)).Draw(rt, "at"))}
						if rapid.IntRange(0, 3).Draw(rt, "kind") == 0 {
							f.Kind, f.For = engine.FaultStall, time.Duration(rapid.IntRange(40, 120).Draw(rt, "ms"))*time.Millisecond
						}
						faults = append(faults, f)
					}
					sc := Scenario{Name: fmt.Sprint(faults), NFs: chains[ci].nfs, Policy: pol, Units: units, Mode: chains[ci].mode, Faults: faults}
					var opt Options
					if st != nil {
						opt.Store = testtrace.Namespaced(st, fmt.Sprintf("%s/%d", t.Name(), runs))
					}
					runs++
					rep := Run(context.Background(), sc, frames, refs[ci], opt)
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
				}
				rapid.Check(t, check)
				total += runs
				t.Logf("%d schedules, COE held in every one", runs)
			})
		}
	}
	t.Logf("%d runs in all", total)
}
