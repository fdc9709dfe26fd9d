package mem

import (
	"context"
	"errors"
	"testing"

	"github.com/snf-dev/snf/packet"
)

// endless is a reader that never ends: one frame per Read; it calls onRead with the number
// of Reads so far.
type endless struct {
	reads  int
	onRead func(int)
}

func (e *endless) Read(pkts []packet.Packet) (int, error) {
	e.reads++
	e.onRead(e.reads)
	pkts[0].SetData([]byte{1, 2, 3, 4}, int64(e.reads), 0)
	return 1, nil
}

// TestReadAllContext: ReadAllContext stops reading once its context is done and returns
// the frames read before with the context's error.
func TestReadAllContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &endless{onRead: func(n int) {
		if n == 5 {
			cancel()
		}
		if n > 1000 {
			panic("ReadAllContext reads on after its context was cancelled")
		}
	}}
	fr, err := ReadAllContext(ctx, r)
	if !errors.Is(err, context.Canceled) || len(fr) != 5 || r.reads != 5 {
		t.Errorf("%d frames, %d reads, %v; want the 5 read before the cancel, context.Canceled", len(fr), r.reads, err)
	}
}
