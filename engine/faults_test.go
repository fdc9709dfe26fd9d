package engine_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/policy"
)

// TestParseFault: every kind parses, prints back as it parsed, and bad input is a one-line
// error.
func TestParseFault(t *testing.T) {
	for s, want := range map[string]engine.Fault{
		"unit=2@1200":       {Kind: engine.FaultKill, Unit: 2, AtPacket: 1200},
		"unit=0@1.5s":       {Kind: engine.FaultKill, AtTime: 1500 * time.Millisecond},
		"stall=1@30/200ms":  {Kind: engine.FaultStall, Unit: 1, AtPacket: 30, For: 200 * time.Millisecond},
		"scale=+3@500":      {Kind: engine.FaultScale, Scale: 3, AtPacket: 500},
		"scale=-2@2s":       {Kind: engine.FaultScale, Scale: -2, AtTime: 2 * time.Second},
		"move=1@77":         {Kind: engine.FaultMove, Unit: 1, AtPacket: 77},
		"move=0@250ms":      {Kind: engine.FaultMove, AtTime: 250 * time.Millisecond},
		"stall=0@1m0s/1.5s": {Kind: engine.FaultStall, AtTime: time.Minute, For: 1500 * time.Millisecond},
	} {
		f, err := engine.ParseFault(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if fmt.Sprint(f) != fmt.Sprint(want) || f.String() != s {
			t.Errorf("%s: parsed %+v (prints %s), want %+v", s, f, f, want)
		}
	}
	for _, s := range []string{"", "unit", "unit=1", "unit=x@3", "unit=-1@3", "unit=1@0", "unit=1@-2s", "unit=1@soon",
		"stall=1@3", "stall=1@3/0s", "stall=1@3/x", "scale=3@10", "scale=+0@10", "scale=-@10", "scale=+x@10",
		"scale=++1@10", "scale=+1", "move=@5", "move=+1@5", "reboot=1@10"} {
		if f, err := engine.ParseFault(s); err == nil {
			t.Errorf("%q parsed as %+v", s, f)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error is not one line: %q", s, err)
		}
	}
}

// FuzzParseFault: whatever the input, ParseFault returns a fault or a one-line error, and a
// fault it returns prints as a string that parses back to the same fault.
func FuzzParseFault(f *testing.F) {
	for _, s := range []string{"unit=1@1200", "unit=0@1.5s", "stall=2@30/50ms", "scale=+3@500", "scale=-1@2s", "move=1@77", "unit=1@0", "scale=+x@1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := engine.ParseFault(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("%q: error is not one line: %q", s, err)
			}
			return
		}
		back, err := engine.ParseFault(flt.String())
		if err != nil {
			t.Fatalf("%q parsed as %+v, which prints as %q: %v", s, flt, flt, err)
		}
		if fmt.Sprint(back) != fmt.Sprint(flt) {
			t.Fatalf("%q parsed as %+v, printed %q, parsed back as %+v", s, flt, flt, back)
		}
	})
}

// TestForcedScaleEvents: a storm of forced scale events and flowlet moves — units started
// and drained several at a time, every flow of a unit moved with its running flowlets —
// mixed with kills, under a policy that moves flows (its drained units' flows move away at
// once) and under those that pin them (drained units keep their flows): the output, the
// final states and the billing equal one chain's.
func TestForcedScaleEvents(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := generated(t, 20000)
	want := reference(t, spec, frames)
	faults := []engine.Fault{
		{Kind: engine.FaultScale, Scale: 4, AtPacket: 2000},
		{Kind: engine.FaultMove, Unit: 0, AtPacket: 2500},
		{Kind: engine.FaultScale, Scale: -3, AtPacket: 2600},
		{Kind: engine.FaultKill, Unit: 1, AtPacket: 2700},
		{Kind: engine.FaultScale, Scale: 2, AtPacket: 2800},
		{Kind: engine.FaultMove, Unit: 2, AtPacket: 2900},
		{Kind: engine.FaultScale, Scale: -5, AtPacket: 3000},
		{Kind: engine.FaultScale, Scale: 5, AtPacket: 9000},
		{Kind: engine.FaultMove, Unit: 3, AtPacket: 9100},
		{Kind: engine.FaultScale, Scale: -2, AtPacket: 9200},
		{Kind: engine.FaultKill, Unit: 0, AtPacket: 9300},
		{Kind: engine.FaultScale, Scale: -1, AtPacket: 19990},
	}
	for _, pn := range []string{"snf", "perflow", "static"} {
		t.Run(pn, func(t *testing.T) {
			pol, err := policy.New(pn, policy.Options{StaticUnits: 5})
			if err != nil {
				t.Fatal(err)
			}
			got, s := faulty(t, spec, frames, pol, 5, nil, faults)
			compare(t, want, got)
			if s.Reorders != 0 {
				t.Errorf("%d reorderings", s.Reorders)
			}
			if s.Failures < 2 {
				t.Errorf("%d failures recovered, want the 2 kills", s.Failures)
			}
			if len(s.Billed) != 1 || s.Billed[0].Packets != uint64(len(frames)) {
				t.Errorf("billed %v, want each of the %d packets once", s.Billed, len(frames))
			}
			if pn == "snf" && s.Evacuated == 0 {
				t.Error("no flow moved off a drained unit or by a forced move")
			}
			if pn != "static" && s.UnitsMax < 4 {
				t.Errorf("at most %d units active, want the forced scale-outs' 4 or more", s.UnitsMax)
			}
			t.Logf("%d handovers (%d evacuated), %d held packets; units %d-%d; %d failures, %d replayed",
				s.Handovers, s.Evacuated, s.Held, s.UnitsMin, s.UnitsMax, s.Failures, s.Replayed)
		})
	}
}
