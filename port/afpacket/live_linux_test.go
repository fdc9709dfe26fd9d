//go:build linux

package afpacket_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
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
	"pgregory.net/rapid"
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

// TestLiveRingBound: a ring too small for what arrives while the packet log cannot let go
// (a unit stalled until it is declared failed: the ring keeps every frame from the oldest
// one the log holds on): the kernel drops what arrives meanwhile and counts it — every frame
// sent is read or counted as dropped —, the run neither hangs nor fails, no frame kept is
// overwritten (the replay reads them from the ring: the output of the frames read equals one
// chain's), and once the unit is replaced the ring is released: traffic sent after that is
// read whole.
func TestLiveRingBound(t *testing.T) {
	l := netnstest.New(t)
	const n, later = 30000, 5000
	frames := generatedFrames(t, n+later)
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		t.Fatal(err)
	}
	a := open(t, l.NsA, l.IfA, afpacket.Options{NoRx: true})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 2048, NoTx: true, Idle: 2 * time.Second})
	var got []mem.Frame
	in := recording{Port: b, got: &got, last: make([]mem.Frame, 1)}
	sent := make(chan struct{})
	go func() { // at full speed, while the run reads; the last ones paced, once the stall is over
		defer close(sent)
		ps := make([]*packet.Packet, len(frames))
		for i, f := range frames {
			ps[i] = &packet.Packet{}
			ps[i].SetData(f, 0, len(f))
		}
		for i := 0; i < len(ps); {
			k := min(64, n-i)
			if i == n {
				time.Sleep(time.Second)
			}
			if i >= n { // (paced: about 8,000 packets/s, which the run keeps up with under -race)
				k = min(8, len(ps)-i)
				time.Sleep(time.Millisecond)
			}
			if err := a.Write(ps[i : i+k]); err != nil {
				t.Error(err)
				return
			}
			i += k
		}
	}()
	cfg := engine.LiveConfig{Spec: spec, In: in, Policy: policy.NewStatic(2, 1), MinUnits: 2, MaxUnits: 2,
		Batch: 16, Capacity: 1e6, Tick: time.Millisecond, Recovery: true, Checkpoint: time.Millisecond,
		FailTimeout: 50 * time.Millisecond,
		Faults:      []engine.Fault{{Kind: engine.FaultStall, Unit: 0, AtPacket: 1000, For: 300 * time.Millisecond}}}
	res, s, err := snftest.Live(context.Background(), cfg, in.last)
	<-sent
	if err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.Received+st.Dropped != n+later || int(st.Received) != len(got) {
		t.Fatalf("%d read + %d dropped, want %d sent (%d recorded)", st.Received, st.Dropped, n+later, len(got))
	}
	if st.Dropped == 0 || s.Failures != 1 || !s.LogPositions {
		t.Errorf("%d dropped, %d failures, positions %t: want the ring full while unit 0 stalled, then the unit replaced",
			st.Dropped, s.Failures, s.LogPositions)
	}
	if len(got) < later {
		t.Fatalf("%d frames read", len(got))
	}
	for i, f := range got[len(got)-later:] {
		if !bytes.Equal(f.Data, frames[n+i]) {
			t.Fatalf("frame %d sent after the recovery was not read (the ring not released?): %d read, %d dropped", n+i, st.Received, st.Dropped)
		}
	}
	want, err := snftest.Reference(spec, got)
	if err != nil {
		t.Fatal(err)
	}
	if err := snftest.Compare(want, res, snftest.UpToShared, got); err != nil {
		t.Error(err)
	}
	t.Logf("%d read, %d dropped by the kernel; log peak %d packets; %d replayed", st.Received, st.Dropped, s.LogMaxPackets, s.Replayed)
}

// TestLiveRandomFaults: random fault schedules (kills, stalls, scale storms and forced moves
// under the snf policy on 1–4 units, kills and stalls on 3 static units) over traffic read
// from a live interface, its frames kept in the receive ring for replays: chain output
// equivalence holds in every one.
func TestLiveRandomFaults(t *testing.T) {
	l := netnstest.New(t)
	const n = 4000
	frames := generatedFrames(t, n)
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		t.Fatal(err)
	}
	a := open(t, l.NsA, l.IfA, afpacket.Options{NoRx: true})
	ps := make([]*packet.Packet, len(frames))
	for i, f := range frames {
		ps[i] = &packet.Packet{}
		ps[i].SetData(f, 0, len(f))
	}
	runs, replayed := 0, uint64(0)
	rapid.Check(t, func(rt *rapid.T) {
		static := rapid.Bool().Draw(rt, "static")
		units := 4
		if static {
			units = 3
		}
		var faults []engine.Fault
		for i := range rapid.IntRange(1, 6).Draw(rt, "faults") {
			at := rapid.IntRange(1, n).Draw(rt, fmt.Sprintf("at%d", i))
			u := rapid.IntRange(0, units-1).Draw(rt, fmt.Sprintf("unit%d", i))
			kinds := []string{"unit=%d@%d", "stall=%d@%d/40ms"}
			if !static {
				kinds = append(kinds, "scale=+%d@%d", "scale=-%d@%d", "move=%d@%d")
			}
			k := rapid.SampledFrom(kinds).Draw(rt, fmt.Sprintf("kind%d", i))
			if strings.HasPrefix(k, "scale") {
				u = max(u, 1)
			}
			f, err := engine.ParseFault(fmt.Sprintf(k, u, at))
			if err != nil {
				rt.Fatal(err)
			}
			faults = append(faults, f)
		}
		b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 8192, NoTx: true, Count: n})
		defer b.Close()
		for q := ps; len(q) > 0; q = q[min(64, len(q)):] {
			if err := a.Write(q[:min(64, len(q))]); err != nil {
				rt.Fatal(err)
			}
		}
		var got []mem.Frame
		in := recording{Port: b, got: &got, last: make([]mem.Frame, 1)}
		pol := policy.Policy(policy.NewStatic(3, 1))
		minU, maxU := 3, 3
		if !static {
			if pol, err = policy.New("snf", policy.Options{}); err != nil {
				rt.Fatal(err)
			}
			minU, maxU = 1, 4
		}
		cfg := engine.LiveConfig{Spec: spec, In: in, Policy: pol, MinUnits: minU, MaxUnits: maxU,
			Batch: 16, Capacity: 20000, Tick: time.Millisecond, Recovery: true, Checkpoint: time.Millisecond,
			FailTimeout: 20 * time.Millisecond, Faults: faults}
		res, s, err := snftest.Live(context.Background(), cfg, in.last)
		if err != nil {
			rt.Fatal(err)
		}
		if st := b.Stats(); st.Received != n || st.Dropped != 0 || !s.LogPositions {
			rt.Fatalf("%+v, positions %t: want %d read, none dropped, positions kept", st, s.LogPositions, n)
		}
		want, err := snftest.Reference(spec, got)
		if err != nil {
			rt.Fatal(err)
		}
		if err := snftest.Compare(want, res, snftest.UpToShared, got); err != nil {
			rt.Fatalf("faults %v: %v", faults, err)
		}
		runs++
		replayed += s.Replayed
	})
	t.Logf("%d schedules, COE held in every one; %d packets replayed from the ring in all", runs, replayed)
}
