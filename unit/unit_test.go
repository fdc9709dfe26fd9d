package unit_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	_ "github.com/snf-dev/snf/nf/firewall"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/root"
	"github.com/snf-dev/snf/trace"
	"github.com/snf-dev/snf/unit"
)

// seq is a test NF: it numbers each flow's packets (1, 2, 3… in flow state, so a move is
// visible: the unit that gets the flow must go on counting) and writes the number and the
// packet's clock into the payload. With emit N it also emits a copy of every Nth packet of a
// flow, marked 'E'.
//
// Payload of the test frames: [0:8] the flow's packet number, [8:16] the clock, [16] 'P' for
// a packet, 'E' for an emitted copy.
type seq struct {
	emit  uint64
	flows *snf.FlowState[seqState, *seqState]
	frame []byte
}

type seqState struct{ n uint64 }

func (s *seqState) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(b, s.n), nil
}

func (s *seqState) UnmarshalBinary(b []byte) error {
	if len(b) != 8 {
		return errors.New("seq: bad state")
	}
	s.n = binary.BigEndian.Uint64(b)
	return nil
}

type seqConfig struct {
	Emit uint64 `json:"emit" doc:"emit a copy of every Nth packet of a flow (0: never)"`
}

const seqName = "unittest-seq"

func init() {
	snf.Register(seqName, "numbers each flow's packets in their payload (unit tests)",
		func() *seqConfig { return &seqConfig{} },
		func(env *snf.Env, cfg *seqConfig) (snf.NF, error) {
			return &seq{emit: cfg.Emit, flows: snf.NewFlowState[seqState](env, "n")}, nil
		})
}

const payloadLen = 17

func (s *seq) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	st := s.flows.GetOrCreate(ctx)
	if st == nil {
		return snf.Forward
	}
	st.n++
	pl := p.Payload()
	if len(pl) >= 16 {
		binary.BigEndian.PutUint64(pl, st.n)
		binary.BigEndian.PutUint64(pl[8:], ctx.Clock())
	}
	if s.emit > 0 && st.n%s.emit == 0 {
		s.frame = append(s.frame[:0], p.Data...)
		if len(pl) >= payloadLen {
			s.frame[int(p.PayloadOff)+16] = 'E'
		}
		ctx.Emit(s.frame)
	}
	return snf.Forward
}

// WritesFrames: seq writes payloads itself (snf.FrameWriter).
func (s *seq) WritesFrames() bool { return true }

func seqSpec(t testing.TB, emit int) *snf.ChainSpec {
	spec, err := snf.ParseChain(fmt.Appendf(nil, "nfs:\n  - nf: %s\n    config: {emit: %d}\n", seqName, emit), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// routed is a state on its way to unit to.
type routed struct {
	to int
	s  unit.State
}

// outPkt is a packet the egress received.
type outPkt struct {
	unit    int
	clock   uint64
	flow    uint64
	emitted bool
	n       uint64 // the flow's packet number the seq NF wrote (0: none)
	data    string
}

// harness runs units as goroutines wired by an in-process transport (itself): states go
// straight to the peer's State channel, or, when holding, wait in intercept until the test
// delivers them; outputs go to an egress goroutine that records them and sends batches home.
type harness struct {
	t         testing.TB
	units     []*unit.Unit
	chains    []*snf.Chain
	egress    chan *unit.Batch
	home      chan *unit.Batch // the test's batches come back here
	intercept chan routed      // nil: states are delivered at once
	unitsDone chan struct{}
	egDone    chan struct{}

	mu        sync.Mutex
	out       []outPkt
	outB      []int    // the test's batches output, per unit
	sentB     []int    // the test's batches sent, per unit
	shipped   []routed // every state shipped, in order
	flowOf    map[uint64]uint64
	clock     uint64
	drops     bool // the chain may drop packets
	emitMarks bool // every packet with a payload carries the seq NF's mark
}

func newHarness(t testing.TB, n int, spec *snf.ChainSpec, hold bool) *harness {
	h := &harness{t: t, egress: make(chan *unit.Batch, 1024), home: make(chan *unit.Batch, 1024),
		unitsDone: make(chan struct{}), egDone: make(chan struct{}),
		outB: make([]int, n), sentB: make([]int, n), flowOf: map[uint64]uint64{}}
	if hold {
		h.intercept = make(chan routed, 1<<16)
	}
	for i := range n {
		c, err := snf.NewChain(spec, snf.ChainOptions{Unit: uint32(i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		h.chains = append(h.chains, c)
		h.units = append(h.units, unit.New(i, c, make(chan *unit.Batch, 64), h, nil))
	}
	var wg sync.WaitGroup
	for _, u := range h.units {
		wg.Add(1)
		go func() { defer wg.Done(); u.Run() }()
	}
	go func() { wg.Wait(); close(h.unitsDone) }()
	go h.runEgress()
	return h
}

// SendState implements unit.Transport.
func (h *harness) SendState(to int, s unit.State) {
	h.mu.Lock()
	h.shipped = append(h.shipped, routed{to, s})
	h.mu.Unlock()
	if h.intercept != nil {
		h.intercept <- routed{to, s}
		return
	}
	h.units[to].State <- s
}

// SendOut implements unit.Transport.
func (h *harness) SendOut(b *unit.Batch) { h.egress <- b }

func (h *harness) runEgress() {
	defer close(h.egDone)
	for b := range h.egress {
		h.mu.Lock()
		if len(b.OutStamp) != len(b.Out) || len(b.OutClock) != len(b.Out) {
			h.t.Errorf("unit %d: batch with %d outputs, %d stamps and %d clocks", b.Unit, len(b.Out), len(b.OutStamp), len(b.OutClock))
		}
		for i, p := range b.Out {
			if i < len(b.OutClock) && b.OutClock[i] != p.Clock {
				h.t.Errorf("unit %d: output %d has clock %d, OutClock says %d", b.Unit, i, p.Clock, b.OutClock[i])
			}
			// Emitted packets have no flow id (the root stamps every packet it dispatches).
			o := outPkt{unit: b.Unit, clock: p.Clock, flow: p.Flow, data: string(p.Data), emitted: p.Flow == 0}
			if pl := p.Payload(); len(pl) >= payloadLen {
				o.n = binary.BigEndian.Uint64(pl)
				if o.emitted != (pl[16] == 'E') && h.emitMarks {
					h.t.Errorf("unit %d: clock %d: flow id %d but mark %q", b.Unit, p.Clock, p.Flow, pl[16])
				}
				if c := binary.BigEndian.Uint64(pl[8:]); c != p.Clock {
					h.t.Errorf("unit %d: packet with clock %d carries the output of clock %d", b.Unit, p.Clock, c)
				}
			}
			h.out = append(h.out, o)
		}
		if b.Home == h.home {
			h.outB[b.Unit]++
		}
		h.mu.Unlock()
		select {
		case b.Home <- b:
		default:
		}
	}
}

// batch returns an empty batch for unit u, recycled when one came home.
func (h *harness) batch(u int) *unit.Batch {
	var b *unit.Batch
	select {
	case b = <-h.home:
		b.Reset()
	default:
		b = unit.NewBatch(64, h.home)
	}
	b.Unit, b.Now = u, 0
	return b
}

func (h *harness) add(b *unit.Batch, ps ...*packet.Packet) *unit.Batch {
	for _, p := range ps {
		b.Pkts[b.N].CopyFrom(p)
		b.N++
	}
	return b
}

func (h *harness) marker(b *unit.Batch, flow, to int) *unit.Batch {
	b.Ctl = append(b.Ctl, unit.Control{At: b.N, Kind: unit.Marker, Key: h.key(flow), Flow: h.id(flow), Peer: to})
	return b
}

func (h *harness) expect(b *unit.Batch, flow, from int) *unit.Batch {
	b.Ctl = append(b.Ctl, unit.Control{At: b.N, Kind: unit.Expect, Key: h.key(flow), Flow: h.id(flow), Peer: from})
	return b
}

func (h *harness) send(b *unit.Batch) {
	h.mu.Lock()
	h.sentB[b.Unit]++
	h.mu.Unlock()
	h.units[b.Unit].In <- b
}

// waitFor polls cond (under the harness lock) for up to 10 s.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		ok := cond()
		h.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// sync waits until unit u has output every batch sent to it.
func (h *harness) sync(u int) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("unit %d's batches", u), func() bool { return h.outB[u] == h.sentB[u] })
}

// nextState returns the next state a unit shipped (holding harness).
func (h *harness) nextState() routed {
	h.t.Helper()
	select {
	case r := <-h.intercept:
		return r
	case <-time.After(10 * time.Second):
		h.t.Fatal("timed out waiting for a state to be shipped")
	}
	panic("unreachable")
}

// noState checks that no state is waiting to be delivered.
func (h *harness) noState() {
	h.t.Helper()
	select {
	case r := <-h.intercept:
		h.t.Fatalf("unexpected state shipped to unit %d for flow %d", r.to, r.s.Flow)
	default:
	}
}

// deliver hands a shipped state to its unit and, with wait, returns once the unit took it.
func (h *harness) deliver(r routed, wait bool) {
	h.units[r.to].State <- r.s
	if wait {
		h.waitFor("a state to be received", func() bool { return len(h.units[r.to].State) == 0 })
	}
}

// finish closes the units' inputs, delivers the states still held, and waits for the units
// and the egress to finish.
func (h *harness) finish() {
	h.t.Helper()
	for _, u := range h.units {
		close(u.In)
	}
	stop := make(chan struct{})
	if h.intercept != nil {
		go func() {
			for {
				select {
				case r := <-h.intercept:
					h.units[r.to].State <- r.s
				case <-stop:
					return
				}
			}
		}()
	}
	select {
	case <-h.unitsDone:
	case <-time.After(20 * time.Second):
		h.t.Fatal("units did not finish (a state never arrived?)")
	}
	close(stop)
	close(h.egress)
	<-h.egDone
}

var (
	server = netip.MustParseAddr("198.18.0.1")
)

// id is test flow f's id as the root would stamp it (never 0, which means unset).
func (h *harness) id(f int) uint64 {
	if f < 0 {
		return 1 << 20
	}
	return uint64(f) + 1
}

func frame(f int, reply bool) []byte {
	c := netip.AddrFrom4([4]byte{10, 0, byte(f >> 8), byte(f)})
	pl := make([]byte, payloadLen)
	pl[16] = 'P'
	if f < 0 { // the flow of packets without a key: an ARP frame
		b := make([]byte, 14+28+payloadLen)
		copy(b, pkttest.MACB)
		copy(b[6:], pkttest.MACA)
		b[12], b[13] = 0x08, 0x06
		return b
	}
	if reply {
		return pkttest.UDP(server, c, 53, uint16(10000+f), pl)
	}
	return pkttest.UDP(c, server, uint16(10000+f), 53, pl)
}

// key is test flow f's key (original direction); the zero key for f < 0.
func (h *harness) key(f int) packet.Key {
	if f < 0 {
		return packet.Key{}
	}
	var p packet.Packet
	p.SetData(frame(f, false), 0, 0)
	return p.Key
}

// pkt returns flow f's next packet, stamped with the next clock (1 µs of time per clock).
// Flow f < 0 is non-IP.
func (h *harness) pkt(f int, reply bool) *packet.Packet {
	h.clock++
	p := new(packet.Packet)
	p.SetData(frame(f, reply), int64(h.clock)*1000, 0)
	p.Clock, p.Flow = h.clock, h.id(f)
	h.mu.Lock()
	h.flowOf[p.Clock] = p.Flow
	h.mu.Unlock()
	return p
}

// pkts returns k packets of flow f.
func (h *harness) pkts(f, k int) []*packet.Packet {
	ps := make([]*packet.Packet, k)
	for i := range ps {
		ps[i] = h.pkt(f, i%2 == 1)
	}
	return ps
}

// checkOutput checks, after finish, that every packet stamped left exactly once (emitted
// copies aside; drops if the chain may drop) and that each flow's packets left in clock
// order.
func (h *harness) checkOutput() {
	h.t.Helper()
	seen := map[uint64]bool{}
	last := map[uint64]outPkt{}
	for _, o := range h.out {
		if o.emitted {
			continue
		}
		if seen[o.clock] {
			h.t.Errorf("clock %d left twice", o.clock)
		}
		seen[o.clock] = true
		if h.flowOf[o.clock] != o.flow {
			h.t.Errorf("clock %d left as flow %d, stamped flow %d", o.clock, o.flow, h.flowOf[o.clock])
		}
		prev, ok := last[o.flow]
		if ok && o.clock <= prev.clock {
			h.t.Errorf("flow %d: clock %d (unit %d) left after clock %d (unit %d)", o.flow, o.clock, o.unit, prev.clock, prev.unit)
		}
		last[o.flow] = o
	}
	if len(seen) != len(h.flowOf) && !h.drops {
		h.t.Errorf("%d packets left, %d were sent", len(seen), len(h.flowOf))
	}
}

// holders returns the units whose chain holds flow f, and the flow's count there.
func (h *harness) holders(f int) (units []int, n []uint64) { return holdersOf(h.chains, h.key(f)) }

// checkHeld checks that flow f lives on unit u only, with count n.
func (h *harness) checkHeld(f, u int, n uint64) {
	h.t.Helper()
	us, ns := h.holders(f)
	if len(us) != 1 || us[0] != u || ns[0] != n {
		h.t.Errorf("flow %d lives on units %v with counts %v, want unit %d with %d", f, us, ns, u, n)
	}
}

func (h *harness) stats() []unit.Stats {
	s := make([]unit.Stats, len(h.units))
	for i, u := range h.units {
		s[i] = u.Stats()
	}
	return s
}

// counts returns the numbers the seq NF gave flow f's packets, in egress order.
func (h *harness) counts(f int) []uint64 {
	var n []uint64
	for _, o := range h.out {
		if o.flow == h.id(f) && !o.emitted {
			n = append(n, o.n)
		}
	}
	return n
}

func seqTo(n int) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}

// TestHandoverHeld: flow 1 moves A→B; B gets its new packets before the state: it holds
// them, and processes them in order after the state, going on counting from A's count.
func TestHandoverHeld(t *testing.T) {
	h := newHarness(t, 2, seqSpec(t, 0), true)
	const A, B = 0, 1
	atA := h.pkts(1, 3)
	other := h.pkts(2, 2)
	atB := h.pkts(1, 4)
	// B's batch first: the Expect, flow 1's packets (held) and another flow's (processed).
	bb := h.batch(B)
	h.add(h.expect(bb, 1, A), atB[:2]...)
	h.add(bb, other...)
	h.add(bb, atB[2:]...)
	marks := &heldMarks{}
	bb.Log = marks
	h.send(bb)
	h.sync(B)
	h.mu.Lock()
	early := len(h.out)
	h.mu.Unlock()
	if early != 2 {
		t.Errorf("B output %d packets before the state arrived, want only the other flow's 2", early)
	}
	// The packet log is told which packets of the batch were held (it keeps their payloads).
	if got := marks.held(); !slices.Equal(got, []int{0, 1, 4, 5}) {
		t.Errorf("the log was told packets %v of the batch were held, want [0 1 4 5]", got)
	}
	ba := h.add(h.batch(A), atA...)
	h.send(h.marker(ba, 1, B))
	r := h.nextState()
	if r.to != B || r.s.Flow != h.id(1) || r.s.From != A || r.s.Key != h.key(1) || len(r.s.Data) == 0 {
		t.Fatalf("state shipped: to %d, %+v", r.to, r.s)
	}
	h.sync(A)
	h.deliver(r, false)
	h.finish()
	h.checkOutput()
	if got := h.counts(1); !slices.Equal(got, seqTo(7)) {
		t.Errorf("flow 1 numbered %v at the egress, want 1..7", got)
	}
	h.checkHeld(1, B, 7)
	s := h.stats()
	if s[A].HandoversOut != 1 || s[A].HandoversIn != 0 || s[B].HandoversIn != 1 || s[B].HandoversOut != 0 {
		t.Errorf("handovers: A out %d in %d, B out %d in %d", s[A].HandoversOut, s[A].HandoversIn, s[B].HandoversOut, s[B].HandoversIn)
	}
	if s[A].BytesMoved != uint64(len(r.s.Data)) || s[B].BytesMoved != 0 {
		t.Errorf("BytesMoved A %d B %d, want %d and 0", s[A].BytesMoved, s[B].BytesMoved, len(r.s.Data))
	}
	if s[B].Held != 4 || s[A].Held != 0 {
		t.Errorf("Held A %d B %d, want 0 and 4", s[A].Held, s[B].Held)
	}
	if s[A].Packets != 3 || s[B].Packets != 6 {
		t.Errorf("Packets A %d B %d, want 3 and 6", s[A].Packets, s[B].Packets)
	}
	if len(s[B].Waits) != 1 || s[B].Waits[0] < 0 {
		t.Errorf("B waits %v, want one non-negative", s[B].Waits)
	}
}

// TestHandoverEarly: the state reaches B before B's Expect: B keeps it and the flow's
// packets after the Expect are processed at once, nothing held.
func TestHandoverEarly(t *testing.T) {
	h := newHarness(t, 2, seqSpec(t, 0), true)
	const A, B = 0, 1
	h.send(h.marker(h.add(h.batch(A), h.pkts(1, 2)...), 1, B))
	r := h.nextState()
	h.deliver(r, true) // B has taken it before it sees the Expect
	bb := h.add(h.expect(h.batch(B), 1, A), h.pkts(1, 3)...)
	h.send(bb)
	h.finish()
	h.checkOutput()
	if got := h.counts(1); !slices.Equal(got, seqTo(5)) {
		t.Errorf("flow 1 numbered %v, want 1..5", got)
	}
	h.checkHeld(1, B, 5)
	s := h.stats()
	if s[B].Held != 0 || s[B].HandoversIn != 1 || s[A].HandoversOut != 1 {
		t.Errorf("B held %d, in %d; A out %d: want 0, 1, 1", s[B].Held, s[B].HandoversIn, s[A].HandoversOut)
	}
}

// TestHandoverBackBeforeState: A→B→A where the flow moves back to A before its state
// reached B: B's segment is closed by the Marker while it waits; the state goes A→B→A and
// every packet is numbered in order.
func TestHandoverBackBeforeState(t *testing.T) {
	h := newHarness(t, 2, seqSpec(t, 0), true)
	const A, B = 0, 1
	h.send(h.marker(h.add(h.batch(A), h.pkts(1, 2)...), 1, B))
	r1 := h.nextState() // A's state for B, kept back
	h.send(h.marker(h.add(h.expect(h.batch(B), 1, A), h.pkts(1, 2)...), 1, A))
	h.send(h.add(h.expect(h.batch(A), 1, B), h.pkts(1, 3)...))
	h.sync(A)
	h.sync(B)
	h.noState() // B cannot ship before it has the state
	h.mu.Lock()
	n := len(h.out)
	h.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d packets out before the state arrived, want A's first 2", n)
	}
	h.deliver(r1, false)
	r2 := h.nextState()
	if r2.to != A || r2.s.From != B || len(r2.s.Data) == 0 {
		t.Fatalf("B shipped to %d: %+v", r2.to, r2.s)
	}
	h.deliver(r2, false)
	h.finish()
	h.checkOutput()
	if got := h.counts(1); !slices.Equal(got, seqTo(7)) {
		t.Errorf("flow 1 numbered %v, want 1..7", got)
	}
	h.checkHeld(1, A, 7)
	s := h.stats()
	if s[A].Held != 3 || s[B].Held != 2 {
		t.Errorf("held A %d B %d, want 3 and 2", s[A].Held, s[B].Held)
	}
	for i, st := range s {
		if st.HandoversIn != 1 || st.HandoversOut != 1 {
			t.Errorf("unit %d: in %d out %d, want 1 and 1", i, st.HandoversIn, st.HandoversOut)
		}
	}
}

// TestHandoverSegments: A→B→C→B→A, all before the first state arrived: B holds two
// segments of the flow, C one, A one; the state then visits B, C, B and A in turn.
func TestHandoverSegments(t *testing.T) {
	h := newHarness(t, 3, seqSpec(t, 0), true)
	const A, B, C = 0, 1, 2
	h.send(h.marker(h.add(h.batch(A), h.pkts(1, 2)...), 1, B))
	first := h.nextState()
	h.send(h.marker(h.add(h.expect(h.batch(B), 1, A), h.pkts(1, 2)...), 1, C))
	h.send(h.marker(h.add(h.expect(h.batch(C), 1, B), h.pkts(1, 2)...), 1, B))
	h.send(h.marker(h.add(h.expect(h.batch(B), 1, C), h.pkts(1, 2)...), 1, A))
	h.send(h.add(h.expect(h.batch(A), 1, B), h.pkts(1, 2)...))
	for u := range 3 {
		h.sync(u)
	}
	h.noState()
	path := []int{B}
	r := first
	for range 4 {
		h.deliver(r, false)
		if len(path) == 4 {
			break
		}
		r = h.nextState()
		path = append(path, r.to)
	}
	if fmt.Sprint(path) != "[1 2 1 0]" {
		t.Errorf("the state went to units %v, want B C B A", path)
	}
	h.finish()
	h.checkOutput()
	if got := h.counts(1); !slices.Equal(got, seqTo(10)) {
		t.Errorf("flow 1 numbered %v, want 1..10", got)
	}
	h.checkHeld(1, A, 10)
	s := h.stats()
	if s[A].Held != 2 || s[B].Held != 4 || s[C].Held != 2 {
		t.Errorf("held %d %d %d, want 2 4 2", s[A].Held, s[B].Held, s[C].Held)
	}
	if s[B].HandoversIn != 2 || s[B].HandoversOut != 2 || s[C].HandoversIn != 1 || s[C].HandoversOut != 1 ||
		s[A].HandoversIn != 1 || s[A].HandoversOut != 1 {
		t.Errorf("handovers (in, out): A %d %d, B %d %d, C %d %d", s[A].HandoversIn, s[A].HandoversOut,
			s[B].HandoversIn, s[B].HandoversOut, s[C].HandoversIn, s[C].HandoversOut)
	}
	var moved, shipped uint64
	for _, st := range s {
		moved += st.BytesMoved
	}
	for _, r := range h.shipped {
		shipped += uint64(len(r.s.Data))
	}
	if moved != shipped || moved == 0 {
		t.Errorf("BytesMoved %d, states shipped %d bytes", moved, shipped)
	}
}

// TestHandoverChainABC: A→B→C with each state arriving in time (direct delivery), and a
// second flow going A→B→A at the same time.
func TestHandoverChainABC(t *testing.T) {
	h := newHarness(t, 3, seqSpec(t, 0), false)
	const A, B, C = 0, 1, 2
	b := h.add(h.batch(A), h.pkts(1, 3)...)
	h.add(b, h.pkts(2, 3)...)
	h.marker(b, 1, B)
	h.send(h.marker(b, 2, B))
	b = h.add(h.expect(h.batch(B), 1, A), h.pkts(1, 2)...)
	h.add(h.expect(b, 2, A), h.pkts(2, 2)...)
	h.send(h.marker(h.marker(b, 1, C), 2, A))
	h.send(h.add(h.expect(h.batch(C), 1, B), h.pkts(1, 4)...))
	h.send(h.add(h.expect(h.batch(A), 2, B), h.pkts(2, 4)...))
	h.finish()
	h.checkOutput()
	if got := h.counts(1); !slices.Equal(got, seqTo(9)) {
		t.Errorf("flow 1 numbered %v, want 1..9", got)
	}
	if got := h.counts(2); !slices.Equal(got, seqTo(9)) {
		t.Errorf("flow 2 numbered %v, want 1..9", got)
	}
	h.checkHeld(1, C, 9)
	h.checkHeld(2, A, 9)
	s := h.stats()
	if in, out := s[A].HandoversIn+s[B].HandoversIn+s[C].HandoversIn, s[A].HandoversOut+s[B].HandoversOut+s[C].HandoversOut; in != 4 || out != 4 {
		t.Errorf("%d handovers in, %d out, want 4 and 4", in, out)
	}
}

// TestMarkerUnknownFlow: a Marker for a flow A never saw ships an empty state; B proceeds and
// the flow starts at B. Packets without a flow key move the same way.
func TestMarkerUnknownFlow(t *testing.T) {
	h := newHarness(t, 2, seqSpec(t, 0), true)
	const A, B = 0, 1
	h.send(h.marker(h.marker(h.batch(A), 3, B), -1, B))
	bb := h.add(h.expect(h.batch(B), 3, A), h.pkts(3, 3)...)
	h.send(h.add(h.expect(bb, -1, A), h.pkts(-1, 2)...))
	h.sync(B)
	for range 2 {
		r := h.nextState()
		if r.s.Data != nil || r.to != B {
			t.Errorf("state of flow %d for a flow A never saw: %d bytes to %d", r.s.Flow, len(r.s.Data), r.to)
		}
		h.deliver(r, false)
	}
	h.finish()
	h.checkOutput()
	if got := h.counts(3); !slices.Equal(got, seqTo(3)) {
		t.Errorf("flow 3 numbered %v, want 1..3", got)
	}
	if got := h.counts(-1); len(got) != 2 {
		t.Errorf("%d non-IP packets out, want 2", len(got))
	}
	h.checkHeld(3, B, 3)
	s := h.stats()
	if s[A].HandoversOut != 2 || s[A].BytesMoved != 0 || s[B].HandoversIn != 2 || s[B].Held != 5 {
		t.Errorf("A out %d moved %d bytes; B in %d held %d: want 2, 0, 2, 5", s[A].HandoversOut, s[A].BytesMoved, s[B].HandoversIn, s[B].Held)
	}
}

// TestProgressCountsControls: a unit's Progress moves with each control it carries out, not
// only with each batch (Processed): a batch of a drain's Markers is work, not a stall.
func TestProgressCountsControls(t *testing.T) {
	h := newHarness(t, 2, seqSpec(t, 0), true)
	const A, B = 0, 1
	b := h.batch(A)
	for f := range 5 {
		b = h.marker(b, f+10, B)
	}
	h.send(h.add(b, h.pkts(3, 2)...))
	h.sync(A)
	u := h.units[A]
	// (The unit counts a batch just after sending it out: wait for the count.)
	h.waitFor("the batch and its 5 Markers counted as progress 6", func() bool { return u.Processed() == 1 && u.Progress() == 6 })
	for range 5 {
		h.deliver(h.nextState(), false)
	}
	h.finish()
}

// TestProgressCountsChainWork: a unit's Progress includes its chain's bulk work (a full
// record of thousands of flows, built in one call, is progress).
func TestProgressCountsChainWork(t *testing.T) {
	chain, err := snf.NewChain(seqSpec(t, 0), snf.ChainOptions{Checkpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	u := unit.New(0, chain, make(chan *unit.Batch, 1), &directTransport{}, nil)
	in, out := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	frames := make([][]byte, 3000)
	for i := range frames {
		frames[i] = pkttest.UDP(in, out, uint16(1024+i), 53, nil)
	}
	chain.Process(pkttest.Batch(0, frames...), nil)
	p0 := u.Progress()
	if _, _, err := chain.Checkpoint(nil, true); err != nil {
		t.Fatal(err)
	}
	if p := u.Progress(); p < p0+2 || p != chain.Work() {
		t.Errorf("progress %d → %d over a record of 3,000 flows (chain's work %d), want it to move with the chain's work", p0, p, chain.Work())
	}
}

// TestHeldStateCorrupt: a state that does not import is dropped: the flow restarts at B
// (counted from 1), its packets still leave in order.
func TestHeldStateCorrupt(t *testing.T) {
	h := newHarness(t, 2, seqSpec(t, 0), true)
	const A, B = 0, 1
	h.send(h.marker(h.add(h.batch(A), h.pkts(1, 2)...), 1, B))
	h.send(h.add(h.expect(h.batch(B), 1, A), h.pkts(1, 2)...))
	r := h.nextState()
	r.s.Data = r.s.Data[:len(r.s.Data)-3]
	h.sync(B)
	h.deliver(r, false)
	h.finish()
	if got := h.counts(1); !slices.Equal(got, []uint64{1, 2, 1, 2}) {
		t.Errorf("flow 1 numbered %v, want 1 2 then 1 2 (restarted at B)", got)
	}
	h.checkHeld(1, B, 2)
}

// TestEmittedSurvive: packets the chain emits live in its buffer until its next Process call;
// the unit copies them into the batch, so that a batch split by controls (several Process
// calls) and held packets keep every emitted copy intact, each right after its packet.
func TestEmittedSurvive(t *testing.T) {
	h := newHarness(t, 2, seqSpec(t, 1), true)
	h.emitMarks = true
	const A, B = 0, 1
	for round := range 20 { // batches come home and are reused
		f := 10 + round
		ba := h.add(h.batch(A), h.pkts(f, 3)...)
		h.add(ba, h.pkts(100, 2)...)
		h.marker(ba, f, B) // the batch runs in two Process calls
		h.add(ba, h.pkts(101, 3)...)
		h.send(ba)
		bb := h.add(h.expect(h.batch(B), f, A), h.pkts(f, 2)...)
		h.add(bb, h.pkts(102, 2)...)
		h.send(bb)
		h.sync(B)
		h.deliver(h.nextState(), false) // B's held packets emit too
	}
	h.finish()
	h.checkOutput()
	emitted := map[uint64]int{}
	for i, o := range h.out {
		if !o.emitted {
			continue
		}
		emitted[o.clock]++
		if i == 0 || h.out[i-1].clock != o.clock || h.out[i-1].emitted {
			t.Errorf("emitted copy of clock %d does not follow its packet", o.clock)
		}
		if diff := differing(o.data, h.out[i-1].data); diff != 1 {
			t.Errorf("emitted copy of clock %d differs from its packet in %d bytes, want 1 (the mark)", o.clock, diff)
		}
	}
	if len(emitted) != int(h.clock) {
		t.Errorf("%d distinct emitted copies for %d packets", len(emitted), h.clock)
	}
	for c, n := range emitted {
		if n != 1 {
			t.Errorf("clock %d emitted %d times", c, n)
		}
	}
}

// differing counts the bytes that differ between a and b (-1 if their lengths differ).
func differing(a, b string) int {
	if len(a) != len(b) {
		return -1
	}
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// directTransport is a minimal transport for the allocation test and the benchmark: states
// go straight to the peer, outputs to one channel stamped with the time they left.
type directTransport struct {
	units    []*unit.Unit
	out      chan stampedBatch
	lastSent atomic.Int64
}

type stampedBatch struct {
	b  *unit.Batch
	at int64
}

func (d *directTransport) SendState(to int, s unit.State) {
	d.lastSent.Store(s.Sent)
	d.units[to].State <- s
}

func (d *directTransport) SendOut(b *unit.Batch) { d.out <- stampedBatch{b, time.Now().UnixNano()} }

// TestSteadyStateAllocs: a unit processing recycled batches of known flows, with packets
// emitted, allocates nothing.
func TestSteadyStateAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	chain, err := snf.NewChain(seqSpec(t, 1), snf.ChainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	tr := &directTransport{out: make(chan stampedBatch, 16)}
	in := make(chan *unit.Batch, 4)
	u := unit.New(0, chain, in, tr, nil)
	tr.units = []*unit.Unit{u}
	done := make(chan struct{})
	go func() { u.Run(); close(done) }()
	home := make(chan *unit.Batch, 4)
	b := unit.NewBatch(32, home)
	h := &harness{flowOf: map[uint64]uint64{}}
	src := make([]*packet.Packet, 32)
	for i := range src {
		src[i] = h.pkt(i%4, i%8 >= 4)
	}
	clock := h.clock
	run := func() {
		b.Reset()
		for i, p := range src {
			clock++
			b.Pkts[i].CopyFrom(p)
			b.Pkts[i].Clock, b.Pkts[i].Time = clock, int64(clock)*1000
		}
		b.N = len(src)
		in <- b
		sb := <-tr.out
		if len(sb.b.Out) != 64 {
			t.Fatalf("%d packets out, want 32 and 32 emitted", len(sb.b.Out))
		}
	}
	for range 10 {
		run()
	}
	if a := testing.AllocsPerRun(200, run); a != 0 {
		t.Errorf("%v allocations per recycled batch of 32 packets (32 emitted)", a)
	}
	close(in)
	<-done
}

// mover moves every new flowlet of a live flow to another unit.
type mover struct{ n uint64 }

func (m *mover) Name() string    { return "mover" }
func (m *mover) PerPacket() bool { return false }
func (m *mover) Elastic() bool   { return false }
func (m *mover) Place(f policy.Flowlet, p *policy.Pool) policy.Decision {
	m.n++
	u := int(m.n % uint64(len(p.Units)))
	if u == f.Current {
		u = (u + 1) % len(p.Units)
	}
	return policy.Decision{Unit: u}
}

// driver is a root.Target that fills batches for the harness's units, like the live engine,
// and flushes them at random.
type driver struct {
	h   *harness
	cur []*unit.Batch
	now int64
	// numbered: handovers carry ids, as the live engine's do (a state goes to the Expect of
	// its handover only); else id 0 (a flow's states go to its Expects in order).
	numbered bool
	hid      uint64
}

func (d *driver) batch(u int) *unit.Batch {
	if d.cur[u] == nil {
		d.cur[u] = d.h.batch(u)
		d.cur[u].Now = d.now
	}
	return d.cur[u]
}

func (d *driver) Send(u int, p *packet.Packet) {
	b := d.batch(u)
	b.Pkts[b.N].CopyFrom(p)
	b.N++
	d.h.mu.Lock()
	d.h.flowOf[p.Clock] = p.Flow
	d.h.mu.Unlock()
	if b.N == len(b.Pkts) {
		d.flush(u)
	}
}

func (d *driver) Handover(k packet.Key, flow uint64, from, to int) {
	var hid uint64
	if d.numbered {
		d.hid++
		hid = d.hid
	}
	bf := d.batch(from)
	bf.Ctl = append(bf.Ctl, unit.Control{At: bf.N, Kind: unit.Marker, Key: k, Flow: flow, Peer: to, Hid: hid})
	bt := d.batch(to)
	bt.Ctl = append(bt.Ctl, unit.Control{At: bt.N, Kind: unit.Expect, Key: k, Flow: flow, Peer: from, Hid: hid})
}

func (d *driver) ScaleOut() int { return -1 }

func (d *driver) flush(u int) {
	if d.cur[u] != nil {
		d.h.send(d.cur[u])
		d.cur[u] = nil
	}
}

// flowOutputs groups output frames by the flow of the packet that produced them.
func flowOutputs(out []outPkt, flowOf map[uint64]uint64) map[uint64][]string {
	m := map[uint64][]string{}
	for _, o := range out {
		f := flowOf[o.clock]
		m[f] = append(m[f], o.data)
	}
	return m
}

// finalStates returns every flow's exported state by canonical key, failing on a flow that
// lives on two chains.
func finalStates(t *testing.T, chains []*snf.Chain, end int64) map[packet.Key]string {
	st := map[packet.Key]string{}
	for _, c := range chains {
		c.Expire(end)
		err := c.Flows(func(k packet.Key, b []byte) bool {
			ck, _ := k.Canonical()
			if _, dup := st[ck]; dup {
				t.Errorf("flow %s lives on two units", k)
			}
			st[ck] = string(b)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// TestRandomMoves drives three units through the real root with a policy that moves every
// new flowlet, flushes batches and delivers states at random moments (states held back
// for a while, so that flows move on before their state arrived), and checks the result
// against one chain that processed the same packets in clock order: the same output
// frames for each flow, in the same order, and the same final flow states.
func TestRandomMoves(t *testing.T) {
	type sched struct {
		seed              uint64
		flushOne, deliver int // 1 in flushOne packets flushes a unit's batch; 1 in deliver delivers a state
	}
	for _, tc := range []struct {
		chain string
		rate  float64
		sched
	}{
		{seqName, 20000, sched{1, 8, 3}},               // nearly every packet a new flowlet, and it moves
		{seqName, 20000, sched{2, 30, 40}},             // big batches, states late
		{"firewall," + seqName, 1e6, sched{3, 2, 1}},   // flowlets of a few packets; small batches, states soon
		{"firewall," + seqName, 1e6, sched{4, 20, 25}}, // flowlets of a few packets; states late
	} {
		t.Run(fmt.Sprintf("%s/%.0fpps/seed%d", tc.chain, tc.rate, tc.seed), func(t *testing.T) {
			spec, err := snf.ChainFromNames(tc.chain)
			if err != nil {
				t.Fatal(err)
			}
			n := 20000
			if testing.Short() {
				n = 4000
			}
			cfg := trace.DefaultGenConfig()
			cfg.Packets, cfg.Flows, cfg.Rate = n, 300, tc.rate
			pkts, frames := generate(t, cfg, 0, 0)

			h := newHarness(t, 3, spec, true)
			d := &driver{h: h, cur: make([]*unit.Batch, 3)}
			pool := &policy.Pool{Target: 0.8}
			for i := range 3 {
				pool.Units = append(pool.Units, policy.UnitView{ID: i, Active: true, Capacity: 1e12})
			}
			r := root.New(root.Config{Policy: &mover{}, Pool: pool, FlowletGap: 500 * time.Microsecond,
				Timeouts: h.chains[0].FlowTimeouts()})
			rng := rand.New(rand.NewPCG(tc.seed, 2))
			states := &stateShuffler{h: h, rng: rng}
			for i := range pkts {
				p := &pkts[i]
				d.now = max(d.now, p.Time)
				r.Dispatch(p, d)
				if rng.IntN(tc.flushOne) == 0 {
					d.flush(rng.IntN(3))
				}
				states.step(tc.deliver)
			}
			states.finish(d)
			h.checkOutput()
			checkOneChain(t, spec, h, pkts, frames)
			var held, in, out, moved, shipped uint64
			for _, s := range h.stats() {
				held += s.Held
				in += s.HandoversIn
				out += s.HandoversOut
				moved += s.BytesMoved
				if len(s.Waits) != min(int(s.HandoversIn), unit.MaxWaits) {
					t.Errorf("%d waits for %d handovers in", len(s.Waits), s.HandoversIn)
				}
			}
			for _, r := range h.shipped {
				shipped += uint64(len(r.s.Data))
			}
			rs := r.Stats()
			if in != rs.Handovers || out != rs.Handovers || moved != shipped {
				t.Errorf("root: %d handovers; units: %d in, %d out, %d bytes moved (%d shipped)", rs.Handovers, in, out, moved, shipped)
			}
			t.Logf("%d packets, %d flows, %d flowlets, %d handovers, %d packets held, %d bytes moved", rs.Packets, rs.Flows, rs.Flowlets, rs.Handovers, held, moved)
		})
	}
}

// generate returns cfg's generated packets and copies of their frames; from packet gapAt on
// (if gap > 0), the packets come gap later (every flow idles past its timeout).
func generate(t *testing.T, cfg trace.GenConfig, gapAt int, gap time.Duration) ([]packet.Packet, [][]byte) {
	t.Helper()
	g, err := trace.NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pkts := make([]packet.Packet, cfg.Packets)
	got := 0
	for got < len(pkts) {
		k, err := g.Read(pkts[got:])
		got += k
		if err != nil {
			break
		}
	}
	pkts = pkts[:got]
	frames := make([][]byte, len(pkts))
	for i := range pkts {
		if gap > 0 && i >= gapAt {
			pkts[i].Time += int64(gap)
		}
		frames[i] = append([]byte(nil), pkts[i].Data...)
	}
	return pkts, frames
}

// checkOneChain checks the harness's finished run of pkts against one chain that processed
// the same frames in clock order: the same output frames for each flow, in the same order,
// and the same final flow states.
func checkOneChain(t *testing.T, spec *snf.ChainSpec, h *harness, pkts []packet.Packet, frames [][]byte) {
	t.Helper()
	end := pkts[len(pkts)-1].Time
	gotStates := finalStates(t, h.chains, end)
	ref, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	var want []outPkt
	one := make([]packet.Packet, 1)
	for i, f := range frames {
		one[0].SetData(f, pkts[i].Time, 0)
		one[0].Clock = uint64(i + 1)
		for _, p := range ref.Process(one, nil) {
			want = append(want, outPkt{clock: p.Clock, data: string(p.Data)})
		}
	}
	wantStates := finalStates(t, []*snf.Chain{ref}, end)
	wf, gf := flowOutputs(want, h.flowOf), flowOutputs(h.out, h.flowOf)
	if len(want) != len(h.out) {
		t.Errorf("%d packets out, the one chain %d", len(h.out), len(want))
	}
	for f, w := range wf {
		if !slices.Equal(gf[f], w) {
			t.Fatalf("flow %d: output differs from the one chain's (%d and %d packets)", f, len(gf[f]), len(w))
		}
	}
	if len(gotStates) != len(wantStates) {
		t.Errorf("%d flows at the end, the one chain %d", len(gotStates), len(wantStates))
	}
	for k, w := range wantStates {
		if gotStates[k] != w {
			t.Errorf("flow %s: final state differs from the one chain's", k)
		}
	}
}

// stateShuffler holds the states the harness's units send (its intercept) and delivers them
// one at a time, at random moments and in random order: flows move on before their state
// arrived.
type stateShuffler struct {
	h       *harness
	rng     *rand.Rand
	waiting []routed
}

// step takes the states sent since the last step, and delivers one of those waiting with
// probability 1/every.
func (s *stateShuffler) step(every int) {
	for len(s.h.intercept) > 0 {
		s.waiting = append(s.waiting, <-s.h.intercept)
	}
	if len(s.waiting) > 0 && s.rng.IntN(every) == 0 {
		j := s.rng.IntN(len(s.waiting))
		s.h.deliver(s.waiting[j], false)
		s.waiting = slices.Delete(s.waiting, j, j+1)
	}
}

// finish sends d's batches being filled, delivers the states still held and finishes the
// harness.
func (s *stateShuffler) finish(d *driver) {
	for u := range d.cur {
		d.flush(u)
	}
	for _, w := range s.waiting {
		s.h.deliver(w, false)
	}
	s.h.finish()
}

// TestRandomEvacuations: TestRandomMoves with numbered handovers, the root evacuating a
// random unit at random moments (idle flows, or all), and a ten-minute gap somewhere in the
// traffic, after which every flow has ended and comes back under the id and on the unit the
// root remembers (its tombstone): the same outputs and final states as one chain.
func TestRandomEvacuations(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall," + seqName)
	if err != nil {
		t.Fatal(err)
	}
	seeds := uint64(30)
	if testing.Short() {
		seeds = 5
	}
	revived := 0
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			cfg := trace.DefaultGenConfig()
			cfg.Packets, cfg.Flows, cfg.Rate, cfg.Seed = 6000, 200, 5000, seed
			rng := rand.New(rand.NewPCG(seed, 9))
			gapAt := rng.IntN(cfg.Packets)
			pkts, frames := generate(t, cfg, gapAt, 10*time.Minute)
			h := newHarness(t, 3, spec, true)
			d := &driver{h: h, cur: make([]*unit.Batch, 3), numbered: true}
			pool := &policy.Pool{Target: 0.8}
			for i := range 3 {
				pool.Units = append(pool.Units, policy.UnitView{ID: i, Active: true, Capacity: 1e12})
			}
			r := root.New(root.Config{Policy: &mover{}, Pool: pool, FlowletGap: 500 * time.Microsecond,
				Timeouts: h.chains[0].FlowTimeouts()})
			states := &stateShuffler{h: h, rng: rng}
			evacuated := 0
			for i := range pkts {
				p := &pkts[i]
				d.now = max(d.now, p.Time)
				r.Dispatch(p, d)
				if rng.IntN(50) == 0 {
					evacuated += r.Evacuate(rng.IntN(3), d.now, d, rng.IntN(3) == 0)
				}
				if rng.IntN(10) == 0 {
					d.flush(rng.IntN(3))
				}
				states.step(5)
			}
			states.finish(d)
			checkOneChain(t, spec, h, pkts, frames)
			if evacuated == 0 {
				t.Errorf("no flow evacuated")
			}
			// Flows that came back after the gap under the id they had before it (the root's
			// clock is the packet's index + 1).
			before := map[uint64]bool{}
			for c, f := range h.flowOf {
				if c <= uint64(gapAt) {
					before[f] = true
				}
			}
			back := map[uint64]bool{}
			for c, f := range h.flowOf {
				if c > uint64(gapAt) && before[f] {
					back[f] = true
				}
			}
			revived += len(back)
		})
	}
	if revived == 0 {
		t.Error("no flow came back after the gap under its old id (the root's tombstones)")
	}
}

// BenchmarkHandover measures one flow move between two goroutine units A and B, B already
// holding a packet of the flow behind its Expect: from the Marker's batch handed to A (A
// wakes, exports the flow, hands its outputs to the egress and ships the state) to B having
// imported the state and handed the held packet, processed, to the egress (p50-µs, p99-µs);
// and the part of it from A's state send (ship-p50-µs, ship-p99-µs). The flow goes back and
// forth; each iteration is one move (ns/op also counts setting up B's Expect).
func BenchmarkHandover(b *testing.B) {
	chains := make([]*snf.Chain, 2)
	tr := &directTransport{out: make(chan stampedBatch, 64)}
	for i := range chains {
		c, err := snf.NewChain(seqSpec(b, 0), snf.ChainOptions{Unit: uint32(i)})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		chains[i] = c
		tr.units = append(tr.units, unit.New(i, c, make(chan *unit.Batch, 4), tr, nil))
	}
	var wg sync.WaitGroup
	for _, u := range tr.units {
		wg.Add(1)
		go func() { defer wg.Done(); u.Run() }()
	}
	h := &harness{flowOf: map[uint64]uint64{}}
	src := h.pkt(1, false)
	key, id := src.Key, src.Flow
	home := make(chan *unit.Batch, 8)
	batches := []*unit.Batch{unit.NewBatch(4, home), unit.NewBatch(4, home)}
	clock := uint64(0)
	fill := func(bt *unit.Batch, u int) {
		bt.Reset()
		bt.Unit = u
		clock++
		bt.Pkts[0].CopyFrom(src)
		bt.Pkts[0].Clock, bt.Pkts[0].Time = clock, int64(clock)*1000
		bt.N = 1
	}
	wait := func(want *unit.Batch) int64 {
		for {
			sb := <-tr.out
			if sb.b == want {
				return sb.at
			}
			if sb.b.Home != home {
				select {
				case sb.b.Home <- sb.b:
				default:
				}
				return sb.at
			}
		}
	}
	// The flow starts on unit 0.
	fill(batches[0], 0)
	tr.units[0].In <- batches[0]
	wait(batches[0])
	var ds, ship []time.Duration
	i := 0
	for b.Loop() {
		from, to := i%2, 1-i%2
		i++
		bt := batches[to]
		fill(bt, to)
		bt.Ctl = append(bt.Ctl, unit.Control{At: 0, Kind: unit.Expect, Key: key, Flow: id, Peer: from})
		tr.units[to].In <- bt
		wait(bt) // B has the flow's packet held
		bf := batches[from]
		bf.Reset()
		bf.Unit = from
		bf.Ctl = append(bf.Ctl, unit.Control{At: 0, Kind: unit.Marker, Key: key, Flow: id, Peer: to})
		start := time.Now().UnixNano()
		tr.units[from].In <- bf
		wait(bf)
		ready := wait(nil) // the held packet, processed after the import
		ds = append(ds, time.Duration(ready-start))
		ship = append(ship, time.Duration(ready-tr.lastSent.Load()))
	}
	b.StopTimer()
	for _, u := range tr.units {
		close(u.In)
	}
	wg.Wait()
	if st := tr.units[0].Stats(); st.HandoversIn+st.HandoversOut != uint64(i) {
		b.Fatalf("unit 0: %d handovers in, %d out over %d moves", st.HandoversIn, st.HandoversOut, i)
	}
	if us, _ := holdersOf(chains, key); len(us) != 1 {
		b.Fatalf("the flow lives on units %v", us)
	}
	q := func(ds []time.Duration, x float64) float64 {
		return float64(ds[min(len(ds)-1, int(x*float64(len(ds))))]) / 1e3
	}
	slices.Sort(ds)
	slices.Sort(ship)
	b.ReportMetric(q(ds, 0.5), "p50-µs")
	b.ReportMetric(q(ds, 0.99), "p99-µs")
	b.ReportMetric(q(ship, 0.5), "ship-p50-µs")
	b.ReportMetric(q(ship, 0.99), "ship-p99-µs")
}

func holdersOf(chains []*snf.Chain, k packet.Key) (units []int, n []uint64) {
	for i, c := range chains {
		if st, err := c.ExportFlow(k, nil); err == nil {
			units = append(units, i)
			n = append(n, binary.BigEndian.Uint64(st[len(st)-8:]))
		}
	}
	return units, n
}

// killingTransport kills its unit when the unit hands a batch to the egress (the engine
// replacing the unit while it finishes a batch).
type killingTransport struct {
	u      *unit.Unit
	states int
}

func (k *killingTransport) SendState(to int, s unit.State) { k.states++ }
func (k *killingTransport) SendOut(b *unit.Batch)          { k.u.Kill() }

type offers struct{ n int }

func (o *offers) Ready() bool                                    { return true }
func (o *offers) NextFull() bool                                 { return true }
func (o *offers) Offer(rec []byte, clock uint64, full bool) bool { o.n++; return true }

// TestNoCheckpointAfterKill: a unit killed while it finishes a batch (its states then dropped
// as a replaced unit's) offers no checkpoint record covering that batch — it would keep its
// replacement from shipping the states again, and their receiver would wait for ever. The
// same batch in a unit not killed is checkpointed.
func TestNoCheckpointAfterKill(t *testing.T) {
	for _, kill := range []bool{false, true} {
		chain, err := snf.NewChain(seqSpec(t, 1), snf.ChainOptions{Checkpoints: true})
		if err != nil {
			t.Fatal(err)
		}
		in := make(chan *unit.Batch, 1)
		var tr unit.Transport = &directTransport{out: make(chan stampedBatch, 4)}
		kt := &killingTransport{}
		if kill {
			tr = kt
		}
		u := unit.New(0, chain, in, tr, nil)
		kt.u = u
		ck := &offers{}
		u.CheckpointTo(ck, time.Hour)
		b := unit.NewBatch(4, nil)
		b.Seq, b.Checkpoint = 1, true // a record is asked for after this batch
		in <- b
		close(in)
		u.Run()
		chain.Close()
		if want := map[bool]int{false: 1, true: 0}[kill]; ck.n < want || kill && ck.n != 0 {
			t.Errorf("killed %v: %d records offered, want %d", kill, ck.n, want)
		}
	}
}

// heldMarks is a packet log's entry that records which packets of its batch the unit held.
type heldMarks struct {
	mu sync.Mutex
	is []int
}

func (m *heldMarks) Prepare(*unit.Batch) {}

func (m *heldMarks) Held(_ *unit.Batch, i int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.is = append(m.is, i)
}

func (m *heldMarks) held() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.is)
}

// orderLog is a packet log's entry that records, as the unit prepares a batch, how many
// packets the unit's chain had taken in and whether the batch had been sent on.
type orderLog struct {
	chain    *snf.Chain
	sent     *atomic.Bool
	in       uint64
	prepared int
}

func (o *orderLog) Held(*unit.Batch, int) {}

func (o *orderLog) Prepare(*unit.Batch) {
	o.prepared++
	o.in = o.chain.Stats().In
	if o.sent.Load() {
		o.in = ^uint64(0)
	}
}

// sendOut is a transport that notes that a batch was sent on.
type sendOut struct{ sent *atomic.Bool }

func (s sendOut) SendState(int, unit.State) {}
func (s sendOut) SendOut(*unit.Batch)       { s.sent.Store(true) }

// TestPrepareOrder: a unit prepares a logged batch's entry once, after its chain processed the
// batch (the packets in the unit's cache) and before it sends the batch on — before the chain
// for a chain that writes frames itself (it may change a frame's length, which the log takes);
// not at all when the egress does (LogAtEgress).
func TestPrepareOrder(t *testing.T) {
	fw, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		spec     *snf.ChainSpec
		wantIn   uint64 // the chain's packets in at Prepare
		atEgress bool
	}{{"rewrites through methods", fw, 3, false}, {"writes frames", seqSpec(t, 0), 0, false}, {"at the egress", fw, 0, true}} {
		t.Run(c.name, func(t *testing.T) {
			chain, err := snf.NewChain(c.spec, snf.ChainOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer chain.Close()
			var sent atomic.Bool
			in := make(chan *unit.Batch, 1)
			u := unit.New(0, chain, in, sendOut{&sent}, nil)
			b := unit.NewBatch(3, nil)
			for i := range 3 {
				b.Pkts[i].SetData(pkttest.UDP(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), uint16(1000+i), 53, []byte("x")), int64(i+1), 0)
				b.Pkts[i].Clock, b.Pkts[i].Flow = uint64(i+1), uint64(i+1)
			}
			b.N = 3
			o := &orderLog{chain: chain, sent: &sent}
			b.Log, b.LogAtEgress = o, c.atEgress
			in <- b
			close(in)
			u.Run()
			if c.atEgress {
				if !sent.Load() || o.prepared != 0 {
					t.Fatalf("sent %v, prepared %d times: want sent, not prepared (the egress does)", sent.Load(), o.prepared)
				}
				return
			}
			if !sent.Load() || o.prepared != 1 || o.in != c.wantIn {
				t.Fatalf("sent %v, prepared %d times with %d packets in the chain (max: after the send); want sent, once, with %d", sent.Load(), o.prepared, int64(o.in), c.wantIn)
			}
		})
	}
}
