// Package snftest checks chain output equivalence (COE, DESIGN.md "Determinism"): whatever
// fails, an elastic run's output and final state must equal those of one ideal chain
// processing the same input in the root's order. It runs the reference (one chain, no
// runtime) and an elastic run with a fault schedule, and compares: the same output packets
// byte for byte, the same order within each flow, the same final state of every flow, the
// same alerts — or, for chains whose shared read-write state hands out values in arrival
// order (a NAT's ports), the same packets up to those values, consistently.
package snftest

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/mem"
)

// Result is what a run produced.
type Result struct {
	// Out holds, by the clock of the input packet, the frames that left for it (the packet,
	// then the frames NFs emitted with it).
	Out map[uint64][][]byte
	// Order holds, per flow (canonical key of the output), the input clocks of its outputs in
	// the order they were written.
	Order map[packet.Key][]uint64
	// States holds every flow's final state (snf.Chain.ExportFlow), by canonical key.
	States map[packet.Key]string
	// Alerts holds the alerts, as text, sorted (units raise them in parallel).
	Alerts []string
	// Packets is the number of frames written.
	Packets int
	// Billed holds the packets billed to each NF, in chain order (snf.NFReport's In; the
	// elastic run's engine.LiveSummary.Billed): each packet once per NF it reached.
	Billed []NFBill
}

// NFBill is the packets billed to one NF.
type NFBill struct {
	NF      string
	Packets uint64
}

// recorder is a port.Writer and an snf.AlertSink filling a Result.
type recorder struct {
	mu sync.Mutex
	r  *Result
}

func newRecorder() *recorder {
	return &recorder{r: &Result{Out: map[uint64][][]byte{}, Order: map[packet.Key][]uint64{}, States: map[packet.Key]string{}}}
}

func (w *recorder) Write(pkts []*packet.Packet) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range pkts {
		w.r.Out[p.Clock] = append(w.r.Out[p.Clock], bytes.Clone(p.Data))
		if p.IP() {
			k, _ := p.Key.Canonical()
			if o := w.r.Order[k]; len(o) == 0 || o[len(o)-1] != p.Clock {
				w.r.Order[k] = append(o, p.Clock)
			}
		}
		w.r.Packets++
	}
	return nil
}

func (w *recorder) Close() error { return nil }

func (w *recorder) Alert(a *snf.Alert) {
	w.mu.Lock()
	w.r.Alerts = append(w.r.Alerts, fmt.Sprintf("clock %d %s %s %s %v", a.Clock, a.NF, a.Rule, a.Flow, a.Details))
	w.mu.Unlock()
}

// states records the final flow states of chains, expired as of end.
func (w *recorder) states(chains []*snf.Chain, end int64) error {
	for _, c := range chains {
		c.Expire(end)
		var dup error
		err := c.Flows(func(k packet.Key, st []byte) bool {
			ck, _ := k.Canonical()
			if _, ok := w.r.States[ck]; ok {
				dup = fmt.Errorf("flow %s lives on two units", k)
				return false
			}
			w.r.States[ck] = string(st)
			return true
		})
		if err != nil {
			return err
		}
		if dup != nil {
			return dup
		}
	}
	return nil
}

func (w *recorder) result() Result {
	sort.Strings(w.r.Alerts)
	return *w.r
}

// Reference runs frames through one chain of spec (clocks 1, 2, … as the root stamps them)
// and returns its result.
func Reference(spec *snf.ChainSpec, frames []mem.Frame) (Result, error) {
	return ReferenceContext(context.Background(), spec, frames)
}

// ReferenceContext is Reference that stops once ctx is done, with ctx's error.
func ReferenceContext(ctx context.Context, spec *snf.ChainSpec, frames []mem.Frame) (Result, error) {
	rec := newRecorder()
	chain, err := snf.NewChain(spec, snf.ChainOptions{Alerts: rec})
	if err != nil {
		return Result{}, err
	}
	defer chain.Close()
	in := mem.NewReader(frames)
	batch := make([]packet.Packet, 64)
	var clock uint64
	done := ctx.Done()
	for {
		select {
		case <-done:
			return Result{}, ctx.Err()
		default:
		}
		n, err := in.Read(batch)
		for i := range batch[:n] {
			clock++
			batch[i].Clock = clock
		}
		out := chain.Process(batch[:n], nil)
		rec.Write(out)
		if err != nil {
			break
		}
	}
	if len(frames) > 0 {
		if err := rec.states([]*snf.Chain{chain}, frames[len(frames)-1].Time); err != nil {
			return Result{}, err
		}
	}
	r := rec.result()
	for _, rep := range chain.Report() {
		r.Billed = append(r.Billed, NFBill{rep.Name, rep.Stats.In})
	}
	return r, nil
}

// Live runs frames through the elastic runtime configured by cfg (its Out and OnDone are set
// here; its Alerts, if set, receive the alerts too; its In, if nil, reads frames from memory
// — if set, it must read frames) and returns its result and summary.
func Live(ctx context.Context, cfg engine.LiveConfig, frames []mem.Frame) (Result, engine.LiveSummary, error) {
	rec := newRecorder()
	if cfg.In == nil {
		cfg.In = mem.NewReader(frames)
	}
	cfg.Out = rec
	if cfg.Alerts != nil {
		cfg.Alerts = teeAlerts{rec, cfg.Alerts}
	} else {
		cfg.Alerts = rec
	}
	var stErr error
	cfg.OnDone = func(chains []*snf.Chain) {
		if len(frames) > 0 {
			stErr = rec.states(chains, frames[len(frames)-1].Time)
		}
	}
	s, err := engine.RunLive(ctx, cfg)
	if err == nil {
		err = stErr
	}
	r := rec.result()
	for _, b := range s.Billed {
		r.Billed = append(r.Billed, NFBill{b.Name, b.Packets})
	}
	return r, s, err
}

// teeAlerts gives each alert to both sinks.
type teeAlerts [2]snf.AlertSink

func (t teeAlerts) Alert(a *snf.Alert) {
	t[0].Alert(a)
	t[1].Alert(a)
}

// Mode says how strictly Compare compares.
type Mode int

const (
	// Exact: the same frames for every input packet, the same final flow states.
	Exact Mode = iota
	// UpToShared: equal up to the values shared read-write state hands out in arrival
	// order. A NAT's translated packets may carry another public port (and L4 checksum) than
	// the reference's, provided every mapping of the reference is one port in the run, no
	// port serves two mappings, and every checksum is valid; every other packet is exact.
	// Final flow states (which hold such values: a NAT's port, a monitor's slot) are compared
	// by count.
	UpToShared
)

// NATPublic is the public address UpToShared recognises translated packets by (nat's default).
var NATPublic = netip.MustParseAddr("192.0.2.1")

// Violation is a COE failure: the first difference found.
type Violation struct {
	What string // one line
}

func (v *Violation) Error() string { return "COE violation: " + v.What }

func violation(format string, args ...any) error {
	return &Violation{What: fmt.Sprintf(format, args...)}
}

func show(b []byte) string {
	if len(b) > 48 {
		return hex.EncodeToString(b[:48]) + "…"
	}
	return hex.EncodeToString(b)
}

// Compare checks got against the reference want; in is the input (UpToShared reads the
// inside flows from it). It returns nil or a *Violation naming the first difference, both
// sides shown.
func Compare(want, got Result, mode Mode, in []mem.Frame) error {
	clocks := make([]uint64, 0, len(want.Out))
	for c := range want.Out {
		clocks = append(clocks, c)
	}
	slices.Sort(clocks)
	for c := range got.Out {
		if _, ok := want.Out[c]; !ok {
			return violation("input packet %d: the run wrote %d frames for it (%s), the reference none", c, len(got.Out[c]), show(got.Out[c][0]))
		}
	}
	type mapping struct {
		flow packet.Key
		port uint16
	}
	portOf := map[mapping]uint16{}
	owner := map[uint16]mapping{}
	for _, c := range clocks {
		w, g := want.Out[c], got.Out[c]
		if len(g) != len(w) {
			return violation("input packet %d: the run wrote %d frames for it, the reference %d (first: %s)", c, len(g), len(w), show(w[0]))
		}
		for i := range w {
			if bytes.Equal(w[i], g[i]) {
				continue
			}
			var wp, gp packet.Packet
			wp.SetData(w[i], 0, 0)
			gp.SetData(g[i], 0, 0)
			if mode != UpToShared || !wp.IP() || wp.Key.SrcAddr() != NATPublic || int(c) > len(in) {
				return violation("input packet %d, frame %d differs: want %s, got %s", c, i, show(w[i]), show(g[i]))
			}
			wk, gk := wp.Key, gp.Key
			wk.SrcPort, gk.SrcPort = 0, 0
			if wp.IsEcho() {
				wk.DstPort, gk.DstPort = 0, 0
			}
			if wk != gk || len(w[i]) != len(g[i]) {
				return violation("input packet %d: translated to %s, the reference to %s", c, gp.Key, wp.Key)
			}
			if err := pkttest.VerifyChecksums(g[i]); err != nil && pkttest.VerifyChecksums(w[i]) == nil {
				return violation("input packet %d: %v", c, err)
			}
			var orig packet.Packet
			orig.SetData(in[c-1].Data, 0, 0)
			fk, _ := orig.Key.Canonical()
			m := mapping{fk, wp.Key.SrcPort}
			if p, ok := portOf[m]; ok && p != gp.Key.SrcPort {
				return violation("flow %s translated to ports %d and %d within one mapping", orig.Key, p, gp.Key.SrcPort)
			}
			portOf[m] = gp.Key.SrcPort
			if o, ok := owner[gp.Key.SrcPort]; ok && o != m {
				return violation("public port %d given to %s and %s", gp.Key.SrcPort, o.flow, orig.Key)
			}
			owner[gp.Key.SrcPort] = m
		}
	}
	for k, o := range got.Order {
		for i := 1; i < len(o); i++ {
			if o[i] < o[i-1] {
				return violation("flow %s: input packet %d written after %d", k, o[i], o[i-1])
			}
		}
	}
	if len(got.States) != len(want.States) {
		return violation("%d flows at the end, the reference %d", len(got.States), len(want.States))
	}
	if mode == Exact {
		keys := make([]packet.Key, 0, len(want.States))
		for k := range want.States {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b packet.Key) int { return bytes.Compare(a.Src[:], b.Src[:]) })
		for _, k := range keys {
			g, ok := got.States[k]
			if !ok {
				return violation("flow %s: no final state in the run", k)
			}
			if g != want.States[k] {
				return violation("flow %s: final state %s, the reference %s", k, show([]byte(g)), show([]byte(want.States[k])))
			}
		}
	}
	if !slices.Equal(got.Alerts, want.Alerts) {
		for i := range max(len(got.Alerts), len(want.Alerts)) {
			var g, w string
			if i < len(got.Alerts) {
				g = got.Alerts[i]
			}
			if i < len(want.Alerts) {
				w = want.Alerts[i]
			}
			if g != w {
				return violation("%d alerts, the reference %d; first difference: want %q, got %q", len(got.Alerts), len(want.Alerts), w, g)
			}
		}
	}
	// Billing: each packet once per NF it reached, whatever was replayed.
	if !slices.Equal(got.Billed, want.Billed) {
		return violation("billed %v, the reference %v", got.Billed, want.Billed)
	}
	return nil
}
