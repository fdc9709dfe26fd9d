package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
)

// TestPacedRunCancelled: a run whose paced input waits hours for its next packet ends
// promptly when cancelled (the pacer's sleep ends with the context), as cancelled —
// context.Canceled, not a bad input — with the packets read before written; on one chain
// and on elastic units.
func TestPacedRunCancelled(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := generated(t, 200)
	for _, elastic := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		in := port.PacedWith(mem.NewReader(frames), 1e-9, port.SleepContext(ctx), nil)
		w := &mem.Writer{}
		type result struct {
			packets, written uint64
			inErr, err       error
		}
		done := make(chan result, 1)
		go func() {
			if elastic {
				pol, _ := policy.New("snf", policy.Options{})
				s, err := engine.RunLive(ctx, engine.LiveConfig{Spec: spec, In: in, Out: w, Policy: pol, MaxUnits: 2, Capacity: 2000})
				done <- result{s.Packets, s.Written, s.InputErr, err}
				return
			}
			chain, err := snf.NewChain(spec, snf.ChainOptions{})
			if err != nil {
				done <- result{err: err}
				return
			}
			defer chain.Close()
			s, err := engine.Run(ctx, engine.Config{Chain: chain, In: in, Out: w})
			done <- result{s.Packets, s.Written, s.InputErr, err}
		}()
		time.AfterFunc(200*time.Millisecond, cancel)
		select {
		case r := <-done:
			if !errors.Is(r.err, context.Canceled) || r.inErr != nil {
				t.Errorf("elastic %v: run ended with %v (input error %v), want context.Canceled", elastic, r.err, r.inErr)
			}
			if r.packets == 0 || r.packets >= uint64(len(frames)) || r.written != r.packets {
				t.Errorf("elastic %v: %d packets read, %d written: want the first few, written", elastic, r.packets, r.written)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("elastic %v: the run waits for its paced input after it was cancelled", elastic)
		}
		cancel()
	}
}
