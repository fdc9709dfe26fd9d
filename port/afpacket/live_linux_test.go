//go:build linux

package afpacket_test

import (
	"context"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/netnstest"
	_ "github.com/snf-dev/snf/nf/all"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port/afpacket"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/snftest"
	"github.com/snf-dev/snf/trace"
)

// recording is a Port whose Reads are recorded (the frames as the chain saw them, with the
// kernel's times: the reference run's input); its other methods are the Port's.
type recording struct {
	*afpacket.Port
	got  *[]mem.Frame
	last []mem.Frame // [0]: the last frame read (snftest.Live takes the final states at its time)
}

func (r recording) Read(pkts []packet.Packet) (int, error) {
	n, err := r.Port.Read(pkts)
	for _, p := range pkts[:n] {
		*r.got = append(*r.got, mem.Frame{Data: append([]byte(nil), p.Data...), Time: p.Time, WireLen: p.WireLen})
		r.last[0].Time = p.Time
	}
	return n, err
}

// generatedFrames returns n frames of synthetic traffic (300 flows).
func generatedFrames(t *testing.T, n int) [][]byte {
	cfg := trace.DefaultGenConfig()
	cfg.Packets, cfg.Flows, cfg.Rate = n, 300, 20000
	g, err := trace.NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var fr [][]byte
	batch := make([]packet.Packet, 64)
	for {
		k, err := g.Read(batch)
		for _, p := range batch[:k] {
			fr = append(fr, append([]byte(nil), p.Data...))
		}
		if err != nil {
			return fr
		}
	}
}

// TestLiveRecovery: the live engine reads an interface, with its packet log keeping the
// packets' positions in the Port's receive ring (no frame copied), and two units killed:
// the replacements replay from the ring, and the output equals one chain's over the same
// frames (chain output equivalence). Without recovery the Port keeps nothing.
func TestLiveRecovery(t *testing.T) {
	l := netnstest.New(t)
	const n = 20000
	frames := generatedFrames(t, n)
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		t.Fatal(err)
	}
	for _, recovery := range []bool{true, false} {
		a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 1024})
		b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 32768, NoTx: true, Count: n})
		send(t, a, frames) // all in b's ring before the run: it reads them as fast as it can
		var got []mem.Frame
		in := recording{Port: b, got: &got, last: make([]mem.Frame, 1)}
		cfg := engine.LiveConfig{Spec: spec, In: in, Policy: policy.NewStatic(2, 1), MinUnits: 2, MaxUnits: 2,
			Batch: 16, Capacity: 1e6, Tick: time.Millisecond}
		if recovery {
			cfg.Recovery, cfg.Checkpoint, cfg.FailTimeout = true, time.Millisecond, 30*time.Millisecond
			cfg.Faults = []engine.Fault{{Kind: engine.FaultKill, Unit: 0, AtPacket: 5000}, {Kind: engine.FaultKill, Unit: 1, AtPacket: 12000}}
		}
		res, s, err := snftest.Live(context.Background(), cfg, in.last)
		if err != nil {
			t.Fatal(err)
		}
		if st := b.Stats(); st.Received != n || st.Dropped != 0 || len(got) != n {
			t.Fatalf("recovery %t: the port's stats %+v, %d recorded; want %d received, none dropped", recovery, st, len(got), n)
		}
		if recovery && (!s.LogPositions || s.Failures != 2 || s.Replayed == 0) {
			t.Errorf("log of positions %t, %d failures, %d replayed; want positions, 2 failures, some replayed", s.LogPositions, s.Failures, s.Replayed)
		}
		if !recovery && b.Rereadable() {
			t.Error("the port keeps frames for a run without a log")
		}
		want, err := snftest.Reference(spec, got)
		if err != nil {
			t.Fatal(err)
		}
		if err := snftest.Compare(want, res, snftest.UpToShared, got); err != nil {
			t.Errorf("recovery %t: %v", recovery, err)
		}
		b.Close()
		a.Close()
	}
}
