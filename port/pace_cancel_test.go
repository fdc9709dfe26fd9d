package port_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
)

// TestPacedSleepCutShort: a sleep that ends early with an error ends the replay: the Read
// that waited returns 0 and the error, releasing nothing, and so does every Read after it.
func TestPacedSleepCutShort(t *testing.T) {
	c := newFakeClock()
	stop := errors.New("stop")
	var cut bool
	sleep := func(d time.Duration) error {
		if cut {
			return stop
		}
		c.sleep(d)
		return nil
	}
	sec := int64(time.Second)
	r := port.PacedWith(mem.NewReader(framesAt(0, sec, 2*sec, 3*sec)), 1, sleep, c.now)
	pkts := make([]packet.Packet, 4)
	if n, err := r.Read(pkts); n != 1 || err != nil || pkts[0].Data[0] != 0 {
		t.Fatalf("first Read: %d, %v; want packet 0", n, err)
	}
	if n, err := r.Read(pkts); n != 1 || err != nil || pkts[0].Data[0] != 1 {
		t.Fatalf("second Read: %d, %v; want packet 1 after a second", n, err)
	}
	cut = true
	for i := range 3 {
		if n, err := r.Read(pkts); n != 0 || err != stop {
			t.Fatalf("Read %d after the sleep was cut short: %d packets, %v; want 0 and the sleep's error", i, n, err)
		}
	}
}

// TestPacedContextCancel: a paced replay waiting an hour for its next packet returns from
// its Read with context.Canceled once the context given to SleepContext is cancelled.
func TestPacedContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hour := int64(time.Hour)
	r := port.PacedWith(mem.NewReader(framesAt(0, hour, 2*hour)), 1, port.SleepContext(ctx), nil)
	pkts := make([]packet.Packet, 4)
	if n, err := r.Read(pkts); n != 1 || err != nil {
		t.Fatalf("first Read: %d, %v; want the first packet at once", n, err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := r.Read(pkts)
		done <- result{n, err}
	}()
	time.Sleep(50 * time.Millisecond) // (most likely asleep by now: either way the Read must end)
	cancel()
	select {
	case res := <-done:
		if res.n != 0 || !errors.Is(res.err, context.Canceled) {
			t.Fatalf("Read after cancel: %d packets, %v; want 0 and context.Canceled", res.n, res.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the paced Read still waits for a packet an hour away after its context was cancelled")
	}
	if n, err := r.Read(pkts); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("next Read: %d packets, %v; want 0 and context.Canceled", n, err)
	}
}
