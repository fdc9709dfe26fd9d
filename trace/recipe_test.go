package trace

import (
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

// rereadable is what TestReread drives: a Generator or a Workload.
type rereadable interface {
	port.Releaser
	Kept() int
}

// checkReread reads every frame of in, keeps a copy of each, releases positions behind the
// read at random and reads every frame still kept again, at random moments: each must be
// the frame as first delivered, and a released or future frame must fail. It returns the
// frames read.
func checkReread(t *testing.T, in rereadable, seed uint64) []frame {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	pkts := make([]packet.Packet, 1+rng.IntN(64))
	var (
		out  []frame
		low  uint64 // released below
		tmp  []byte
		err  error
		left = true
	)
	for left {
		n, rerr := in.Read(pkts[:1+rng.IntN(len(pkts))])
		for i := range pkts[:n] {
			if pkts[i].Pos != uint64(len(out)) {
				t.Fatalf("frame %d has Pos %d", len(out), pkts[i].Pos)
			}
			out = append(out, frame{bytes.Clone(pkts[i].Data), pkts[i].Time})
		}
		if rerr == io.EOF {
			left = false
		} else if rerr != nil {
			t.Fatal(rerr)
		}
		if in.Kept() != len(out)-int(low) {
			t.Fatalf("Kept() = %d with %d frames read and those before %d released", in.Kept(), len(out), low)
		}
		// Read some kept frames again (the oldest, the newest, any).
		for range 8 {
			if len(out) == int(low) {
				break
			}
			pos := low + rng.Uint64N(uint64(len(out))-low)
			if tmp, err = in.Reread(tmp[:0], pos, len(out[pos].data)); err != nil {
				t.Fatalf("Reread(%d) with frames %d to %d kept: %v", pos, low, len(out), err)
			}
			if !bytes.Equal(tmp, out[pos].data) {
				t.Fatalf("frame %d read again differs:\n got %x\nwant %x", pos, tmp, out[pos].data)
			}
		}
		if low > 0 {
			if _, err := in.Reread(nil, low-1, len(out[low-1].data)); err == nil || !strings.Contains(err.Error(), "released") {
				t.Fatalf("Reread of released frame %d: %v, want an error saying so", low-1, err)
			}
		}
		if _, err := in.Reread(nil, uint64(len(out)), 60); err == nil || !strings.Contains(err.Error(), "not generated yet") {
			t.Fatalf("Reread of frame %d, not read yet: %v", len(out), err)
		}
		if rng.IntN(3) == 0 {
			low = max(low, uint64(rng.IntN(len(out)+1)))
			in.Release(low)
		}
	}
	// Every frame not released, in order, at the end.
	for pos := low; pos < uint64(len(out)); pos++ {
		if tmp, err = in.Reread(tmp[:0], pos, len(out[pos].data)); err != nil || !bytes.Equal(tmp, out[pos].data) {
			t.Fatalf("frame %d read again at the end: %v, equal %t", pos, err, bytes.Equal(tmp, out[pos].data))
		}
	}
	if len(out) > int(low) {
		if _, err := in.Reread(nil, low, len(out[low].data)+1); err == nil {
			t.Fatal("Reread with the wrong length did not fail")
		}
	}
	in.Release(math.MaxUint64)
	if in.Rereadable() || in.Kept() != 0 {
		t.Fatalf("after Release(MaxUint64): Rereadable %t, Kept %d", in.Rereadable(), in.Kept())
	}
	if _, err := in.Reread(nil, 0, 60); err == nil {
		t.Fatal("Reread after Release(MaxUint64) did not fail")
	}
	return out
}

// TestReread reads generated frames again from their recipes, for every kind of frame
// (TCP with and without options and payload, DNS queries and responses, QUIC-like UDP,
// ICMP echoes; the Workload's TCP, UDP and scans), and checks that keeping recipes changes
// none of the frames.
func TestReread(t *testing.T) {
	gens := []GenConfig{testConfig(20000), testConfig(5000)}
	gens[1].Flows, gens[1].Hosts, gens[1].Seed = 3, 1, 9 // few flows: each runs its whole life
	for i, cfg := range gens {
		want := collect(t, cfg, 32)
		cfg.Rereadable = true
		g, err := NewGenerator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !g.Rereadable() {
			t.Fatal("a Generator with Rereadable set is not")
		}
		checkSame(t, "generator", want, checkReread(t, g, uint64(i)))
	}
	wls := []WorkloadConfig{smallWorkload(), sparseWorkload()}
	// (A warm-up builds frames it does not deliver: they keep no recipe, and the numbering
	// starts at the first delivered.)
	wls[0].UDPFrac, wls[0].ScanFrac, wls[0].Packets, wls[0].Warmup = 0.3, 0.1, 20000, 200*time.Millisecond
	for i, cfg := range wls {
		want, _ := wlFrames(t, cfg, 32)
		cfg.Rereadable = true
		w, err := NewWorkload(cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, "workload", want, checkReread(t, w, uint64(10+i)))
	}
	g, _ := NewGenerator(testConfig(10))
	if g.Rereadable() {
		t.Fatal("a Generator without Rereadable is")
	}
	if _, err := g.Reread(nil, 0, 60); err == nil || !strings.Contains(err.Error(), "keeps no recipes") {
		t.Fatalf("Reread without Rereadable: %v", err)
	}
}

func checkSame(t *testing.T, what string, want, got []frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames with Rereadable, %d without", what, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].data, want[i].data) || got[i].ts != want[i].ts {
			t.Fatalf("%s: frame %d differs with Rereadable", what, i)
		}
	}
}

// TestRereadableNoAllocs: keeping recipes allocates nothing in steady state (the ring grows
// to the span its reader keeps, then is reused), nor does reading a frame again.
func TestRereadableNoAllocs(t *testing.T) {
	cfg := testConfig(math.MaxInt32)
	cfg.Rereadable = true
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pkts := make([]packet.Packet, 32)
	var buf []byte
	step := func() {
		if _, err := g.Read(pkts); err != nil {
			t.Fatal(err)
		}
		if buf, err = g.Reread(buf[:0], pkts[0].Pos, len(pkts[0].Data)); err != nil {
			t.Fatal(err)
		}
		g.Release(pkts[0].Pos - min(pkts[0].Pos, 4096))
	}
	for range 1000 {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Fatalf("%v allocations per read of 32 frames", a)
	}
	if g.Kept() > 4096+64 {
		t.Fatalf("Kept %d, more than released behind", g.Kept())
	}
}

// BenchmarkReread: building a generated frame again from its recipe (what a replay of
// generated traffic costs per packet), against BenchmarkGenerate's first build.
func BenchmarkReread(b *testing.B) {
	cfg := testConfig(1 << 16)
	cfg.Rereadable = true
	g, err := NewGenerator(cfg)
	if err != nil {
		b.Fatal(err)
	}
	pkts := make([]packet.Packet, 64)
	var lens []int
	for {
		n, err := g.Read(pkts)
		for i := range pkts[:n] {
			lens = append(lens, len(pkts[i].Data))
		}
		if err != nil {
			break
		}
	}
	var buf []byte
	i := 0
	for b.Loop() {
		if buf, err = g.Reread(buf[:0], uint64(i), lens[i]); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(lens) {
			i = 0
		}
	}
}
