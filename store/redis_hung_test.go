//go:build unix

package store

import (
	"syscall"
	"testing"
	"time"
)

// TestRedisHungServer: a server that stops answering (SIGSTOP) makes operations fail
// within the timeout; once it answers again (SIGCONT), they succeed.
func TestRedisHungServer(t *testing.T) {
	srv := startRedis(t)
	const timeout = 500 * time.Millisecond
	s := openRedis(t, srv, "timeout=500ms")
	p := mustPool(t, s, "t", "ports", 1, 100)
	if _, _, err := p.Take(Tag{Unit: 1, Clock: 1}); err != nil {
		t.Fatal(err)
	}
	srv.signal(syscall.SIGSTOP)
	start := time.Now()
	_, _, err := p.Take(Tag{Unit: 1, Clock: 2})
	took := time.Since(start)
	t.Logf("server stopped: take failed after %v: %v", took, err)
	if err == nil || took > timeout+outageSlack {
		srv.signal(syscall.SIGCONT)
		t.Fatalf("take on a hung server: %v after %v", err, took)
	}
	srv.signal(syscall.SIGCONT)
	back := time.Now()
	var v uint32
	for {
		var ok bool
		v, ok, err = p.Take(Tag{Unit: 1, Clock: 2}) // the same tag: applied once even if the first reached the server
		if err == nil && ok {
			break
		}
		if time.Since(back) > recoveryBound+timeout {
			t.Fatalf("take still failing after the server resumed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("server resumed: take succeeded after %v", time.Since(back))
	if free := p.Free(); free != 98 {
		t.Errorf("free %d, want 98 (two takes, the retried one applied once); got value %d", free, v)
	}
}
