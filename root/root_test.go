package root_test

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/snf-dev/snf/flowtable"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port/pcapfile"
	"github.com/snf-dev/snf/root"
	"github.com/snf-dev/snf/trace"
)

// event is one call the root made on its Target.
type event struct {
	kind     string // "send", "handover" or "scaleout"
	unit     int    // send: the unit; scaleout: what ScaleOut returned
	clock    uint64 // send: the packet's clock
	flow     uint64 // send, handover: the flow id
	time     int64  // send: the packet's time
	key      packet.Key
	from, to int // handover
}

func (e event) String() string {
	switch e.kind {
	case "send":
		return fmt.Sprintf("send(u%d c%d f%d)", e.unit, e.clock, e.flow)
	case "handover":
		return fmt.Sprintf("handover(f%d %d→%d)", e.flow, e.from, e.to)
	}
	return fmt.Sprintf("scaleout()=%d", e.unit)
}

// recorder is a Target that records the root's calls. scaleOut, if set, decides what
// ScaleOut returns (else -1).
type recorder struct {
	events   []event
	scaleOut func() int
}

func (r *recorder) Send(u int, p *packet.Packet) {
	r.events = append(r.events, event{kind: "send", unit: u, clock: p.Clock, flow: p.Flow, time: p.Time, key: p.Key})
}

func (r *recorder) Handover(k packet.Key, flow uint64, from, to int) {
	r.events = append(r.events, event{kind: "handover", key: k, flow: flow, from: from, to: to})
}

func (r *recorder) ScaleOut() int {
	u := -1
	if r.scaleOut != nil {
		u = r.scaleOut()
	}
	r.events = append(r.events, event{kind: "scaleout", unit: u})
	return u
}

// last returns the last event.
func (r *recorder) last() event { return r.events[len(r.events)-1] }

func (r *recorder) count(kind string) int {
	n := 0
	for _, e := range r.events {
		if e.kind == kind {
			n++
		}
	}
	return n
}

// nop is a Target that does nothing (for the benchmarks and the allocation test).
type nop struct{}

func (nop) Send(int, *packet.Packet)              {}
func (nop) Handover(packet.Key, uint64, int, int) {}
func (nop) ScaleOut() int                         { return -1 }

// scripted is a fake policy: place decides (default: unit 0), and every question is kept.
type scripted struct {
	perPacket bool
	place     func(f policy.Flowlet, p *policy.Pool) policy.Decision
	asked     []policy.Flowlet
}

func (s *scripted) Name() string    { return "scripted" }
func (s *scripted) PerPacket() bool { return s.perPacket }
func (s *scripted) Elastic() bool   { return true }
func (s *scripted) Place(f policy.Flowlet, p *policy.Pool) policy.Decision {
	s.asked = append(s.asked, f)
	if s.place == nil {
		return policy.Decision{Unit: 0}
	}
	return s.place(f, p)
}

// to returns a scripted policy that places the i-th question on units[i] (the last one
// repeats).
func to(units ...int) *scripted {
	s := &scripted{}
	s.place = func(policy.Flowlet, *policy.Pool) policy.Decision {
		return policy.Decision{Unit: units[min(len(s.asked), len(units))-1]}
	}
	return s
}

// counting wraps a policy and counts its decisions.
type counting struct {
	policy.Policy
	n int
}

func (c *counting) Place(f policy.Flowlet, p *policy.Pool) policy.Decision {
	c.n++
	return c.Policy.Place(f, p)
}

// pool returns n active units (ample capacity unless capacity is given) and, after them,
// off inactive ones.
func pool(active, off int, capacity float64) *policy.Pool {
	p := &policy.Pool{Target: 0.8}
	for i := range active + off {
		p.Units = append(p.Units, policy.UnitView{ID: i, Active: i < active, Capacity: capacity})
	}
	return p
}

const gap = 500 * time.Microsecond

func newRoot(pol policy.Policy, p *policy.Pool) *root.Root {
	return root.New(root.Config{Policy: pol, Pool: p, FlowletGap: gap, Timeouts: flowtable.DefaultTimeouts})
}

var (
	client = netip.MustParseAddr("10.0.0.1")
	server = netip.MustParseAddr("198.18.0.1")
)

// udp returns flow i's packet at time t (ns from 0): from the client, or from the server
// when reply.
func udp(i int, t time.Duration, reply bool) *packet.Packet {
	sport := uint16(10000 + i)
	f := pkttest.UDP(client, server, sport, 53, []byte("question"))
	if reply {
		f = pkttest.UDP(server, client, 53, sport, []byte("answer"))
	}
	p := new(packet.Packet)
	p.SetData(f, int64(t), 0)
	return p
}

// nonIP returns an ARP frame at time t.
func nonIP(t time.Duration) *packet.Packet {
	f := make([]byte, 14+28)
	copy(f, pkttest.MACB)
	copy(f[6:], pkttest.MACA)
	f[12], f[13] = 0x08, 0x06
	p := new(packet.Packet)
	p.SetData(f, int64(t), 0)
	return p
}

// malformed returns an IPv4 frame whose header length is impossible, at time t.
func malformed(t time.Duration) *packet.Packet {
	f := pkttest.UDP(client, server, 7, 7, []byte("x"))
	f[14] = 0x41 // IHL 1
	p := new(packet.Packet)
	p.SetData(f, int64(t), 0)
	return p
}

// TestClockStamped: every packet gets the next clock, 1, 2, 3…, whatever it carried, and
// reaches the target with it.
func TestClockStamped(t *testing.T) {
	rec := &recorder{}
	r := newRoot(to(0), pool(2, 0, 1e9))
	for i := 1; i <= 50; i++ {
		var p *packet.Packet
		switch i % 4 {
		case 0:
			p = nonIP(time.Duration(i) * time.Millisecond)
		case 1:
			p = malformed(time.Duration(i) * time.Millisecond)
		default:
			p = udp(i%3, time.Duration(i)*time.Millisecond, i%2 == 0)
		}
		p.Clock = 1000 // stale: the root overwrites it
		r.Dispatch(p, rec)
		if p.Clock != uint64(i) || r.Clock() != uint64(i) {
			t.Fatalf("packet %d: clock %d, root clock %d", i, p.Clock, r.Clock())
		}
		if e := rec.last(); e.kind != "send" || e.clock != uint64(i) {
			t.Fatalf("packet %d: last call %v", i, e)
		}
	}
	if s := r.Stats(); s.Packets != 50 {
		t.Errorf("Stats.Packets %d, want 50", s.Packets)
	}
}

// TestRunningFlowletFollowsItsUnit: the policy is asked once for a flowlet; its later
// packets (gaps up to and including FlowletGap) follow it without asking.
func TestRunningFlowletFollowsItsUnit(t *testing.T) {
	pol := to(2, 0)
	rec := &recorder{}
	r := newRoot(pol, pool(3, 0, 1e9))
	at := time.Duration(0)
	for i := range 20 {
		r.Dispatch(udp(1, at, i%3 == 1), rec)
		at += gap // exactly δ: still the same flowlet (a new one needs a gap longer than δ)
	}
	if len(pol.asked) != 1 {
		t.Fatalf("policy asked %d times for one flowlet: %+v", len(pol.asked), pol.asked)
	}
	if f := pol.asked[0]; !f.First || f.Current != -1 || f.Rate != 100 {
		t.Errorf("first flowlet asked as %+v, want First, Current -1, Rate 100 (the default)", f)
	}
	for _, e := range rec.events {
		if e.kind != "send" || e.unit != 2 {
			t.Fatalf("%v: want every packet sent to unit 2, nothing else", e)
		}
	}
	if s := r.Stats(); s.Flowlets != 1 || s.Handovers != 0 || s.Sent[2] != 20 {
		t.Errorf("stats %+v", s)
	}
}

// TestNewFlowletMoves: after a gap longer than δ in packet time, the flow's next packet starts
// a flowlet that the policy places; when it moves, exactly one Handover(key, flow, from, to)
// comes right before the Send of that first packet, and the flowlet's later packets follow.
func TestNewFlowletMoves(t *testing.T) {
	pol := to(0, 1, 1) // flow 1's first flowlet, flow 2's first, flow 1's second
	rec := &recorder{}
	r := newRoot(pol, pool(2, 0, 1e9))
	first := udp(1, 0, false)
	r.Dispatch(first, rec)
	id := first.Flow
	r.Dispatch(udp(1, 100*time.Microsecond, true), rec)
	r.Dispatch(udp(2, 200*time.Microsecond, false), rec) // another flow, on unit 1
	// Flow 1 idle longer than δ; its next flowlet starts with a reply packet.
	p := udp(1, 100*time.Microsecond+gap+1, true)
	r.Dispatch(p, rec)
	if p.Flow != id {
		t.Fatalf("flow id changed across flowlets: %d then %d", id, p.Flow)
	}
	r.Dispatch(udp(1, 100*time.Microsecond+gap+2, false), rec)

	want := []string{"send(u0 c1 f1)", "send(u0 c2 f1)", "send(u1 c3 f2)", "handover(f1 0→1)", "send(u1 c4 f1)", "send(u1 c5 f1)"}
	if got := fmt.Sprint(rec.events); got != fmt.Sprint(want) {
		t.Fatalf("calls %s\nwant  %s", got, want)
	}
	h := rec.events[3]
	if h.key != first.Key {
		t.Errorf("handover key %s, want the flow's original key %s", h.key, first.Key)
	}
	if len(pol.asked) != 3 {
		t.Fatalf("policy asked %d times, want 3", len(pol.asked))
	}
	if f := pol.asked[2]; f.First || f.Current != 0 || f.Hash != first.Key.Hash() || !(f.Rate > 0) {
		t.Errorf("second flowlet asked as %+v: want First false, Current 0, the key's hash, a measured rate", f)
	}
	s := r.Stats()
	if s.Flows != 2 || s.Flowlets != 3 || s.Handovers != 1 || s.Sent[0] != 2 || s.Sent[1] != 3 {
		t.Errorf("stats %+v", s)
	}
}

// TestNewFlowletStays: a new flowlet placed on the unit that holds the flow needs no
// handover.
func TestNewFlowletStays(t *testing.T) {
	rec := &recorder{}
	r := newRoot(to(1), pool(2, 0, 1e9))
	for i := range 5 {
		r.Dispatch(udp(1, time.Duration(i)*2*gap, false), rec) // every packet a new flowlet
	}
	if n := rec.count("handover"); n != 0 {
		t.Errorf("%d handovers for a flow that never moves", n)
	}
	if s := r.Stats(); s.Flowlets != 5 || s.Flows != 1 || s.Sent[1] != 5 {
		t.Errorf("stats %+v", s)
	}
}

// TestBothDirectionsOneFlow: a request and its reply are one flow (one id, one placement);
// other flows get other ids, 1, 2, 3… in order of arrival (0 means unset).
func TestBothDirectionsOneFlow(t *testing.T) {
	pol := to(0, 1, 2)
	rec := &recorder{}
	r := newRoot(pol, pool(3, 0, 1e9))
	var ids []uint64
	for i := range 3 {
		q, a := udp(i, time.Duration(i)*time.Microsecond, false), udp(i, time.Duration(i+10)*time.Microsecond, true)
		r.Dispatch(q, rec)
		r.Dispatch(a, rec)
		if q.Flow != a.Flow {
			t.Errorf("flow %d: request id %d, reply id %d", i, q.Flow, a.Flow)
		}
		if u, v := rec.events[len(rec.events)-2].unit, rec.last().unit; u != v || u != i {
			t.Errorf("flow %d: request to unit %d, reply to %d, want both %d", i, u, v, i)
		}
		ids = append(ids, q.Flow)
	}
	if fmt.Sprint(ids) != "[1 2 3]" {
		t.Errorf("flow ids %v, want [1 2 3]", ids)
	}
	if len(pol.asked) != 3 || r.Stats().Flows != 3 {
		t.Errorf("%d placements, %d flows: want 3 and 3", len(pol.asked), r.Stats().Flows)
	}
}

// TestNonIPAndMalformedShareOneFlow: packets without a flow key (non-IP, malformed IP) are
// one flow, so that they keep their order on one unit.
func TestNonIPAndMalformedShareOneFlow(t *testing.T) {
	pol := to(1, 0)
	rec := &recorder{}
	r := newRoot(pol, pool(2, 0, 1e9))
	a, m, b := nonIP(0), malformed(time.Microsecond), nonIP(2*time.Microsecond)
	if !a.Is(packet.NonIP) || !m.Is(packet.Malformed) {
		t.Fatalf("test frames: flags %v and %v", a.Flags, m.Flags)
	}
	ip := udp(1, 3*time.Microsecond, false)
	for _, p := range []*packet.Packet{a, m, b, ip} {
		r.Dispatch(p, rec)
	}
	if a.Flow == 0 || a.Flow != m.Flow || a.Flow != b.Flow {
		t.Errorf("flow ids: non-IP %d, malformed %d, non-IP %d: want one non-zero id", a.Flow, m.Flow, b.Flow)
	}
	if ip.Flow == a.Flow {
		t.Errorf("an IP flow shares the id %d of packets without a flow", ip.Flow)
	}
	for _, e := range rec.events[:3] {
		if e.unit != 1 {
			t.Errorf("%v: want unit 1", e)
		}
	}
	if s := r.Stats(); s.Flows != 2 || len(pol.asked) != 2 {
		t.Errorf("%d flows, %d placements: want 2 and 2", s.Flows, len(pol.asked))
	}
}

// TestScaleOut: when the policy asks for a unit, the root asks the target; when the target
// activates one, the flowlet is placed again (and goes there); when it cannot, the policy's
// first answer stands.
func TestScaleOut(t *testing.T) {
	t.Run("activated", func(t *testing.T) {
		pol, _ := policy.New("snf", policy.Options{})
		p := pool(1, 1, 100) // unit 0 active, unit 1 off; full at 80 packets/s
		rec := &recorder{scaleOut: func() int { p.Units[1].Active = true; return 1 }}
		r := root.New(root.Config{Policy: pol, Pool: p, FlowletGap: gap, NewFlowRate: 50})
		r.Dispatch(udp(1, 0, false), rec) // 50 fits in unit 0
		r.Dispatch(udp(2, 1, false), rec) // 100 does not: scale out, placed on unit 1
		want := "[send(u0 c1 f1) scaleout()=1 send(u1 c2 f2)]"
		if got := fmt.Sprint(rec.events); got != want {
			t.Errorf("calls %s, want %s", got, want)
		}
		if s := r.Stats(); s.ScaleOuts != 1 {
			t.Errorf("ScaleOuts %d, want 1", s.ScaleOuts)
		}
		if p.Units[0].Load != 50 || p.Units[1].Load != 50 {
			t.Errorf("loads %v and %v, want the placed rates 50 and 50", p.Units[0].Load, p.Units[1].Load)
		}
	})
	t.Run("refused", func(t *testing.T) {
		pol, _ := policy.New("snf", policy.Options{})
		p := pool(1, 1, 100)
		rec := &recorder{}
		r := root.New(root.Config{Policy: pol, Pool: p, FlowletGap: gap, NewFlowRate: 50})
		r.Dispatch(udp(1, 0, false), rec)
		r.Dispatch(udp(2, 1, false), rec)
		want := "[send(u0 c1 f1) scaleout()=-1 send(u0 c2 f2)]"
		if got := fmt.Sprint(rec.events); got != want {
			t.Errorf("calls %s, want %s", got, want)
		}
		if s := r.Stats(); s.ScaleOuts != 0 {
			t.Errorf("ScaleOuts %d, want 0 (nothing activated)", s.ScaleOuts)
		}
	})
	t.Run("no unit", func(t *testing.T) {
		// A policy that finds no unit (Unit -1) without saying ScaleOut still gets one.
		pol := &scripted{}
		p := pool(0, 2, 100)
		pol.place = func(policy.Flowlet, *policy.Pool) policy.Decision {
			for _, u := range p.Units {
				if u.Active {
					return policy.Decision{Unit: u.ID}
				}
			}
			return policy.Decision{Unit: -1}
		}
		rec := &recorder{scaleOut: func() int { p.Units[1].Active = true; return 1 }}
		r := newRoot(pol, p)
		r.Dispatch(udp(1, 0, false), rec)
		if got := fmt.Sprint(rec.events); got != "[scaleout()=1 send(u1 c1 f1)]" {
			t.Errorf("calls %s", got)
		}
		if len(pol.asked) != 2 {
			t.Errorf("policy asked %d times, want 2 (again after the scale-out)", len(pol.asked))
		}
	})
	t.Run("moved after scale-out", func(t *testing.T) {
		// A new flowlet of a live flow that fits nowhere moves to the unit just activated:
		// the handover names that unit.
		pol, _ := policy.New("snf", policy.Options{})
		p := pool(1, 1, 100)
		rec := &recorder{scaleOut: func() int { p.Units[1].Active = true; return 1 }}
		r := root.New(root.Config{Policy: pol, Pool: p, FlowletGap: gap, NewFlowRate: 50})
		r.Dispatch(udp(1, 0, false), rec)
		p.Units[0].Load = 1e9 // the unit filled up meanwhile (with more than this flow's own rate, which Load counts)
		r.Dispatch(udp(1, 2*gap, false), rec)
		want := "[send(u0 c1 f1) scaleout()=1 handover(f1 0→1) send(u1 c2 f1)]"
		if got := fmt.Sprint(rec.events); got != want {
			t.Errorf("calls %s, want %s", got, want)
		}
	})
}

// keep is a policy that keeps a flow where it is and puts new flows on unit 1.
func keep() *scripted {
	s := &scripted{}
	s.place = func(f policy.Flowlet, _ *policy.Pool) policy.Decision {
		if f.Current >= 0 {
			return policy.Decision{Unit: f.Current}
		}
		return policy.Decision{Unit: 1}
	}
	return s
}

// TestTimeouts: the root forgets a flow when its unit does (the chain's timeout): a flow
// idle exactly the timeout keeps its id and unit (its return is a new flowlet of the same
// flow). Idle longer, the root forgets it, but it comes back under its id, from the unit that
// held it (tombstone), so its new packets cannot overtake old ones queued there.
func TestTimeouts(t *testing.T) {
	const timeout = time.Second
	pol := keep()
	rec := &recorder{}
	r := root.New(root.Config{Policy: pol, Pool: pool(2, 0, 1e9), FlowletGap: gap,
		Timeouts: flowtable.Timeouts{flowtable.ClassTCP: timeout, flowtable.ClassUDP: timeout, flowtable.ClassOther: timeout}})
	p1 := udp(1, 0, false)
	r.Dispatch(p1, rec)
	at := timeout // idle exactly the timeout: kept
	p2 := udp(1, at, true)
	r.Dispatch(p2, rec)
	if p2.Flow != p1.Flow || rec.last().unit != 1 {
		t.Fatalf("after %v idle: flow %d on unit %d, want flow %d kept on unit 1", at, p2.Flow, rec.last().unit, p1.Flow)
	}
	if f := pol.asked[1]; f.First || f.Current != 1 {
		t.Errorf("return after %v asked as %+v: want a new flowlet of the flow on unit 1", at, f)
	}
	if s, fs := r.Stats(), r.FlowStats(); s.Flows != 1 || fs.Expired != 0 || r.Held(1) != 1 {
		t.Errorf("within the timeout: %d flows, %d expired in the root's table, unit 1 holds %d; want 1, 0, 1", s.Flows, fs.Expired, r.Held(1))
	}
	at += timeout + 1 // idle longer: forgotten, back under its id from its unit
	p3 := udp(1, at, false)
	r.Dispatch(p3, rec)
	if fs := r.FlowStats(); fs.Expired != 1 {
		t.Errorf("idle more than the timeout: %d flows expired in the root's table, want 1", fs.Expired)
	}
	if p3.Flow != p1.Flow || rec.last().unit != 1 {
		t.Errorf("a forgotten flow came back as flow %d on unit %d, want flow %d on unit 1", p3.Flow, rec.last().unit, p1.Flow)
	}
	if f := pol.asked[len(pol.asked)-1]; !f.First || f.Current != 1 {
		t.Errorf("a forgotten flow's return asked as %+v, want First, Current 1 (where its state was)", f)
	}
	if s := r.Stats(); s.Flows != 2 || s.Flowlets != 3 || s.Handovers != 0 || r.Held(1) != 1 || r.Held(0) != 0 {
		t.Errorf("stats %+v, held %d/%d", s, r.Held(0), r.Held(1))
	}
}

// TestForgottenFlowMoves: a flow the root forgot (idle past its timeout) that comes back on
// another unit gets a handover under its old id (its old unit may still hold packets that
// the new ones must not overtake).
func TestForgottenFlowMoves(t *testing.T) {
	rec := &recorder{}
	r := root.New(root.Config{Policy: to(0, 1, 0), Pool: pool(2, 0, 1e9), FlowletGap: gap,
		Timeouts: flowtable.Timeouts{flowtable.ClassUDP: time.Second}})
	r.Dispatch(udp(1, 0, false), rec)
	r.Dispatch(udp(1, 1500*time.Millisecond, false), rec)
	r.Dispatch(udp(1, 5*time.Second, true), rec) // forgotten by the root again (3.5 s > 1 s)
	want := "[send(u0 c1 f1) handover(f1 0→1) send(u1 c2 f1) handover(f1 1→0) send(u0 c3 f1)]"
	if got := fmt.Sprint(rec.events); got != want {
		t.Errorf("calls %s\nwant  %s", got, want)
	}
}

// TestForgottenFlowsBounded: the root remembers a bounded number of forgotten flows; the
// oldest memories go first (such a flow comes back as a new one), recent ones stay.
func TestForgottenFlowsBounded(t *testing.T) {
	rec := &recorder{}
	r := root.New(root.Config{Policy: keep(), Pool: pool(2, 0, 1e9), FlowletGap: gap, MaxFlows: 1000,
		Timeouts: flowtable.Timeouts{time.Second, time.Second, time.Second}})
	const n = 5000
	ids := make([]uint64, n)
	for i := range n {
		p := udp(i, time.Duration(i)*time.Microsecond, false)
		r.Dispatch(p, rec)
		ids[i] = p.Flow
	}
	r.Dispatch(udp(n, time.Hour, false), rec) // everything before is forgotten
	pOld, pNew := udp(0, time.Hour+1, false), udp(n-1, time.Hour+2, false)
	r.Dispatch(pOld, rec)
	r.Dispatch(pNew, rec)
	if pOld.Flow == ids[0] {
		t.Errorf("the oldest of %d forgotten flows is still remembered (id %d)", n, pOld.Flow)
	}
	if pNew.Flow != ids[n-1] {
		t.Errorf("the most recently forgotten flow came back as %d, want its id %d", pNew.Flow, ids[n-1])
	}
}

// TestZeroTimeouts: a class left at zero takes the flow table's default, as on the units.
func TestZeroTimeouts(t *testing.T) {
	rec := &recorder{}
	pol := keep()
	r := root.New(root.Config{Policy: pol, Pool: pool(2, 0, 1e9), FlowletGap: gap})
	p1 := udp(1, 0, false)
	r.Dispatch(p1, rec)
	def := flowtable.DefaultTimeouts[flowtable.ClassUDP]
	r.Dispatch(udp(1, def, false), rec)
	if fs := r.FlowStats(); fs.Expired != 0 {
		t.Errorf("a UDP flow idle exactly the default timeout (%v) was forgotten", def)
	}
	r.Dispatch(udp(1, 2*def+1, false), rec)
	if fs := r.FlowStats(); fs.Expired != 1 || !pol.asked[len(pol.asked)-1].First {
		t.Errorf("a UDP flow idle longer than the default timeout: %d expired, asked as %+v; want forgotten", fs.Expired, pol.asked[len(pol.asked)-1])
	}
}

// TestHeld: Held counts, per unit, the live flows whose state the unit holds, following
// moves and the root forgetting flows.
func TestHeld(t *testing.T) {
	rec := &recorder{}
	r := root.New(root.Config{Policy: to(0, 1, 1, 0), Pool: pool(2, 0, 1e9), FlowletGap: gap,
		Timeouts: flowtable.Timeouts{flowtable.ClassUDP: time.Second}})
	r.Dispatch(udp(1, 0, false), rec) // flow 1 → 0
	r.Dispatch(udp(2, 0, false), rec) // flow 2 → 1
	if r.Held(0) != 1 || r.Held(1) != 1 {
		t.Fatalf("held %d/%d, want 1/1", r.Held(0), r.Held(1))
	}
	r.Dispatch(udp(1, 2*gap, false), rec) // flow 1's new flowlet → 1
	if r.Held(0) != 0 || r.Held(1) != 2 {
		t.Errorf("after a move: held %d/%d, want 0/2", r.Held(0), r.Held(1))
	}
	r.Dispatch(udp(3, 3*time.Second, false), rec) // flows 1 and 2 forgotten; flow 3 → 0
	if r.Held(0) != 1 || r.Held(1) != 0 {
		t.Errorf("after expiry: held %d/%d, want 1/0", r.Held(0), r.Held(1))
	}
}

// TestEvacuate: a draining unit's idle flows move to where the policy puts them, each with
// a handover; a flow whose flowlet still runs stays until it idles; a unit with nothing
// left has nothing to move.
func TestEvacuate(t *testing.T) {
	rec := &recorder{}
	p := pool(2, 0, 1000)
	r := newRoot(&policy.SNF{}, p)
	for i := range 3 {
		r.Dispatch(udp(i, time.Duration(i)*time.Millisecond, false), rec) // all fit on unit 0
	}
	if r.Held(0) != 3 {
		t.Fatalf("held %d on unit 0, want 3", r.Held(0))
	}
	p.Units[0].Draining = true
	now := 2*time.Millisecond + gap/2 // flow 2's flowlet still runs
	if n := r.Evacuate(0, int64(now), rec, false); n != 2 {
		t.Fatalf("evacuated %d flows, want the 2 idle ones", n)
	}
	if r.Held(0) != 1 || r.Held(1) != 2 || rec.count("handover") != 2 {
		t.Errorf("held %d/%d, %d handovers; want 1/2, 2", r.Held(0), r.Held(1), rec.count("handover"))
	}
	if r.Stats().Evacuated != 2 || r.Stats().Handovers != 2 {
		t.Errorf("stats %+v", r.Stats())
	}
	r.Dispatch(udp(2, 2*time.Millisecond+gap/2, false), rec) // flow 2 still running on unit 0
	if e := rec.last(); e.unit != 0 {
		t.Errorf("a running flowlet left its unit: sent to %d", e.unit)
	}
	if n := r.Evacuate(0, int64(10*time.Millisecond), rec, false); n != 1 || r.Held(0) != 0 {
		t.Errorf("once idle: evacuated %d, unit 0 holds %d; want 1, 0", n, r.Held(0))
	}
	if n := r.Evacuate(0, int64(20*time.Millisecond), rec, false); n != 0 {
		t.Errorf("an empty unit evacuated %d", n)
	}
	for _, e := range rec.events {
		if e.kind == "handover" && (e.from != 0 || e.to != 1) {
			t.Errorf("handover %v, want 0→1", e)
		}
	}
}

// TestEvacuateBusy: with busy, running flowlets move too, and the flow's next packet goes
// to its new unit.
func TestEvacuateBusy(t *testing.T) {
	rec := &recorder{}
	p := pool(2, 0, 1000)
	r := newRoot(&policy.SNF{}, p)
	for i := range 3 {
		r.Dispatch(udp(i, time.Duration(i)*time.Millisecond, false), rec)
	}
	p.Units[0].Draining = true
	now := 2*time.Millisecond + gap/2 // flow 2's flowlet still runs
	if n := r.Evacuate(0, int64(now), rec, true); n != 3 || r.Held(0) != 0 || r.Held(1) != 3 {
		t.Fatalf("evacuated %d, held %d/%d; want 3, 0/3", n, r.Held(0), r.Held(1))
	}
	r.Dispatch(udp(2, now, false), rec)
	if e := rec.last(); e.unit != 1 {
		t.Errorf("a moved running flow's next packet went to unit %d, want 1", e.unit)
	}
}

// TestPerPacketPlacesEveryPacket: a per-packet policy is asked for every packet, the packet
// goes where it says, and no flow state moves (such policies keep state in the store).
func TestPerPacketPlacesEveryPacket(t *testing.T) {
	t.Run("round robin", func(t *testing.T) {
		pol := &scripted{perPacket: true}
		pol.place = func(policy.Flowlet, *policy.Pool) policy.Decision {
			return policy.Decision{Unit: (len(pol.asked) - 1) % 3}
		}
		rec := &recorder{}
		r := newRoot(pol, pool(3, 0, 1e9))
		for i := range 12 {
			r.Dispatch(udp(i%2, time.Duration(i)*time.Microsecond, i%4 > 1), rec)
		}
		if len(pol.asked) != 12 {
			t.Errorf("policy asked %d times for 12 packets", len(pol.asked))
		}
		for i, e := range rec.events {
			if e.kind != "send" || e.unit != i%3 {
				t.Fatalf("call %d: %v, want send to unit %d", i, e, i%3)
			}
		}
		if s := r.Stats(); s.Handovers != 0 || s.Flows != 2 || s.Flowlets != 2 || s.Sent[0] != 4 {
			t.Errorf("stats %+v", s)
		}
	})
	t.Run("perpacket", func(t *testing.T) {
		pp, _ := policy.New("perpacket", policy.Options{})
		pol := &counting{Policy: pp}
		rec := &recorder{}
		r := newRoot(pol, pool(3, 0, 1e9))
		for i := range 300 {
			r.Dispatch(udp(i%5, time.Duration(i)*time.Microsecond, i%2 == 1), rec)
		}
		if pol.n != 300 {
			t.Errorf("perpacket asked %d times for 300 packets", pol.n)
		}
		s := r.Stats()
		if s.Handovers != 0 || rec.count("handover") != 0 {
			t.Errorf("%d handovers under perpacket", s.Handovers)
		}
		for u, n := range s.Sent {
			if n == 0 {
				t.Errorf("unit %d got no packet: %v", u, s.Sent)
			}
		}
	})
}

// TestStats: the counters of a scripted run.
func TestStats(t *testing.T) {
	// f1, f2, f1 again (moves 0→2), f2 again (moves 1→2, then a packet within its flowlet),
	// f1 again (moves 2→0).
	pol := to(0, 1, 2, 2, 0)
	rec := &recorder{}
	r := newRoot(pol, pool(3, 0, 1e9))
	ms := time.Millisecond
	for _, d := range []struct {
		flow int
		at   time.Duration
	}{{1, 0}, {1, 1}, {2, 2}, {1, 1 * ms}, {1, 1*ms + 1}, {2, 1*ms + 2}, {2, 1*ms + 400*time.Microsecond}, {1, 2 * ms}} {
		r.Dispatch(udp(d.flow, d.at, false), rec)
	}
	s := r.Stats()
	if s.Packets != 8 || s.Flows != 2 || s.Flowlets != 5 || s.Handovers != 3 || s.ScaleOuts != 0 {
		t.Errorf("stats %+v: want 8 packets, 2 flows, 5 flowlets, 3 handovers", s)
	}
	if fmt.Sprint(s.Sent) != "[3 1 4]" {
		t.Errorf("Sent %v, want [3 1 4]", s.Sent)
	}
	if rec.count("handover") != 3 || rec.count("send") != 8 {
		t.Errorf("calls %v", rec.events)
	}
	if fs := r.FlowStats(); fs.Created != 2 || fs.Flowlets != 5 || fs.Active != 2 {
		t.Errorf("flow table stats %+v", fs)
	}
}

// mover moves every new flowlet of a live flow to another active unit and asks for a unit
// every 7th time: the worst case for handovers.
type mover struct{ n uint64 }

func (m *mover) Name() string    { return "mover" }
func (m *mover) PerPacket() bool { return false }
func (m *mover) Elastic() bool   { return true }
func (m *mover) Place(f policy.Flowlet, p *policy.Pool) policy.Decision {
	active := 0
	for _, u := range p.Units {
		if u.Active {
			active++
		}
	}
	m.n++
	if active == 0 {
		return policy.Decision{Unit: -1, ScaleOut: true}
	}
	// The k-th active unit (no allocation: the policy runs in the allocation test).
	kth := func(k int) int {
		for _, u := range p.Units {
			if u.Active {
				if k == 0 {
					return u.ID
				}
				k--
			}
		}
		return -1
	}
	d := policy.Decision{Unit: kth(int(m.n % uint64(active))), ScaleOut: m.n%7 == 0}
	if d.Unit == f.Current && active > 1 {
		d.Unit = kth(int((m.n + 1) % uint64(active)))
	}
	return d
}

// generatedPackets returns n generated packets (300 flows, slow enough for many flowlets).
func generatedPackets(tb testing.TB, n, flows int, rate float64) []packet.Packet {
	cfg := trace.DefaultGenConfig()
	cfg.Packets, cfg.Flows, cfg.Rate = n, flows, rate
	g, err := trace.NewGenerator(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	pkts := make([]packet.Packet, n)
	got := 0
	for got < n {
		k, err := g.Read(pkts[got:])
		got += k
		if err != nil {
			break
		}
	}
	return pkts[:got]
}

// TestDispatchInvariants runs every policy (and one that moves every flowlet) over generated
// traffic on an elastic pool and checks, from the calls alone: clocks 1..N in order; the
// policy asked exactly at new flowlets (per packet for perpacket); a flow's packets go to
// its unit, which changes only through a Handover from that unit right before the new
// flowlet's first packet (never under perpacket); every packet goes to an active unit; the
// counters agree.
func TestDispatchInvariants(t *testing.T) {
	pkts := generatedPackets(t, 20000, 300, 20000)
	for _, name := range append(policy.Names(), "mover") {
		t.Run(name, func(t *testing.T) {
			var pol policy.Policy = &mover{}
			if name != "mover" {
				var err error
				if pol, err = policy.New(name, policy.Options{StaticUnits: 4}); err != nil {
					t.Fatal(err)
				}
			}
			cp := &counting{Policy: pol}
			p := pool(1, 7, 2000)
			if name == "static" {
				p = pool(4, 4, 2000)
			}
			rec := &recorder{scaleOut: func() int {
				if !pol.Elastic() {
					return -1
				}
				for i := range p.Units {
					if !p.Units[i].Active {
						p.Units[i].Active = true
						return i
					}
				}
				return -1
			}}
			r := root.New(root.Config{Policy: cp, Pool: p, FlowletGap: gap, Timeouts: flowtable.DefaultTimeouts})
			type flowSeen struct {
				unit int
				last int64
			}
			seen := map[uint64]*flowSeen{}
			newFlowlets := 0
			var pendingMove *event
			for i := range pkts {
				pk := &pkts[i]
				asked := cp.n
				n := len(rec.events)
				r.Dispatch(pk, rec)
				calls := rec.events[n:]
				send := calls[len(calls)-1]
				if send.kind != "send" || send.clock != uint64(i+1) || send.flow != pk.Flow {
					t.Fatalf("packet %d: calls %v", i+1, calls)
				}
				if !p.Units[send.unit].Active {
					t.Fatalf("packet %d sent to inactive unit %d", i+1, send.unit)
				}
				f := seen[pk.Flow]
				isNew := f == nil || pk.Time-f.last > int64(gap)
				if isNew {
					newFlowlets++
				}
				wantAsked := isNew || pol.PerPacket()
				if got := cp.n > asked; got != wantAsked {
					t.Fatalf("packet %d (new flowlet %v): policy asked %v", i+1, isNew, got)
				}
				pendingMove = nil
				for j := range calls[:len(calls)-1] {
					c := calls[j]
					switch c.kind {
					case "handover":
						if pendingMove != nil || j != len(calls)-2 {
							t.Fatalf("packet %d: calls %v: a handover must be the one call before the send", i+1, calls)
						}
						pendingMove = &calls[j]
					case "scaleout":
					default:
						t.Fatalf("packet %d: calls %v", i+1, calls)
					}
				}
				switch {
				case pendingMove != nil:
					if pol.PerPacket() || !isNew || f == nil {
						t.Fatalf("packet %d: handover %v (new flowlet %v, per packet %v)", i+1, *pendingMove, isNew, pol.PerPacket())
					}
					if pendingMove.flow != pk.Flow || pendingMove.from != f.unit || pendingMove.to != send.unit || pendingMove.from == pendingMove.to {
						t.Fatalf("packet %d to unit %d (flow %d was on %d): %v", i+1, send.unit, pk.Flow, f.unit, *pendingMove)
					}
				case f != nil && send.unit != f.unit && !pol.PerPacket():
					t.Fatalf("packet %d: flow %d went from unit %d to %d without a handover", i+1, pk.Flow, f.unit, send.unit)
				}
				if f == nil {
					f = &flowSeen{}
					seen[pk.Flow] = f
				}
				f.unit, f.last = send.unit, pk.Time
			}
			s := r.Stats()
			sum := uint64(0)
			for _, n := range s.Sent {
				sum += n
			}
			if s.Packets != uint64(len(pkts)) || sum != s.Packets || s.Flows != uint64(len(seen)) ||
				s.Flowlets != uint64(newFlowlets) || s.Handovers != uint64(rec.count("handover")) {
				t.Errorf("stats %+v; %d flows, %d flowlets, %d handovers seen", s, len(seen), newFlowlets, rec.count("handover"))
			}
			if name == "mover" && s.Handovers == 0 {
				t.Error("mover: no handover")
			}
			if name == "perflow" || name == "static" {
				if s.Handovers != 0 {
					t.Errorf("%s moved %d flowlets of live flows on live units", name, s.Handovers)
				}
			}
			t.Logf("%d packets, %d flows, %d flowlets, %d handovers, %d scale-outs, sent %v", s.Packets, s.Flows, s.Flowlets, s.Handovers, s.ScaleOuts, s.Sent)
		})
	}
}

// TestDispatchAllocs: dispatching packets of existing flows allocates nothing, within a
// flowlet and at new flowlets that move (policy, handover).
func TestDispatchAllocs(t *testing.T) {
	pkts := generatedPackets(t, 4096, 100, 1e5)
	for _, name := range []string{"snf", "perflow", "perpacket", "mover"} {
		var pol policy.Policy = &mover{}
		if name != "mover" {
			pol, _ = policy.New(name, policy.Options{})
		}
		r := newRoot(pol, pool(4, 0, 1e12))
		for i := range pkts {
			r.Dispatch(&pkts[i], nop{})
		}
		base := pkts[len(pkts)-1].Time + int64(time.Millisecond)
		i := 0
		step := int64(time.Microsecond)
		if name == "mover" {
			step = int64(time.Millisecond) // every packet a new flowlet, and every one moves
		}
		allocs := testing.AllocsPerRun(2000, func() {
			p := &pkts[i%len(pkts)]
			p.Time = base + int64(i)*step
			r.Dispatch(p, nop{})
			i++
		})
		if name == "mover" && r.Stats().Handovers < 1000 {
			t.Errorf("mover: only %d handovers", r.Stats().Handovers)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Dispatch of an existing flow", name, allocs)
		}
	}
}

// loadCapture reads a capture into memory, or skips.
func loadCapture(b *testing.B, name string) []packet.Packet {
	path, _ := filepath.Abs(filepath.Join("../../shared/traces", name))
	r, err := pcapfile.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			b.Skipf("capture %s not found (it sits beside the repository in CI): %v", path, err)
		}
		b.Fatal(err)
	}
	defer r.Close()
	var pkts []packet.Packet
	batch := make([]packet.Packet, 64)
	for {
		n, err := r.Read(batch)
		for i := range batch[:n] {
			pkts = append(pkts, packet.Packet{})
			pkts[len(pkts)-1].SetData(batch[i].Data, batch[i].Time, batch[i].WireLen)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if len(pkts) == 0 {
		b.Skipf("capture %s is empty", path)
	}
	return pkts
}

// BenchmarkDispatch measures the root's cost per packet (clock, flow lookup, flowlet check,
// placement of new flowlets by the snf policy, counters) over a trace held in memory,
// replayed in a loop with time shifted forward on each pass (after a first pass that creates
// the flows), into a target that does nothing. One op is one packet. The generated traffic
// (1000 concurrent flows at 100 packets/s each) is the worst case: nearly every packet
// starts a flowlet and asks the policy.
func BenchmarkDispatch(b *testing.B) {
	b.Run("pcapplusplus_example", func(b *testing.B) {
		benchDispatch(b, loadCapture(b, "pcapplusplus_example.pcap"))
	})
	b.Run("generated", func(b *testing.B) {
		benchDispatch(b, generatedPackets(b, 100000, 1000, 100000))
	})
}

func benchDispatch(b *testing.B, pkts []packet.Packet) {
	times := make([]int64, len(pkts))
	for i := range pkts {
		times[i] = pkts[i].Time
	}
	span := times[len(times)-1] - times[0] + int64(time.Second)
	pol, _ := policy.New("snf", policy.Options{})
	r := newRoot(pol, pool(8, 0, 1e12))
	for i := range pkts { // a first pass creates the flows and grows the tables: steady state after
		r.Dispatch(&pkts[i], nop{})
	}
	b.ReportAllocs()
	i, lap := 0, int64(1)
	for b.Loop() {
		p := &pkts[i]
		p.Time = times[i] + lap*span
		r.Dispatch(p, nop{})
		if i++; i == len(pkts) {
			i, lap = 0, lap+1
		}
	}
	s := r.Stats()
	b.ReportMetric(float64(s.Flowlets)/float64(s.Packets), "flowlets/pkt")
	b.ReportMetric(float64(r.FlowStats().Active), "flows")
}

// BenchmarkDispatchFootprint measures what the packet log's memory costs the root, the
// runtime's bottleneck: the root's per-packet work (Dispatch over the engine's benchmark
// traffic — 1,000,000 generated packets of 300 concurrent flows, 56,000 flows in its table)
// plus the copy of each frame that the root makes, into one of 64 buffers (a batch: no
// log) or into a ring as deep as the log's arena (7 MiB: checkpoints every 2–3 ms at full
// speed; 24 MiB: every 10 ms). The variants run in turn within each iteration (the order
// rotates), so that the machine's drift hits them alike; the ns/pkt are over all iterations.
//
//	go test -run x -bench DispatchFootprint -benchtime 4x ./root/
func BenchmarkDispatchFootprint(b *testing.B) {
	pkts := generatedPackets(b, 1000000, 300, 20000)
	variants := []struct {
		name   string
		dst    []byte // nil: no copy
		stride int    // the distance between two frames' starts (0: packed as in the arena, 64-byte aligned)
	}{{"dispatch", nil, 0}, {"buffers", make([]byte, 64*2048), 2048}, {"log-7MiB", make([]byte, 7<<20), 0}, {"log-24MiB", make([]byte, 24<<20), 0}}
	took := make([]time.Duration, len(variants))
	for it := 0; b.Loop(); it++ {
		for j := range variants {
			k := (j + it) % len(variants)
			v := variants[k]
			pol, err := policy.New("static", policy.Options{StaticUnits: 2})
			if err != nil {
				b.Fatal(err)
			}
			r := newRoot(pol, pool(2, 0, 1e12))
			off := 0
			start := time.Now()
			for i := range pkts {
				p := &pkts[i]
				if v.dst != nil {
					n, step := len(p.Data), v.stride
					if step == 0 {
						step = (n + 63) &^ 63
					}
					if off+max(n, step) > len(v.dst) {
						off = 0
					}
					copy(v.dst[off:off+n], p.Data)
					off += step
				}
				r.Dispatch(p, nop{})
			}
			took[k] += time.Since(start)
		}
	}
	for k, v := range variants {
		b.ReportMetric(float64(took[k].Nanoseconds())/float64(b.N*len(pkts)), v.name+"-ns/pkt")
	}
}

// TestLearnAlias: a reply key a unit reported belongs to its flow (same id, same unit); once
// withdrawn it is a flow of its own; a note about a flow the root does not have is ignored.
func TestLearnAlias(t *testing.T) {
	rec := &recorder{}
	r := newRoot(to(1, 0), pool(2, 0, 1e9))
	p := udp(1, 0, false)
	r.Dispatch(p, rec)
	public := packet.Key{Proto: 17, SrcPort: 53, DstPort: 20000}
	copy(public.Src[:], server.AsSlice())
	copy(public.Dst[:], []byte{192, 0, 2, 1})
	r.LearnAlias(p.Key, public, false)
	r.LearnAlias(udp(99, 0, false).Key, public.Reverse(), false) // unknown flow: ignored
	reply := udp(1, gap/2, true)
	reply.Key = public
	r.Dispatch(reply, rec)
	if reply.Flow != p.Flow || rec.last().unit != 1 {
		t.Errorf("reply to the public key: flow %d on unit %d, want flow %d on unit 1", reply.Flow, rec.last().unit, p.Flow)
	}
	r.LearnAlias(p.Key, public, true)
	again := udp(1, gap, true)
	again.Key = public
	r.Dispatch(again, rec)
	if again.Flow == p.Flow {
		t.Errorf("a withdrawn reply key still maps to flow %d", p.Flow)
	}
}
