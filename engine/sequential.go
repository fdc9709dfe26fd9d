// Package engine drives the snf components. This file holds the sequential engine: one
// chain instance fed batch by batch from a port, on the calling goroutine — the embedded
// default of `snf run` and the reference ("one ideal instance") that elastic runs are
// compared against.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

// DefaultBatch is the default number of packets per batch.
const DefaultBatch = 64

// Config configures a sequential run.
type Config struct {
	Chain *snf.Chain
	In    port.Reader
	Out   port.Writer // nil discards the output
	Batch int         // packets per batch (DefaultBatch if 0)
	// Progress, if set, is called about every ProgressEvery of wall time with the running
	// totals.
	Progress      func(Summary)
	ProgressEvery time.Duration
	// Now returns the wall time (time.Now if nil); used for the duration and rate only.
	Now func() time.Time
}

// Summary is what a run did.
type Summary struct {
	Packets  uint64        // packets read
	Bytes    uint64        // bytes read (captured)
	Written  uint64        // packets written out (forwarded + emitted)
	Elapsed  time.Duration // wall time
	Chain    snf.ChainStats
	FirstTS  int64 // timestamp of the first and last packet read (ns)
	LastTS   int64
	InputErr error // the error that ended the input early, if any (all packets before it were processed)
}

// PPS returns packets processed per second of wall time.
func (s Summary) PPS() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Packets) / s.Elapsed.Seconds()
}

// Run processes cfg.In through cfg.Chain into cfg.Out until the input ends, ctx is
// cancelled, or the output fails. The returned error is an output failure or
// cancellation; a bad input ends the run normally with Summary.InputErr set.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 2 * time.Second
	}
	var (
		s        Summary
		batch    = make([]packet.Packet, cfg.Batch)
		out      = make([]*packet.Packet, 0, 2*cfg.Batch)
		clock    uint64
		start    = cfg.Now()
		lastProg = start
	)
	finish := func(err error) (Summary, error) {
		s.Elapsed = cfg.Now().Sub(start)
		s.Chain = cfg.Chain.Stats()
		return s, err
	}
	port.ReleaseAll(cfg.In) // (no frame is read again)
	for {
		if err := ctx.Err(); err != nil {
			return finish(err)
		}
		n, err := cfg.In.Read(batch)
		for i := range batch[:n] {
			p := &batch[i]
			clock++
			p.Clock = clock
			if s.Packets == 0 {
				s.FirstTS = p.Time
			}
			s.Packets++
			s.Bytes += uint64(len(p.Data))
			s.LastTS = p.Time
		}
		if n > 0 {
			out = cfg.Chain.Process(batch[:n], out[:0])
			if cfg.Out != nil && len(out) > 0 {
				if werr := cfg.Out.Write(out); werr != nil {
					return finish(fmt.Errorf("write output: %w", werr))
				}
			}
			s.Written += uint64(len(out))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				if cerr := ctx.Err(); cerr != nil {
					return finish(cerr) // an input that ends with the run's cancel (port.PacedWith)
				}
				s.InputErr = err
			}
			return finish(nil)
		}
		if cfg.Progress != nil {
			if now := cfg.Now(); now.Sub(lastProg) >= cfg.ProgressEvery {
				lastProg = now
				p := s
				p.Elapsed = now.Sub(start)
				p.Chain = cfg.Chain.Stats()
				cfg.Progress(p)
			}
		}
	}
}
