package engine_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/store"
)

// runStore returns st with a fresh namespace for one run (runs must not share a pool), or nil
// for the embedded default.
func runStore(t *testing.T, st store.Store) store.Store {
	if st == nil {
		return nil
	}
	return store.Namespaced(st, t.Name())
}

// mapping is one NAT translation of the one-unit run: the inside flow and the port it got.
type mapping struct {
	flow packet.Key
	port uint16
}

// clockWriter records each written packet by its clock.
type clockWriter struct {
	mu  sync.Mutex
	out map[uint64][]byte
}

func (w *clockWriter) Write(pkts []*packet.Packet) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range pkts {
		w.out[p.Clock] = append([]byte(nil), p.Data...)
	}
	return nil
}
func (w *clockWriter) Close() error { return nil }

// TestElasticNATConsistent: a NAT's shared port pool may hand out other ports when flows
// reach it in another order, so an elastic run equals the one-unit run up to those values:
// the same packets otherwise, every flow translated to one public port in both directions,
// no two flows sharing a port, every checksum valid.
func TestElasticNATConsistent(t *testing.T) { testElasticNAT(t, nil) }

// TestElasticNATConsistentOnRedis: the same with the NAT's port pool in Redis, shared by
// the units as separate clients of one server.
func TestElasticNATConsistentOnRedis(t *testing.T) {
	st, err := store.Open(testtrace.RedisServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	testElasticNAT(t, st)
}

func testElasticNAT(t *testing.T, st store.Store) {
	spec, err := snf.ChainFromNames("nat")
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]mem.Frame{"generated": generated(t, 20000)}
	if dir, err := filepath.Abs("../../shared/traces"); err == nil {
		if files, _ := filepath.Glob(filepath.Join(dir, "*.pcap")); len(files) > 0 {
			for _, f := range files {
				inputs[filepath.Base(f)] = readFrames(t, f)
			}
		}
	}
	public := netip.MustParseAddr("192.0.2.1")
	for name, frames := range inputs {
		for _, pn := range []string{"snf", "mover"} {
			t.Run(name+"/"+pn, func(t *testing.T) {
				var pol policy.Policy = &mover{}
				if pn != "mover" {
					pol, _ = policy.New(pn, policy.Options{})
				}
				ref := &clockWriter{out: map[uint64][]byte{}}
				chain, _ := snf.NewChain(spec, snf.ChainOptions{}) // the reference: embedded, one chain
				defer chain.Close()
				var clock uint64
				in := mem.NewReader(frames)
				batch := make([]packet.Packet, 16)
				for {
					n, err := in.Read(batch)
					for i := range batch[:n] {
						clock++
						batch[i].Clock = clock
					}
					out := chain.Process(batch[:n], nil)
					ref.Write(out)
					if err != nil {
						break
					}
				}
				got := &clockWriter{out: map[uint64][]byte{}}
				s, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: mem.NewReader(frames), Out: got,
					Policy: pol, MinUnits: 1, MaxUnits: 8, Batch: 16, Capacity: 2000, Tick: time.Millisecond, Store: runStore(t, st)})
				if err != nil {
					t.Fatal(err)
				}
				if len(got.out) != len(ref.out) {
					t.Fatalf("%d packets out, one-unit run %d", len(got.out), len(ref.out))
				}
				portOf := map[mapping]uint16{} // mapping of the one-unit run → public port here
				owner := map[uint16]mapping{}
				for c, want := range ref.out {
					g, ok := got.out[c]
					if !ok {
						t.Fatalf("packet with clock %d missing", c)
					}
					var wp, gp packet.Packet
					wp.SetData(want, 0, 0)
					gp.SetData(g, 0, 0)
					if len(g) != len(want) {
						t.Fatalf("clock %d: length %d, one-unit run %d", c, len(g), len(want))
					}
					if !wp.IP() || wp.Key.SrcAddr() != public {
						if string(g) != string(want) {
							t.Fatalf("clock %d (%s): not translated, yet differs", c, wp.Key)
						}
						continue
					}
					// Translated: equal but for the public port and the L4 checksum.
					wk, gk := wp.Key, gp.Key
					wk.SrcPort, gk.SrcPort = 0, 0
					if wp.IsEcho() { // the echo id is both "ports"
						wk.DstPort, gk.DstPort = 0, 0
					}
					if wk != gk {
						t.Fatalf("clock %d: %s vs %s", c, gp.Key, wp.Key)
					}
					if err := pkttest.VerifyChecksums(g); err != nil && pkttest.VerifyChecksums(want) == nil {
						t.Fatalf("clock %d: %v", c, err)
					}
					// The flow, as the inside host sent it: look it up by the reference frame's
					// destination and the original (pre-NAT) frame.
					var orig packet.Packet
					orig.SetData(frames[c-1].Data, 0, 0)
					// A mapping is the flow with the port the one-unit run gave it (a flow idle past
					// the NAT's timeout gets a new mapping, in both runs alike).
					fk, _ := orig.Key.Canonical()
					m := mapping{fk, wp.Key.SrcPort}
					if p, ok := portOf[m]; ok && p != gp.Key.SrcPort {
						t.Fatalf("flow %s translated to ports %d and %d within one mapping", orig.Key, p, gp.Key.SrcPort)
					}
					portOf[m] = gp.Key.SrcPort
					if o, ok := owner[gp.Key.SrcPort]; ok && o != m {
						t.Fatalf("public port %d given to %s and %s", gp.Key.SrcPort, o.flow, orig.Key)
					}
					owner[gp.Key.SrcPort] = m
				}
				t.Logf("%d packets, %d translated flows, %d handovers", s.Packets, len(portOf), s.Handovers)
			})
		}
	}
}
