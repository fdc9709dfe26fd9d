package port_test

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
)

// fakeClock is a clock that only moves when slept on.
type fakeClock struct {
	t      time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_000_000, 0)} }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) sleep(d time.Duration) {
	if d <= 0 {
		panic("sleep with a non-positive duration")
	}
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
}

// framesAt returns one frame per timestamp (in ns, relative to an arbitrary base); each
// frame's first byte is its index.
func framesAt(ts ...int64) []mem.Frame {
	const base = 1_600_000_000_000_000_000
	fs := make([]mem.Frame, len(ts))
	for i, t := range ts {
		fs[i] = mem.Frame{Data: []byte{byte(i), 0, 0, 0}, Time: base + t}
	}
	return fs
}

type release struct {
	idx   int
	clock time.Duration // since the first Read
}

// drain reads r to the end with batches of size batch and returns when each packet was
// released and the sizes of the batches.
func drain(t *testing.T, r port.Reader, c *fakeClock, batch int) ([]release, []int) {
	t.Helper()
	start := c.now()
	pkts := make([]packet.Packet, batch)
	var rel []release
	var sizes []int
	for range 100000 {
		n, err := r.Read(pkts)
		if err == io.EOF {
			return rel, sizes
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if n == 0 {
			t.Fatalf("Read returned 0 packets and no error")
		}
		sizes = append(sizes, n)
		for _, p := range pkts[:n] {
			rel = append(rel, release{int(p.Data[0]), c.now().Sub(start)})
		}
	}
	t.Fatal("Read never ended")
	return nil, nil
}

func TestPacedPartialBatches(t *testing.T) {
	ms := int64(time.Millisecond)
	c := newFakeClock()
	r := port.Paced(mem.NewReader(framesAt(0, 0, 0, 1*ms, 1*ms, 5*ms, 5*ms, 5*ms, 5*ms, 9*ms)), 1, c.sleep, c.now)
	rel, sizes := drain(t, r, c, 3)

	// Packets are not held back for the batch to fill: the 1 ms pair comes as a batch
	// of 2, and the last packet alone. A batch of 3 never waits past its first packet.
	wantSizes := []int{3, 2, 3, 1, 1}
	if !equal(sizes, wantSizes) {
		t.Errorf("batch sizes %v, want %v", sizes, wantSizes)
	}
	wantAt := []int64{0, 0, 0, 1, 1, 5, 5, 5, 5, 9}
	for i, rl := range rel {
		if rl.idx != i {
			t.Fatalf("packet %d released as #%d: order changed", rl.idx, i)
		}
		if want := time.Duration(wantAt[i]) * time.Millisecond; rl.clock != want {
			t.Errorf("packet %d released at %v, want %v", i, rl.clock, want)
		}
	}
	if want := []time.Duration{time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}; !equalD(c.sleeps, want) {
		t.Errorf("sleeps %v, want %v", c.sleeps, want)
	}
}

func TestPacedSpeed(t *testing.T) {
	sec := int64(time.Second)
	for _, tc := range []struct {
		speed float64
		want  []time.Duration // release times of the packets at 0, 1 s, 3 s, 3.5 s
	}{
		{1, []time.Duration{0, time.Second, 3 * time.Second, 3500 * time.Millisecond}},
		{2, []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond, 1750 * time.Millisecond}},
		{0.5, []time.Duration{0, 2 * time.Second, 6 * time.Second, 7 * time.Second}},
		{10, []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 350 * time.Millisecond}},
	} {
		c := newFakeClock()
		r := port.Paced(mem.NewReader(framesAt(0, sec, 3*sec, 3*sec+sec/2)), tc.speed, c.sleep, c.now)
		rel, _ := drain(t, r, c, 16)
		for i, rl := range rel {
			if rl.clock != tc.want[i] {
				t.Errorf("speed %v: packet %d released at %v, want %v", tc.speed, i, rl.clock, tc.want[i])
			}
		}
	}
}

func TestPacedUnpaced(t *testing.T) {
	in := mem.NewReader(framesAt(0, int64(time.Hour)))
	for _, speed := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if r := port.Paced(in, speed, nil, nil); r != port.Reader(in) {
			t.Errorf("Paced(speed %v) did not return the reader itself", speed)
		}
	}
}

// TestPacedNeverEarly reads random captures with random batch sizes, with a consumer that
// sometimes falls behind, and checks that no packet is released before its time, that the
// order is kept, and that a packet is only late when the consumer was.
func TestPacedNeverEarly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		n := 1 + rng.IntN(200)
		ts := make([]int64, n)
		var cur int64
		for i := range ts {
			switch rng.IntN(4) {
			case 0: // same timestamp
			case 1:
				cur += rng.Int64N(int64(time.Microsecond))
			case 2:
				cur += rng.Int64N(int64(10 * time.Millisecond))
			case 3:
				cur -= rng.Int64N(int64(time.Millisecond)) // out of order
			}
			ts[i] = cur
		}
		speed := []float64{0.25, 1, 3, 1000}[rng.IntN(4)]
		c := newFakeClock()
		r := port.Paced(mem.NewReader(framesAt(ts...)), speed, c.sleep, c.now)
		var start time.Time // when the first packet was released: the reference
		pkts := make([]packet.Packet, 1+rng.IntN(32))
		next := 0
		for {
			if rng.IntN(5) == 0 { // the consumer is busy for a while
				c.t = c.t.Add(time.Duration(rng.Int64N(int64(20 * time.Millisecond))))
			}
			before := c.now()
			k, err := r.Read(pkts[:1+rng.IntN(len(pkts))])
			if err == io.EOF {
				break
			}
			if err != nil || k == 0 {
				t.Fatalf("trial %d: Read = %d, %v", trial, k, err)
			}
			for j, p := range pkts[:k] {
				if int(p.Data[0]) != next%256 {
					t.Fatalf("trial %d: got packet %d, want %d", trial, p.Data[0], next%256)
				}
				if next == 0 {
					start = c.now()
				}
				due := start.Add(time.Duration(max(0, float64(ts[next]-ts[0])/speed)))
				if c.now().Before(due) {
					t.Fatalf("trial %d: packet %d released at %v, before its time %v", trial, next, c.now().Sub(start), due.Sub(start))
				}
				// The first packet of a Read waits at most until its due time; the others
				// are only added when already due.
				if j == 0 && c.now().After(before) && !c.now().Equal(due) {
					t.Fatalf("trial %d: packet %d released at %v, slept past its time %v", trial, next, c.now().Sub(start), due.Sub(start))
				}
				next++
			}
		}
		if next != n {
			t.Fatalf("trial %d: %d packets released, want %d", trial, next, n)
		}
	}
}

func TestPacedError(t *testing.T) {
	bad := errors.New("corrupt")
	c := newFakeClock()
	r := port.Paced(mem.NewReaderError(framesAt(0, int64(time.Millisecond)), bad), 1, c.sleep, c.now)
	pkts := make([]packet.Packet, 8)
	if n, err := r.Read(pkts); n != 1 || err != nil {
		t.Fatalf("Read 1 = %d, %v", n, err)
	}
	if n, err := r.Read(pkts); n != 1 || err != nil {
		t.Fatalf("Read 2 = %d, %v", n, err)
	}
	if n, err := r.Read(pkts); n != 0 || err != bad {
		t.Fatalf("Read 3 = %d, %v; want 0, %v", n, err, bad)
	}
	if n, err := r.Read(pkts); n != 0 || err != bad {
		t.Fatalf("Read 4 = %d, %v; want 0, %v", n, err, bad)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

type linkTyped struct{ *mem.Reader }

func (linkTyped) LinkType() uint32 { return 1 }

func TestPacedLinkType(t *testing.T) {
	r := port.Paced(linkTyped{mem.NewReader(nil)}, 1, nil, nil)
	if lt, ok := r.(port.LinkTyper); !ok || lt.LinkType() != 1 {
		t.Fatalf("paced reader lost LinkType: %T", r)
	}
	if _, ok := port.Paced(mem.NewReader(nil), 1, nil, nil).(port.LinkTyper); ok {
		t.Fatal("paced reader of a reader without a link type has one")
	}
}

func TestPacedAllocs(t *testing.T) {
	fs := make([]mem.Frame, 10000)
	for i := range fs {
		fs[i] = mem.Frame{Data: make([]byte, 60), Time: int64(i)}
	}
	c := newFakeClock()
	r := port.Paced(mem.NewReader(fs), 1, c.sleep, c.now)
	pkts := make([]packet.Packet, 32)
	r.Read(pkts) // warm up: buffers of both batches
	r.Read(pkts)
	if a := testing.AllocsPerRun(100, func() { r.Read(pkts) }); a != 0 {
		t.Fatalf("%v allocations per Read", a)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalD(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPacedRereads: a paced Rereader is one — each packet's Pos names its frame in the input
// (read ahead and handed out over several Reads), and Reread reads it again; a paced Reader
// that is not one says so.
func TestPacedRereads(t *testing.T) {
	fs := framesAt(0, 10, 20, 30, 1000, 1010, 2000, 2001, 2002, 5000)
	c := newFakeClock()
	r := port.Paced(mem.NewReader(fs), 1, c.sleep, c.now)
	rr, ok := r.(port.Rereader)
	if !ok || !rr.Rereadable() {
		t.Fatal("a paced memory input is not a Rereader")
	}
	pkts := make([]packet.Packet, 4)
	seen := 0
	for {
		n, err := r.Read(pkts)
		for i := range n {
			idx := int(pkts[i].Data[0])
			if idx != seen {
				t.Fatalf("packet %d out of order (want %d)", idx, seen)
			}
			seen++
			pos := pkts[i].Pos
			got, err := rr.Reread(nil, pos, len(pkts[i].Data))
			if err != nil || got[0] != byte(idx) {
				t.Fatalf("packet %d: Pos %d rereads %v, %v", idx, pos, got, err)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if seen != len(fs) {
		t.Fatalf("%d packets read, want %d", seen, len(fs))
	}
	// Not a Rereader underneath (a pipe, a generator read once): not rereadable.
	once := port.Paced(port.Copied(mem.NewReader(fs)), 1, c.sleep, c.now)
	if rr, ok := once.(port.Rereader); ok && rr.Rereadable() {
		t.Error("a paced input read once says it can read its packets again")
	}
	// A Releaser underneath (a Rereadable generator): its Releases pass through.
	rl := &releaser{Reader: mem.NewReader(fs)}
	if pr, ok := port.Paced(rl, 1, c.sleep, c.now).(port.Releaser); !ok {
		t.Error("a paced Releaser is not one")
	} else if pr.Release(7); rl.released != 7 {
		t.Errorf("paced Release(7) released %d underneath", rl.released)
	}
	// Read once (port.Copied): its frames will not be read again, and it is told so.
	if port.Copied(rl); rl.released != math.MaxUint64 {
		t.Errorf("Copied of a Releaser released below %d, want every frame", rl.released)
	}
}

// releaser is a memory input that records its last Release.
type releaser struct {
	*mem.Reader
	released uint64
}

func (r *releaser) Release(pos uint64) { r.released = pos }

// TestPacedWaited: a paced Read that slept until its first packet was due says so
// (port.Waiter), even when it then hands out a full batch; one whose packets were already
// due does not; and a paced input over one that waited says so too.
func TestPacedWaited(t *testing.T) {
	c := newFakeClock()
	// Two packets at 0, four at 10 ms: batches of two.
	p := port.Paced(mem.NewReader(framesAt(0, 0, 10e6, 10e6, 10e6, 10e6)), 1, c.sleep, c.now)
	pkts := make([]packet.Packet, 2)
	for i, want := range []bool{false, true, false} { // the first, then a sleep of 10 ms, then due
		n, err := p.Read(pkts)
		if n != 2 || err != nil {
			t.Fatalf("read %d: %d, %v; want a full batch", i, n, err)
		}
		if got := port.Waited(p); got != want {
			t.Errorf("read %d: Waited %v, want %v (sleeps %v)", i, got, want, c.sleeps)
		}
	}
	if port.Waited(mem.NewReader(nil)) {
		t.Error("memory says it waited")
	}
	// A reader that always waits, paced at its own pace (its packets always due): the
	// paced reader reports its waits, and so does Copied.
	w := port.Copied(port.Paced(&waiting{mem.NewReader(framesAt(0, 0, 0, 0))}, 1, c.sleep, c.now))
	for i := range 2 {
		if _, err := w.Read(pkts); err != nil {
			t.Fatal(err)
		}
		if !port.Waited(w) {
			t.Errorf("read %d over a reader that waited: Waited false", i)
		}
	}
}

// waiting is a Reader that says every Read waited.
type waiting struct{ *mem.Reader }

func (waiting) Waited() bool { return true }
