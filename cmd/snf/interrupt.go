package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

// ctxReader is a Reader whose Reads fail with its context's error once the context is done
// (looked at per Read: per batch).
type ctxReader struct {
	port.Reader
	ctx context.Context
}

func (r ctxReader) Read(pkts []packet.Packet) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.Reader.Read(pkts)
}

// cancelled reports whether err is ctx's own, ctx done: the command was interrupted.
func cancelled(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err())
}

// interruptedWriting is the exit (status 130, one line) of a command interrupted while it
// wrote the capture out, closed since: how much it holds.
func interruptedWriting(cmd, out string, packets int64) error {
	size := ""
	if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() {
		size = fmt.Sprintf(" (%d bytes)", fi.Size())
	}
	return &exitError{130, fmt.Sprintf("%s: interrupted; %s holds the %d packets written so far%s", cmd, out, packets, size)}
}
