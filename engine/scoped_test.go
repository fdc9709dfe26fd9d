package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port/mem"
)

type alertSet struct {
	mu  sync.Mutex
	got []string
}

func (a *alertSet) Alert(al *snf.Alert) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, fmt.Sprintf("%d %s %s %s %v", al.Clock, al.NF, al.Rule, al.Flow, al.Details))
}

func (a *alertSet) sorted() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := append([]string(nil), a.got...)
	sort.Strings(s)
	return s
}

// TestElasticScopedEqualsOneUnit: a chain whose NFs keep state per initiating address
// (portscan's walk per scanner, trojan's sequence per host) is dispatched by that address,
// so an elastic run raises the same alerts, and outputs the same packets, as one unit.
func TestElasticScopedEqualsOneUnit(t *testing.T) {
	spec, err := snf.ParseChain([]byte("nfs:\n  - nf: portscan\n    config: {block: true}\n  - nf: trojan\n  - nf: firewall\n"), "scoped.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]mem.Frame{"generated": generated(t, 20000)}
	if dir, err := filepath.Abs("../../shared/traces"); err == nil {
		for _, n := range []string{"nmap_synscan.pcap", "ndpi_gnutella.pcap", "pcapplusplus_example.pcap"} {
			if f := filepath.Join(dir, n); fileExists(f) {
				inputs[n] = readFrames(t, f)
			}
		}
	}
	for name, frames := range inputs {
		// The one-unit run.
		var refAlerts alertSet
		chain, err := snf.NewChain(spec, snf.ChainOptions{Alerts: &refAlerts})
		if err != nil {
			t.Fatal(err)
		}
		w := &mem.Writer{}
		if _, err := engine.Run(context.Background(), engine.Config{Chain: chain, In: mem.NewReader(frames), Out: w}); err != nil {
			t.Fatal(err)
		}
		want := collect(t, w, []*snf.Chain{chain}, frames[len(frames)-1].Time)
		chain.Close()
		for _, pn := range []string{"snf", "perflow", "mover"} {
			t.Run(name+"/"+pn, func(t *testing.T) {
				var pol policy.Policy = &mover{}
				if pn != "mover" {
					pol, _ = policy.New(pn, policy.Options{})
				}
				var alerts alertSet
				w := &mem.Writer{}
				var got outcome
				s, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: mem.NewReader(frames), Out: w,
					Policy: pol, MinUnits: 1, MaxUnits: 8, Batch: 16, Capacity: 2000, Tick: time.Millisecond, Alerts: &alerts,
					OnDone: func(chains []*snf.Chain) { got = collect(t, w, chains, frames[len(frames)-1].Time) }})
				if err != nil {
					t.Fatal(err)
				}
				compare(t, want, got)
				wa, ga := refAlerts.sorted(), alerts.sorted()
				if len(wa) != len(ga) {
					t.Fatalf("%d alerts, one-unit run %d", len(ga), len(wa))
				}
				for i := range wa {
					if wa[i] != ga[i] {
						t.Fatalf("alert %q, one-unit run %q", ga[i], wa[i])
					}
				}
				t.Logf("%d packets, %d alerts, units %d-%d, %d handovers", s.Packets, len(ga), s.UnitsMin, s.UnitsMax, s.Handovers)
			})
		}
	}
}
