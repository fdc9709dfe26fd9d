package testtrace

import (
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"
)

// Redis is a redis-server the test started on a loopback port.
type Redis struct {
	URL  string
	tb   testing.TB
	bin  string
	args []string
	addr string
	cmd  *exec.Cmd
}

// RedisServer starts a redis-server on a free loopback port for the test (stopped at its
// end) and returns its redis:// URL, or skips the test when redis-server is not installed
// (scripts/test installs it).
func RedisServer(tb testing.TB) string { return StartRedis(tb, false).URL }

// StartRedis starts a redis-server as RedisServer does; with persist, it writes every
// change to an append-only file synced at once, so a restart keeps what it acknowledged.
func StartRedis(tb testing.TB, persist bool) *Redis {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Skip("redis-server not installed (scripts/test installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &Redis{tb: tb, bin: bin, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	r.URL = "redis://" + r.addr
	r.args = []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--dir", tb.TempDir()}
	if persist {
		// (No background rewrite of the file: its child process would outlive a Stop and
		// write into the test's directory while the test removes it.)
		r.args = append(r.args, "--appendonly", "yes", "--appendfsync", "always", "--auto-aof-rewrite-percentage", "0")
	} else {
		r.args = append(r.args, "--appendonly", "no")
	}
	r.Start()
	tb.Cleanup(r.Stop)
	return r
}

// Start (re)starts the server on its port and waits until it accepts connections.
func (r *Redis) Start() {
	r.tb.Helper()
	r.cmd = exec.Command(r.bin, r.args...)
	ownGroup(r.cmd) // (Stop kills its children too)
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := net.Dial("tcp", r.addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("redis-server did not start on %s", r.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would), and any child it forked (a background save):
// none writes into the test's directory once Stop returns.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		pid := r.cmd.Process.Pid
		killGroup(r.cmd)
		r.cmd.Wait()
		// A child outlives its parent until the kill reaches it (then init reaps it).
		for deadline := time.Now().Add(2 * time.Second); groupAlive(pid) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		r.cmd = nil
	}
}
