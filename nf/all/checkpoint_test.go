package all_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/store"
	"github.com/snf-dev/snf/trace"
)

// generatedPackets returns n packets of the built-in generator.
func generatedPackets(t *testing.T, n int) []packet.Packet {
	cfg := trace.DefaultGenConfig()
	cfg.Packets, cfg.Flows, cfg.Rate = n, 2000, 50000
	g, err := trace.NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var all []packet.Packet
	batch := make([]packet.Packet, 64)
	for {
		k, err := g.Read(batch)
		for i := range batch[:k] {
			var p packet.Packet
			p.SetData(batch[i].Data, batch[i].Time, batch[i].WireLen)
			all = append(all, p)
		}
		if err != nil {
			return all
		}
	}
}

func clonePackets(pkts []packet.Packet) []packet.Packet {
	c := make([]packet.Packet, len(pkts))
	for i := range pkts {
		c[i].SetData(bytes.Clone(pkts[i].Data), pkts[i].Time, pkts[i].WireLen)
		c[i].Clock = pkts[i].Clock
	}
	return c
}

// flowStates returns every flow's exported state by key.
func flowStates(t *testing.T, c *snf.Chain) map[packet.Key]string {
	m := map[packet.Key]string{}
	if err := c.Flows(func(k packet.Key, st []byte) bool { m[k] = string(st); return true }); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCheckpointRestoreContinues: a chain with per-flow and Scoped state (firewall,
// portscan, trojan, ratelimit) checkpoints as it goes (incremental records, a full one now
// and then); a fresh chain that restores the records from the last full one on has the same
// flows, and, fed the rest of the traffic, gives the same packets and the same alerts as the
// chain that never stopped — so its Scoped state (scan walks, per-host sequences, token
// buckets) came back too. So does one that restores them all at once (RestoreAll, which
// leaves out the flow versions later records replace). With a NAT (flows with alias keys)
// the restored flows are compared, not what follows: its ports live in the store.
func TestCheckpointRestoreContinues(t *testing.T) {
	for _, nfs := range []string{"firewall,portscan,trojan,ratelimit", "nat,firewall"} {
		t.Run(nfs, func(t *testing.T) { checkpointRestoreContinues(t, nfs) })
	}
}

func checkpointRestoreContinues(t *testing.T, nfs string) {
	inputs := map[string][]packet.Packet{"generated": generatedPackets(t, 40000)}
	dir := testtrace.Dir(t)
	for _, name := range []string{"nmap_synscan.pcap", "pcapplusplus_example.pcap"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			inputs[name] = testtrace.Packets(t, name)
		}
	}
	for name, pkts := range inputs {
		for i := range pkts {
			pkts[i].Clock = uint64(i + 1)
		}
		for _, cutAt := range []int{len(pkts) / 3, len(pkts) * 2 / 3} {
			t.Run(fmt.Sprintf("%s/cut%d", name, cutAt), func(t *testing.T) {
				var alertsA, alertsB testtrace.Alerts
				a := testtrace.ChainOf(t, nfs, snf.ChainOptions{Checkpoints: true, Alerts: &alertsA, Store: store.NewEmbedded()})
				in := clonePackets(pkts)
				var recs [][]byte
				for i, n := 0, 0; i < cutAt; i += 64 {
					a.Process(in[i:min(i+64, cutAt)], nil)
					if n++; n%16 == 0 {
						full := n%64 == 0
						rec, _, err := a.Checkpoint(nil, full)
						if err != nil {
							t.Fatal(err)
						}
						if full {
							recs = recs[:0]
						}
						recs = append(recs, rec)
					}
				}
				rec, clock, err := a.Checkpoint(nil, false)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, rec)
				if clock != uint64(cutAt) {
					t.Errorf("the last record reflects clock %d, want %d", clock, cutAt)
				}
				b := testtrace.ChainOf(t, nfs, snf.ChainOptions{Checkpoints: true, Alerts: &alertsB, Store: store.NewEmbedded()})
				size := 0
				for _, r := range recs {
					size += len(r)
					if err := b.Restore(r); err != nil {
						t.Fatal(err)
					}
				}
				// The same records at once, leaving out the versions later ones replace.
				var alertsC testtrace.Alerts
				cc := testtrace.ChainOf(t, nfs, snf.ChainOptions{Checkpoints: true, Alerts: &alertsC, Store: store.NewEmbedded()})
				if err := cc.RestoreAll(recs); err != nil {
					t.Fatal(err)
				}
				want := flowStates(t, a)
				for name, got := range map[string]map[packet.Key]string{"Restore": flowStates(t, b), "RestoreAll": flowStates(t, cc)} {
					if len(got) != len(want) {
						t.Fatalf("%s restored %d flows, the chain has %d", name, len(got), len(want))
					}
					for k, st := range want {
						if got[k] != st {
							t.Fatalf("%s: flow %s: restored state differs", name, k)
						}
					}
				}
				got := want
				if strings.Contains(nfs, "nat") {
					// A NAT's ports live in the store, not in the records: the chains, each with
					// a store of its own, would hand out others after the cut.
					return
				}
				before := alertsA.Len()
				restA, restB, restC := in[cutAt:], clonePackets(pkts[cutAt:]), clonePackets(pkts[cutAt:])
				for i := 0; i < len(restA); i += 64 {
					outA := a.Process(restA[i:min(i+64, len(restA))], nil)
					for name, r := range map[string]*snf.Chain{"restored": b, "restored at once": cc} {
						rest := restB
						if r == cc {
							rest = restC
						}
						out := r.Process(rest[i:min(i+64, len(rest))], nil)
						if len(outA) != len(out) {
							t.Fatalf("after the cut, batch %d: %d packets out of the chain, %d out of the %s one", i/64, len(outA), len(out), name)
						}
						for j := range outA {
							if !bytes.Equal(outA[j].Data, out[j].Data) {
								t.Fatalf("after the cut, batch %d packet %d differs (%s)", i/64, j, name)
							}
						}
					}
				}
				aa := alertsA.Snapshot()[before:]
				for name, as := range map[string][]snf.Alert{"restored": alertsB.Snapshot(), "restored at once": alertsC.Snapshot()} {
					if len(aa) != len(as) {
						t.Fatalf("after the cut: %d alerts from the chain, %d from the %s one", len(aa), len(as), name)
					}
					for i := range aa {
						if fmt.Sprint(aa[i]) != fmt.Sprint(as[i]) {
							t.Fatalf("alert %d differs (%s):\n%v\n%v", i, name, aa[i], as[i])
						}
					}
				}
				t.Logf("%d records (%d bytes) restored %d flows; %d alerts after the cut", len(recs), size, len(got), len(aa))
			})
		}
	}
}

// FuzzRestore: a damaged or foreign record is an error, never a panic.
func FuzzRestore(f *testing.F) {
	c, err := snf.NewChain(mustSpec(f, "firewall,portscan,trojan,ratelimit,nat"), snf.ChainOptions{Checkpoints: true})
	if err != nil {
		f.Fatal(err)
	}
	pkts := generatedPackets(&testing.T{}, 200)
	c.Process(pkts[:100], nil)
	full, _, _ := c.Checkpoint(nil, true)
	c.Process(pkts[100:], nil)
	inc, _, _ := c.Checkpoint(nil, false)
	c.Close()
	f.Add(full)
	f.Add(inc)
	f.Add([]byte("SNFK\x02"))
	// One chain for all inputs (building one per input is slow): what earlier inputs
	// restored stays, which only widens what a later one meets.
	r, err := snf.NewChain(mustSpec(f, "firewall,portscan,trojan,ratelimit,nat"), snf.ChainOptions{Checkpoints: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	f.Fuzz(func(t *testing.T, rec []byte) {
		if err := r.Restore(rec); err != nil && bytes.ContainsRune([]byte(err.Error()), '\n') {
			t.Fatalf("error is not one line: %q", err)
		}
	})
}

func mustSpec(tb testing.TB, nfs string) *snf.ChainSpec {
	s, err := snf.ChainFromNames(nfs)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestRestoreRefusesBadRecords: records that are not checkpoints, of another version,
// truncated, or of another chain's Scoped state give a one-line error.
func TestRestoreRefusesBadRecords(t *testing.T) {
	a := testtrace.ChainOf(t, "portscan", snf.ChainOptions{Checkpoints: true})
	a.Process(generatedPackets(t, 500), nil)
	rec, _, err := a.Checkpoint(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	b := testtrace.ChainOf(t, "trojan", snf.ChainOptions{Checkpoints: true})
	v2 := bytes.Clone(rec)
	v2[4] = rec[4] + 1 // a version this build does not read
	for name, r := range map[string][]byte{
		"foreign": []byte("GIF89a...................."), "version": v2, "truncated": rec[:len(rec)/2],
	} {
		if err := b.Restore(r); err == nil {
			t.Errorf("%s record restored without error", name)
		}
	}
	if err := b.Restore(rec); err == nil || !bytes.Contains([]byte(err.Error()), []byte("no scoped state")) {
		t.Errorf("a portscan record restored into a trojan chain: %v", err)
	}
	plain := testtrace.ChainOf(t, "firewall", snf.ChainOptions{})
	if _, _, err := plain.Checkpoint(nil, false); err == nil {
		t.Error("a chain without Checkpoints wrote a record")
	}
}

// TestRestoreAllChecksFirst: RestoreAll with a damaged record among good ones fails, names
// the record, and leaves the chain as it was.
func TestRestoreAllChecksFirst(t *testing.T) {
	a := testtrace.ChainOf(t, "firewall", snf.ChainOptions{Checkpoints: true})
	pkts := generatedPackets(t, 3000)
	a.Process(pkts[:1000], nil)
	full, _, err := a.Checkpoint(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	a.Process(pkts[1000:], nil)
	inc, _, err := a.Checkpoint(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	b := testtrace.ChainOf(t, "firewall", snf.ChainOptions{Checkpoints: true})
	err = b.RestoreAll([][]byte{full, inc, inc[:len(inc)/2]})
	if err == nil || !strings.Contains(err.Error(), "record 3 of 3") {
		t.Fatalf("a truncated third record: %v", err)
	}
	if n := len(flowStates(t, b)); n != 0 {
		t.Fatalf("the failed RestoreAll left %d flows", n)
	}
	if err := b.RestoreAll([][]byte{full, inc}); err != nil {
		t.Fatal(err)
	}
	want, got := flowStates(t, a), flowStates(t, b)
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("restored %d flows, the chain has %d", len(got), len(want))
	}
}

// TestRestoreCounters: a restored chain counts on from the record's counters (the chain's,
// each NF's and the NFs' metrics), so that a recovery that replays the packets after the
// record counts — and bills — each packet once.
func TestRestoreCounters(t *testing.T) {
	const nfs = "firewall,portscan,nat,monitor"
	a := testtrace.ChainOf(t, nfs, snf.ChainOptions{Checkpoints: true})
	pkts := generatedPackets(t, 3000)
	a.Process(clonePackets(pkts[:1000]), nil)
	full, _, err := a.Checkpoint(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	a.Process(clonePackets(pkts[1000:2000]), nil)
	inc, _, err := a.Checkpoint(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	b := testtrace.ChainOf(t, nfs, snf.ChainOptions{Checkpoints: true})
	b.Process(clonePackets(pkts[:100]), nil) // counters of its own, which the records replace
	for _, r := range [][]byte{full, inc} {
		if err := b.Restore(r); err != nil {
			t.Fatal(err)
		}
	}
	if a.Stats() != b.Stats() || fmt.Sprint(a.Report()) != fmt.Sprint(b.Report()) {
		t.Fatalf("restored counters differ:\n%+v %+v\n%+v %+v", a.Stats(), a.Report(), b.Stats(), b.Report())
	}
	if a.Stats().In != 2000 || a.Report()[0].Stats.In != 2000 {
		t.Fatalf("the chain counted %d packets, its first NF %d, want 2000", a.Stats().In, a.Report()[0].Stats.In)
	}
	other := testtrace.ChainOf(t, "firewall,portscan,nat", snf.ChainOptions{Checkpoints: true})
	if err := other.Restore(full); err == nil || bytes.ContainsRune([]byte(err.Error()), '\n') {
		t.Errorf("a record of 4 NFs restored into a chain of 3: %v", err)
	}
}

// BenchmarkRestore: a fresh nat,firewall chain restores ~14,000 flows (a recovery's restore
// of one unit that held every flow): from one full record, and from a full record and the
// four incremental ones written after it while traffic went on (as a unit's checkpoints
// are), one by one (Restore) and at once (RestoreAll, which imports each flow's last
// version only). ns/flow is per flow version in the records.
func BenchmarkRestore(b *testing.B) {
	cfg := trace.DefaultGenConfig()
	cfg.Packets, cfg.Flows, cfg.Rate = 100000, 10000, 50000
	g, err := trace.NewGenerator(cfg)
	if err != nil {
		b.Fatal(err)
	}
	spec := mustSpec(b, "nat,firewall")
	st := store.NewEmbedded()
	a, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	batch := make([]packet.Packet, 64)
	var recs [][]byte
	for clock, n := uint64(1), 0; ; n++ {
		k, err := g.Read(batch)
		for i := range batch[:k] {
			batch[i].Clock = clock
			clock++
		}
		a.Process(batch[:k], nil)
		if err != nil {
			break
		}
		if n >= 900 && n%150 == 0 { // a full record after 900 batches, then one every 150
			rec, _, err := a.Checkpoint(nil, len(recs) == 0)
			if err != nil {
				b.Fatal(err)
			}
			recs = append(recs, rec)
		}
	}
	for _, bc := range []struct {
		name string
		recs [][]byte
		all  bool
	}{{"full", recs[:1], false}, {"incremental", recs, false}, {"incremental-all", recs, true}} {
		b.Run(bc.name, func(b *testing.B) {
			versions := 0
			for _, r := range bc.recs {
				c, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true, Store: st})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Restore(r); err != nil {
					b.Fatal(err)
				}
				versions += len(flowStates(&testing.T{}, c))
				c.Close()
			}
			for b.Loop() {
				b.StopTimer()
				c, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true, Store: st})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if bc.all {
					if err := c.RestoreAll(bc.recs); err != nil {
						b.Fatal(err)
					}
				}
				for _, r := range bc.recs {
					if bc.all {
						break
					}
					if err := c.Restore(r); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				c.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(versions), "ns/flow")
			b.ReportMetric(float64(versions), "versions")
		})
	}
}
