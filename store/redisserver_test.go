package store

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// redisServer is a redis-server process that a test starts on a free loopback port, in a
// temporary directory, and kills at its end.
type redisServer struct {
	t     testing.TB
	dir   string
	port  int
	extra []string
	cmd   *exec.Cmd
	exit  chan error // receives the process's exit
	log   *os.File
}

// startRedis starts a redis-server without persistence (extra arguments override), or
// skips the test when the binary is not installed.
func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed, skipping the Redis store tests (scripts/test installs it: apt-get install -y redis-server)")
	}
	s := &redisServer{t: t, dir: t.TempDir(), extra: extra}
	var err error
	for range 5 { // the free port may be taken between our probe and the server's bind
		s.port = freePort(t)
		if err = s.start(); err == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("redis-server did not start: %v\n%s", err, s.logTail())
	return nil
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// url returns the store URL of the server, with query options such as "timeout=500ms".
func (s *redisServer) url(opts string) string {
	u := "redis://" + s.addr()
	if opts != "" {
		u += "?" + opts
	}
	return u
}

func (s *redisServer) start() error {
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", s.dir, "--protected-mode", "no", "--daemonize", "no"}, s.extra...)
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.log = log
	s.cmd = exec.Command("redis-server", args...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		return err
	}
	cmd := s.cmd
	s.exit = make(chan error, 1)
	go func(exit chan error) { exit <- cmd.Wait() }(s.exit)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.exit:
			s.cmd = nil
			return fmt.Errorf("redis-server exited: %v", err)
		default:
		}
		if s.ping() == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("redis-server on port %d not answering after 5s", s.port)
}

// ping sends PING and expects +PONG.
func (s *redisServer) ping() error {
	c, err := net.DialTimeout("tcp", s.addr(), 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}

// command sends one command (inline protocol) and returns the first reply line.
func (s *redisServer) command(args ...string) string {
	s.t.Helper()
	c, err := net.DialTimeout("tcp", s.addr(), time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		s.t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimRight(line, "\r\n")
}

// info sends one command and returns its whole reply (a bulk string, for INFO-like commands).
func (s *redisServer) info(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(s.port)}, args...)...).Output()
	if err != nil {
		s.t.Fatal(err)
	}
	return string(out)
}

// keys returns every key of the server (KEYS *, for small test data sets).
func (s *redisServer) keys() []string {
	s.t.Helper()
	c, err := net.DialTimeout("tcp", s.addr(), time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	c.Write([]byte("*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n"))
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil || head[0] != '*' {
		s.t.Fatalf("KEYS: %q %v", head, err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(head[1:]))
	out := make([]string, 0, n)
	for range n {
		l, _ := r.ReadString('\n')
		size, _ := strconv.Atoi(strings.TrimSpace(l[1:]))
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, string(buf[:size]))
	}
	return out
}

// kill ends the server at once (SIGKILL): no shutdown, no final save.
func (s *redisServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	if sigCont != nil {
		s.cmd.Process.Signal(sigCont) // a stopped process dies only once continued
	}
	select {
	case <-s.exit:
	case <-time.After(5 * time.Second):
		s.t.Errorf("redis-server (pid %d) did not exit after SIGKILL", s.cmd.Process.Pid)
	}
	s.cmd = nil
}

// restart starts the server again on the same port and directory.
func (s *redisServer) restart() {
	s.t.Helper()
	var err error
	for range 50 { // the port may linger for a moment
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("restart: %v\n%s", err, s.logTail())
}

func (s *redisServer) signal(sig os.Signal) {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(sig)
	}
}

func (s *redisServer) stop() {
	s.kill()
	if s.log != nil {
		s.log.Close()
	}
}

func (s *redisServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
