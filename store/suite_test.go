package store

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// The behavioural suite: written once, run against every implementation. A backend is a
// factory of store clients that share one state, as units share the store: for the
// embedded store every client is the one in-process store, for Redis each is a separate
// connection to one server.

type backend struct {
	name  string
	open  func(t testing.TB) Store // a new client of the shared state; closed at the end of the test
	redis *redisServer             // nil for the embedded store
}

// embeddedClient is a client of a shared embedded store: closing it leaves the store open.
type embeddedClient struct{ *Embedded }

func (embeddedClient) Close() error { return nil }

func embeddedBackend(t testing.TB) *backend {
	e := NewEmbedded()
	t.Cleanup(func() { e.Close() })
	return &backend{name: "embedded", open: func(testing.TB) Store { return embeddedClient{e} }}
}

func redisBackend(t testing.TB, opts string, extra ...string) *backend {
	srv := startRedis(t, extra...)
	return &backend{name: "redis", redis: srv, open: func(t testing.TB) Store {
		t.Helper()
		s, err := Open(srv.url(opts))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}}
}

// forEachBackend runs fn against the embedded store and against a fresh redis-server.
func forEachBackend(t *testing.T, fn func(t *testing.T, b *backend)) {
	t.Run("embedded", func(t *testing.T) { fn(t, embeddedBackend(t)) })
	t.Run("redis", func(t *testing.T) { fn(t, redisBackend(t, "")) })
}

func TestSuitePoolDistinctExhaustRecycle(t *testing.T) {
	forEachBackend(t, suitePoolDistinctExhaustRecycle)
}
func TestSuitePoolDedup(t *testing.T)               { forEachBackend(t, suitePoolDedup) }
func TestSuiteEveryOpTwiceAppliedOnce(t *testing.T) { forEachBackend(t, suiteEveryOpTwiceAppliedOnce) }
func TestSuitePoolConcurrentTakes(t *testing.T)     { forEachBackend(t, suitePoolConcurrentTakes) }
func TestSuiteObjectsSharedByName(t *testing.T)     { forEachBackend(t, suiteObjectsSharedByName) }
func TestSuiteCounters(t *testing.T)                { forEachBackend(t, suiteCounters) }
func TestSuiteTable(t *testing.T)                   { forEachBackend(t, suiteTable) }
func TestSuiteClosed(t *testing.T)                  { forEachBackend(t, suiteClosed) }

// TestSuiteRegistersCustomOps: NF-defined merge operations (RegisterOp; ops_test.go).
func TestSuiteRegistersCustomOps(t *testing.T) { forEachBackend(t, suiteRegistersCustomOps) }

func mustPool(t testing.TB, s Store, ns, name string, lo, hi uint32) Pool {
	t.Helper()
	p, err := s.Pool(ns, name, lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustCounters(t testing.TB, s Store, ns, name string) Counters {
	t.Helper()
	c, err := s.Counters(ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustTable(t testing.TB, s Store, ns, name string) Table {
	t.Helper()
	tb, err := s.Table(ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func mustFlush(t testing.TB, x any) {
	t.Helper()
	if err := Flush(x); err != nil {
		t.Fatal(err)
	}
}

// suitePoolDistinctExhaustRecycle: a pool hands out each value once, reports exhaustion,
// recycles returned values (oldest first) and refuses values outside its range.
func suitePoolDistinctExhaustRecycle(t *testing.T, b *backend) {
	p := mustPool(t, b.open(t), "t/nat", "ports", 10, 12)
	if p.Free() != 3 {
		t.Fatalf("new pool: free %d, want 3", p.Free())
	}
	seen := map[uint32]bool{}
	for i := range 3 {
		v, ok, err := p.Take(Tag{Unit: 1, Clock: uint64(i + 1), Seq: 1})
		if !ok || err != nil || seen[v] || v < 10 || v > 12 {
			t.Fatalf("take %d: %d %v %v", i, v, ok, err)
		}
		seen[v] = true
	}
	if v, ok, err := p.Take(Tag{Unit: 1, Clock: 9, Seq: 1}); ok || err != nil || p.Free() != 0 {
		t.Fatalf("an empty pool handed out %d (%v, %v), free %d", v, ok, err, p.Free())
	}
	if err := p.Put(Tag{Unit: 1, Clock: 10, Seq: 1}, 11); err != nil || p.Free() != 1 {
		t.Fatalf("put: %v, free %d", err, p.Free())
	}
	if err := p.Put(Tag{Unit: 1, Clock: 10, Seq: 2}, 10); err != nil || p.Free() != 2 {
		t.Fatalf("put: %v, free %d", err, p.Free())
	}
	for _, want := range []uint32{11, 10} { // returned values come back oldest first
		if v, ok, err := p.Take(Tag{Unit: 1, Clock: 11, Seq: want}); !ok || err != nil || v != want {
			t.Fatalf("recycled %d %v %v, want %d", v, ok, err, want)
		}
	}
	if err := p.Put(Tag{}, 99); err == nil {
		t.Error("put outside the range must fail")
	}
	if err := p.Put(Tag{Unit: 1, Clock: 12, Seq: 1}, 12); err != nil {
		t.Fatal(err)
	}
	if err := p.Put(Tag{Unit: 1, Clock: 12, Seq: 2}, 12); err != nil || p.Free() != 1 {
		t.Fatalf("putting a free value again: %v, free %d, want 1", err, p.Free())
	}
}

// suitePoolDedup: a Take repeated with the same tag (a replay) gets the same value and takes
// nothing more; a repeated Put returns the value once, even after the value was taken again.
func suitePoolDedup(t *testing.T, b *backend) {
	s := b.open(t)
	p := mustPool(t, s, "t", "ports", 1, 100)
	a, _, _ := p.Take(Tag{Unit: 1, Clock: 5})
	a2, _, _ := p.Take(Tag{Unit: 1, Clock: 5})
	c, _, _ := p.Take(Tag{Unit: 1, Clock: 5, Seq: 1})
	if a != a2 || a == c || p.Free() != 98 {
		t.Fatalf("a=%d a'=%d c=%d free=%d", a, a2, c, p.Free())
	}
	// The replay may come from another client (a unit that took over).
	if v, ok, err := mustPool(t, b.open(t), "t", "ports", 1, 100).Take(Tag{Unit: 1, Clock: 5}); v != a || !ok || err != nil {
		t.Fatalf("replayed take on another client: %d %v %v, want %d", v, ok, err, a)
	}
	p.Put(Tag{Unit: 1, Clock: 6}, a)
	p.Put(Tag{Unit: 1, Clock: 6}, a)
	if p.Free() != 99 {
		t.Fatalf("double put: free %d, want 99", p.Free())
	}

	// A replayed Put must not free a value that was taken again since.
	q := mustPool(t, s, "t", "small", 1, 2)
	x, _, _ := q.Take(Tag{Unit: 2, Clock: 1, Seq: 1})
	q.Take(Tag{Unit: 2, Clock: 1, Seq: 2})
	put := Tag{Unit: 2, Clock: 2, Seq: 1}
	if err := q.Put(put, x); err != nil {
		t.Fatal(err)
	}
	if y, ok, _ := q.Take(Tag{Unit: 3, Clock: 3, Seq: 1}); !ok || y != x {
		t.Fatalf("retake %d %v, want %d", y, ok, x)
	}
	if err := q.Put(put, x); err != nil || q.Free() != 0 {
		t.Fatalf("a replayed put freed a value taken again since: %v, free %d, want 0", err, q.Free())
	}
}

// suiteEveryOpTwiceAppliedOnce runs one sequence of mutating operations with every
// operation sent once, and again in a fresh namespace with every operation sent twice (the
// second copy through another client, as a replay on a unit that took over would): the
// results and final values must be equal.
func suiteEveryOpTwiceAppliedOnce(t *testing.T, b *backend) {
	type final struct {
		takes    []uint32
		free     int
		counters [4]int64
		table    string
	}
	run := func(ns string, twice bool) final {
		s1, s2 := b.open(t), b.open(t)
		p1, p2 := mustPool(t, s1, ns, "ports", 100, 163), mustPool(t, s2, ns, "ports", 100, 163)
		c1, c2 := mustCounters(t, s1, ns, "c"), mustCounters(t, s2, ns, "c")
		t1, t2 := mustTable(t, s1, ns, "tb"), mustTable(t, s2, ns, "tb")
		var f final
		held := []uint32{}
		for clock := uint64(1); clock <= 200; clock++ {
			seq := uint32(0)
			tag := func() Tag { seq++; return Tag{Unit: 7, Clock: clock, Seq: seq} }
			tg := tag()
			v, ok, err := p1.Take(tg)
			if err != nil {
				t.Fatal(err)
			}
			if twice {
				v2, ok2, err := p2.Take(tg)
				if err != nil || v2 != v || ok2 != ok {
					t.Fatalf("clock %d: replayed take %d %v %v, first %d %v", clock, v2, ok2, err, v, ok)
				}
			}
			if ok {
				f.takes = append(f.takes, v)
				held = append(held, v)
			} else {
				f.takes = append(f.takes, 0)
			}
			if clock%3 == 0 && len(held) > 0 {
				tg := tag()
				v := held[0]
				held = held[1:]
				if err := p1.Put(tg, v); err != nil {
					t.Fatal(err)
				}
				if twice {
					if err := p2.Put(tg, v); err != nil {
						t.Fatal(err)
					}
				}
			}
			for k := range uint64(4) {
				tg := tag()
				c1.Add(tg, k, int64(clock*(k+1)))
				if twice {
					c2.Add(tg, k, int64(clock*(k+1)))
				}
			}
			if clock%50 == 0 {
				val := []byte(fmt.Sprint("v", clock))
				if err := t1.Set("k", val); err != nil {
					t.Fatal(err)
				}
				if twice {
					if err := t2.Set("k", val); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		mustFlush(t, c1)
		mustFlush(t, c2)
		f.free = p1.Free()
		for k := range f.counters {
			f.counters[k] = c1.Get(uint64(k))
		}
		v, _ := t1.Get("k")
		f.table = string(v)
		return f
	}
	once, twice := run("once", false), run("twice", true)
	if fmt.Sprint(once) != fmt.Sprint(twice) {
		t.Fatalf("sent once:  %v\nsent twice: %v", once, twice)
	}
	want := [4]int64{}
	for k := range want {
		want[k] = int64(k+1) * 200 * 201 / 2
	}
	if once.counters != want || once.table != "v200" {
		t.Fatalf("final values: %+v, want counters %v", once, want)
	}
}

// suitePoolConcurrentTakes: units (separate clients) taking at once never get the same value.
func suitePoolConcurrentTakes(t *testing.T, b *backend) {
	const units, each = 4, 250
	pools := make([]Pool, units)
	for u := range pools {
		pools[u] = mustPool(t, b.open(t), "t", "ports", 1, units*each)
	}
	var mu sync.Mutex
	seen := map[uint32]int{}
	var wg sync.WaitGroup
	for u := range units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				v, ok, err := pools[u].Take(Tag{Unit: uint32(u), Clock: uint64(i + 1)})
				mu.Lock()
				if !ok || err != nil {
					t.Errorf("unit %d: %d %v %v", u, v, ok, err)
				} else if w, dup := seen[v]; dup {
					t.Errorf("value %d handed to units %d and %d", v, w, u)
				}
				seen[v] = u
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if free := pools[0].Free(); free != 0 || len(seen) != units*each {
		t.Fatalf("free %d, %d distinct values", free, len(seen))
	}
	for v, u := range seen {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pools[(u+1)%units].Put(Tag{Unit: uint32(u), Clock: 1000 + uint64(v)}, v); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if free := pools[1].Free(); free != units*each {
		t.Fatalf("after returning all: free %d", free)
	}
}

// suiteObjectsSharedByName: opening an object by the same name, in the same client or
// another, reaches the same state.
func suiteObjectsSharedByName(t *testing.T, b *backend) {
	s1, s2 := b.open(t), b.open(t)
	p1, p2 := mustPool(t, s1, "t", "ports", 1, 2), mustPool(t, s2, "t", "ports", 1, 2)
	p1.Take(Tag{Clock: 1})
	if p2.Free() != 1 {
		t.Error("same name, different pool")
	}
	if _, err := s1.Pool("t", "ports", 1, 3); err == nil {
		t.Error("reopening with another range must fail")
	}
	if _, err := s2.Pool("t", "ports", 1, 3); err == nil {
		t.Error("reopening with another range (another client) must fail")
	}
	if _, err := s1.Pool("t", "x", 5, 4); err == nil {
		t.Error("an empty range must fail")
	}
	if p := mustPool(t, s1, "t", "other", 1, 2); p.Free() != 2 {
		t.Errorf("another name: free %d", p.Free())
	}
	c1, c1b, c2 := mustCounters(t, s1, "t", "c"), mustCounters(t, s1, "t", "c"), mustCounters(t, s2, "t", "c")
	c1.Add(Tag{}, 7, 3)
	c1b.Add(Tag{}, 7, 4)
	if c1.Get(7) != 7 {
		t.Errorf("counter %d, want 7 (two handles, one client)", c1.Get(7))
	}
	c2.Add(Tag{}, 7, 5)
	mustFlush(t, s1)
	mustFlush(t, s2)
	if c1.Get(7) != 12 || c2.Get(7) != 12 {
		t.Errorf("counter %d / %d, want 12", c1.Get(7), c2.Get(7))
	}
	tb1, tb2 := mustTable(t, s1, "t", "backends"), mustTable(t, s2, "t", "backends")
	if err := tb1.Set("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if v, ok := tb1.Get("a"); !ok || string(v) != "1" {
		t.Error("table get")
	}
	waitTable(t, tb2, "a", "1", true)
	tb2.Delete("a")
	if _, ok := tb2.Get("a"); ok {
		t.Error("table delete")
	}
	waitTable(t, tb1, "a", "", false)
}

// waitTable waits (up to a second: far beyond the coherence bound) for tb to show key.
func waitTable(t testing.TB, tb Table, key, want string, found bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		v, ok := tb.Get(key)
		if ok == found && string(v) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("table %q: %q %v, want %q %v", key, v, ok, want, found)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// suiteCounters: adds from several clients are summed, a tagged add repeated (on any client)
// is applied once, untagged adds always, large keys and values are exact.
func suiteCounters(t *testing.T, b *backend) {
	s1, s2 := b.open(t), b.open(t)
	c1, c2 := mustCounters(t, s1, "t", "c"), mustCounters(t, s2, "t", "c")
	if c1.Get(1) != 0 {
		t.Fatalf("new counter %d", c1.Get(1))
	}
	c1.Add(Tag{Unit: 1, Clock: 1, Seq: 1}, 1, 10)
	if c1.Get(1) != 10 { // its own adds, flushed or not
		t.Fatalf("own add: %d, want 10", c1.Get(1))
	}
	mustFlush(t, c1)
	if c2.Get(1) != 10 {
		t.Fatalf("after flush, another client reads %d, want 10", c2.Get(1))
	}
	c1.Add(Tag{Unit: 1, Clock: 1, Seq: 1}, 1, 10) // replay on the same client
	c2.Add(Tag{Unit: 1, Clock: 1, Seq: 1}, 1, 10) // replay on another client
	c2.Add(Tag{Unit: 1, Clock: 1, Seq: 2}, 1, -3) // a new op
	c1.Add(Tag{}, 2, 5)                           // untagged: never dropped
	c1.Add(Tag{}, 2, 5)
	mustFlush(t, c1)
	mustFlush(t, c2)
	if g1, g2 := c1.Get(1), c2.Get(1); g1 != 7 || g2 != 7 {
		t.Fatalf("after replays: %d / %d, want 7", g1, g2)
	}
	if c1.Get(2) != 10 {
		t.Fatalf("untagged adds: %d, want 10", c1.Get(2))
	}

	// Many adds (several server-side batches), with every other one repeated.
	const n = 3000
	for i := range n {
		tg := Tag{Unit: 2, Clock: uint64(i/3 + 1), Seq: uint32(i%3 + 1)}
		c1.Add(tg, 3, 1)
		c1.Add(tg, 3, 1)
		c2.Add(tg, 3, 1)
		c2.Add(Tag{Unit: 3, Clock: uint64(i + 1), Seq: 1}, uint64(4+i%5), int64(i))
	}
	mustFlush(t, c1)
	mustFlush(t, c2)
	if c1.Get(3) != n || c2.Get(3) != n {
		t.Fatalf("%d adds sent three times: %d / %d, want %d", n, c1.Get(3), c2.Get(3), n)
	}
	for k := range 5 {
		want := int64(0)
		for i := k; i < n; i += 5 {
			want += int64(i)
		}
		if got := c1.Get(uint64(4 + k)); got != want {
			t.Fatalf("key %d: %d, want %d", 4+k, got, want)
		}
	}

	// Extreme keys and deltas are exact (no float on the way).
	big := uint64(1<<63 + 12345)
	c1.Add(Tag{Unit: 4, Clock: 1, Seq: 1}, big, 1<<60+1)
	c1.Add(Tag{Unit: 4, Clock: 1, Seq: 2}, big, 1<<60+1)
	c1.Add(Tag{Unit: 4, Clock: 1, Seq: 3}, big+1, -(1<<62 + 3))
	mustFlush(t, c1)
	if got := c2.Get(big); got != 1<<61+2 {
		t.Fatalf("big: %d, want %d", got, int64(1<<61+2))
	}
	if got := c2.Get(big + 1); got != -(1<<62 + 3) {
		t.Fatalf("big+1: %d", got)
	}
}

// suiteTable: set, get, delete; binary keys and values; a client reads its own writes at
// once, every time.
func suiteTable(t *testing.T, b *backend) {
	s := b.open(t)
	tb := mustTable(t, s, "t", "tb")
	if v, ok := tb.Get("missing"); ok || v != nil {
		t.Fatalf("missing key: %q %v", v, ok)
	}
	if _, ok := tb.Get("missing"); ok { // cached miss
		t.Fatal("missing key found")
	}
	keys := []string{"a", "", "with space", "bin\x00\xff}{", "snf:{x}:t:y"}
	for i, k := range keys {
		if err := tb.Set(k, []byte{byte(i), 0, '}', 0xff}); err != nil {
			t.Fatalf("set %q: %v", k, err)
		}
	}
	for i, k := range keys {
		if v, ok := tb.Get(k); !ok || string(v) != string([]byte{byte(i), 0, '}', 0xff}) {
			t.Fatalf("get %q: %q %v", k, v, ok)
		}
	}
	if err := tb.Set("empty", nil); err != nil {
		t.Fatal(err)
	}
	if v, ok := tb.Get("empty"); !ok || len(v) != 0 {
		t.Fatalf("empty value: %q %v", v, ok)
	}
	// Read your writes, with the key cached before every write.
	for i := range 200 {
		tb.Get("ryw")
		want := fmt.Sprint(i)
		if err := tb.Set("ryw", []byte(want)); err != nil {
			t.Fatal(err)
		}
		if v, ok := tb.Get("ryw"); !ok || string(v) != want {
			t.Fatalf("write %d: read %q %v", i, v, ok)
		}
		if i%10 == 9 {
			tb.Delete("ryw")
			if v, ok := tb.Get("ryw"); ok {
				t.Fatalf("delete after write %d: read %q", i, v)
			}
		}
	}
	if r, ok := s.(*Redis); ok {
		t.Logf("redis: %d table reads went to the client library, %d bypassed its cache after this store's own write", r.fetches.Load(), r.bypasses.Load())
	}
	other := mustTable(t, s, "t", "other")
	if _, ok := other.Get("a"); ok {
		t.Fatal("tables of different names share keys")
	}
}

// suiteClosed: a closed store opens nothing more.
func suiteClosed(t *testing.T, b *backend) {
	var s Store
	if b.redis == nil {
		s = NewEmbedded()
	} else {
		s = b.open(t)
	}
	mustCounters(t, s, "t", "c").Add(Tag{}, 1, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Counters("t", "d"); err != ErrClosed {
		t.Errorf("counters on a closed store: %v", err)
	}
	if _, err := s.Pool("t", "p", 1, 2); err != ErrClosed {
		t.Errorf("pool on a closed store: %v", err)
	}
	if _, err := s.Table("t", "tb"); err != ErrClosed {
		t.Errorf("table on a closed store: %v", err)
	}
	if _, err := s.(RegistersStore).Registers("t", "r"); err != ErrClosed {
		t.Errorf("registers on a closed store: %v", err)
	}
}
