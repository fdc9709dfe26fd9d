package engine_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/replay"
	"github.com/snf-dev/snf/store"
	"github.com/snf-dev/snf/unit"
)

// TestCheckpointsWriteBack: units of an elastic run write their state — flows, and the
// Scoped state of portscan and trojan — to the store in the background. After the run, the
// records each unit left rebuild a chain that behaves exactly like the unit's: fed the same
// further traffic, the same packets and alerts. With the firewall alone, flows move between
// units at every flowlet (handovers: flows leave and arrive between records).
func TestCheckpointsWriteBack(t *testing.T) {
	for _, tc := range []struct{ store, nfs string }{
		{"embedded", "firewall,portscan,trojan"}, {"redis", "firewall,portscan,trojan"}, {"embedded", "firewall"}, {"redis", "firewall"},
	} {
		storeName := tc.store
		t.Run(tc.store+"/"+tc.nfs, func(t *testing.T) {
			var st store.Store = store.NewEmbedded()
			if storeName == "redis" {
				var err error
				if st, err = store.Open(testtrace.RedisServer(t)); err != nil {
					t.Fatal(err)
				}
			}
			defer st.Close()
			spec, err := snf.ChainFromNames(tc.nfs)
			if err != nil {
				t.Fatal(err)
			}
			frames := generated(t, 20000)
			probe := generated(t, 3000) // the same flows later: their state matters
			for i := range probe {
				probe[i].Time += frames[len(frames)-1].Time
			}
			var checked int
			s, err := engine.RunLive(context.Background(), engine.LiveConfig{
				Spec: spec, In: mem.NewReader(frames), Policy: &mover{}, MinUnits: 1, MaxUnits: 3,
				Batch: 16, Capacity: 2000, Tick: time.Millisecond, Store: st, Checkpoint: time.Millisecond,
				OnDone: func(chains []*snf.Chain) {
					t.Helper()
					table, err := st.Table("runtime", engine.CheckpointTable)
					if err != nil {
						t.Fatal(err)
					}
					for u, a := range chains {
						recs, err := replay.Load(table, u)
						if err != nil {
							t.Fatal(err)
						}
						if len(recs) == 0 {
							continue // a unit that never ran
						}
						var alertsB testtrace.Alerts
						b, err := snf.NewChain(spec, snf.ChainOptions{Checkpoints: true, Alerts: &alertsB})
						if err != nil {
							t.Fatal(err)
						}
						defer b.Close()
						for _, r := range recs {
							_, cr, ok := unit.SplitRecord(r)
							if !ok {
								t.Fatal("truncated record")
							}
							if err := b.Restore(cr); err != nil {
								t.Fatal(err)
							}
						}
						if got, want := len(flowStatesOf(t, b)), len(flowStatesOf(t, a)); got != want {
							t.Fatalf("unit %d: %d flows restored, the unit has %d", u, got, want)
						}
						na := a.Stats().Alerts
						pa, pb := copyFrames(probe), copyFrames(probe)
						for i := 0; i < len(pa); i += 64 {
							oa := a.Process(pa[i:min(i+64, len(pa))], nil)
							ob := b.Process(pb[i:min(i+64, len(pb))], nil)
							if len(oa) != len(ob) {
								t.Fatalf("unit %d: probe batch %d: %d out of the unit, %d out of the restored chain", u, i/64, len(oa), len(ob))
							}
							for j := range oa {
								if !bytes.Equal(oa[j].Data, ob[j].Data) {
									t.Fatalf("unit %d: probe packet differs", u)
								}
							}
						}
						if d := a.Stats().Alerts - na; d != uint64(alertsB.Len()) {
							t.Fatalf("unit %d: %d alerts from the unit on the probe, %d from the restored chain", u, d, alertsB.Len())
						}
						checked++
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if checked == 0 || s.Checkpoints == 0 || s.CheckpointErrors != 0 {
				t.Fatalf("%d units checked, %d records, %d errors", checked, s.Checkpoints, s.CheckpointErrors)
			}
			t.Logf("%d units, %d records, %d bytes, %d handovers", checked, s.Checkpoints, s.CheckpointBytes, s.Handovers)
		})
	}
}

func copyFrames(fr []mem.Frame) []packet.Packet {
	p := make([]packet.Packet, len(fr))
	for i, f := range fr {
		p[i].SetData(bytes.Clone(f.Data), f.Time, f.WireLen)
		p[i].Clock = uint64(1<<40 + i)
	}
	return p
}

func flowStatesOf(t *testing.T, c *snf.Chain) map[packet.Key]string {
	m := map[packet.Key]string{}
	if err := c.Flows(func(k packet.Key, st []byte) bool { m[k] = string(st); return true }); err != nil {
		t.Fatal(err)
	}
	return m
}
