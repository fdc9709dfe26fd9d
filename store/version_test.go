package store

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

// Table.Version: a holder of values derived from a table learns that it changed.

func TestSuiteTableVersion(t *testing.T) { forEachBackend(t, suiteTableVersion) }

// waitVersion waits until tb's version is above since and returns it and the wait; it fails
// the test after bound.
func waitVersion(t testing.TB, tb Table, since uint64, bound time.Duration, what string) (uint64, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		if v := tb.Version(); v > since {
			return v, time.Since(start)
		}
		if d := time.Since(start); d > bound {
			t.Fatalf("%s: version still %d after %v", what, since, d)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// settle waits until tb's version stays put for 30 ms (trailing invalidations arrived).
func settle(t testing.TB, tb Table) uint64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for v := tb.Version(); ; {
		time.Sleep(30 * time.Millisecond)
		w := tb.Version()
		if w == v {
			return v
		}
		if w < v {
			t.Fatalf("version went back from %d to %d", v, w)
		}
		if time.Now().After(deadline) {
			t.Fatalf("version still moving after 2s (%d)", w)
		}
		v = w
	}
}

// suiteTableVersion: a writer's own version moves at once; another client's moves within
// the coherence bound for every kind of change — a key it never read, a key it has cached,
// a delete — and it does not move for reads or for writes to another table.
func suiteTableVersion(t *testing.T, b *backend) {
	s1, s2 := b.open(t), b.open(t)
	w, r := mustTable(t, s1, "t", "ver"), mustTable(t, s2, "t", "ver")
	v := w.Version()
	if err := w.Set("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if w.Version() <= v {
		t.Fatalf("own write: version %d, was %d", w.Version(), v)
	}
	waitTable(t, r, "a", "1", true) // r caches "a"
	for i, change := range []struct {
		what string
		do   func() error
	}{
		{"set of a key never read", func() error { return w.Set("fresh", []byte("x")) }},
		{"set of a cached key", func() error { return w.Set("a", []byte("2")) }},
		{"delete of a cached key", func() error { return w.Delete("a") }},
		{"set of a deleted key", func() error { return w.Set("a", []byte("3")) }},
		{"delete of a key never read", func() error { return w.Delete("fresh") }},
	} {
		before := r.Version()
		if err := change.do(); err != nil {
			t.Fatal(err)
		}
		_, d := waitVersion(t, r, before, coherenceBound, change.what)
		t.Logf("change %d (%s) seen after %v", i, change.what, d)
	}
	waitTable(t, r, "a", "3", true)

	quiet := settle(t, r)
	for i := range 100 {
		r.Get("a")
		r.Get("missing" + strconv.Itoa(i))
	}
	other := mustTable(t, s1, "t", "other")
	if err := other.Set("a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitTable(t, mustTable(t, s2, "t", "other"), "a", "x", true)
	time.Sleep(20 * time.Millisecond)
	if got := r.Version(); got != quiet {
		t.Fatalf("reads and another table's write moved the version from %d to %d", quiet, got)
	}
}

// TestTableVersionAllocs: Version allocates nothing, on either store.
func TestTableVersionAllocs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		tb := mustTable(t, b.open(t), "t", "ver")
		tb.Set("k", []byte("v"))
		var sink uint64
		if n := testing.AllocsPerRun(1000, func() { sink += tb.Version() }); n != 0 {
			t.Fatalf("Version: %v allocations", n)
		}
	})
}

// TestRedisTableVersionCoherence: over 300 changes by one store (sets of fresh keys, of
// keys the reader cached, deletes), the other store's Version moves within coherenceBound
// of each write's return. Then the server restarts (its data lost): the reader's version
// moves, it tracks the table again, and later changes are seen within the bound.
func TestRedisTableVersionCoherence(t *testing.T) {
	srv := startRedis(t)
	a, b := openRedis(t, srv, "timeout=1s"), openRedis(t, srv, "timeout=1s")
	w, r := mustTable(t, a, "t", "backends"), mustTable(t, b, "t", "backends")
	rt := r.(*redisTable)
	const rounds = 300
	delays := make([]time.Duration, 0, rounds)
	for i := 1; i <= rounds; i++ {
		key := "k" + strconv.Itoa(i%7)
		var err error
		before := r.Version()
		switch i % 3 {
		case 0:
			err = w.Set("fresh"+strconv.Itoa(i), []byte("x")) // never read by r
		case 1:
			r.Get(key)
			err = w.Set(key, []byte(strconv.Itoa(i)))
		case 2:
			r.Get(key)
			err = w.Delete(key)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, d := waitVersion(t, r, before, time.Second, "change "+strconv.Itoa(i))
		delays = append(delays, d)
	}
	slices.Sort(delays)
	p50, p99, mx := delays[len(delays)/2], delays[len(delays)*99/100], delays[len(delays)-1]
	t.Logf("version delay over %d changes: p50 %v, p99 %v, max %v (bound %v)", len(delays), p50, p99, mx, coherenceBound)
	if mx > coherenceBound {
		t.Errorf("a change took %v to move the version (bound %v)", mx, coherenceBound)
	}

	before := settle(t, r)
	srv.kill()
	srv.restart()
	waitVersion(t, r, before, 5*time.Second, "server restart")
	back := time.Now()
	for w.Set("k", []byte("after")) != nil { // the writer reconnects
		if time.Since(back) > 5*time.Second {
			t.Fatal("writer still failing 5s after the restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for rt.needArm.Load() { // the reader tracks the table again
		if time.Since(back) > 5*time.Second {
			t.Fatal("reader not tracking the table 5s after the restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("tracking again %v after the restart", time.Since(back))
	for i := range 20 {
		before := settle(t, r)
		if err := w.Set("fresh-after"+strconv.Itoa(i), []byte("x")); err != nil {
			t.Fatal(err)
		}
		waitVersion(t, r, before, coherenceBound, "change after the restart")
	}
}
