package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// signalContext returns a context cancelled by the first SIGINT or SIGTERM (a command then
// ends cleanly: its output flushed, exit status 130). After that first signal it stops
// catching them, so that a second one ends the process at once with the default action —
// as Ctrl-C twice does for most programs — should the command be slow to stop. stop stops
// catching signals at any time (idempotent).
func signalContext() (ctx context.Context, stop context.CancelFunc) {
	ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}
