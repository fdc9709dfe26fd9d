package snf_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
)

// taker is a test NF: a packet to port 4000 makes its flow take over the key of the flow
// 10.0.0.1:1000 → 10.0.0.2:2000 (ExpectReply: as a NAT maps a reply key). It counts the
// FlowEnd hooks it runs in takerEnds.
type taker struct{}

type takerConfig struct{}

var (
	takerEnds int
	takerKey  = packet.KeyFrom(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1000, 2000, packet.ProtoUDP)
)

func init() {
	snf.Register("taker", "test NF", func() *takerConfig { return &takerConfig{} },
		func(env *snf.Env, cfg *takerConfig) (snf.NF, error) { return taker{}, nil })
}

func (taker) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if p.Key.DstPort == 4000 {
		ctx.ExpectReply(takerKey)
	}
	return snf.Forward
}

func (taker) FlowEnd(*snf.Context) { takerEnds++ }

// TestRestoreRunsNoHooks: a record whose flows collide — one took the other's key — restores
// without FlowEnd hooks (the record is the state, not events).
func TestRestoreRunsNoHooks(t *testing.T) {
	spec, err := snf.ChainFromNames("taker")
	if err != nil {
		t.Fatal(err)
	}
	a, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h1, h2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	h3, h4 := netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")
	// Flow i; flow j, which takes i's key; i's reply, so that i is the more recent and a
	// full record lists j first.
	b := batchOf(pkttest.UDP(h1, h2, 1000, 2000, nil), pkttest.UDP(h3, h4, 3000, 4000, nil), pkttest.UDP(h2, h1, 2000, 1000, nil))
	a.Process(b, nil)
	rec, _, err := a.Checkpoint(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	takerEnds = 0
	r, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Restore(rec); err != nil {
		t.Fatal(err)
	}
	if takerEnds != 0 {
		t.Errorf("the restore ran %d FlowEnd hooks", takerEnds)
	}
}

// Flows of the collision tests: y (takerKey, whose key k takes over), its reply, and k.
var (
	collideY  = func() []byte { return pkttest.UDP(collideH[0], collideH[1], 1000, 2000, nil) }
	collideYr = func() []byte { return pkttest.UDP(collideH[1], collideH[0], 2000, 1000, nil) }
	collideK  = func() []byte { return pkttest.UDP(collideH[2], collideH[3], 3000, 4000, nil) }
	collideH  = [4]netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"),
		netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")}
)

// tables describes a chain's flows (with their times) and the flow each key of the
// collision tests finds, for comparing chains.
func tables(t *testing.T, c *snf.Chain) string {
	t.Helper()
	desc := func(st []byte) string {
		r := st[38:] // (the exported state: key, first, last, packets, flowlets, alias)
		return fmt.Sprintf("%x{first %d last %d packets %d alias %v}", st[:38], binary.BigEndian.Uint64(r), binary.BigEndian.Uint64(r[8:]), binary.BigEndian.Uint64(r[16:]), r[28] == 1)
	}
	var fl []string
	if err := c.Flows(func(k packet.Key, st []byte) bool { fl = append(fl, desc(st)); return true }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(fl)
	s := "flows " + strings.Join(fl, ", ")
	kk := packet.KeyFrom(collideH[2], collideH[3], 3000, 4000, packet.ProtoUDP)
	for _, k := range []packet.Key{takerKey, takerKey.Reverse(), kk} {
		if b, err := c.ExportFlow(k, nil); err != nil {
			s += fmt.Sprintf("; %s finds none", k)
		} else {
			s += fmt.Sprintf("; %s finds %s", k, desc(b))
		}
	}
	return s
}

// TestRestoreCollisions: records of flows that took over one another's keys restore, one by
// one (Restore) and at once (RestoreAll), to the table the chain had: the same flows, and
// each key finding the same flow.
//   - gone: y's key was taken by k's alias, then y ended: the record's gone entry for y's
//     key drops y (not k, which holds the key);
//   - twice: k took y's key and ended, and a packet with y's key made z: a record lists y
//     (now without keys) and z, both with y's Key;
//   - full: as gone, with a full record last (the records before it are left out).
func TestRestoreCollisions(t *testing.T) {
	chain := checkpointingChains(t, "taker")
	ck := func(c *snf.Chain, full bool) []byte {
		r, _, err := c.Checkpoint(nil, full)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	s := int64(time.Second)
	for _, tc := range []struct {
		name  string
		later [][][]byte // batches after the first record (at 30 s, 61 s: the timeout is 60 s)
		full  bool       // the last record is a full one
	}{
		{"gone", [][][]byte{{collideK()}, {collideK()}}, false},
		{"twice", [][][]byte{{collideYr()}, {collideY()}}, false},
		{"full", [][][]byte{{collideK()}, {collideK()}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := chain()
			o.Process(pkttest.Batch(0, collideY(), collideK()), nil) // k takes y's key
			recs := [][]byte{ck(o, true)}
			for i, b := range tc.later {
				o.Process(pkttest.Batch([]int64{30 * s, 61 * s}[i], b...), nil)
			}
			recs = append(recs, ck(o, tc.full))
			one, all := chain(), chain()
			restoreBothWays(t, one, all, recs)
			want := tables(t, o)
			for name, c := range map[string]*snf.Chain{"Restore": one, "RestoreAll": all} {
				if got := tables(t, c); got != want {
					t.Errorf("%s:\n got %s\nwant %s", name, got, want)
				}
			}
		})
	}
}

// retaker is a test NF for TestRestoreAllRandom: a packet whose payload's first byte is
// below len(retakeKeys) makes its flow take over that key (as a NAT maps a reply key); a
// later packet may pick another, so flows change their alias and take keys from each other.
type retaker struct{}

type retakerConfig struct{}

var retakeKeys = func() (ks []packet.Key) {
	for i := range 4 {
		ks = append(ks, packet.KeyFrom(collideH[i%2], collideH[2+i/2], 1000+uint16(i), 2000, packet.ProtoUDP))
	}
	return ks
}()

func init() {
	snf.Register("retaker", "test NF", func() *retakerConfig { return &retakerConfig{} },
		func(env *snf.Env, cfg *retakerConfig) (snf.NF, error) { return retaker{}, nil })
}

func (retaker) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	if pl := p.Payload(); len(pl) > 0 && int(pl[0]) < len(retakeKeys) {
		ctx.ExpectReply(retakeKeys[pl[0]])
	}
	return snf.Forward
}

// TestRestoreAllRandom: RestoreAll ends with the table that Restore, record by record, ends
// with — the same flows, and every key finding the same flow — over random traffic of a few
// hosts and ports whose flows take over one another's keys, change their aliases, end and
// come back, with records written at random (some full), restored into a fresh chain and
// into one that restored the records before them.
func TestRestoreAllRandom(t *testing.T) {
	chain := checkpointingChains(t, "retaker")
	// Every key the traffic can have, both ways, and the keys taken over.
	var keys []packet.Key
	for a := range 4 {
		for b := range 4 {
			for sp := range 3 {
				for dp := range 2 {
					k := packet.KeyFrom(collideH[a], collideH[b], 1000+uint16(sp), 2000+uint16(dp), packet.ProtoUDP)
					keys = append(keys, k, k.Reverse())
				}
			}
		}
	}
	for _, k := range retakeKeys {
		keys = append(keys, k, k.Reverse())
	}
	describe := func(c *snf.Chain) string {
		var fl []string
		if err := c.Flows(func(k packet.Key, st []byte) bool { fl = append(fl, fmt.Sprintf("%x", st)); return true }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(fl)
		s := strings.Join(fl, "\n")
		for _, k := range keys {
			if b, err := c.ExportFlow(k, nil); err == nil {
				s += fmt.Sprintf("\n%s → %x", k, b[:38])
			}
		}
		return s
	}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 1))
		o := chain()
		var recs [][]byte
		now := int64(0)
		for range 4 + rng.IntN(12) {
			var frames [][]byte
			for range 1 + rng.IntN(6) {
				a, b := rng.IntN(4), rng.IntN(4)
				sp, dp := 1000+uint16(rng.IntN(3)), 2000+uint16(rng.IntN(2))
				if rng.IntN(5) == 0 { // a reply to a key taken over: a flow made with it
					k := retakeKeys[rng.IntN(len(retakeKeys))]
					frames = append(frames, pkttest.UDP(k.DstAddr(), k.SrcAddr(), k.DstPort, k.SrcPort, []byte{9}))
					continue
				}
				frames = append(frames, pkttest.UDP(collideH[a], collideH[b], sp, dp, []byte{byte(rng.IntN(6))}))
			}
			// Mostly seconds apart; now and then past the UDP timeout, so that flows end.
			now += int64(time.Second) * int64(1+rng.IntN(20))
			if rng.IntN(6) == 0 {
				now += int64(61 * time.Second)
			}
			o.Process(pkttest.Batch(now, frames...), nil)
			o.Expire(now)
			if rng.IntN(3) > 0 {
				r, _, err := o.Checkpoint(nil, len(recs) == 0 || rng.IntN(5) == 0)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, r)
			}
		}
		for from := range recs {
			one, all := chain(), chain()
			if from > 0 { // the records restored into a chain that holds the ones before
				for _, r := range recs[:from] {
					if err := one.Restore(r); err != nil {
						t.Fatal(err)
					}
					if err := all.Restore(r); err != nil {
						t.Fatal(err)
					}
				}
			}
			restoreBothWays(t, one, all, recs[from:])
			if want, got := describe(one), describe(all); got != want {
				t.Fatalf("seed %d, records %d–%d of %d: RestoreAll\n%s\nRestore one by one\n%s", seed, from+1, len(recs), len(recs), got, want)
			}
		}
	}
}

// TestRestoreAllIntoLiveChain: records without a full one, restored with RestoreAll into a
// chain that ran traffic of its own, in which two flows have one Key k (one holds k, the
// other its reverse): the records' gone k and then a new version of k drop both, as Restore
// one by one does. (RestoreAll's planned look-ups must all stay without a full record.)
func TestRestoreAllIntoLiveChain(t *testing.T) {
	chain := checkpointingChains(t, "retaker")
	s := int64(time.Second)
	H := collideH
	pk := func(pl byte) []byte { return pkttest.UDP(H[0], H[2], 1000, 2000, []byte{pl}) } // k = retakeKeys[0]
	px := func(pl byte) []byte { return pkttest.UDP(H[1], H[2], 1001, 2000, []byte{pl}) } // x = retakeKeys[1]
	pm := func(pl byte) []byte { return pkttest.UDP(H[3], H[1], 1000, 2001, []byte{pl}) }
	live := func() *snf.Chain {
		c := chain()
		c.Process(pkttest.Batch(1*s, pk(1)), nil) // A (Key k) takes x as its alias
		c.Process(pkttest.Batch(2*s, pm(0)), nil) // B takes k from A
		c.Process(pkttest.Batch(3*s, pm(2)), nil) // B takes another alias: k is free
		c.Process(pkttest.Batch(4*s, pk(9)), nil) // A2 (Key k) takes k's reverse from A
		c.Process(pkttest.Batch(5*s, px(0)), nil) // A (found by x) takes k back from A2
		return c
	}
	describe := func(c *snf.Chain) string {
		var fl []string
		if err := c.Flows(func(k packet.Key, st []byte) bool { fl = append(fl, fmt.Sprintf("%s %x", k, st[38:])); return true }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(fl)
		return strings.Join(fl, "\n")
	}
	ck := func(c *snf.Chain) []byte {
		r, _, err := c.Checkpoint(nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	w := chain()
	w.Process(pkttest.Batch(10*s, pk(9)), nil)
	ck(w)
	w.Expire(100 * s) // k ends: a record with gone k
	r1 := ck(w)
	w.Process(pkttest.Batch(101*s, pk(9)), nil)
	recs := [][]byte{r1, ck(w)}
	one, all := live(), live()
	restoreBothWays(t, one, all, recs)
	if got, want := describe(all), describe(one); got != want {
		t.Errorf("RestoreAll\n%s\nRestore one by one\n%s", got, want)
	}
}

// checkpointingChains returns a function that builds chains of the named NFs with
// checkpoints on, closed when the test ends.
func checkpointingChains(t *testing.T, names string) func() *snf.Chain {
	t.Helper()
	spec, err := snf.ChainFromNames(names)
	if err != nil {
		t.Fatal(err)
	}
	return func() *snf.Chain {
		c, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// restoreBothWays restores recs into one with Restore, record by record, and into all with
// RestoreAll.
func restoreBothWays(t *testing.T, one, all *snf.Chain, recs [][]byte) {
	t.Helper()
	for _, r := range recs {
		if err := one.Restore(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := all.RestoreAll(recs); err != nil {
		t.Fatal(err)
	}
}
