package snftest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/store"
	"github.com/snf-dev/snf/trace"
)

// Scenario is a run to check: an input, a chain, a pool and a fault schedule. Its text form
// is a few lines, one setting each ('#' starts a comment):
//
//	# two kills and a straggler on the example capture
//	input  pcapplusplus_example.pcap   # a capture in the traces folder, or generated:N
//	nfs    firewall,portscan
//	policy snf                         # snf (default), perflow, static
//	units  4                           # the pool's maximum (default 4)
//	mode   exact                       # or shared: equal up to values shared state hands out (a NAT's ports)
//	fail   unit=1@1200                 # kill unit 1 before packet 1200
//	fail   stall=0@2500/200ms          # unit 0 stops for 200 ms: declared failed, replaced
//	fail   unit=2@3s                   # kill unit 2 at 3 s of capture time
//	fail   scale=+3@4000               # 3 more units take work at once (a scale storm's step)
//	fail   scale=-2@4100               # 2 units drain at once; under snf their flows move away now
//	fail   move=1@4200                 # every flow of unit 1 moves, running flowlets too (snf)
type Scenario struct {
	Name   string
	Input  string
	NFs    string
	Policy string
	Units  int
	Mode   Mode
	Faults []engine.Fault
}

// ParseScenario reads a scenario's text; errors name the line.
func ParseScenario(name string, r io.Reader) (Scenario, error) {
	sc := Scenario{Name: name, Policy: "snf", Units: 4, NFs: "firewall"}
	s := bufio.NewScanner(r)
	for line := 1; s.Scan(); line++ {
		text, _, _ := strings.Cut(s.Text(), "#")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		bad := func(format string, args ...any) (Scenario, error) {
			return Scenario{}, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...))
		}
		if len(f) != 2 {
			return bad("want a setting and its value, got %q", strings.TrimSpace(text))
		}
		switch v := f[1]; f[0] {
		case "input":
			sc.Input = v
		case "nfs":
			sc.NFs = v
		case "policy":
			if _, err := policy.New(v, policy.Options{StaticUnits: 1}); err != nil {
				return bad("%v", err)
			}
			sc.Policy = v
		case "units":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 64 {
				return bad("units %q: want 1..64", v)
			}
			sc.Units = n
		case "mode":
			switch v {
			case "exact":
				sc.Mode = Exact
			case "shared":
				sc.Mode = UpToShared
			default:
				return bad("mode %q: want exact or shared", v)
			}
		case "fail":
			flt, err := engine.ParseFault(v)
			if err != nil {
				return bad("%v", err)
			}
			sc.Faults = append(sc.Faults, flt)
		default:
			return bad("unknown setting %q (input, nfs, policy, units, mode, fail)", f[0])
		}
	}
	if err := s.Err(); err != nil {
		return Scenario{}, fmt.Errorf("%s: %w", name, err)
	}
	if sc.Input == "" {
		return Scenario{}, fmt.Errorf("%s: no input", name)
	}
	for _, f := range sc.Faults {
		if f.Unit >= sc.Units {
			return Scenario{}, fmt.Errorf("%s: fault %s: the pool has units 0..%d", name, f, sc.Units-1)
		}
	}
	return sc, nil
}

// LoadInput reads a scenario input: "generated:N" (the built-in generator, N packets), or a
// capture file name, looked up in tracesDir when it is not a path.
func LoadInput(input, tracesDir string) ([]mem.Frame, error) {
	if g, ok, err := generator(input, false); ok {
		if err != nil {
			return nil, err
		}
		return mem.ReadAll(g)
	}
	path := input
	if !filepath.IsAbs(path) && !strings.Contains(path, string(filepath.Separator)) {
		path = filepath.Join(tracesDir, input)
	} else if _, err := os.Stat(path); err != nil && tracesDir != "" {
		path = filepath.Join(tracesDir, input)
	}
	r, err := pcapfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return mem.ReadAll(r)
}

// generator opens input "generated:N" (ok false: another input), Rereadable or not.
func generator(input string, rereadable bool) (g *trace.Generator, ok bool, err error) {
	n, ok := strings.CutPrefix(input, "generated:")
	if !ok {
		return nil, false, nil
	}
	k, err := strconv.Atoi(n)
	if err != nil || k < 1 {
		return nil, true, fmt.Errorf("input %q: want generated:N with N >= 1", input)
	}
	cfg := trace.DefaultGenConfig()
	cfg.Packets, cfg.Flows, cfg.Rate, cfg.Rereadable = k, 300, 20000, rereadable
	g, err = trace.NewGenerator(cfg)
	return g, true, err
}

// Options tune a scenario run.
type Options struct {
	Store       store.Store // nil: a fresh embedded store per run
	Checkpoint  time.Duration
	FailTimeout time.Duration // 0: a second, or 3/4 of the shortest stall (failTimeout)
	LogPackets  int
	Batch       int
	// Copied hides that the input can be read again (port.Copied): the packet log keeps
	// copies of the frames, lent to the units, as from a pipe; else it keeps their
	// positions in the input.
	Copied bool
	// Generator reads generated traffic (the scenario's Input "generated:N") from its
	// generator, Rereadable, as 'snf run' does with a packet log: the log keeps positions,
	// a replay has the generator build the frames again, and the engine releases them as
	// the log trims. Ignored with Copied, or another input.
	Generator bool
}

// failTimeout is a run's FailTimeout when Options leave it 0. A killed unit is replaced at
// once, with no timeout: a schedule without stalls gets a second, so that a unit the machine
// does not run for a while — a loaded host runs several race-enabled test binaries on its
// cores — is not declared failed, a failure the schedule does not have. A stall is found by
// the timeout: three quarters of the shortest stall (as long as the stall allows, against
// the same false failures), at least 30 ms.
func failTimeout(faults []engine.Fault) time.Duration {
	d := time.Duration(0)
	for _, f := range faults {
		if t := f.For * 3 / 4; f.Kind == engine.FaultStall && (d == 0 || t < d) {
			d = t
		}
	}
	if d == 0 {
		return time.Second
	}
	return max(d, 30*time.Millisecond)
}

// Report is a checked run.
type Report struct {
	Summary engine.LiveSummary
	Err     error // nil: COE holds; else a *Violation (or the run's own error)
}

// Run runs the scenario on frames against the reference result want (Reference of the same
// chain and frames) and checks COE.
func Run(ctx context.Context, sc Scenario, frames []mem.Frame, want Result, opt Options) Report {
	spec, err := snf.ChainFromNames(sc.NFs)
	if err != nil {
		return Report{Err: err}
	}
	pol, err := policy.New(sc.Policy, policy.Options{StaticUnits: sc.Units})
	if err != nil {
		return Report{Err: err}
	}
	cfg := engine.LiveConfig{Spec: spec, Policy: pol, MinUnits: 1, MaxUnits: sc.Units, Batch: opt.Batch,
		Capacity: 2000, Tick: time.Millisecond, Store: opt.Store, Recovery: true, Checkpoint: opt.Checkpoint,
		FailTimeout: opt.FailTimeout, LogPackets: opt.LogPackets, Faults: sc.Faults}
	if cfg.Batch == 0 {
		cfg.Batch = 16
	}
	if cfg.Checkpoint == 0 {
		cfg.Checkpoint = time.Millisecond
	}
	if cfg.FailTimeout == 0 {
		cfg.FailTimeout = failTimeout(sc.Faults)
	}
	if opt.Copied {
		cfg.In = port.Copied(mem.NewReader(frames))
	} else if opt.Generator {
		if g, ok, err := generator(sc.Input, true); ok {
			if err != nil {
				return Report{Err: err}
			}
			cfg.In = g
		}
	}
	got, s, err := Live(ctx, cfg, frames)
	if err != nil {
		return Report{Summary: s, Err: err}
	}
	if err := Compare(want, got, sc.Mode, frames); err != nil {
		return Report{Summary: s, Err: err}
	}
	if s.Reorders != 0 {
		return Report{Summary: s, Err: violation("%d packets reordered within their flows", s.Reorders)}
	}
	return Report{Summary: s}
}
