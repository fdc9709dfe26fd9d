// Package root is the chain's entry in the elastic runtime: it stamps every packet with the
// chain's logical clock, looks the packet's flow up, detects flowlets, and sends each packet
// to a unit — a new flowlet wherever the allocation policy says, a running flowlet where it
// runs. When a flow's new flowlet goes to another unit than the one holding its state, the
// root asks for a handover (DESIGN.md, "Flowlet move").
//
// The root is deterministic and does no I/O: the engine passes packets in and implements
// Target, which carries the root's decisions to the units.
package root

import (
	"math"
	"time"

	"github.com/snf-dev/snf/flowtable"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
)

// Target receives the root's decisions. The engine implements it.
type Target interface {
	// Send gives packet p to unit u. The engine may take p's contents (its buffer too) and
	// leave p holding another packet's buffer: the caller refills p, never reads it again.
	Send(u int, p *packet.Packet)
	// Handover moves flow k's state from unit from to unit to: from ships it after handling
	// the packets of k sent to it so far; to holds k's packets until it arrives.
	Handover(k packet.Key, flow uint64, from, to int)
	// ScaleOut asks for one more active unit; it returns the unit activated, or -1.
	ScaleOut() int
}

// Config configures a Root.
type Config struct {
	Policy     policy.Policy
	Pool       *policy.Pool // the engine's view of the units; the root adds placed flowlets' rates to Load
	FlowletGap time.Duration
	MaxFlows   int
	// Timeouts are the chain's idle timeouts (snf.Chain.FlowTimeouts): the root forgets a
	// flow when its unit does, so that Held counts the flows whose state each unit holds. A
	// flow that comes back after that is still routed through the unit that held it (its
	// tombstone), so its old and new packets cannot overtake each other.
	Timeouts flowtable.Timeouts
	// NewFlowRate is the rate (packets/s) first predicted for a flow's first flowlet
	// (default 100). The root then learns it from the packets' times: over each window of
	// NewFlowWindow, the packets that flows born in the window sent, over the time those
	// flows have lived in it; the prediction is the latest such measure (a window with no
	// new flow keeps the previous one). A new flow is then counted at what new flows
	// actually cost, not at a constant that can be orders of magnitude off.
	NewFlowRate float64
	// MaxFlowRate caps a flowlet's predicted rate (0: no cap). A young flow's rate measured
	// over its first burst can exceed a whole unit; the engine caps it at what one unit
	// takes, so that such a flowlet fills a unit rather than fitting nowhere.
	MaxFlowRate float64
	// Tick is the controller's period (default 10ms). Under a per-packet policy, whose
	// units hold no flows, the controller zeroes each unit's Load at every tick and the
	// root adds 1/Tick per packet it sends to a unit, so that Load is the rate the unit
	// was sent since the tick and the policy balances packets.
	Tick time.Duration
	// ByInitiator dispatches by the address that opened each flow instead of by flow: every
	// flow an address opens goes to one unit, which then owns that address's Scoped state
	// (a scan detector's per-source walk, a trojan detector's per-host sequence). Such a group
	// stays on its unit while it has flows (its flowlets do not move: Scoped state has no
	// handover yet); a group whose flows all ended is placed anew.
	ByInitiator bool
}

// Mover is implemented by policies that move a flow between units at flowlet boundaries
// (snf). The root then moves the idle flows of a draining unit away (Evacuate), so that the
// unit can be retired without waiting for its flows to end.
type Mover interface {
	MovesFlows() bool
}

// group is the flows one address opened (ByInitiator).
type group struct {
	unit  int32
	flows int32
}

type addrKey struct {
	a  [16]byte
	v6 bool
}

// Stats counts what the root did.
type Stats struct {
	Packets, Flows, Flowlets, Handovers, ScaleOuts uint64
	// Evacuated counts the handovers of idle flows moved off draining units (Evacuate).
	Evacuated uint64
	// Sent counts packets sent to each unit.
	Sent []uint64
}

// Root dispatches packets. Not safe for concurrent use: one goroutine drives it.
type Root struct {
	cfg   Config
	table *flowtable.Table
	unit  []int32  // by flow index: the unit holding the flow's state, -1 for none
	ids   []uint64 // by flow index: the flow's id (stamped on its packets)
	hash  []uint64 // by flow index: the flow's key hash, computed once per flow
	held  []int    // by unit: the root's live flows whose state the unit holds
	// The flows each unit holds, as intrusive doubly linked lists (by flow index; -1 ends
	// them), so that Evacuate visits only the draining unit's flows.
	uhead        []int32 // by unit
	uprev, unext []int32 // by flow index
	clock        uint64
	next         uint64 // next flow id
	seq          uint64 // tombstone sequence
	// newRate is the rate predicted for a new flow (learnt; see Config.NewFlowRate) over
	// windows starting at winStart: youngFlows flows were born in the current one, at
	// times summing to youngBorn, and sent youngPackets packets.
	newRate               float64
	pktWeight             float64 // 1/Tick: a packet's share of a per-packet unit's Load
	winStart              int64
	youngFlows, youngPkts uint64
	youngBorn             float64
	stats                 Stats
	// tomb remembers the unit of flows the root forgot (idle past the timeouts), by
	// canonical key: when such a flow comes back, its first flowlet is handed over from that
	// unit, so that its new packets cannot overtake old ones still queued there. Bounded by
	// maxTomb; beyond it the oldest memories go first, and only those flows lose the
	// guarantee (their previous packets are then long gone in practice).
	tomb    map[packet.Key]tombstone
	maxTomb int
	groups  map[addrKey]*group
}

type tombstone struct {
	unit int32
	id   uint64 // the flow keeps its id: a unit may still hold its old packets under it
	seq  uint64
}

// New returns a root.
func New(cfg Config) *Root {
	if cfg.NewFlowRate <= 0 {
		cfg.NewFlowRate = 100
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	r := &Root{cfg: cfg, tomb: map[packet.Key]tombstone{}, groups: map[addrKey]*group{}, newRate: cfg.NewFlowRate,
		pktWeight: 1 / cfg.Tick.Seconds()}
	r.maxTomb = cfg.MaxFlows
	if r.maxTomb <= 0 {
		r.maxTomb = flowtable.DefaultMaxFlows
	}
	r.maxTomb = max(r.maxTomb/4, 1024)
	to := cfg.Timeouts
	for i := range to {
		if to[i] <= 0 {
			to[i] = flowtable.DefaultTimeouts[i] // what a unit's table uses for a zero class
		}
	}
	r.table = flowtable.New(flowtable.Config{MaxFlows: cfg.MaxFlows, FlowletGap: int64(cfg.FlowletGap), Timeouts: to,
		OnRemove: r.forget})
	r.stats.Sent = make([]uint64, len(cfg.Pool.Units))
	r.held = make([]int, len(cfg.Pool.Units))
	r.uhead = make([]int32, len(cfg.Pool.Units))
	for u := range r.uhead {
		r.uhead[u] = -1
	}
	return r
}

// Clock returns the last clock stamped.
func (r *Root) Clock() uint64 { return r.clock }

// Stats returns the root's counters (Sent is shared: copy it to keep it).
func (r *Root) Stats() Stats { return r.stats }

// NewFlowRate returns the rate the root now predicts for a new flow (Config.NewFlowRate).
func (r *Root) NewFlowRate() float64 { return r.newRate }

// FlowStats returns the root's flow-table counters.
func (r *Root) FlowStats() flowtable.Stats { return r.table.Stats() }

// noKey is the key of the flow of every malformed and non-IP packet (Dispatch).
var noKey packet.Key

// Dispatch stamps p and sends it to a unit through t.
func (r *Root) Dispatch(p *packet.Packet, t Target) {
	r.clock++
	p.Clock = r.clock
	r.stats.Packets++
	// Malformed and non-IP packets have no flow: they share the zero key's flow, so they keep
	// their order on one unit.
	// (By pointer, not a copy: the copy's overlapping 16-byte stores make the hash's 8-byte
	// load of Dst fail store-to-load forwarding, which then waits for every older store — the
	// previous packets' batch writes, lines another core last wrote: 38 % of the root's
	// samples were in keyIndex.hash, BENCHMARKS.md "Eighteenth session".)
	key := &noKey
	if p.IP() {
		key = &p.Key
	}
	r.table.Expire(p.Time)
	f, _, created := r.table.LookupRef(key, p.Time)
	i := f.Index()
	if int(i) >= len(r.unit) {
		r.grow(int(i) + 1)
	}
	if created {
		r.next++
		r.ids[i], r.unit[i], r.hash[i] = r.next, -1, key.Hash()
		r.stats.Flows++
		if len(r.tomb) > 0 {
			ck, _ := key.Canonical()
			if ts, ok := r.tomb[ck]; ok {
				// The flow's new life starts where its old one ended, under the same id.
				r.setUnit(i, int(ts.unit))
				r.ids[i] = ts.id
				delete(r.tomb, ck)
			}
		}
	}
	p.Flow = r.ids[i]
	r.learn(f, created, p.Time)
	cur := int(r.unit[i])
	if r.cfg.ByInitiator {
		if created {
			cur = r.joinGroup(f, i, cur, t)
		} else if f.NewFlowlet() {
			r.stats.Flowlets++
		}
		r.stats.Sent[cur]++
		t.Send(cur, p)
		return
	}
	if f.NewFlowlet() || r.cfg.Policy.PerPacket() || cur < 0 {
		if f.NewFlowlet() {
			r.stats.Flowlets++
		}
		u := r.place(f, r.hash[i], cur, created, t)
		if cur >= 0 && u != cur && !r.cfg.Policy.PerPacket() {
			r.stats.Handovers++
			t.Handover(f.Key, r.ids[i], cur, u)
		}
		r.setUnit(i, u)
		cur = u
	}
	r.stats.Sent[cur]++
	t.Send(cur, p)
}

// newFlowWindow is the window over which the root measures what new flows cost.
const newFlowWindow = int64(10 * time.Millisecond)

// learn accounts a packet of flow f at time now for the prediction of new flows' rate.
func (r *Root) learn(f *flowtable.Flow, created bool, now int64) {
	if r.stats.Packets == 1 {
		r.winStart = now
	}
	if now-r.winStart >= newFlowWindow {
		if r.youngFlows > 0 {
			if life := float64(r.youngFlows)*float64(now) - r.youngBorn; life > 0 {
				r.newRate = float64(r.youngPkts) / (life / 1e9)
			}
		}
		r.winStart, r.youngFlows, r.youngPkts, r.youngBorn = now, 0, 0, 0
	}
	if created {
		r.youngFlows++
		r.youngBorn += float64(now)
	}
	if f.First >= r.winStart {
		r.youngPkts++
	}
}

// joinGroup places a new flow with the flows its initiator opened before (ByInitiator).
func (r *Root) joinGroup(f *flowtable.Flow, i int32, cur int, t Target) int {
	r.stats.Flowlets++
	g := r.groups[initiator(f)]
	if g == nil {
		// A group keeps the unit a tombstone remembers for this flow, if any: its old
		// packets may still be queued there.
		u := cur
		if u < 0 {
			u = r.place(f, r.hash[i], -1, true, t)
		}
		g = &group{unit: int32(u)}
		r.groups[initiator(f)] = g
	} else if cur >= 0 && cur != int(g.unit) {
		r.stats.Handovers++ // a forgotten flow comes back to a group living elsewhere
		t.Handover(f.Key, r.ids[i], cur, int(g.unit))
	}
	g.flows++
	r.setUnit(i, int(g.unit))
	return int(g.unit)
}

func initiator(f *flowtable.Flow) addrKey {
	return addrKey{f.Key.Src, f.Key.V6}
}

// forget records the unit of a flow leaving the root's table.
func (r *Root) forget(f *flowtable.Flow, _ int64, _ bool) {
	u := r.unit[f.Index()]
	if u < 0 {
		return
	}
	r.held[u]--
	r.unlinkUnit(f.Index(), int(u))
	r.unit[f.Index()] = -1
	if r.cfg.ByInitiator {
		if g := r.groups[initiator(f)]; g != nil {
			if g.flows--; g.flows <= 0 {
				delete(r.groups, initiator(f))
			}
		}
	}
	if len(r.tomb) >= r.maxTomb {
		r.evictTombs()
	}
	r.seq++
	ck, _ := f.Key.Canonical()
	r.tomb[ck] = tombstone{unit: u, id: r.ids[f.Index()], seq: r.seq}
}

// evictTombs drops the older half of the tombstones (rare: a batch of work every maxTomb/2
// forgotten flows).
func (r *Root) evictTombs() {
	cut := r.seq - uint64(len(r.tomb))/2
	for k, t := range r.tomb {
		if t.seq <= cut {
			delete(r.tomb, k)
		}
	}
}

// place asks the policy for a unit, activating one when it asks and the engine can.
func (r *Root) place(f *flowtable.Flow, hash uint64, cur int, first bool, t Target) int {
	rate := r.newRate
	if d := f.Last - f.First; !first && d > 0 {
		rate = float64(f.Packets) / (float64(d) / 1e9)
		if r.cfg.MaxFlowRate > 0 {
			rate = min(rate, r.cfg.MaxFlowRate)
		}
	}
	if r.cfg.MaxFlowRate > 0 {
		rate = min(rate, r.cfg.MaxFlowRate)
	}
	// Load model: at each tick the controller sets every unit's Load to the rate it was
	// sent over the tick (measured); between ticks the root moves the predicted rate of
	// each flow whose new flowlet it places from the flow's unit to the chosen one. The
	// flow's rate is in its unit's Load already (it was sending there), so it is taken out
	// before the policy looks (the pool's contract: Load never counts the flowlet being
	// placed) and put back where the flowlet goes: a flowlet that stays changes nothing,
	// one that moves shifts its rate, a new flow adds its first guess.
	perPacket := r.cfg.Policy.PerPacket()
	if cur >= 0 && !perPacket && !math.IsInf(rate, 0) {
		l := &r.cfg.Pool.Units[cur].Load
		*l = max(0, *l-rate)
	}
	fl := policy.Flowlet{Hash: hash, Rate: rate, Current: cur, First: first}
	d := r.cfg.Policy.Place(fl, r.cfg.Pool)
	if d.ScaleOut || d.Unit < 0 {
		if u := t.ScaleOut(); u >= 0 {
			r.stats.ScaleOuts++
			if d2 := r.cfg.Policy.Place(fl, r.cfg.Pool); d2.Unit >= 0 {
				d = d2
			}
		}
	}
	u := d.Unit
	if u < 0 {
		u = 0 // no active unit at all: the engine keeps unit 0 active, so this is a bug guard
	}
	// The flowlet's rate goes to its unit; under a per-packet policy the packet's weight.
	switch l := &r.cfg.Pool.Units[u].Load; {
	case perPacket:
		*l += r.pktWeight
	case !math.IsInf(rate, 0):
		*l += rate
	}
	return u
}

// LearnAlias makes packets with key alias belong to the flow of the packet with key from,
// in the direction opposite to it (forget: no longer). Units report the reply keys their NFs
// announce (a NAT's translated reply), so that a reply addressed to the NAT's public address
// goes to the unit holding its flow. A flow the root no longer has is ignored.
func (r *Root) LearnAlias(from, alias packet.Key, forget bool) {
	f, dir, ok := r.table.Find(from)
	if !ok {
		return
	}
	if forget {
		r.table.Unalias(f, alias)
		return
	}
	r.table.Alias(f, alias, dir^1)
}

// setUnit records that flow i's state is on unit u (-1: none).
func (r *Root) setUnit(i int32, u int) {
	old := r.unit[i]
	if int(old) == u {
		return
	}
	if old >= 0 {
		r.held[old]--
		r.unlinkUnit(i, int(old))
	}
	if u >= 0 {
		r.held[u]++
		h := r.uhead[u]
		r.uprev[i], r.unext[i] = -1, h
		if h >= 0 {
			r.uprev[h] = i
		}
		r.uhead[u] = i
	}
	r.unit[i] = int32(u)
}

// unlinkUnit takes flow i out of unit u's list.
func (r *Root) unlinkUnit(i int32, u int) {
	p, n := r.uprev[i], r.unext[i]
	if p >= 0 {
		r.unext[p] = n
	} else {
		r.uhead[u] = n
	}
	if n >= 0 {
		r.uprev[n] = p
	}
	r.uprev[i], r.unext[i] = -1, -1
}

// Held returns the number of live flows whose state unit u holds (by the root's table: a
// flow leaves it when it idles past its timeout, as it leaves the unit's). A unit holding
// none can be retired without losing state.
func (r *Root) Held(u int) int { return r.held[u] }

// Evacuate moves the idle flows of unit u — those whose latest flowlet ended (no packet
// for more than the flowlet gap before now) — to the units the policy chooses, each with a
// handover, and returns how many moved. The engine calls it for a draining unit under a
// policy that moves flows (Mover); a flowlet still running finishes where it is, and its
// flow moves at a later call. With busy, running flowlets move too: their packets after the
// handover wait at the new unit for the state, which the old unit sends once it has served
// the packets it was sent before (the flow's order holds; the move costs those packets the
// wait). Flows of an initiator group (ByInitiator) stay: their Scoped state cannot move.
// Cost: the flows unit u holds are visited (most recently placed first).
func (r *Root) Evacuate(u int, now int64, t Target, busy bool) int {
	if r.cfg.ByInitiator || r.held[u] == 0 {
		return 0
	}
	moved := 0
	idle := now - int64(r.table.FlowletGap())
	if busy {
		idle = math.MaxInt64
	}
	for i := r.uhead[u]; i >= 0; {
		next := r.unext[i]
		f := r.table.Flow(i)
		if f.Last >= idle {
			i = next
			continue
		}
		fl := policy.Flowlet{Hash: r.hash[i], Current: u}
		d := r.cfg.Policy.Place(fl, r.cfg.Pool)
		if d.Unit >= 0 && d.Unit != u {
			r.stats.Handovers++
			r.stats.Evacuated++
			t.Handover(f.Key, r.ids[i], u, d.Unit)
			r.setUnit(i, d.Unit)
			moved++
		} // else nowhere to go now: it stays until the next call
		i = next
	}
	return moved
}

func (r *Root) grow(n int) {
	n = max(n, 2*len(r.unit), 1024)
	r.unit = append(r.unit, make([]int32, n-len(r.unit))...)
	r.ids = append(r.ids, make([]uint64, n-len(r.ids))...)
	r.hash = append(r.hash, make([]uint64, n-len(r.hash))...)
	for len(r.uprev) < n {
		r.uprev, r.unext = append(r.uprev, -1), append(r.unext, -1)
	}
}
