// Package monitor counts packets and bytes per flow and finds the heaviest flows across
// flows and units: a count-min sketch of bytes by flow with a top-k of candidates per unit,
// merged through write-mostly shared counters so that several units' monitors add up. It
// reports the top flows at the end of a run. See README.md.
package monitor

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// Config is the monitor's configuration.
type Config struct {
	Width      int          `json:"width" doc:"count-min sketch columns per row: a flow's bytes are over-estimated by at most e/width of all bytes (with probability 1-e^-depth)"`
	Depth      int          `json:"depth" doc:"count-min sketch rows"`
	Top        int          `json:"top" doc:"flows in the report, the heaviest by bytes; each unit keeps twice as many candidates"`
	Candidates int          `json:"candidates" doc:"size of the directory of candidate flows shared by all units (candidates beyond it are not reported)"`
	Flush      snf.Duration `json:"flush" doc:"packet time between pushes of a unit's sketch updates to the shared sketch"`
}

// DefaultConfig is a 2048×4 sketch and the top 10 flows.
func DefaultConfig() *Config {
	return &Config{Width: 2048, Depth: 4, Top: 10, Candidates: 4096, Flush: snf.Duration(time.Second)}
}

// Validate checks the config.
func (c *Config) Validate() error {
	if c.Width < 16 || c.Width > 1<<22 {
		return fmt.Errorf("width: %d is not in 16..%d", c.Width, 1<<22)
	}
	if c.Depth < 1 || c.Depth > 16 {
		return fmt.Errorf("depth: %d is not in 1..16", c.Depth)
	}
	if c.Top < 1 || c.Top > 10000 {
		return fmt.Errorf("top: %d is not in 1..10000", c.Top)
	}
	if c.Candidates < 2*c.Top || c.Candidates > 1<<24 {
		return fmt.Errorf("candidates: %d is not in 2*top (%d)..%d", c.Candidates, 2*c.Top, 1<<24)
	}
	if c.Flush <= 0 {
		return errors.New("flush: must be > 0")
	}
	return nil
}

func init() {
	snf.Register("monitor", "per-flow packet and byte counters; heaviest flows by a count-min sketch merged across units, reported at the end",
		DefaultConfig, New)
}

// flowStats is the per-flow state: exact counters of the flow as this chain saw it.
type flowStats struct {
	hash        uint64    // the flow key's hash (both directions alike)
	packets     [2]uint64 // by direction: original, reply
	bytes       [2]uint64 // wire bytes, by direction
	first, last int64
	tcpFlags    [2]uint8 // TCP flags seen, by direction
	live        bool     // counted (the zero value is a flow not seen yet)
	registered  bool     // published in the shared directory (by this chain or before a move)
	cand        int32    // 1 + index in this unit's candidates (not moved with the flow)
}

const flowStatsSize = 8 + 16 + 16 + 8 + 8 + 2 + 1

func (f *flowStats) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, f.hash)
	for d := range 2 {
		b = binary.BigEndian.AppendUint64(b, f.packets[d])
		b = binary.BigEndian.AppendUint64(b, f.bytes[d])
	}
	b = binary.BigEndian.AppendUint64(b, uint64(f.first))
	b = binary.BigEndian.AppendUint64(b, uint64(f.last))
	var fl byte
	if f.live {
		fl |= 1
	}
	if f.registered {
		fl |= 2
	}
	return append(b, f.tcpFlags[0], f.tcpFlags[1], fl), nil
}

func (f *flowStats) UnmarshalBinary(b []byte) error {
	if len(b) != flowStatsSize {
		return fmt.Errorf("monitor: flow state: %d bytes, want %d", len(b), flowStatsSize)
	}
	*f = flowStats{hash: binary.BigEndian.Uint64(b)}
	for d := range 2 {
		f.packets[d] = binary.BigEndian.Uint64(b[8+16*d:])
		f.bytes[d] = binary.BigEndian.Uint64(b[16+16*d:])
	}
	f.first = int64(binary.BigEndian.Uint64(b[40:]))
	f.last = int64(binary.BigEndian.Uint64(b[48:]))
	f.tcpFlags = [2]uint8{b[56], b[57]}
	f.live, f.registered = b[58]&1 != 0, b[58]&2 != 0
	return nil
}

// candidate is a flow in this unit's top-k by its sketch estimate.
type candidate struct {
	hash uint64
	est  uint64
}

// Keys in the shared counters.
const (
	totalBytes = iota
	totalPackets
	totalFlows
)

// Each directory slot holds six counters at slot<<3 | field.
const (
	dirHash = iota
	dirSrcLo
	dirSrcHi
	dirDstLo
	dirDstHi
	dirMeta // sport<<16 | dport | proto<<32 | v6<<40 | 1<<48 (1<<48: the slot is written)
)

const dirWritten = 1 << 48

// Monitor is one monitor instance.
type Monitor struct {
	cfg   Config
	width uint64
	flush int64
	flows *snf.FlowState[flowStats, *flowStats]

	// This unit's sketch of bytes (cumulative; its own top-k reads it) and the updates of
	// bytes and packets not yet pushed to the shared sketch, with the cells they touch.
	sketch          []uint64
	dBytes, dPkts   []int64
	dirty           []int32
	dTotal          [3]int64
	lastFlush       int64
	flushed         bool
	cand            []candidate
	minCand         int
	directoryIsFull bool

	// Shared, write-mostly: the merged sketches, totals and the candidate directory; the
	// directory's slots come from a pool (one blocking take per published candidate).
	sharedBytes, sharedPkts, totals, directory *snf.Counters
	slots                                      *snf.Pool

	packets, bytes, newFlows, ended, unanswered, resets, closed *snf.Metric
	published, directoryFull, flushes, malformed                *snf.Metric
}

// New builds a monitor from a validated config.
func New(env *snf.Env, cfg *Config) (snf.NF, error) {
	m := &Monitor{cfg: *cfg, width: uint64(cfg.Width), flush: int64(cfg.Flush)}
	var err error
	counters := func(name string) *snf.Counters {
		var c *snf.Counters
		if err == nil {
			c, err = snf.NewCounters(env, name)
		}
		return c
	}
	m.sharedBytes = counters("sketch_bytes")
	m.sharedPkts = counters("sketch_packets")
	m.totals = counters("totals")
	m.directory = counters("directory")
	if err != nil {
		return nil, err
	}
	if m.slots, err = snf.NewPool(env, "directory_slots", 1, uint32(cfg.Candidates)); err != nil {
		return nil, err
	}
	cells := cfg.Width * cfg.Depth
	m.sketch = make([]uint64, cells)
	m.dBytes = make([]int64, cells)
	m.dPkts = make([]int64, cells)
	m.dirty = make([]int32, 0, cells)
	m.cand = make([]candidate, 0, 2*cfg.Top)
	m.flows = snf.NewFlowState[flowStats](env, "flow")
	m.packets = env.Metric("packets", "packets counted")
	m.bytes = env.Metric("bytes", "wire bytes counted")
	m.newFlows = env.Metric("flows", "flows seen")
	m.ended = env.Metric("flows_ended", "flows ended (expired, evicted or closed)")
	m.unanswered = env.Metric("flows_unanswered", "ended flows that had no packet in the reply direction")
	m.resets = env.Metric("tcp_reset", "ended TCP flows that saw a RST")
	m.closed = env.Metric("tcp_closed", "ended TCP flows closed by FINs both ways")
	m.published = env.Metric("candidates_published", "flows this unit published in the shared directory")
	m.directoryFull = env.Metric("directory_full", "candidates not published: the shared directory was full")
	m.flushes = env.Metric("flushes", "pushes of sketch updates to shared state")
	m.malformed = env.Metric("malformed", "malformed IP packets (no flow), passed uncounted")
	return m, nil
}

// mix is the splitmix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// cell returns the index of row r's counter for a flow hash: a hash per row, mapped onto
// the width by a multiply-shift (no modulo bias).
func (m *Monitor) cell(h uint64, r int) int {
	col, _ := bits.Mul64(mix(h+uint64(r+1)*0x9e3779b97f4a7c15), m.width)
	return r*int(m.width) + int(col)
}

// HeadersOnly implements snf.HeaderReader: Monitor reads only packets' headers.
func (m *Monitor) HeadersOnly() bool { return true }

// Process implements snf.NF.
func (m *Monitor) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	st := m.flows.GetOrCreate(ctx)
	if st == nil {
		m.malformed.Inc()
		return snf.Forward
	}
	now := ctx.Now()
	if !st.live {
		st.live, st.hash, st.first = true, ctx.FlowKey().Hash(), now
		m.newFlows.Inc()
		m.dTotal[totalFlows]++
	}
	d := ctx.Dir()
	n := uint64(p.WireLen)
	st.packets[d]++
	st.bytes[d] += n
	st.last = now
	st.tcpFlags[d] |= p.TCPFlags()
	m.packets.Inc()
	m.bytes.Add(n)
	m.dTotal[totalBytes] += int64(n)
	m.dTotal[totalPackets]++

	est := uint64(math.MaxUint64)
	for r := range m.cfg.Depth {
		c := m.cell(st.hash, r)
		if m.dPkts[c] == 0 {
			m.dirty = append(m.dirty, int32(c))
		}
		m.dPkts[c]++
		m.dBytes[c] += int64(n)
		m.sketch[c] += n
		est = min(est, m.sketch[c])
	}
	m.offer(ctx, st, est)
	if !m.flushed || now-m.lastFlush >= m.flush {
		m.push(ctx)
	}
	return snf.Forward
}

// offer keeps the flow in this unit's candidates if its estimate is among the 2·top
// largest, publishing it in the shared directory the first time.
func (m *Monitor) offer(ctx *snf.Context, st *flowStats, est uint64) {
	if i := int(st.cand) - 1; i >= 0 && i < len(m.cand) && m.cand[i].hash == st.hash {
		m.cand[i].est = est
		if i == m.minCand {
			m.findMin()
		}
		return
	}
	var i int
	switch {
	case len(m.cand) < cap(m.cand):
		i = len(m.cand)
		m.cand = append(m.cand, candidate{})
	case est > m.cand[m.minCand].est:
		i = m.minCand
	default:
		return
	}
	m.cand[i] = candidate{hash: st.hash, est: est}
	st.cand = int32(i + 1)
	m.findMin()
	if !st.registered {
		m.publish(ctx, st)
	}
}

func (m *Monitor) findMin() {
	m.minCand = 0
	for i := range m.cand {
		if m.cand[i].est < m.cand[m.minCand].est {
			m.minCand = i
		}
	}
}

// publish writes the flow's key into a directory slot of its own.
func (m *Monitor) publish(ctx *snf.Context, st *flowStats) {
	st.registered = true
	if m.directoryIsFull {
		m.directoryFull.Inc()
		return
	}
	slot, ok := m.slots.Take(ctx)
	if !ok {
		m.directoryIsFull = true
		m.directoryFull.Inc()
		return
	}
	k := ctx.FlowKey()
	base := uint64(slot) << 3
	meta := uint64(k.SrcPort)<<16 | uint64(k.DstPort) | uint64(k.Proto)<<32 | dirWritten
	if k.V6 {
		meta |= 1 << 40
	}
	m.directory.Add(ctx, base|dirHash, int64(st.hash))
	m.directory.Add(ctx, base|dirSrcLo, int64(binary.BigEndian.Uint64(k.Src[:8])))
	m.directory.Add(ctx, base|dirSrcHi, int64(binary.BigEndian.Uint64(k.Src[8:])))
	m.directory.Add(ctx, base|dirDstLo, int64(binary.BigEndian.Uint64(k.Dst[:8])))
	m.directory.Add(ctx, base|dirDstHi, int64(binary.BigEndian.Uint64(k.Dst[8:])))
	m.directory.Add(ctx, base|dirMeta, int64(meta))
	m.published.Inc()
}

// push adds this unit's sketch updates since the last push to the shared sketches.
func (m *Monitor) push(ctx *snf.Context) {
	for _, c := range m.dirty {
		m.sharedBytes.Add(ctx, uint64(c), m.dBytes[c])
		m.sharedPkts.Add(ctx, uint64(c), m.dPkts[c])
		m.dBytes[c], m.dPkts[c] = 0, 0
	}
	m.dirty = m.dirty[:0]
	for k, v := range m.dTotal {
		if v != 0 {
			m.totals.Add(ctx, uint64(k), v)
			m.dTotal[k] = 0
		}
	}
	m.lastFlush, m.flushed = ctx.Now(), true
	m.flushes.Inc()
}

// FlowEnd implements snf.FlowEnder: it counts how the flow ended and pushes the sketch
// updates if a flush interval has passed (flows ending after the last packet of a run, at
// a later time, push what the unit still holds).
func (m *Monitor) FlowEnd(ctx *snf.Context) {
	st := m.flows.Get(ctx)
	if st == nil || !st.live {
		return
	}
	m.ended.Inc()
	if st.packets[snf.Reply] == 0 {
		m.unanswered.Inc()
	}
	if ctx.FlowKey().Proto == packet.ProtoTCP {
		all := st.tcpFlags[0] | st.tcpFlags[1]
		switch {
		case all&packet.TCPRst != 0:
			m.resets.Inc()
		case st.tcpFlags[0]&st.tcpFlags[1]&packet.TCPFin != 0:
			m.closed.Inc()
		}
	}
	if len(m.dirty) > 0 && ctx.Now()-m.lastFlush >= m.flush {
		m.push(ctx)
	}
}

// Flow is a flow's merged counts, as the report gives them.
type Flow struct {
	// Key is the flow's 5-tuple in the direction of the first packet the publishing unit
	// saw.
	Key packet.Key
	// Packets and Bytes are count-min estimates over every unit sharing the store: never
	// below the true counts, above them by at most Bound() with probability 1-e^-depth.
	Packets, Bytes uint64
}

// estimate returns the merged estimate of a flow hash: the shared sketch plus this
// unit's updates not pushed yet, the minimum over the rows.
func (m *Monitor) estimate(h uint64) (bytes, packets uint64) {
	bytes, packets = math.MaxUint64, math.MaxUint64
	for r := range m.cfg.Depth {
		c := m.cell(h, r)
		bytes = min(bytes, uint64(m.sharedBytes.Get(uint64(c))+m.dBytes[c]))
		packets = min(packets, uint64(m.sharedPkts.Get(uint64(c))+m.dPkts[c]))
	}
	return bytes, packets
}

// Estimate returns the merged count-min estimates of the flow with key k (either
// direction). Off the packet path: it reads the shared store.
func (m *Monitor) Estimate(k packet.Key) (bytes, packets uint64) { return m.estimate(k.Hash()) }

// Totals returns the merged totals: bytes, packets and flows over every unit.
func (m *Monitor) Totals() (bytes, packets, flows uint64) {
	t := func(k int) uint64 { return uint64(m.totals.Get(uint64(k)) + m.dTotal[k]) }
	return t(totalBytes), t(totalPackets), t(totalFlows)
}

// Bound returns εN, the count-min error bound on a flow's bytes: ceil(e/width · total
// bytes).
func (m *Monitor) Bound() uint64 {
	b, _, _ := m.Totals()
	return uint64(math.Ceil(math.E / float64(m.cfg.Width) * float64(b)))
}

// Candidates returns the flows in the shared directory (every unit's published
// candidates, one per flow) with their merged estimates, heaviest first.
func (m *Monitor) Candidates() []Flow {
	var out []Flow
	seen := map[uint64]bool{}
	for slot := uint64(1); slot <= uint64(m.cfg.Candidates); slot++ {
		base := slot << 3
		meta := uint64(m.directory.Get(base | dirMeta))
		if meta&dirWritten == 0 {
			continue
		}
		h := uint64(m.directory.Get(base | dirHash))
		if seen[h] {
			continue
		}
		seen[h] = true
		k := packet.Key{SrcPort: uint16(meta >> 16), DstPort: uint16(meta), Proto: uint8(meta >> 32), V6: meta&(1<<40) != 0}
		binary.BigEndian.PutUint64(k.Src[:8], uint64(m.directory.Get(base|dirSrcLo)))
		binary.BigEndian.PutUint64(k.Src[8:], uint64(m.directory.Get(base|dirSrcHi)))
		binary.BigEndian.PutUint64(k.Dst[:8], uint64(m.directory.Get(base|dirDstLo)))
		binary.BigEndian.PutUint64(k.Dst[8:], uint64(m.directory.Get(base|dirDstHi)))
		b, p := m.estimate(h)
		out = append(out, Flow{Key: k, Packets: p, Bytes: b})
	}
	slices.SortFunc(out, func(a, b Flow) int {
		if c := cmp.Compare(b.Bytes, a.Bytes); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Packets, a.Packets); c != 0 {
			return c
		}
		ka, _ := a.Key.Canonical()
		kb, _ := b.Key.Canonical()
		return cmp.Compare(ka.String(), kb.String())
	})
	return out
}

// Top returns the `top` heaviest flows by bytes over every unit sharing the store.
func (m *Monitor) Top() []Flow {
	c := m.Candidates()
	return c[:min(len(c), m.cfg.Top)]
}

// Report implements snf.Reporter: the top flows by bytes.
func (m *Monitor) Report(w io.Writer) error {
	b, p, f := m.Totals()
	top := m.Top()
	if _, err := fmt.Fprintf(w, "  %d flows, %d packets, %d bytes; top %d by bytes (count-min %d×%d: over by at most %d bytes, each with probability %.3f)\n",
		f, p, b, len(top), m.cfg.Width, m.cfg.Depth, m.Bound(), 1-math.Exp(-float64(m.cfg.Depth))); err != nil {
		return err
	}
	src, dst := make([]string, len(top)), make([]string, len(top))
	ws, wd := len("source"), len("destination")
	for i, fl := range top {
		k := fl.Key
		src[i] = netip.AddrPortFrom(k.SrcAddr(), k.SrcPort).String()
		dst[i] = netip.AddrPortFrom(k.DstAddr(), k.DstPort).String()
		ws, wd = max(ws, len(src[i])), max(wd, len(dst[i]))
	}
	if _, err := fmt.Fprintf(w, "  %4s  %-6s %-*s  %-*s %10s %12s\n", "#", "proto", ws, "source", wd, "destination", "packets", "bytes"); err != nil {
		return err
	}
	for i, fl := range top {
		if _, err := fmt.Fprintf(w, "  %4d  %-6s %-*s  %-*s %10d %12d\n", i+1, packet.ProtoName(fl.Key.Proto),
			ws, src[i], wd, dst[i], fl.Packets, fl.Bytes); err != nil {
			return err
		}
	}
	return nil
}
