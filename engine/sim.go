package engine

// The simulation engine: the same root, policy, controller and chains as RunLive, driven in
// virtual time by discrete events on one goroutine (DESIGN.md, "Two engines, one core").

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/control"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/root"
	"github.com/snf-dev/snf/store"
)

// SimConfig configures a simulated elastic run. Zero values take the defaults named.
type SimConfig struct {
	Spec   *snf.ChainSpec
	In     port.Reader // packets with their times (a capture, a generator)
	Out    port.Writer // nil discards; packets are written in order of departure
	Policy policy.Policy
	// MinUnits and MaxUnits bound the pool (static runs all MaxUnits).
	MinUnits, MaxUnits int
	FlowletGap         time.Duration
	// Speed scales capture time: a packet captured d after the first one arrives d/Speed
	// after it in virtual time (0: 1). Packet times are rewritten to the virtual arrival
	// times, so the root, the chains and the output all see one clock.
	Speed float64
	// Capacity is the packets/s one unit sustains (the mean service time is 1/Capacity); 0
	// calibrates with Calibrate (measured: a run that must be reproducible gives it).
	Capacity float64
	// ServiceRate is the packets/s a unit actually serves, when it differs from the Capacity
	// the controller plans with (0: Capacity). A run that models the live engine with an
	// artificial --capacity (units planned at 2,000 packets/s that really serve millions)
	// sets it to the chain's calibrated speed.
	ServiceRate float64
	Target      float64       // utilisation a unit is filled to (default 0.8)
	Tick        time.Duration // controller period in virtual time (default 10ms)
	// ScaleOuts is the most units the controller activates between two ticks (default 1).
	ScaleOuts int
	// ScaleOnMeasured: the pool grows only when the load measured over the last tick no
	// longer fits the units taking work at Target (control.Config.ScaleOnMeasured). It
	// applies to policies that can give a flowlet to any unit with room — those that move
	// flows (snf) or place every packet (perpacket) — not to sticky hashing (perflow), whose
	// flows cannot go where the room is.
	ScaleOnMeasured bool
	// BusyAfter: a unit draining for this many ticks has its running flowlets moved too
	// (control.Config.BusyAfter; 0: only idle flows move).
	BusyAfter int
	// MaxBacklog: a unit with more than this much work queued (in time at Capacity) takes
	// no new flowlet, and the pool may grow when every unit is so (policy.Pool.MaxBacklog).
	// 0: off.
	MaxBacklog time.Duration
	// Batch is the most packets a unit takes from its queue at once (default DefaultBatch).
	// Each packet still gets its own service time and departure time.
	Batch int
	// QueueLimit bounds each unit's input queue, in packets (default 4096); a packet that
	// finds its unit's queue full is dropped (counted).
	QueueLimit int
	// Service is the distribution of a packet's service time around the mean 1/Capacity:
	// ServiceLognormal (default) with coefficient of variation CV (0: every packet takes
	// the mean), or ServiceExponential (CV 1).
	Service ServiceDist
	CV      float64
	// ColdStart is how long a unit activated during the run serves nothing (default 1ms;
	// negative: none). The initial pool is warm.
	ColdStart time.Duration
	// TransferBase and Bandwidth model a handover: a flow's state reaches its new unit
	// TransferBase + bytes/Bandwidth after the old unit served the flow's last packet sent to
	// it (defaults 5µs and 1.25e9 bytes/s, 10 Gb/s; negative TransferBase: none).
	TransferBase time.Duration
	Bandwidth    float64
	// StoreRTT is added to every packet's latency under a per-packet policy, whose flow
	// state lives in the store: read before the packet, written after (pipelined, so it
	// delays the packet, not the unit). 0: none.
	StoreRTT time.Duration
	// Pipeline models the live engine's goroutine pipeline (batches, hand-offs; see
	// Pipeline). The zero value leaves it out.
	Pipeline Pipeline
	// SLO is the latency objective packets are counted against (default 1ms).
	SLO time.Duration
	// OracleWindow is the window over which the oracle's offered load is measured (default
	// 1ms): in each window, the fewest units whose full capacity covers the packets that
	// arrived in it (at least 1).
	OracleWindow time.Duration
	// Seed seeds the service-time draws: same seed and input, same results.
	Seed     uint64
	Store    store.Store // shared state (default: a new embedded store)
	Alerts   snf.AlertSink
	MaxFlows int
	// OnDone, if set, is called with the chain of every unit that ever ran (nil for those
	// that never did) after the run, before they close.
	OnDone func(chains []*snf.Chain)
}

// ServiceDist is a service-time distribution.
type ServiceDist uint8

const (
	ServiceLognormal ServiceDist = iota
	ServiceExponential
)

// SimSummary is what a simulated run did. Its LiveSummary fields mean what they mean for
// RunLive, except Elapsed, which is virtual time (first arrival to last departure; PPS is
// then the offered rate); Wall is the only wall-clock field.
type SimSummary struct {
	LiveSummary
	// Dropped counts packets that found their unit's queue full.
	Dropped uint64
	// OverSLO counts packets out whose latency exceeded SLO; OverSLOFrac is its share.
	OverSLO     uint64
	OverSLOFrac float64
	SLO         time.Duration
	// LatencyFromRoot is the latency from the root's release of a packet (its unit's batch
	// flushed) to its departure: the span RunLive's Latency measures. It differs from
	// Latency only with a Pipeline (without one a packet leaves the root as it arrives).
	LatencyFromRoot Percentiles
	// LatencyMean is the mean latency (departure - arrival) of the packets out;
	// ServiceMean the mean service time drawn per packet served.
	LatencyMean, ServiceMean time.Duration
	// OracleUnitSeconds integrates, over OracleWindow windows, the fewest units whose full
	// capacity covers the packets that arrived in the window (at least 1), over the same span
	// as UnitSeconds. OracleRatio is UnitSeconds / OracleUnitSeconds.
	OracleUnitSeconds, OracleRatio float64
	HandoversPerSec                float64
	// Ticks is the controller's timeline with the simulator's counters per interval.
	Ticks []SimSample
	// LatencyCDF is the distribution of the latencies of the packets out: for each bucket
	// of the latency histogram that holds packets (8 per power of two), its upper bound
	// and the share of packets up to it, increasing.
	LatencyCDF []CDFPoint
	Wall       time.Duration
}

// CDFPoint is a point of a cumulative distribution: the share of values up to Value.
type CDFPoint struct {
	Value    time.Duration
	Fraction float64
}

// cdf returns d's distribution by bucket upper bounds.
func (d *durations) cdf() []CDFPoint {
	if d.n == 0 {
		return nil
	}
	var out []CDFPoint
	var acc uint64
	for b, c := range d.bucket {
		if c == 0 {
			continue
		}
		acc += c
		out = append(out, CDFPoint{Value: bucketValue(b+1) - 1, Fraction: float64(acc) / float64(d.n)})
	}
	return out
}

// SimSample is one controller interval.
type SimSample struct {
	At        time.Duration // end of the interval, since the start
	Active    int
	Offered   float64 // packets/s sent to the units in the interval
	Oracle    int     // ceil(Offered / Capacity), at least 1
	Handovers uint64  // in the interval
	Dropped   uint64  // in the interval
	// Out and OverSLO count the packets that left in the interval, and those of them whose
	// latency exceeded the SLO.
	Out, OverSLO uint64
}

// Event kinds.
const (
	evDone  = iota // a unit finished what it took: serve more
	evState        // a flow's state reaches a unit
)

type event struct {
	t    int64
	seq  uint64
	kind uint8
	unit int32
	arg  int32
}

// events is a binary min-heap of events by (t, seq).
type events []event

func (h events) less(i, j int) bool {
	return h[i].t < h[j].t || (h[i].t == h[j].t && h[i].seq < h[j].seq)
}

func (h *events) push(e event) {
	*h = append(*h, e)
	a := *h
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !a.less(i, p) {
			break
		}
		a[i], a[p] = a[p], a[i]
		i = p
	}
}

func (h *events) pop() event {
	a := *h
	e := a[0]
	n := len(a) - 1
	a[0] = a[n]
	*h = a[:n]
	a = a[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && a.less(r, l) {
			m = r
		}
		if !a.less(m, i) {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	return e
}

// ring is a unit's queue of entries: a packet slot (>= 0) or a control (^index).
type ring = fifo[int32]

// output is a packet that left a unit's chain, waiting for its departure.
type output struct {
	slot int32
	dep  int64
}

// outq is a unit's outputs in order of departure (a unit serves in order).
type outq = fifo[output]

// Control kinds in a unit's queue.
const (
	ctlMarker = iota + 1 // ship the flow's state to peer (after the entries before it)
	ctlExpect            // the flow's state comes from peer: hold its packets until then
	ctlShip              // ship the flow's state to peer now (a stay closed by a Marker, after its held packets)
)

type simCtl struct {
	kind uint8
	key  packet.Key
	flow uint64
	peer int32
}

// simState is a flow's state in transit.
type simState struct {
	key  packet.Key
	flow uint64
	data []byte
	nil_ bool // the old unit held no state for the flow
	sent int64
}

// segment is one stay of a flow at a unit waiting for its state (as unit.segment).
type segment struct {
	state   int32 // the state's index, -1 until it arrived
	held    []int32
	heldAt  int64 // when the first packet was held
	moveTo  int32 // -1 until a Marker closes the segment
	arrived bool
}

type pendingFlow struct {
	key   packet.Key
	segs  []*segment
	early []int32 // states that arrived before their Expect
}

type simUnit struct {
	id        int
	chain     *snf.Chain
	active    bool  // as the engine last saw the pool
	busyUntil int64 // virtual time the unit is free (after what it took, or its cold start)
	scheduled bool  // an evDone is in the heap
	q         ring  // arrived packets and controls
	prio      ring  // packets released by an arrived state (and the marker closing their stay), served first
	queued    int   // packets in q
	pending   map[uint64]*pendingFlow
	outs      outq
	heapPos   int       // position in the egress heap, -1 when not in it
	pu        *pipeUnit // with a Pipeline
}

type sim struct {
	cfg       SimConfig
	ctx       context.Context
	r         *root.Root
	ctl       *control.Controller
	pool      *policy.Pool
	st        store.Store
	units     []*simUnit
	now       int64 // virtual time of the event being handled (absolute ns)
	t0        int64
	ev        events
	seq       uint64
	perPacket bool

	pkts []packet.Packet // packet slots
	arr  []int64         // by slot: arrival time
	free []int32

	ctls     []simCtl
	freeCtl  []int32
	states   []simState
	freeSt   []int32
	freeSegs []*segment
	freePend []*pendingFlow

	flowStore map[packet.Key][]byte // perpacket: the flows' state "in the store"

	rng                 *rand.Rand
	meanNs, mu, sigma   float64
	dist                ServiceDist
	transferNs, bwBytes float64

	// egress
	eheap   []*simUnit // units with outputs, by the departure of their first
	wbuf    []*packet.Packet
	wslots  []int32
	out     port.Writer
	outErr  error
	order   flowOrder
	lat     durations
	latSum  float64
	svcSum  float64
	served  uint64
	written uint64
	overSLO uint64
	slo     int64
	lastDep int64

	waits, heldWaits durations
	held             uint64
	bytesMoved       uint64
	dropped          uint64
	storeReads       uint64
	storeWrites      uint64

	outBuf []*packet.Packet

	// oracle
	window  int64
	windows []uint32

	ticks    []SimSample
	end      int64
	inputErr error

	pl *simPipe // nil without a Pipeline
}

// RunSim runs cfg.In through the chain on a simulated elastic pool, in virtual time.
func RunSim(ctx context.Context, cfg SimConfig) (SimSummary, error) {
	wallStart := time.Now()
	if err := simDefaults(&cfg); err != nil {
		return SimSummary{}, err
	}
	s := &sim{cfg: cfg, ctx: ctx, perPacket: cfg.Policy.PerPacket(), out: cfg.Out,
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed5eed)), dist: cfg.Service,
		slo: int64(cfg.SLO), window: int64(cfg.OracleWindow)}
	s.meanNs = 1e9 / cfg.Capacity
	if cfg.ServiceRate > 0 {
		s.meanNs = 1e9 / cfg.ServiceRate
	}
	if cfg.Service == ServiceLognormal && cfg.CV > 0 {
		s.sigma = math.Sqrt(math.Log1p(cfg.CV * cfg.CV))
		s.mu = math.Log(s.meanNs) - s.sigma*s.sigma/2
	}
	if cfg.Pipeline.On() {
		s.pl = newSimPipe(cfg.Pipeline, cfg.Seed)
	}
	s.transferNs = float64(cfg.TransferBase)
	s.bwBytes = cfg.Bandwidth / 1e9 // bytes per ns
	s.st = cfg.Store
	if s.st == nil {
		s.st = store.NewEmbedded()
		defer s.st.Close()
	}
	if s.perPacket {
		s.flowStore = map[packet.Key][]byte{}
	}
	s.order = newFlowOrder(1 << 18)
	s.pool = &policy.Pool{Target: cfg.Target, MaxBacklog: cfg.MaxBacklog.Seconds() * cfg.Capacity}
	s.ctl = control.New(control.Config{MinUnits: cfg.MinUnits, MaxUnits: cfg.MaxUnits, Target: cfg.Target,
		Capacity: cfg.Capacity, Elastic: cfg.Policy.Elastic(), Stateless: s.perPacket, ScaleOuts: cfg.ScaleOuts,
		ScaleOnMeasured: cfg.ScaleOnMeasured && (s.perPacket || movesFlows(cfg.Policy)), BusyAfter: cfg.BusyAfter})
	for i := range cfg.MaxUnits {
		a := s.ctl.Initial(i)
		s.units = append(s.units, &simUnit{id: i, active: a, heapPos: -1})
		s.pool.Units = append(s.pool.Units, policy.UnitView{ID: i, Active: a, Capacity: cfg.Capacity})
	}
	// Unit 0's chain is made at once: the root needs the chain's timeouts and scopes.
	if err := s.makeChain(s.units[0]); err != nil {
		return SimSummary{}, err
	}
	defer func() {
		for _, u := range s.units {
			if u.chain != nil {
				u.chain.Close()
			}
		}
	}()
	c0 := s.units[0].chain
	s.r = root.New(root.Config{Policy: cfg.Policy, Pool: s.pool, FlowletGap: cfg.FlowletGap,
		MaxFlows: cfg.MaxFlows, Timeouts: c0.FlowTimeouts(), ByInitiator: len(c0.Scopes()) > 0,
		MaxFlowRate: cfg.Target * cfg.Capacity, Tick: cfg.Tick})

	runErr := s.loop()

	sum := s.summary()
	sum.Wall = time.Since(wallStart)
	if cfg.OnDone != nil {
		chains := make([]*snf.Chain, len(s.units))
		for i, u := range s.units {
			chains[i] = u.chain
		}
		cfg.OnDone(chains)
	}
	if runErr == nil && s.outErr != nil {
		runErr = fmt.Errorf("write output: %w", s.outErr)
	}
	return sum, runErr
}

func simDefaults(cfg *SimConfig) error {
	if cfg.Policy == nil {
		return errors.New("engine: no policy")
	}
	if cfg.Spec == nil {
		return errors.New("engine: no chain")
	}
	if cfg.In == nil {
		return errors.New("engine: no input")
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.MaxUnits < 1 {
		cfg.MaxUnits = 1
	}
	cfg.MinUnits = min(max(cfg.MinUnits, 1), cfg.MaxUnits)
	if !(cfg.Target > 0 && cfg.Target <= 1) {
		cfg.Target = 0.8
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	if !(cfg.Speed > 0) || math.IsInf(cfg.Speed, 0) {
		cfg.Speed = 1
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 4096
	}
	if cfg.CV < 0 || math.IsNaN(cfg.CV) {
		return fmt.Errorf("engine: service CV %v < 0", cfg.CV)
	}
	if pl := cfg.Pipeline; pl.RootCost < 0 || pl.ReadWake < 0 || pl.Handoff < 0 || pl.BatchCost < 0 || !(pl.HandoffCV >= 0) || math.IsInf(pl.HandoffCV, 0) {
		return fmt.Errorf("engine: pipeline %+v: want durations >= 0 and a finite CV >= 0", pl)
	}
	switch {
	case cfg.ColdStart == 0:
		cfg.ColdStart = time.Millisecond
	case cfg.ColdStart < 0:
		cfg.ColdStart = 0
	}
	switch {
	case cfg.TransferBase == 0:
		cfg.TransferBase = 5 * time.Microsecond
	case cfg.TransferBase < 0:
		cfg.TransferBase = 0
	}
	if !(cfg.Bandwidth > 0) {
		cfg.Bandwidth = 1.25e9
	}
	if cfg.SLO <= 0 {
		cfg.SLO = time.Millisecond
	}
	if cfg.OracleWindow <= 0 {
		cfg.OracleWindow = time.Millisecond
	}
	if cfg.Capacity <= 0 {
		c, err := Calibrate(cfg.Spec, 20000)
		if err != nil {
			return err
		}
		cfg.Capacity = c
	}
	return nil
}

func (s *sim) makeChain(u *simUnit) error {
	c, err := snf.NewChain(s.cfg.Spec, snf.ChainOptions{Store: s.st, Unit: uint32(u.id), Alerts: s.cfg.Alerts, MaxFlows: s.cfg.MaxFlows})
	if err != nil {
		return err
	}
	u.chain = c
	return nil
}

// unit returns unit i with its chain made (units that never run make none).
func (s *sim) unit(i int) *simUnit {
	u := s.units[i]
	if u.chain == nil {
		if err := s.makeChain(u); err != nil {
			// The spec built unit 0's chain: another instance of it cannot fail but for
			// resources.
			panic("engine: sim: " + err.Error())
		}
	}
	return u
}

func (s *sim) schedule(t int64, kind uint8, unit, arg int32) {
	s.seq++
	s.ev.push(event{t: t, seq: s.seq, kind: kind, unit: unit, arg: arg})
}

// loop runs the events: arrivals from the input, units' service, states in transit and the
// controller's ticks, in time order (ties: heap events, then the tick, then arrivals).
func (s *sim) loop() error {
	var (
		batch           = make([]packet.Packet, DefaultBatch)
		n, i            int
		inErr, runErr   error
		inDone, started bool
		prevIn, first   int64
		nextTick        int64
		lastTick        int64
		mover           bool
		prevPkts        uint64
		prevHand        uint64
		prevDrop        uint64
		prevOut, prevOv uint64
	)
	if m, ok := s.cfg.Policy.(root.Mover); ok {
		mover = m.MovesFlows()
	}
	tick := func(at int64, final bool) {
		dt := at - lastTick
		if dt <= 0 {
			return
		}
		lastTick = at
		active := 0
		for k := range s.pool.Units {
			if s.pool.Units[k].Active {
				active++
			}
		}
		rs := s.r.Stats()
		offered := float64(rs.Packets-prevPkts) / (float64(dt) / 1e9)
		s.ctl.Tick(time.Duration(at-s.t0), time.Duration(dt), s.pool, rs.Sent, s.r.Held)
		for k, u := range s.units {
			if !s.pool.Units[k].Active {
				u.active = false
			}
		}
		if mover && !final { // the last tick moves nothing: the run is over
			s.ctl.Draining(s.pool, func(u int, busy bool) { s.r.Evacuate(u, at, s, busy) })
		}
		rs = s.r.Stats()
		s.ticks = append(s.ticks, SimSample{At: time.Duration(at - s.t0), Active: active, Offered: offered,
			Oracle:    max(1, int(math.Ceil(offered/s.cfg.Capacity-1e-9))),
			Handovers: rs.Handovers - prevHand, Dropped: s.dropped - prevDrop,
			Out: s.written - prevOut, OverSLO: s.overSLO - prevOv})
		prevPkts, prevHand, prevDrop = rs.Packets, rs.Handovers, s.dropped
		prevOut, prevOv = s.written, s.overSLO
	}
	port.ReleaseAll(s.cfg.In) // (no frame is read again)
	for {
		for !inDone && i == n {
			if inErr != nil {
				inDone = true
				break
			}
			if err := s.ctx.Err(); err != nil {
				runErr, inDone = err, true
				break
			}
			n, inErr = s.cfg.In.Read(batch)
			i = 0
		}
		var tIn int64 = math.MaxInt64
		if !inDone {
			p := &batch[i]
			if !started {
				started, first, s.t0 = true, p.Time, p.Time
				// The first tick comes after a tenth of a tick (at most 1ms), then every
				// tick: a trace that starts busy has its pool measured and sized at once,
				// not after a whole tick on the initial units.
				prevIn, lastTick, nextTick = p.Time, p.Time, p.Time+min(int64(s.cfg.Tick)/10, int64(time.Millisecond))
			}
			v := first + int64(float64(p.Time-first)/s.cfg.Speed)
			tIn = max(v, prevIn) // virtual time never goes back
		}
		if inDone && s.pl != nil && s.pl.root == rootIdle && len(s.pl.dirty) > 0 {
			s.pipeEndRead() // the input ended (as the live root does): send what the ticks added
		}
		var tEv int64 = math.MaxInt64
		if len(s.ev) > 0 {
			tEv = s.ev[0].t
		}
		if !started || (inDone && tEv == math.MaxInt64) {
			break
		}
		switch {
		case tEv <= tIn && tEv <= nextTick:
			e := s.ev.pop()
			s.release(e.t)
			s.now = e.t
			switch e.kind {
			case evDone:
				u := s.units[e.unit]
				u.scheduled = false
				s.kick(u)
			case evState:
				s.arrive(s.units[e.unit], e.arg)
			default:
				s.pipeEvent(e)
			}
		case nextTick <= tIn:
			// Ticks run while something remains to happen (the break above).
			s.release(nextTick)
			s.now = nextTick
			tick(nextTick, false)
			nextTick += int64(s.cfg.Tick)
		default:
			s.release(tIn)
			s.now, prevIn = tIn, tIn
			p := &batch[i]
			i++
			p.Time = tIn
			if w := int((tIn - s.t0) / s.window); w < len(s.windows) {
				s.windows[w]++
			} else {
				for len(s.windows) < w {
					s.windows = append(s.windows, 0)
				}
				s.windows = append(s.windows, 1)
			}
			if s.pl != nil {
				s.pipeArrive(p)
			} else {
				s.r.Dispatch(p, s)
			}
		}
	}
	if inErr != nil && !errors.Is(inErr, io.EOF) {
		s.inputErr = inErr
	}
	s.release(math.MaxInt64)
	if started {
		s.end = max(s.now, s.lastDep)
		tick(s.end, true)
	}
	return runErr
}

// Send implements root.Target: p joins unit u's queue (or is dropped if it is full).
func (s *sim) Send(ui int, p *packet.Packet) {
	if s.pl != nil {
		s.pipeSend(ui)
		return
	}
	u := s.unit(ui)
	if u.queued >= s.cfg.QueueLimit {
		s.dropped++
		return
	}
	idx := s.alloc()
	s.pkts[idx], *p = *p, s.pkts[idx] // take p's buffer; p gets the slot's old one
	s.arr[idx] = s.now
	u.q.Push(idx)
	u.queued++
	s.pool.Units[ui].Backlog = float64(u.queued)
	s.kick(u)
}

// Handover implements root.Target: a marker after the flow's packets queued at from, an
// expect at to.
func (s *sim) Handover(k packet.Key, flow uint64, from, to int) {
	uf, ut := s.unit(from), s.unit(to)
	if s.pl != nil { // in the units' open batches
		s.pipeEntry(uf, ^s.newCtl(ctlMarker, k, flow, to))
		s.pipeEntry(ut, ^s.newCtl(ctlExpect, k, flow, from))
		return
	}
	uf.q.Push(^s.newCtl(ctlMarker, k, flow, to))
	ut.q.Push(^s.newCtl(ctlExpect, k, flow, from))
	s.kick(uf)
	s.kick(ut)
}

// ScaleOut implements root.Target: an inactive unit activated starts cold.
func (s *sim) ScaleOut() int {
	i := s.ctl.ScaleOut(s.pool)
	if i >= 0 {
		u := s.unit(i)
		if !u.active {
			u.active = true
			u.busyUntil = max(u.busyUntil, s.now+int64(s.cfg.ColdStart))
		}
	}
	return i
}

func (s *sim) alloc() int32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		return i
	}
	s.pkts = append(s.pkts, packet.Packet{})
	s.arr = append(s.arr, 0)
	if s.pl != nil {
		s.pl.rel = append(s.pl.rel, 0)
	}
	return int32(len(s.pkts) - 1)
}

func (s *sim) newCtl(kind uint8, k packet.Key, flow uint64, peer int) int32 {
	var i int32
	if n := len(s.freeCtl); n > 0 {
		i = s.freeCtl[n-1]
		s.freeCtl = s.freeCtl[:n-1]
	} else {
		s.ctls = append(s.ctls, simCtl{})
		i = int32(len(s.ctls) - 1)
	}
	s.ctls[i] = simCtl{kind: kind, key: k, flow: flow, peer: int32(peer)}
	return i
}

// kick makes unit u serve what it has if it is free now, else wakes it when it is.
func (s *sim) kick(u *simUnit) {
	if u.scheduled || (u.q.Len() == 0 && u.prio.Len() == 0) {
		return
	}
	if s.now >= u.busyUntil {
		s.serve(u)
	}
	if (u.q.Len() > 0 || u.prio.Len() > 0) && !u.scheduled {
		s.schedule(max(u.busyUntil, s.now), evDone, int32(u.id), 0)
		u.scheduled = true
	}
}

// serve takes up to Batch packets (and the controls among them) from u, now: each packet
// served gets a service time and leaves when it ends; packets of flows waiting for their
// state are set aside. u is busy until the last one ends.
func (s *sim) serve(u *simUnit) {
	if s.pl != nil {
		s.pipeServe(u)
		return
	}
	cursor := s.now
	servedN := 0
	for servedN < s.cfg.Batch {
		var e int32
		fromPrio := u.prio.Len() > 0
		switch {
		case fromPrio:
			e = u.prio.Pop()
		case u.q.Len() > 0:
			e = u.q.Pop()
		default:
			u.busyUntil = cursor
			return
		}
		if e < 0 {
			s.control(u, ^e, cursor)
			continue
		}
		if !fromPrio {
			u.queued--
			if s.hold(u, e) {
				continue
			}
		}
		cursor += s.draw()
		s.process(u, e, cursor)
		servedN++
	}
	u.busyUntil = cursor
	s.pool.Units[u.id].Backlog = float64(u.queued)
}

// hold sets packet slot e aside if its flow waits for its state at u.
func (s *sim) hold(u *simUnit, e int32) bool {
	if len(u.pending) == 0 {
		return false
	}
	pe, ok := u.pending[s.pkts[e].Flow]
	if !ok || len(pe.segs) == 0 {
		return false
	}
	sg := pe.segs[len(pe.segs)-1]
	if len(sg.held) == 0 {
		sg.heldAt = s.now
		if s.pl != nil {
			sg.heldAt = s.pl.rel[e] // from the root's release, as RunLive measures it
		}
	}
	sg.held = append(sg.held, e)
	s.held++
	return true
}

// draw returns a service time (ns, at least 1).
func (s *sim) draw() int64 {
	var v float64
	switch {
	case s.dist == ServiceExponential:
		v = s.rng.ExpFloat64() * s.meanNs
	case s.sigma > 0:
		v = math.Exp(s.mu + s.sigma*s.rng.NormFloat64())
	default:
		v = s.meanNs
	}
	s.svcSum += v
	s.served++
	if v < 1 {
		return 1
	}
	return int64(v + 0.5)
}

// process runs packet slot e through u's chain; its outputs leave at dep.
func (s *sim) process(u *simUnit, e int32, dep int64) {
	c := u.chain
	p := &s.pkts[e]
	if s.perPacket && p.IP() {
		dep += int64(s.cfg.StoreRTT)
		ck, _ := p.Key.Canonical()
		if data, ok := s.flowStore[ck]; ok {
			_ = c.ImportFlow(data) // a state MoveOut wrote: it imports
		}
		s.storeReads++
		k := p.Key // the NFs may rewrite p
		s.outBuf = c.Process(s.pkts[e:e+1], s.outBuf[:0])
		s.keep(u, e, dep)
		buf, found, err := c.MoveOut(k, s.flowStore[ck][:0])
		switch {
		case err == nil && found:
			s.flowStore[ck] = buf
		default: // the flow ended during the packet: it must not come back
			delete(s.flowStore, ck)
		}
		s.storeWrites++
		return
	}
	s.outBuf = c.Process(s.pkts[e:e+1], s.outBuf[:0])
	s.keep(u, e, dep)
}

// keep queues the outputs of slot e's packet (in s.outBuf) at u's egress, leaving at dep
// (with a Pipeline: staged with their batch, dep the extra delay).
func (s *sim) keep(u *simUnit, e int32, dep int64) {
	kept := false
	for _, o := range s.outBuf {
		slot := e
		if o == &s.pkts[e] {
			kept = true
		} else {
			slot = s.alloc() // an emitted packet: copy it out of the chain's buffer
			s.pkts[slot].CopyFrom(o)
			s.arr[slot] = s.arr[e]
			if s.pl != nil {
				s.pl.rel[slot] = s.pl.rel[e]
			}
		}
		if s.pl != nil {
			u.pu.stage.Push(output{slot: slot, dep: dep})
		} else {
			u.outs.Push(output{slot: slot, dep: dep})
		}
	}
	if !kept {
		s.free = append(s.free, e)
	}
	if s.pl == nil && u.outs.Len() > 0 && u.heapPos < 0 {
		s.eheapPush(u)
	}
}

// control handles a control taken from u's queue at virtual time at.
func (s *sim) control(u *simUnit, ci int32, at int64) {
	c := s.ctls[ci]
	s.ctls[ci] = simCtl{}
	s.freeCtl = append(s.freeCtl, ci)
	switch c.kind {
	case ctlExpect:
		if u.pending == nil {
			u.pending = map[uint64]*pendingFlow{}
		}
		pe, ok := u.pending[c.flow]
		if !ok {
			pe = s.newPending(c.key)
			u.pending[c.flow] = pe
		}
		sg := s.newSegment()
		if len(pe.early) > 0 {
			sg.state, sg.arrived = pe.early[0], true
			pe.early = pe.early[1:]
		}
		pe.segs = append(pe.segs, sg)
		s.advance(u, c.flow, pe)
	case ctlMarker:
		if pe, ok := u.pending[c.flow]; ok && len(pe.segs) > 0 {
			pe.segs[len(pe.segs)-1].moveTo = c.peer // ship on once its state has arrived here
			return
		}
		s.ship(u, c.key, c.flow, int(c.peer), at)
	case ctlShip:
		s.ship(u, c.key, c.flow, int(c.peer), at)
	}
}

// ship moves a flow's state out of u's chain at virtual time at, to reach unit to later.
func (s *sim) ship(u *simUnit, k packet.Key, flow uint64, to int, at int64) {
	var i int32
	if n := len(s.freeSt); n > 0 {
		i = s.freeSt[n-1]
		s.freeSt = s.freeSt[:n-1]
	} else {
		s.states = append(s.states, simState{})
		i = int32(len(s.states) - 1)
	}
	st := &s.states[i]
	data, found, err := u.chain.MoveOut(k, st.data[:0])
	st.key, st.flow, st.sent = k, flow, at
	st.nil_ = err != nil || !found
	if !st.nil_ {
		st.data = data
		s.bytesMoved += uint64(len(data))
	} else {
		st.data = st.data[:0]
	}
	delay := s.transferNs + float64(len(st.data))/s.bwBytes
	if s.pl != nil { // it leaves after the batch (pipeServe)
		s.pl.outbox = append(s.pl.outbox, shipment{st: i, to: int32(to), delay: int64(delay + 0.5)})
		return
	}
	s.schedule(at+int64(delay+0.5), evState, int32(to), i)
}

// arrive handles a state reaching u: it belongs to the flow's first segment still without
// one.
func (s *sim) arrive(u *simUnit, si int32) {
	st := &s.states[si]
	s.waits.add(time.Duration(s.now - st.sent))
	if u.pending == nil {
		u.pending = map[uint64]*pendingFlow{}
	}
	pe, ok := u.pending[st.flow]
	if !ok {
		pe = s.newPending(st.key)
		u.pending[st.flow] = pe
	}
	for _, sg := range pe.segs {
		if !sg.arrived {
			sg.state, sg.arrived = si, true
			s.advance(u, st.flow, pe)
			s.kick(u)
			return
		}
	}
	pe.early = append(pe.early, si)
}

// advance completes the flow's segments whose state has arrived, in order.
func (s *sim) advance(u *simUnit, flow uint64, pe *pendingFlow) {
	for len(pe.segs) > 0 && pe.segs[0].arrived {
		sg := pe.segs[0]
		pe.segs[0] = nil
		pe.segs = pe.segs[1:]
		s.complete(u, pe.key, flow, sg)
	}
	if len(pe.segs) == 0 && len(pe.early) == 0 {
		delete(u.pending, flow)
		pe.segs, pe.early = pe.segs[:0], pe.early[:0]
		s.freePend = append(s.freePend, pe)
	}
}

// complete installs an arrived state; the packets held for it are served first, then the
// flow moves on if a marker closed the segment.
func (s *sim) complete(u *simUnit, k packet.Key, flow uint64, sg *segment) {
	st := &s.states[sg.state]
	if !st.nil_ {
		_ = u.chain.ImportFlow(st.data) // a malformed state is dropped; the flow restarts here
	}
	s.freeSt = append(s.freeSt, sg.state)
	if len(sg.held) > 0 {
		s.heldWaits.add(time.Duration(s.now - sg.heldAt))
		for _, e := range sg.held {
			u.prio.Push(e)
		}
	}
	if sg.moveTo >= 0 {
		u.prio.Push(^s.newCtl(ctlShip, k, flow, int(sg.moveTo)))
	}
	sg.held = sg.held[:0]
	s.freeSegs = append(s.freeSegs, sg)
}

func (s *sim) newSegment() *segment {
	if n := len(s.freeSegs); n > 0 {
		sg := s.freeSegs[n-1]
		s.freeSegs = s.freeSegs[:n-1]
		sg.state, sg.moveTo, sg.arrived, sg.heldAt = -1, -1, false, 0
		return sg
	}
	return &segment{state: -1, moveTo: -1}
}

func (s *sim) newPending(k packet.Key) *pendingFlow {
	if n := len(s.freePend); n > 0 {
		pe := s.freePend[n-1]
		s.freePend = s.freePend[:n-1]
		pe.key = k
		return pe
	}
	return &pendingFlow{key: k}
}

// The egress: a heap of the units that have outputs, by their first output's departure.

func (s *sim) eless(i, j int) bool {
	a, b := s.eheap[i].outs.Front(), s.eheap[j].outs.Front()
	return a.dep < b.dep || (a.dep == b.dep && s.eheap[i].id < s.eheap[j].id)
}

func (s *sim) eswap(i, j int) {
	h := s.eheap
	h[i], h[j] = h[j], h[i]
	h[i].heapPos, h[j].heapPos = i, j
}

func (s *sim) eup(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.eless(i, p) {
			break
		}
		s.eswap(i, p)
		i = p
	}
}

func (s *sim) edown(i int) {
	n := len(s.eheap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s.eless(r, l) {
			m = r
		}
		if !s.eless(m, i) {
			return
		}
		s.eswap(i, m)
		i = m
	}
}

func (s *sim) eheapPush(u *simUnit) {
	u.heapPos = len(s.eheap)
	s.eheap = append(s.eheap, u)
	s.eup(u.heapPos)
}

// release sends out, in order of departure, every output that left before t (no output
// created from now on can leave before t).
func (s *sim) release(t int64) {
	for len(s.eheap) > 0 {
		u := s.eheap[0]
		if u.outs.Front().dep >= t {
			break
		}
		// The next unit's first departure bounds the run taken from u.
		bound := t
		if len(s.eheap) > 1 {
			bound = min(bound, s.eheap[1].outs.Front().dep+1)
			if len(s.eheap) > 2 {
				bound = min(bound, s.eheap[2].outs.Front().dep+1)
			}
		}
		for u.outs.Len() > 0 && u.outs.Front().dep < bound {
			o := *u.outs.Front()
			u.outs.Drop()
			s.egress(o)
		}
		if u.outs.Len() == 0 {
			n := len(s.eheap) - 1
			s.eswap(0, n)
			s.eheap = s.eheap[:n]
			u.heapPos = -1
			if n > 0 {
				s.edown(0)
			}
		} else {
			s.edown(0)
		}
	}
	s.flushOut()
}

// egress accounts one departing packet and buffers it for the output.
func (s *sim) egress(o output) {
	p := &s.pkts[o.slot]
	s.written++
	s.order.see(p)
	l := o.dep - s.arr[o.slot]
	s.lat.add(time.Duration(l))
	if s.pl != nil {
		s.pl.latRel.add(time.Duration(o.dep - s.pl.rel[o.slot]))
	}
	s.latSum += float64(l)
	if l > s.slo {
		s.overSLO++
	}
	s.lastDep = max(s.lastDep, o.dep)
	if s.out == nil {
		s.free = append(s.free, o.slot)
		return
	}
	s.wbuf = append(s.wbuf, p)
	s.wslots = append(s.wslots, o.slot)
	if len(s.wbuf) == cap(s.wbuf) || len(s.wbuf) >= 256 {
		s.flushOut()
	}
}

func (s *sim) flushOut() {
	if len(s.wbuf) == 0 {
		return
	}
	if s.outErr == nil {
		s.outErr = s.out.Write(s.wbuf)
	}
	clear(s.wbuf)
	s.wbuf = s.wbuf[:0]
	s.free = append(s.free, s.wslots...)
	s.wslots = s.wslots[:0]
}

// summary gathers the run's results (no wall clock, no map iteration: deterministic).
func (s *sim) summary() SimSummary {
	var sum SimSummary
	ls := &sum.LiveSummary
	rs := s.r.Stats()
	ls.Packets, ls.Flows, ls.Flowlets, ls.Handovers, ls.Evacuated = rs.Packets, rs.Flows, rs.Flowlets, rs.Handovers, rs.Evacuated
	ls.Written, ls.Reorders, ls.Latency = s.written, s.order.reorders, s.lat.percentiles()
	sum.LatencyFromRoot = ls.Latency
	if s.pl != nil {
		sum.LatencyFromRoot = s.pl.latRel.percentiles()
	}
	ls.Capacity = s.cfg.Capacity
	ls.BytesMoved, ls.Held = s.bytesMoved, s.held
	ls.HandoverWait, ls.HeldWait = s.waits.percentiles(), s.heldWaits.percentiles()
	ls.StoreReads, ls.StoreWrites = s.storeReads, s.storeWrites
	ls.InputErr = s.inputErr
	for _, u := range s.units {
		if u.chain == nil {
			continue
		}
		ls.addChain(u.chain)
	}
	ls.setControl(s.ctl.Summary())
	span := s.end - s.t0
	ls.Elapsed = time.Duration(span)

	sum.Dropped, sum.OverSLO, sum.SLO = s.dropped, s.overSLO, s.cfg.SLO
	if s.written > 0 {
		sum.OverSLOFrac = float64(s.overSLO) / float64(s.written)
		sum.LatencyMean = time.Duration(s.latSum / float64(s.written))
	}
	if s.served > 0 {
		sum.ServiceMean = time.Duration(s.svcSum / float64(s.served))
	}
	if span > 0 {
		perWindow := float64(s.window) / 1e9 * s.cfg.Capacity // packets one unit serves in a window
		for k := int64(0); k*s.window < span; k++ {
			var c float64
			if k < int64(len(s.windows)) {
				c = float64(s.windows[k])
			}
			w := min(s.window, span-k*s.window)
			sum.OracleUnitSeconds += max(1, math.Ceil(c/perWindow-1e-9)) * float64(w) / 1e9
		}
		sum.HandoversPerSec = float64(rs.Handovers) / (float64(span) / 1e9)
	}
	if sum.OracleUnitSeconds > 0 {
		sum.OracleRatio = ls.UnitSeconds / sum.OracleUnitSeconds
	}
	sum.Ticks = s.ticks
	sum.LatencyCDF = s.lat.cdf()
	return sum
}

func movesFlows(p policy.Policy) bool {
	m, ok := p.(root.Mover)
	return ok && m.MovesFlows()
}
