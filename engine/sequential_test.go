package engine_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/pkttest"
	_ "github.com/snf-dev/snf/nf/all"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/mem"
)

func TestRunStampsClocksAndWritesInOrder(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("198.51.100.1")
	var frames []mem.Frame
	for i := range 200 {
		frames = append(frames, mem.Frame{Data: pkttest.UDP(a, b, uint16(1000+i%7), 53, nil), Time: int64(i) * 1e6})
	}
	spec, _ := snf.ChainFromNames("nat")
	chain, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	w := &mem.Writer{}
	s, err := engine.Run(context.Background(), engine.Config{Chain: chain, In: mem.NewReader(frames), Out: w, Batch: 16})
	if err != nil || s.InputErr != nil {
		t.Fatal(err, s.InputErr)
	}
	out := w.Frames()
	if s.Packets != 200 || s.Written != 200 || len(out) != 200 || s.Chain.Out != 200 {
		t.Fatalf("summary %+v, %d written", s, len(out))
	}
	for i, f := range out {
		var p packet.Packet
		p.SetData(f.Data, f.Time, 0)
		if p.Key.SrcAddr() != netip.MustParseAddr("192.0.2.1") || f.Time != int64(i)*1e6 {
			t.Fatalf("frame %d: %s at %d", i, p.Key, f.Time)
		}
	}
	if s.FirstTS != 0 || s.LastTS != 199e6 {
		t.Errorf("timestamps %d..%d", s.FirstTS, s.LastTS)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	spec, _ := snf.ChainFromNames("none")
	chain, _ := snf.NewChain(spec, snf.ChainOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := engine.Run(ctx, engine.Config{Chain: chain, In: mem.NewReader(nil)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}
