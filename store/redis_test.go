package store

import (
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bounds asserted by the Redis tests (the measured values, on loopback, are far below; see
// README.md).
const (
	// coherenceBound: a Set on one store is seen by a Get on another store (which had the
	// key cached) within this time.
	coherenceBound = 50 * time.Millisecond
	// outageSlack: an operation fails within the store's timeout plus this.
	outageSlack = 500 * time.Millisecond
	// recoveryBound: once the server answers again, operations succeed within this time.
	recoveryBound = 2 * time.Second
)

func openRedis(t testing.TB, srv *redisServer, opts string) *Redis {
	t.Helper()
	s, err := Open(srv.url(opts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.(*Redis)
}

func TestOpenURLs(t *testing.T) {
	for _, u := range []string{"", "embedded"} {
		s, err := Open(u)
		if _, ok := s.(*Embedded); !ok || err != nil {
			t.Errorf("Open(%q) = %T, %v", u, s, err)
		}
	}
	for u, want := range map[string]string{
		"embeded":                         "want \"embedded\" or redis://",
		"mysql://h:1":                     `unknown scheme "mysql"`,
		"redis://":                        "no host",
		"redis://h:0":                     "out of range",
		"redis://h:70000":                 "out of range",
		"redis://h:x":                     "invalid port",
		"redis://h:1/x":                   `database "x"`,
		"redis://u:p@h:1":                 "credentials",
		"redis://h:1?timeout=0":           "timeout",
		"redis://h:1?batch=-1":            "batch",
		"redis://h:1?colour=red":          `unknown option "colour"`,
		"redis://h:1?ttl=soon":            "ttl",
		"redis://[::1:6379":               "missing ']'",
		"redis://h:1?dedup=1s&flush=10xs": "flush",
	} {
		_, err := Open(u)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%q): %v, want a one-line error with %q", u, err, want)
		}
	}
	o, err := ParseRedisURL("redis://10.0.0.1/3?timeout=500ms&ttl=1s&batch=64&flush=5ms&dedup=2m")
	if err != nil || o.Addr != "10.0.0.1:6379" || o.DB != 3 || o.Timeout != 500*time.Millisecond ||
		o.CacheTTL != time.Second || o.Batch != 64 || o.FlushEvery != 5*time.Millisecond || o.DedupWindow != 2*time.Minute {
		t.Errorf("parsed %+v, %v", o, err)
	}
}

// TestOpenUnreachable: a closed port, and a server that accepts but never answers, are
// errors within the connect timeout, not hangs.
func TestOpenUnreachable(t *testing.T) {
	port := freePort(t)
	start := time.Now()
	_, err := Open("redis://127.0.0.1:" + itoa(port) + "?timeout=500ms")
	if err == nil || !strings.Contains(err.Error(), "unreachable") || time.Since(start) > 500*time.Millisecond+outageSlack {
		t.Errorf("closed port: %v after %v", err, time.Since(start))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // accept and say nothing
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	start = time.Now()
	_, err = Open("redis://" + l.Addr().String() + "?timeout=500ms")
	took := time.Since(start)
	t.Logf("silent server: %v after %v", err, took)
	if err == nil || took > 500*time.Millisecond+outageSlack {
		t.Errorf("silent server: %v after %v", err, took)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestRedisKeyLayout: every key of an object carries the object's hash tag, so an object
// lives in one cluster slot; braces in names cannot end the tag early.
func TestRedisKeyLayout(t *testing.T) {
	srv := startRedis(t)
	s := openRedis(t, srv, "")
	objs := [][2]string{{"tenant/nat", "ports"}, {"t", "we{ir}d%"}}
	for _, o := range objs {
		p := mustPool(t, s, o[0], o[1], 1, 10)
		v, _, _ := p.Take(Tag{Unit: 1, Clock: 1, Seq: 1})
		p.Put(Tag{Unit: 1, Clock: 2, Seq: 1}, v)
		c := mustCounters(t, s, o[0], o[1])
		c.Add(Tag{Unit: 1, Clock: 1, Seq: 2}, 1, 1)
		mustFlush(t, c)
		tb := mustTable(t, s, o[0], o[1])
		tb.Set("k}{", []byte("v"))
		if _, _, err := mustRegisters(t, s, o[0], o[1]).CompareAndSet(Tag{Unit: 1, Clock: 1, Seq: 3}, "k}{", nil, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	keys := srv.keys()
	byTag := map[string][]string{}
	for _, k := range keys {
		if !strings.HasPrefix(k, "snf:{") {
			t.Errorf("key %q outside snf:{", k)
			continue
		}
		i := strings.IndexByte(k, '}')
		byTag[k[:i+1]] = append(byTag[k[:i+1]], k[i+1:])
	}
	if len(byTag) != len(objs) {
		t.Fatalf("keys %q: want %d hash tags", keys, len(objs))
	}
	for tag, rest := range byTag {
		slices.Sort(rest)
		t.Logf("%s: %q", tag, rest)
		want := []string{":c", ":cseen", ":pfree", ":pmeta", ":pputs", ":r:k}{", ":rd:00000001000000030000000000000001", ":t:k}{", ":tver"}
		if !slices.Equal(rest, want) {
			t.Errorf("%s: keys %q, want %q", tag, rest, want)
		}
	}
	if _, ok := byTag["snf:{t/we%7Bir%7Dd%25}"]; !ok {
		t.Errorf("escaped tag missing: %v", byTag)
	}
}

// TestRedisTableCoherence: a cached Get makes no round trip; a Set (or Delete) on one store
// is seen by Get on another store that had the key cached within coherenceBound.
func TestRedisTableCoherence(t *testing.T) {
	srv := startRedis(t)
	a, b := openRedis(t, srv, ""), openRedis(t, srv, "")
	ta, tb := mustTable(t, a, "t", "backends"), mustTable(t, b, "t", "backends")
	if err := ta.Set("k", []byte("0")); err != nil {
		t.Fatal(err)
	}
	waitTable(t, tb, "k", "0", true)
	n := b.fetches.Load()
	for range 10000 {
		if v, ok := tb.Get("k"); !ok || string(v) != "0" {
			t.Fatalf("cached get: %q %v", v, ok)
		}
	}
	if d := b.fetches.Load() - n; d != 0 {
		t.Fatalf("10000 cached gets made %d round trips", d)
	}

	const rounds = 300
	delays := make([]time.Duration, 0, rounds)
	for i := 1; i <= rounds; i++ {
		want := itoa(i)
		if i%10 == 0 { // a delete, then the set
			if err := ta.Delete("k"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for {
				if _, ok := tb.Get("k"); !ok {
					break
				}
				if time.Since(start) > time.Second {
					t.Fatalf("delete %d not seen after 1s", i)
				}
			}
			delays = append(delays, time.Since(start))
		}
		if err := ta.Set("k", []byte(want)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for {
			if v, _ := tb.Get("k"); string(v) == want {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("set %d not seen after 1s", i)
			}
		}
		delays = append(delays, time.Since(start))
	}
	slices.Sort(delays)
	p50, p99, max := delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1]
	t.Logf("coherence delay over %d changes: p50 %v, p99 %v, max %v (bound %v)", len(delays), p50, p99, max, coherenceBound)
	if max > coherenceBound {
		t.Errorf("a change took %v to be seen (bound %v)", max, coherenceBound)
	}
}

// TestRedisTableTTL: without invalidations (the entry's age alone), a cached entry is read
// again after CacheTTL.
func TestRedisTableTTL(t *testing.T) {
	srv := startRedis(t)
	s := openRedis(t, srv, "ttl=100ms")
	tb := mustTable(t, s, "t", "tb").(*redisTable)
	tb.Set("k", []byte("1"))
	tb.Get("k")
	n := s.fetches.Load()
	tb.Get("k")
	if s.fetches.Load() != n {
		t.Fatal("a fresh entry was fetched again")
	}
	time.Sleep(150 * time.Millisecond)
	tb.Get("k")
	if s.fetches.Load() != n+1 {
		t.Fatalf("an entry older than the TTL was not fetched again (%d fetches)", s.fetches.Load()-n)
	}
}

// TestRedisOutageAndRecovery: the server is killed mid-test. Operations fail, naming the
// operation, within the timeout; counter adds are kept; a table serves the values it had.
// The server comes back on the same port (without persistence: its data is lost):
// operations succeed again without reopening, and the kept adds are applied.
func TestRedisOutageAndRecovery(t *testing.T) {
	srv := startRedis(t)
	const timeout = time.Second
	s := openRedis(t, srv, "timeout=1s")
	p := mustPool(t, s, "t", "ports", 1, 100)
	c := mustCounters(t, s, "t", "c").(*redisCounters)
	tb := mustTable(t, s, "t", "tb")
	if _, _, err := p.Take(Tag{Unit: 1, Clock: 1}); err != nil {
		t.Fatal(err)
	}
	tb.Set("k", []byte("before"))
	tb.Get("k")
	c.Add(Tag{Unit: 1, Clock: 1, Seq: 2}, 1, 5)
	mustFlush(t, c)

	srv.kill()
	start := time.Now()
	_, _, err := p.Take(Tag{Unit: 1, Clock: 2})
	took := time.Since(start)
	t.Logf("server killed: take failed after %v: %v", took, err)
	if err == nil || !strings.Contains(err.Error(), "pool take t/ports") || took > timeout+outageSlack {
		t.Fatalf("take after the server died: %v after %v", err, took)
	}
	start = time.Now()
	_, _, err = p.Take(Tag{Unit: 1, Clock: 3})
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 10*time.Millisecond {
		t.Errorf("take right after a failure: %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	for i := range 10 {
		c.Add(Tag{Unit: 1, Clock: 4, Seq: uint32(i + 1)}, 1, 1)
	}
	if err := c.Flush(); err == nil || c.Pending() != 10 {
		t.Errorf("flush during the outage: %v, %d pending, want an error and 10", err, c.Pending())
	}
	// The store's flush of several handles that all fail is one error, not one per handle.
	c2 := mustCounters(t, s, "t", "c2")
	c2.Add(Tag{Unit: 1, Clock: 4}, 1, 1)
	if err := s.Flush(); err == nil || strings.Count(err.Error(), "counters flush") != 1 || !strings.Contains(err.Error(), "and 1 more counter objects not flushed") {
		t.Errorf("store flush during the outage: %v", err)
	}
	if v, ok := tb.Get("k"); !ok || string(v) != "before" {
		t.Errorf("table during the outage: %q %v, want the last value (fail-static)", v, ok)
	}
	if err := tb.Set("k", []byte("x")); err == nil || !strings.Contains(err.Error(), "table set t/tb") {
		t.Errorf("set during the outage: %v", err)
	}

	srv.restart()
	back := time.Now()
	for {
		_, ok, err := p.Take(Tag{Unit: 1, Clock: 5})
		if err == nil && ok {
			break
		}
		if time.Since(back) > recoveryBound {
			t.Fatalf("take still failing %v after the server came back: %v", recoveryBound, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("server back: take succeeded after %v", time.Since(back))
	if err := c.Flush(); err != nil || c.Pending() != 0 {
		t.Fatalf("flush after recovery: %v, %d pending", err, c.Pending())
	}
	if got := c.Get(1); got != 10 { // the 5 applied before were lost with the server's data
		t.Errorf("counter after recovery: %d, want the 10 adds kept during the outage", got)
	}
	if err := tb.Set("k", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if v, ok := tb.Get("k"); !ok || string(v) != "after" {
		t.Errorf("table after recovery: %q %v", v, ok)
	}
	if free := p.Free(); free != 99 {
		t.Errorf("pool after recovery (state lost, one take since): free %d, want 99", free)
	}
}

// TestRedisPersistence: with --appendonly yes --appendfsync always, pool takes that were
// acknowledged survive a crash (SIGKILL) and restart, and so do their dedup records.
func TestRedisPersistence(t *testing.T) {
	srv := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	s := openRedis(t, srv, "")
	p := mustPool(t, s, "t", "ports", 1, 1000)
	taken := map[uint32]Tag{}
	for i := range 50 {
		tg := Tag{Unit: 1, Clock: uint64(i + 1), Seq: 1}
		v, ok, err := p.Take(tg)
		if !ok || err != nil {
			t.Fatal(v, ok, err)
		}
		taken[v] = tg
	}
	c := mustCounters(t, s, "t", "c")
	c.Add(Tag{Unit: 1, Clock: 1, Seq: 2}, 1, 42)
	mustFlush(t, c)
	srv.kill()
	srv.restart()

	s2 := openRedis(t, srv, "")
	p2 := mustPool(t, s2, "t", "ports", 1, 1000)
	if free := p2.Free(); free != 950 {
		t.Fatalf("after restart: free %d, want 950", free)
	}
	for v, tg := range taken {
		if got, ok, err := p2.Take(tg); got != v || !ok || err != nil {
			t.Fatalf("replayed take after restart: %d %v %v, want %d", got, ok, err, v)
		}
	}
	for i := range 10 {
		v, ok, err := p2.Take(Tag{Unit: 2, Clock: uint64(i + 1), Seq: 1})
		if _, dup := taken[v]; !ok || err != nil || dup {
			t.Fatalf("new take after restart: %d %v %v (taken before: %v)", v, ok, err, dup)
		}
	}
	c2 := mustCounters(t, s2, "t", "c")
	c2.Add(Tag{Unit: 1, Clock: 1, Seq: 2}, 1, 42) // a replay of an add applied before the crash
	mustFlush(t, c2)
	if got := c2.Get(1); got != 42 {
		t.Fatalf("counter after restart and replay: %d, want 42", got)
	}
}

// TestRedisRetryWhileLoading: a server that restarts with data to load answers LOADING for
// a while; that is an outage, not a refusal: with retry= a pool take waits through it, and
// counter adds flushed meanwhile are kept and sent, not dropped.
func TestRedisRetryWhileLoading(t *testing.T) {
	// Loading 5000 keys takes 0.5 s, answering clients meanwhile.
	srv := startRedis(t, "--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024")
	s := openRedis(t, srv, "timeout=500ms&retry=10s&flush=5ms")
	p := mustPool(t, s, "t", "ports", 1, 100)
	c := mustCounters(t, s, "t", "c").(*redisCounters)
	first, _, err := p.Take(Tag{Unit: 1, Clock: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv.command("EVAL", "for i=1,5000 do redis.call('SET','k'..i,'v') end return 1", "0")
	if r := srv.command("SAVE"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("SAVE: %q", r)
	}
	srv.kill()
	go func() {
		time.Sleep(50 * time.Millisecond)
		srv.restart()
	}()
	for i := range 100 {
		c.Add(Tag{Unit: 1, Clock: uint64(i + 1), Seq: 1}, 7, 1)
	}
	start := time.Now()
	v, ok, err := p.Take(Tag{Unit: 1, Clock: 2})
	if err != nil || !ok || v == first {
		t.Fatalf("take through a restart and its loading: %d %v %v (first take %d)", v, ok, err, first)
	}
	t.Logf("take waited %v, %d retries", time.Since(start), s.Retries())
	deadline := time.Now().Add(10 * time.Second)
	for c.Get(7) != 100 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := c.Get(7); got != 100 || c.Dropped() != 0 {
		t.Fatalf("counter after the restart: %d (%d adds dropped), want 100", got, c.Dropped())
	}
}

// TestRedisCountersNonBlocking: Add never waits for the server, even when it is gone, and
// the adds buffered past MaxPending are dropped and counted.
func TestRedisCountersNonBlocking(t *testing.T) {
	srv := startRedis(t)
	s := openRedis(t, srv, "timeout=1s&batch=16&flush=5ms")
	c := mustCounters(t, s, "t", "c").(*redisCounters)
	for i := range 1000 {
		c.Add(Tag{Unit: 1, Clock: uint64(i + 1), Seq: 1}, 1, 1)
	}
	deadline := time.Now().Add(time.Second)
	for c.Pending() > 0 && time.Now().Before(deadline) { // the background flush sends them
		time.Sleep(time.Millisecond)
	}
	if c.Pending() != 0 || c.Get(1) != 1000 {
		t.Fatalf("background flush: %d pending, value %d", c.Pending(), c.Get(1))
	}
	srv.kill()
	s.o.MaxPending = 5000
	start := time.Now()
	for i := range 10000 {
		c.Add(Tag{Unit: 1, Clock: uint64(2000 + i), Seq: 1}, 1, 1)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("10000 adds with the server gone took %v", took)
	}
	if c.Pending() != 5000 || c.Dropped() != 5000 {
		t.Errorf("pending %d, dropped %d, want 5000 and 5000", c.Pending(), c.Dropped())
	}
}

// TestRedisRetryThroughRestart: with retry=, a pool take that meets a restarting server
// (persistence on) waits for it and succeeds, with the same tag: the server applies it once.
// Without, it fails at once (TestRedisOutageAndRecovery).
func TestRedisRetryThroughRestart(t *testing.T) {
	srv := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	s := openRedis(t, srv, "timeout=500ms&retry=5s")
	p := mustPool(t, s, "t", "ports", 1, 100)
	first, _, err := p.Take(Tag{Unit: 1, Clock: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv.kill()
	go func() {
		time.Sleep(300 * time.Millisecond)
		srv.restart()
	}()
	start := time.Now()
	v, ok, err := p.Take(Tag{Unit: 1, Clock: 2})
	if err != nil || !ok || v == first {
		t.Fatalf("take through a restart: %d %v %v (first take %d)", v, ok, err, first)
	}
	t.Logf("take waited %v through the restart, %d retries", time.Since(start), s.Retries())
	if s.Retries() == 0 {
		t.Error("no retry counted")
	}
	again, _, err := p.Take(Tag{Unit: 1, Clock: 2}) // the same tag: the value given, not a new one
	if err != nil || again != v {
		t.Errorf("repeated take: %d %v, want %d", again, err, v)
	}
	start = time.Now()
	if err := p.Put(Tag{Unit: 1, Clock: 4}, 1000); err == nil || time.Since(start) > 100*time.Millisecond {
		t.Errorf("a put outside the range: %v after %v, want an error at once (no retry)", err, time.Since(start))
	}
}
