package main

import (
	"context"
	"fmt"
	"io"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/snftest"
)

// runVerified reads the whole input, runs the one-chain reference and the elastic run, and
// compares them (snftest). coe is nil when chain output equivalence holds. The elastic run
// reads the frames read, from memory — or, when again is set, the input opened again, which
// gives the same frames (generated traffic); with readOnce, taken as an input that cannot be
// read again (port.Copied). An input that ends in an error (a truncated capture) is verified
// up to it, and the error comes back in s.InputErr, as a run without --verify reports it.
func runVerified(ctx context.Context, lc engine.LiveConfig, again func() (port.Reader, error), readOnce bool, stderr io.Writer, quiet bool) (s engine.LiveSummary, coe, err error) {
	frames, inErr := mem.ReadAllContext(ctx, lc.In)
	if inErr != nil && ctx.Err() != nil {
		return s, nil, inErr
	}
	if !quiet {
		fmt.Fprintf(stderr, "snf: verify: %d packets read; running the one-chain reference\n", len(frames))
	}
	want, err := snftest.ReferenceContext(ctx, lc.Spec, frames)
	if err != nil {
		return s, nil, err
	}
	out := lc.Out
	lc.In = nil // the run reads the frames read above, from memory
	if again != nil {
		if lc.In, err = again(); err != nil {
			return s, nil, err
		}
		defer lc.In.Close()
	}
	if readOnce && lc.In == nil { // (again's input is taken so already)
		lc.In = port.Copied(mem.NewReader(frames))
	}
	got, s, err := snftest.Live(ctx, lc, frames)
	s.InputErr = inErr // (the frames before it were read, and verified)
	if err != nil {
		return s, nil, err
	}
	if out != nil {
		if err := writeResult(out, got, frames); err != nil {
			return s, nil, err
		}
	}
	mode := snftest.Exact
	if sharedValues(lc.Spec) {
		mode = snftest.UpToShared
	}
	return s, snftest.Compare(want, got, mode, frames), nil
}

// writeResult writes a verified run's output in input order (its packets were kept by the
// checker).
func writeResult(w port.Writer, r snftest.Result, in []mem.Frame) error {
	var p packet.Packet
	one := []*packet.Packet{&p}
	for c := uint64(1); c <= uint64(len(in)); c++ {
		for _, f := range r.Out[c] {
			p.SetData(f, in[c-1].Time, 0)
			if err := w.Write(one); err != nil {
				return err
			}
		}
	}
	return nil
}

// sharedValues reports whether an NF of spec declares read-write shared state (a NAT's port
// pool, a monitor's slots): its values follow the order flows reach it, so --verify compares
// up to them.
func sharedValues(spec *snf.ChainSpec) bool {
	c, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		return false
	}
	defer c.Close()
	for _, r := range c.Report() {
		for _, d := range r.Shared {
			if d.Access == snf.ReadWrite {
				return true
			}
		}
	}
	return false
}
