package unit_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/unit"
)

// TestStallEnds: a unit stalled for a minute ends its sleep at once when it is killed — it
// then hands its batch back unprocessed and writes nothing, as a straggler woken after its
// Kill does — or when the channel given to EndStallsOn is closed (a cancelled run: it
// processes the batch, as if the stall had ended). Either way Run returns promptly once In
// is closed.
func TestStallEnds(t *testing.T) {
	for _, how := range []string{"kill", "end"} {
		t.Run(how, func(t *testing.T) {
			chain, err := snf.NewChain(seqSpec(t, 0), snf.ChainOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer chain.Close()
			in := make(chan *unit.Batch, 1)
			tr := &directTransport{out: make(chan stampedBatch, 4)}
			u := unit.New(0, chain, in, tr, nil)
			end := make(chan struct{})
			u.EndStallsOn(end)
			u.Stall(time.Minute)

			home := make(chan *unit.Batch, 1)
			b := unit.NewBatch(2, home)
			a, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
			for i, p := range pkttest.Batch(0, pkttest.UDP(a, c, 1000, 53, make([]byte, 20)), pkttest.UDP(a, c, 1001, 53, make([]byte, 20))) {
				b.Pkts[i].CopyFrom(&p)
				b.Pkts[i].Clock, b.Pkts[i].Flow = uint64(i+1), uint64(i+1)
			}
			b.N, b.Seq = 2, 1
			ran := make(chan struct{})
			go func() { defer close(ran); u.Run() }()
			in <- b
			for deadline := time.Now().Add(10 * time.Second); len(in) > 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the unit did not take its batch")
				}
			}
			time.Sleep(20 * time.Millisecond) // (asleep by now, most likely: either way the stall must end)
			if how == "kill" {
				u.Kill()
			} else {
				close(end)
			}
			close(in)
			select {
			case <-ran:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: the stalled unit still sleeps", how)
			}
			if how == "kill" {
				if len(tr.out) != 0 || u.Processed() != 0 {
					t.Errorf("killed while stalled: %d batches sent out, %d processed, want none", len(tr.out), u.Processed())
				}
				select {
				case got := <-home:
					if got != b || len(got.Out) != 0 {
						t.Errorf("the batch came home with %d outputs, want none", len(got.Out))
					}
				default:
					t.Error("the killed unit kept its batch")
				}
				return
			}
			if len(tr.out) != 1 || u.Processed() != 1 {
				t.Fatalf("stall ended: %d batches sent out, %d processed, want 1", len(tr.out), u.Processed())
			}
			if got := (<-tr.out).b; len(got.Out) != 2 {
				t.Errorf("stall ended: the batch left with %d outputs, want 2", len(got.Out))
			}
		})
	}
}
