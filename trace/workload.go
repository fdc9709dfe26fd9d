package trace

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

var (
	_ port.Reader    = (*Workload)(nil)
	_ port.LinkTyper = (*Workload)(nil)
	_ port.Releaser  = (*Workload)(nil)
)

// WorkloadConfig configures a Workload: traffic of a link at a given load, with flow sizes
// from a published distribution and a load that changes over time. NewWorkload applies no
// defaults: start from DefaultWorkloadConfig (or ParseWorkload) and change what you need.
type WorkloadConfig struct {
	// Seed seeds the random generator: the same WorkloadConfig gives the same bytes.
	Seed uint64
	// Dist names the flow-size distribution (see DistNames).
	Dist string
	// Profile is the load profile, in the syntax of ParseProfile (see ProfileHelp).
	Profile string
	// Load is the fraction of Link the flows' data fill where the profile is 1 (its peak,
	// unless the profile goes above 1, as bursts do).
	Load float64
	// Link is the link's bit rate, in bits per second.
	Link float64
	// Duration is how long flows arrive and packets are produced, from Start: flows still
	// active at the end are cut.
	Duration time.Duration
	// Packets stops the trace after this many packets; 0 means no limit (Duration ends it).
	Packets int
	// ScanFrac is the fraction of flows that are a lone TCP SYN to a random address and
	// port (a scan): 5-tuples without payload. They come on top of the data flows.
	ScanFrac float64
	// UDPFrac is the fraction of the data flows that are UDP (the rest are TCP).
	UDPFrac float64
	// Reverse is the number of packets the receiver sends back (TCP ACKs, UDP replies) per
	// data packet, from 0 to 4.
	Reverse float64
	// SmallFrac is the fraction of data packets that are small (frames of at most 200
	// bytes); the others carry a full MTU. Handshakes, ACKs and replies are small too.
	SmallFrac float64
	// MTU is the IP MTU, from 576 to 1500.
	MTU int
	// Burst is the mean number of data packets of an ON burst (geometric, at least 1).
	Burst float64
	// Gap is the model of the OFF gaps between a flow's bursts, which make its flowlets:
	// "lognormal:median=1ms,sigma=1", "intraflow" (gaps measured on real captures) or
	// "none" (each flow one burst). See GapHelp.
	Gap string
	// FlowRate is the bit rate at which a flow sends within a burst; 0 means Link.
	FlowRate float64
	// RTT is the round-trip time: the handshake's and the close's pace.
	RTT time.Duration
	// Clients is the number of client hosts (addresses of ClientNet) that open flows;
	// Servers the number of servers (addresses of ServerNet, Zipf popularity).
	Clients, Servers int
	// ClientNet and ServerNet are the IPv4 prefixes of clients and servers; scans go to
	// any address of ServerNet.
	ClientNet, ServerNet netip.Prefix
	// Start is the timestamp of the trace's start.
	Start time.Time
	// Warmup runs the workload for this long before Start without producing packets, so
	// that the trace starts with the flows a link in steady state carries instead of none
	// (long flows make the load reach Load only after about their lifetime). The profile
	// is read at negative times then (ramp: its start value).
	Warmup time.Duration
	// Rereadable makes the Workload a port.Releaser, as GenConfig.Rereadable does a
	// Generator.
	Rereadable bool
}

// DefaultWorkloadConfig returns the default workload: web-search flows at 50 % of a
// 10 Gbit/s link for 10 s, constant profile, 5 % scans, 10 % UDP flows, one ACK per two data
// packets, 20 % small data packets, bursts of 16 packets with lognormal OFF gaps (median 1
// ms), RTT 100 µs, 10000 clients in 10.0.0.0/16 and 100 servers in 198.18.0.0/15, seed 1,
// from 2026-01-01 UTC.
func DefaultWorkloadConfig() WorkloadConfig {
	return WorkloadConfig{
		Seed: 1, Dist: "websearch", Profile: "constant",
		Load: 0.5, Link: 10e9, Duration: 10 * time.Second,
		ScanFrac: 0.05, UDPFrac: 0.1, Reverse: 0.5, SmallFrac: 0.2, MTU: 1500,
		Burst: 16, Gap: "lognormal:median=1ms,sigma=1", RTT: 100 * time.Microsecond,
		Clients: 10000, Servers: 100,
		ClientNet: netip.MustParsePrefix("10.0.0.0/16"),
		ServerNet: netip.MustParsePrefix("198.18.0.0/15"),
		Start:     time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// MaxArrivalRate bounds a workload's flow arrival rate (flows per second at the profile's
// maximum), which keeps the number of concurrent flows, and so memory, bounded.
const MaxArrivalRate = 1e8

func workloadErr(format string, args ...any) error {
	return fmt.Errorf("trace: bad workload: "+format, args...)
}

// FieldError is a WorkloadConfig field out of its range (Validate): the field's name, its
// value as the error prints it, and the range wanted — for a caller that names the field
// otherwise (a gen: spec's key, a command's flag) to say so in its own words (errors.As).
type FieldError struct{ Field, Value, Want string }

func (e *FieldError) Error() string {
	return "trace: bad workload: " + e.Field + " is " + e.Value + ", want " + e.Want
}

func fieldErr(field string, value any, want string) error {
	return &FieldError{field, fmt.Sprint(value), want}
}

// ArrivalError is a workload whose flows would arrive faster than MaxArrivalRate at its
// profile's peak (Validate): Rate flows/s; a lower Load or Link brings it down.
type ArrivalError struct{ Rate float64 }

func (e *ArrivalError) Error() string {
	return fmt.Sprintf("trace: bad workload: %.3g flows/s arrive at the profile's peak, more than %g: lower Load or Link", e.Rate, float64(MaxArrivalRate))
}

// Validate reports the first problem of c as a one-line error, or nil.
func (c WorkloadConfig) Validate() error {
	_, err := c.compile()
	return err
}

// compiled is what a valid WorkloadConfig parses into.
type compiled struct {
	dist    *Dist
	prof    Profile
	gap     gapModel
	arrival float64 // flows per second (scans included) where the profile is 1
}

func finite(x, lo, hi float64) bool { return x >= lo && x <= hi && !math.IsNaN(x) }

func (c WorkloadConfig) compile() (compiled, error) {
	var k compiled
	var err error
	if k.dist, err = LookupDist(c.Dist); err != nil {
		return k, workloadErr("%v", err)
	}
	if k.prof, err = ParseProfile(c.Profile); err != nil {
		return k, workloadErr("%v", err)
	}
	if k.gap, err = parseGap(c.Gap); err != nil {
		return k, workloadErr("%v", err)
	}
	switch {
	case !finite(c.Load, 0, 100) || c.Load == 0:
		return k, fieldErr("Load", c.Load, "a fraction of the link > 0 (at most 100)")
	case !finite(c.Link, 1, 1e13):
		return k, fieldErr("Link", fmt.Sprintf("%g bit/s", c.Link), "1 to 1e13")
	case c.Duration <= 0:
		return k, fieldErr("Duration", c.Duration, "> 0")
	case c.Packets < 0:
		return k, fieldErr("Packets", c.Packets, "0 (no limit) or more")
	case !finite(c.ScanFrac, 0, 1) || c.ScanFrac == 1:
		return k, fieldErr("ScanFrac", c.ScanFrac, "0 to below 1")
	case !finite(c.UDPFrac, 0, 1):
		return k, fieldErr("UDPFrac", c.UDPFrac, "0 to 1")
	case !finite(c.Reverse, 0, 4):
		return k, fieldErr("Reverse", c.Reverse, "0 to 4 packets per data packet")
	case !finite(c.SmallFrac, 0, 1):
		return k, fieldErr("SmallFrac", c.SmallFrac, "0 to 1")
	case c.MTU < 576 || c.MTU > 1500:
		return k, fieldErr("MTU", c.MTU, "576 to 1500")
	case !finite(c.Burst, 1, 1e6):
		return k, fieldErr("Burst", c.Burst, "1 to 1e6 packets")
	case !finite(c.FlowRate, 0, 1e13) || (c.FlowRate > 0 && c.FlowRate < 1e3):
		return k, fieldErr("FlowRate", fmt.Sprintf("%g bit/s", c.FlowRate), "0 (the link rate) or 1e3 to 1e13")
	case c.Warmup < 0 || c.Warmup > 24*time.Hour:
		return k, fieldErr("Warmup", c.Warmup, "0 to 24h")
	case c.RTT < 0 || c.RTT > 10*time.Second:
		return k, fieldErr("RTT", c.RTT, "0 to 10s")
	case c.Clients < 1 || c.Clients > MaxHosts:
		return k, fieldErr("Clients", c.Clients, fmt.Sprintf("1 to %d", MaxHosts))
	case c.Servers < 1 || c.Servers > MaxHosts:
		return k, fieldErr("Servers", c.Servers, fmt.Sprintf("1 to %d", MaxHosts))
	}
	for _, p := range []struct {
		name string
		p    netip.Prefix
		n    int
	}{{"ClientNet", c.ClientNet, c.Clients}, {"ServerNet", c.ServerNet, c.Servers}} {
		if !p.p.IsValid() || !p.p.Addr().Is4() {
			return k, workloadErr("%s %s is not an IPv4 prefix", p.name, p.p)
		}
		if hostsIn(p.p) < uint64(p.n) {
			return k, workloadErr("%s %s has room for %d hosts, want %d", p.name, p.p, hostsIn(p.p), p.n)
		}
	}
	if c.ClientNet.Overlaps(c.ServerNet) {
		return k, workloadErr("ClientNet %s and ServerNet %s overlap", c.ClientNet, c.ServerNet)
	}
	if end := c.Start.Add(c.Duration); c.Start.Add(-c.Warmup).Year() < 1970 || end.Year() > 2261 || end.Before(c.Start) {
		return k, workloadErr("Start %s and Duration %s leave the range of Unix nanoseconds (1970 to 2261)", c.Start.Format(time.RFC3339), c.Duration)
	}
	k.arrival = c.Load * c.Link / (8 * k.dist.Mean()) / (1 - c.ScanFrac)
	if r := k.arrival * k.prof.Max(); r > MaxArrivalRate {
		return k, &ArrivalError{r}
	}
	return k, nil
}

// GapHelp documents the OFF-gap models of WorkloadConfig.Gap.
const GapHelp = `OFF gaps between a flow's bursts (they make flowlets):
  lognormal:median=1ms,sigma=1   median*exp(sigma*N(0,1)) (the default)
  intraflow                      gaps between packets of real captures (dist/intraflow_gap.cdf)
  none                           no OFF gaps: each flow sends one burst`

type gapModel struct {
	kind   uint8 // gapNone, gapLognormal, gapIntraflow
	median float64
	sigma  float64
}

const (
	gapNone = iota
	gapLognormal
	gapIntraflow
)

func parseGap(spec string) (gapModel, error) {
	name, params, _ := strings.Cut(spec, ":")
	switch name {
	case "none", "intraflow":
		if params != "" {
			return gapModel{}, fmt.Errorf("gap %q: %s takes no parameters", spec, name)
		}
		if name == "none" {
			return gapModel{kind: gapNone}, nil
		}
		return gapModel{kind: gapIntraflow}, nil
	case "lognormal":
	default:
		return gapModel{}, fmt.Errorf("gap %q: unknown model %q (lognormal, intraflow or none)", spec, name)
	}
	g := gapModel{kind: gapLognormal, median: 1e6, sigma: 1}
	if params == "" {
		return g, nil
	}
	for _, kv := range strings.Split(params, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "median":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > time.Hour {
				return g, fmt.Errorf("gap %q: median=%q: want a duration from 1ns to 1h", spec, v)
			}
			g.median = float64(d)
		case "sigma":
			x, err := strconv.ParseFloat(v, 64)
			if err != nil || !finite(x, 0, 5) {
				return g, fmt.Errorf("gap %q: sigma=%q: want a number from 0 to 5", spec, v)
			}
			g.sigma = x
		default:
			return g, fmt.Errorf("gap %q: want median=DURATION or sigma=NUMBER, got %q", spec, kv)
		}
	}
	return g, nil
}

// maxGap caps an OFF gap (a lognormal's tail).
const maxGap = float64(time.Hour)

// A workload flow's kinds and phases.
const (
	wTCP = iota + 1
	wUDP
	wScan
)

const (
	phOpen    = iota // TCP: the client's SYN; UDP: the client's request
	phSynAck         // TCP: the server's SYN-ACK
	phRequest        // TCP: the client's ACK with its request
	phData           // the server's data and the client's ACKs or replies
	phFin            // TCP: the server's FIN
	phFinAck         // TCP: the client's FIN
	phLastAck        // TCP: the server's last ACK
)

// wflow is a flow of a Workload. Side 0 is the client, side 1 the server.
type wflow struct {
	flow          // addresses, ports, sequence numbers, IP ids, TTLs
	wkind   uint8 // wTCP, wUDP, wScan; 0 when done
	phase   uint8
	burst   int32   // data packets left in the current burst
	owe     float32 // reverse packets owed
	left    int64   // data bytes left
	pending int64   // time of the next data packet while reverse packets go first
}

// hent is a heap entry: a flow's slot keyed by the time of its next packet; id (the flow's
// arrival number) breaks ties, so that the order never depends on the heap's layout.
type hent struct {
	t    int64
	id   uint64
	slot int32
}

func (a *hent) less(b *hent) bool { return a.t < b.t || a.t == b.t && a.id < b.id }

// WorkloadStats counts what a Workload has produced so far.
type WorkloadStats struct {
	Packets   int64
	Flows     int64 // flows started (scans included), in the warm-up too
	ScanFlows int64
	UDPFlows  int64
	Active    int // flows active now
	MaxActive int // the most flows active at once
}

// Workload is a port.Reader of realistic link traffic:
//
//   - Flows arrive as a Poisson process whose rate follows the profile (thinning):
//     rate(t) = Load × Link × profile(t) / (8 × mean flow size), plus ScanFrac of scans.
//   - A data flow's size (the bytes its server sends) is drawn from the distribution and
//     sent in packets that are small (SmallFrac) or full-sized, in ON bursts (Burst
//     packets on average, paced at FlowRate) separated by OFF gaps (Gap): its flowlets.
//   - TCP flows open with a handshake (SYN, SYN-ACK, the client's ACK with a request),
//     carry the server's data with Reverse client ACKs per data packet, and close with FIN,
//     FIN, ACK; UDP flows are a request, the server's datagrams and client replies; a scan
//     is a lone SYN. Each flow has its own 5-tuple (a client's ephemeral ports are used in
//     turn), between one of Clients clients and one of Servers servers.
//
// Packets come in non-decreasing time order: a heap of the active flows, keyed by their
// next packet's time, so memory grows with the number of concurrent flows, not with the
// trace. Headers are valid (lengths, IPv4 and TCP/UDP checksums). The same configuration
// gives the same frames and timestamps, whatever the batch sizes passed to Read, and the
// steady state allocates nothing. A Workload is not safe for concurrent use.
type Workload struct {
	cfg      WorkloadConfig
	k        compiled
	rng      *rand.Rand
	servers  *rand.Zipf // nil for one server
	gapDist  *Dist      // intraflow gaps (µs)
	b        Generator  // the frame builder: only its frame and payload buffers are used
	nextPort []uint16   // per client: next ephemeral port
	inBase   uint32
	outBase  uint32
	outHosts uint64
	mss      int
	nsPerBit float64 // pacing within a burst
	burstDen float64 // log(1 - 1/Burst), for geometric burst sizes
	start    int64   // Start
	from     int64   // Start - Warmup: flows arrive from then
	end      int64
	dur      time.Duration
	arrT     int64   // the next flow arrival (>= end: none)
	arrGap   float64 // mean gap in ns between candidate arrivals (at the profile's max)
	flows    []wflow
	free     []int32
	heap     []hent
	nextID   uint64
	left     int // packets left; -1: no limit
	st       WorkloadStats
	closed   bool
}

// NewWorkload returns a Workload for cfg, or the one-line error of cfg.Validate.
func NewWorkload(cfg WorkloadConfig) (*Workload, error) {
	k, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	rate := cfg.FlowRate
	if rate == 0 {
		rate = cfg.Link
	}
	w := &Workload{
		cfg:      cfg,
		k:        k,
		rng:      rand.New(rand.NewPCG(cfg.Seed, 0x776f726b6c6f6164)),
		nextPort: make([]uint16, cfg.Clients),
		inBase:   binary.BigEndian.Uint32(cfg.ClientNet.Masked().Addr().AsSlice()),
		outBase:  binary.BigEndian.Uint32(cfg.ServerNet.Masked().Addr().AsSlice()),
		outHosts: hostsIn(cfg.ServerNet),
		mss:      cfg.MTU - 40,
		nsPerBit: 1e9 / rate,
		start:    cfg.Start.UnixNano(),
		dur:      cfg.Duration,
		left:     cfg.Packets,
		b:        Generator{payload: make([]byte, payloadLen+maxSeg), keep: recipes{on: cfg.Rereadable}},
	}
	w.end = w.start + int64(cfg.Duration)
	w.from = w.start - int64(cfg.Warmup)
	if cfg.Packets == 0 {
		w.left = -1
	}
	if cfg.Burst > 1 {
		w.burstDen = math.Log(1 - 1/cfg.Burst)
	}
	if k.gap.kind == gapIntraflow {
		w.gapDist = intraflowGaps()
	}
	if cfg.Servers > 1 {
		w.servers = rand.NewZipf(w.rng, 1.2, 1, uint64(cfg.Servers-1))
	}
	for i := range w.nextPort {
		w.nextPort[i] = uint16(portLo + w.rng.IntN(portHi-portLo+1))
	}
	for i := 0; i < payloadLen; i += 8 {
		binary.LittleEndian.PutUint64(w.b.payload[i:], w.rng.Uint64())
	}
	copy(w.b.payload[payloadLen:], w.b.payload)
	w.arrGap = 1e9 / (k.arrival * k.prof.Max())
	w.arrT = w.nextArrival(w.from)
	return w, nil
}

// LinkType returns LINKTYPE_ETHERNET.
func (w *Workload) LinkType() uint32 { return 1 }

// Close ends the Workload: later Reads return ErrClosed.
func (w *Workload) Close() error {
	w.closed = true
	return nil
}

// Rereadable reports WorkloadConfig.Rereadable (port.Rereader), until a Release of every
// frame.
func (w *Workload) Rereadable() bool { return w.b.keep.on }

// Reread appends frame pos (a packet's Pos: frames are numbered from 0), of n bytes, to
// dst, built again (port.Rereader), as Generator.Reread does.
func (w *Workload) Reread(dst []byte, pos uint64, n int) ([]byte, error) {
	return w.b.Reread(dst, pos, n)
}

// Release forgets the frames before pos (port.Releaser), as Generator.Release does.
func (w *Workload) Release(pos uint64) { w.b.keep.release(pos) }

// Kept returns how many frames the Workload can read again now (as Generator.Kept).
func (w *Workload) Kept() int { return w.b.keep.kept() }

// Stats returns what the Workload has produced so far.
func (w *Workload) Stats() WorkloadStats {
	s := w.st
	s.Active = len(w.heap)
	return s
}

// Config returns the Workload's configuration.
func (w *Workload) Config() WorkloadConfig { return w.cfg }

// Rate returns the flow arrival rate (flows per second, scans included) at time t from
// the trace's start.
func (w *Workload) Rate(t time.Duration) float64 {
	return w.k.arrival * w.k.prof.Rate(t, w.dur)
}

// nextArrival returns the time of the first flow arrival after t (>= w.end: none), by
// thinning candidates of a Poisson process at the profile's maximum rate.
func (w *Workload) nextArrival(t int64) int64 {
	pmax := w.k.prof.Max()
	for {
		g := w.rng.ExpFloat64() * w.arrGap
		if g >= float64(w.end-t) {
			return w.end
		}
		t += int64(g)
		if w.rng.Float64()*pmax < w.k.prof.Rate(time.Duration(t-w.start), w.dur) {
			return t
		}
	}
}

// Read fills pkts with the next frames in time order and returns how many it filled: n > 0
// and a nil error until the trace ends (Duration or Packets), then 0 and io.EOF.
func (w *Workload) Read(pkts []packet.Packet) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	n := 0
	for n < len(pkts) && w.left != 0 {
		for w.arrT < w.end && (len(w.heap) == 0 || w.arrT <= w.heap[0].t) {
			w.startFlow(w.arrT)
			w.arrT = w.nextArrival(w.arrT)
		}
		if len(w.heap) == 0 || w.heap[0].t >= w.end {
			w.left = 0
			break
		}
		h := &w.heap[0]
		f := &w.flows[h.slot]
		t := h.t
		next, b := w.step(f, t)
		if t >= w.start { // not in the warm-up
			w.b.deliver(&pkts[n], b, t)
			n++
			if w.left > 0 {
				w.left--
			}
		}
		if f.wkind == 0 {
			w.free = append(w.free, h.slot)
			w.pop()
		} else {
			h.t = next
			w.down(0)
		}
	}
	w.st.Packets += int64(n)
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (w *Workload) push(e hent) {
	w.heap = append(w.heap, e)
	h := w.heap
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !e.less(&h[p]) {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = e
	w.st.MaxActive = max(w.st.MaxActive, len(h))
}

func (w *Workload) pop() {
	last := len(w.heap) - 1
	w.heap[0] = w.heap[last]
	w.heap = w.heap[:last]
	if last > 0 {
		w.down(0)
	}
}

func (w *Workload) down(i int) {
	h := w.heap
	n := len(h)
	e := h[i]
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h[c+1].less(&h[c]) {
			c++
		}
		if !h[c].less(&e) {
			break
		}
		h[i] = h[c]
		i = c
	}
	h[i] = e
}

// startFlow opens a new flow whose first packet is at t.
func (w *Workload) startFlow(t int64) {
	var slot int32
	if n := len(w.free); n > 0 {
		slot, w.free = w.free[n-1], w.free[:n-1]
	} else {
		w.flows = append(w.flows, wflow{})
		slot = int32(len(w.flows) - 1)
	}
	f := &w.flows[slot]
	r := w.rng
	*f = wflow{}
	client := uint32(r.IntN(w.cfg.Clients))
	binary.BigEndian.PutUint32(f.ip[0][:], w.inBase+1+client)
	f.host = client
	f.ipid = [2]uint16{uint16(r.Uint32()), uint16(r.Uint32())}
	f.ttl = [2]uint8{64, [3]uint8{64, 128, 255}[r.IntN(3)] - uint8(4+r.IntN(20))}
	f.seq = [2]uint32{r.Uint32(), r.Uint32()}
	f.port[0] = w.nextPort[client]
	if w.nextPort[client]++; w.nextPort[client] > portHi {
		w.nextPort[client] = portLo
	}
	w.st.Flows++
	switch {
	case r.Float64() < w.cfg.ScanFrac:
		f.wkind = wScan
		binary.BigEndian.PutUint32(f.ip[1][:], w.outBase+1+uint32(r.Uint64N(w.outHosts)))
		f.port[1] = uint16(1 + r.IntN(1024))
		w.st.ScanFlows++
	default:
		var server uint32
		if w.servers != nil {
			server = uint32(w.servers.Uint64())
		}
		binary.BigEndian.PutUint32(f.ip[1][:], w.outBase+1+server)
		size := w.k.dist.Sample(r)
		f.left = int64(min(max(math.Ceil(size), 1), 1e12))
		f.wkind, f.port[1] = wTCP, [4]uint16{443, 443, 443, 80}[r.IntN(4)]
		if r.Float64() < w.cfg.UDPFrac {
			f.wkind, f.port[1] = wUDP, [2]uint16{443, 53}[r.IntN(2)]
			w.st.UDPFlows++
		}
		f.burst = w.burstLen()
	}
	w.push(hent{t: t, id: w.nextID, slot: slot})
	w.nextID++
}

// burstLen draws the number of data packets of an ON burst: geometric with mean Burst.
func (w *Workload) burstLen() int32 {
	if w.burstDen == 0 {
		return 1
	}
	k := math.Log(1-w.rng.Float64()) / w.burstDen
	return int32(min(1+k, 1<<30))
}

// offGap draws an OFF gap in nanoseconds.
func (w *Workload) offGap() int64 {
	var g float64
	switch w.k.gap.kind {
	case gapNone:
		return 0
	case gapLognormal:
		g = w.k.gap.median * math.Exp(w.k.gap.sigma*w.rng.NormFloat64())
	default:
		g = w.gapDist.Sample(w.rng) * 1e3
	}
	return int64(min(g, maxGap))
}

// pace returns the time a frame of n bytes takes at the flow rate (at least 1 ns).
func (w *Workload) pace(n int) int64 {
	return max(1, int64(float64(n*8)*w.nsPerBit))
}

// smallMax is the largest payload of a small TCP data packet (a 200-byte frame).
const smallMax = 200 - l4Off - 20

// step builds the next frame of f, whose time is t, and returns the time of the flow's
// following packet. When the flow is done, f.wkind is 0.
func (w *Workload) step(f *wflow, t int64) (int64, []byte) {
	const ack, psh, syn, fin = packet.TCPAck, packet.TCPPsh, packet.TCPSyn, packet.TCPFin
	rtt := int64(w.cfg.RTT)
	r := w.rng
	switch f.phase {
	case phOpen:
		if f.wkind == wScan {
			f.wkind = 0
			return 0, w.b.tcp(&f.flow, 0, syn, 0)
		}
		if f.wkind == wUDP {
			f.phase = phData
			return t + rtt, w.b.udpStream(&f.flow, 0, 20+r.IntN(120))
		}
		f.phase = phSynAck
		return t + rtt, w.b.tcp(&f.flow, 0, syn, 0)
	case phSynAck:
		f.phase = phRequest
		return t + 1000, w.b.tcp(&f.flow, 1, syn|ack, 0) // the client answers in 1 µs
	case phRequest:
		f.phase = phData
		return t + rtt, w.b.tcp(&f.flow, 0, psh|ack, 20+r.IntN(smallMax-20))
	case phData:
		if f.owe >= 1 { // a reverse packet before the next data packet
			f.owe--
			next := f.pending
			if f.owe >= 1 { // more to answer: 1µs apart, if there is room
				next = min(f.pending, t+1000)
			}
			if f.wkind == wUDP {
				return next, w.b.udpStream(&f.flow, 0, 20+r.IntN(80))
			}
			return next, w.b.tcp(&f.flow, 0, ack, 0)
		}
		n := w.mss
		if r.Float64() < w.cfg.SmallFrac {
			n = 1 + r.IntN(smallMax)
		}
		n = int(min(int64(n), f.left))
		f.left -= int64(n)
		var b []byte
		if f.wkind == wUDP {
			b = w.b.udpStream(&f.flow, 1, n)
		} else if f.left == 0 {
			b = w.b.tcp(&f.flow, 1, psh|ack, n)
		} else {
			b = w.b.tcp(&f.flow, 1, ack, n)
		}
		pace := w.pace(len(b))
		if f.left == 0 {
			if f.wkind == wUDP {
				f.wkind = 0
				return 0, b
			}
			f.phase = phFin
			return t + pace, b
		}
		next := t + pace
		if f.burst--; f.burst <= 0 {
			f.burst = w.burstLen()
			next += w.offGap()
		}
		f.owe += float32(w.cfg.Reverse)
		if f.owe >= 1 { // the receiver answers at once, before the next data packet
			f.pending = next
			return t + max(1, pace/2), b
		}
		return next, b
	case phFin:
		f.phase = phFinAck
		return t + rtt, w.b.tcp(&f.flow, 1, fin|ack, 0)
	case phFinAck:
		f.phase = phLastAck
		return t + rtt, w.b.tcp(&f.flow, 0, fin|ack, 0)
	}
	f.wkind = 0
	return 0, w.b.tcp(&f.flow, 1, ack, 0)
}
