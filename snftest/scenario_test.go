package snftest

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	_ "github.com/snf-dev/snf/nf/all"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/mem"
)

// tracesDir returns the real captures' folder, or "" when it is absent.
func tracesDir() string {
	d, _ := filepath.Abs("../../shared/traces")
	if _, err := os.Stat(d); err != nil {
		return ""
	}
	return d
}

func needsCapture(t *testing.T, input string) {
	if !strings.HasPrefix(input, "generated:") && tracesDir() == "" {
		t.Skipf("input %s: the real captures are not beside the repository (../shared/traces)", input)
	}
}

// TestScenarios: every scenario file holds COE.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("scenarios/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := ParseScenario(file, f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			needsCapture(t, sc.Input)
			frames, err := LoadInput(sc.Input, tracesDir())
			if err != nil {
				t.Fatal(err)
			}
			want := reference(t, sc.NFs, frames)
			opts := map[string]Options{"": {}}
			if strings.HasPrefix(sc.Input, "generated:") {
				opts[" from the generator"] = Options{Generator: true} // (Rereadable: its frames built again)
			}
			for how, opt := range opts {
				rep := Run(context.Background(), sc, frames, want, opt)
				if rep.Err != nil {
					t.Fatalf("%s%s: %v", sc.Input, how, rep.Err)
				}
				s := rep.Summary
				kills := 0
				for _, f := range sc.Faults {
					if f.Kind == engine.FaultKill {
						kills++
					}
				}
				// A stall counts when its unit had work waiting (an idle unit is not failed).
				if s.Failures < uint64(kills) || s.Failures > uint64(len(sc.Faults)) {
					t.Errorf("%s%s: %d failures recovered; the schedule has %d kills and %d faults", sc.Input, how, s.Failures, kills, len(sc.Faults))
				}
				t.Logf("%s%s: %d packets; %d failures recovered, %d replayed, %d duplicate outputs, %d duplicate alerts dropped; recovery p50 %v; %d handovers (%d evacuated), units %d-%d",
					sc.Input, how, s.Packets, s.Failures, s.Replayed, s.Duplicates, s.AlertDuplicates, s.RecoveryTime.P50, s.Handovers, s.Evacuated, s.UnitsMin, s.UnitsMax)
			}
		})
	}
}

func reference(t testing.TB, nfs string, frames []mem.Frame) Result {
	t.Helper()
	spec, err := snf.ChainFromNames(nfs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Reference(spec, frames)
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// TestCompareCatches: the checker reports each kind of difference (it can fail).
func TestCompareCatches(t *testing.T) {
	frames, err := LoadInput("generated:3000", "")
	if err != nil {
		t.Fatal(err)
	}
	want := reference(t, "firewall,portscan", frames)
	if err := Compare(want, want, Exact, frames); err != nil {
		t.Fatalf("a result differs from itself: %v", err)
	}
	mutations := map[string]func(r *Result){
		"a byte": func(r *Result) {
			for c, fs := range r.Out {
				b := append([]byte(nil), fs[0]...)
				b[len(b)-1] ^= 1
				r.Out[c] = [][]byte{b}
				return
			}
		},
		"a lost packet": func(r *Result) {
			for c := range r.Out {
				delete(r.Out, c)
				return
			}
		},
		"a duplicate": func(r *Result) {
			for c, fs := range r.Out {
				r.Out[c] = append(fs, fs[0])
				return
			}
		},
		"an order": func(r *Result) {
			for k, o := range r.Order {
				if len(o) > 1 {
					r.Order[k] = append([]uint64{o[1], o[0]}, o[2:]...)
					return
				}
			}
		},
		"a state": func(r *Result) {
			for k, s := range r.States {
				r.States[k] = s + "x"
				return
			}
		},
		"an alert": func(r *Result) { r.Alerts = append(r.Alerts, "clock 1 extra") },
		"a bill":   func(r *Result) { r.Billed[len(r.Billed)-1].Packets++ },
	}
	for name, mutate := range mutations {
		got := deepCopy(want)
		mutate(&got)
		if err := Compare(want, got, Exact, frames); err == nil {
			t.Errorf("%s changed: no violation reported", name)
		} else if _, ok := err.(*Violation); !ok || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s changed: %T %q, want a one-line *Violation", name, err, err)
		}
	}
}

func deepCopy(r Result) Result {
	c := Result{Out: map[uint64][][]byte{}, Order: map[packet.Key][]uint64{}, States: map[packet.Key]string{},
		Alerts: slices.Clone(r.Alerts), Packets: r.Packets, Billed: slices.Clone(r.Billed)}
	for k, v := range r.Out {
		c.Out[k] = slices.Clone(v)
	}
	for k, v := range r.Order {
		c.Order[k] = slices.Clone(v)
	}
	for k, v := range r.States {
		c.States[k] = v
	}
	return c
}
