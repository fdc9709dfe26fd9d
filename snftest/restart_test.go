package snftest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/store"
)

// TestStoreRestart: the Redis store is killed in the middle of a run (persistence on) and
// restarted 300 ms later, between two unit kills. With retry= the units wait through the
// outage (their blocking operations are tried again with the same tags, so the server applies
// each once), checkpoints resume, and COE holds: a NAT's ports, a monitor's slots and counters,
// a scan detector's state, checkpoints and recovery all live in the restarted server.
func TestStoreRestart(t *testing.T) {
	srv := testtrace.StartRedis(t, true)
	st, err := store.Open(srv.URL + "?timeout=500ms&retry=10s")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	type input struct{ name, in string }
	ins := []input{{"generated", "generated:5000"}}
	if tracesDir() != "" {
		ins = append(ins, input{"pcapplusplus_example", "pcapplusplus_example.pcap"}, input{"ddos_synflood_spoofed", "ddos_synflood_spoofed.pcap"})
	} else {
		t.Log("real captures not found beside the repository: generated traffic only")
	}
	for _, in := range ins {
		frames, err := LoadInput(in.in, tracesDir())
		if err != nil {
			t.Fatal(err)
		}
		for ci, c := range chains {
			t.Run(fmt.Sprintf("%s/%s", in.name, c.nfs), func(t *testing.T) {
				want := reference(t, c.nfs, frames)
				n := uint64(len(frames))
				var wg sync.WaitGroup
				restart := func() {
					srv.Stop()
					wg.Add(1)
					go func() {
						defer wg.Done()
						time.Sleep(300 * time.Millisecond)
						srv.Start()
					}()
				}
				sc := Scenario{Name: "restart", NFs: c.nfs, Policy: "snf", Units: 4, Mode: c.mode, Faults: []engine.Fault{
					{Kind: engine.FaultKill, Unit: 0, AtPacket: n / 4},
					{Kind: engine.FaultCall, AtPacket: n / 2, Do: restart},
					{Kind: engine.FaultKill, Unit: 1, AtPacket: n * 3 / 4},
				}}
				rep := Run(context.Background(), sc, frames, want, Options{
					Store: store.Namespaced(st, fmt.Sprintf("restart/%s/%d", in.name, ci)), FailTimeout: 5 * time.Second})
				wg.Wait()
				if rep.Err != nil {
					t.Fatal(rep.Err)
				}
				s := rep.Summary
				if s.Failures < 2 {
					t.Errorf("%d failures recovered, want the 2 kills", s.Failures)
				}
				t.Logf("%d packets, %d failures, %d replayed, %d checkpoints (%d failed writes), %d retries of store operations so far",
					s.Packets, s.Failures, s.Replayed, s.Checkpoints, s.CheckpointErrors, st.(*store.Redis).Retries())
			})
		}
	}
}
