package store

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// fillNamespace opens a pool (taking a value), counters, a table and registers under ns.
func fillNamespace(t *testing.T, st Store, ns string) {
	t.Helper()
	p, err := st.Pool(ns, "ports", 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := p.Take(Tag{Unit: 1, Clock: 1}); !ok || err != nil {
		t.Fatalf("take: %v %v", ok, err)
	}
	c, err := st.Counters(ns, "hits")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(Tag{Unit: 1, Clock: 2}, 7, 3)
	tb, err := st.Table(ns, "flows")
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Set("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	rs, err := st.(RegistersStore).Registers(ns, "regs")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rs.CompareAndSet(Tag{Unit: 1, Clock: 3}, "r", nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := Flush(st); err != nil {
		t.Fatal(err)
	}
}

// TestNamespaceDrop: two runs share a Redis server, each under a namespace of its own. Each
// sees only its objects, and dropping one's namespace deletes its keys — every kind of
// object's, its sub-namespaces' — and leaves the other's, and a namespace whose name only
// starts with the same letters, alone.
func TestNamespaceDrop(t *testing.T) {
	srv := startRedis(t)
	s := openRedis(t, srv, "")
	a, b, c := Namespaced(s, "run/a"), Namespaced(s, "run/b"), Namespaced(s, "run/ab")
	fillNamespace(t, a, "nat")
	fillNamespace(t, a, "runtime")
	fillNamespace(t, b, "nat")
	fillNamespace(t, c, "nat")

	// Separate: b's pool has its own 4 values, 1 taken.
	pb, _ := b.Pool("nat", "ports", 1, 4)
	if f := pb.Free(); f != 3 {
		t.Fatalf("b's pool: %d free, want 3 (a's take is a's)", f)
	}
	count := func(pre string) int {
		n := 0
		for _, k := range srv.keys() {
			if strings.HasPrefix(k, "snf:{"+pre) {
				n++
			}
		}
		return n
	}
	na, nb, nc := count("run/a/"), count("run/b/"), count("run/ab/")
	if na == 0 || nb == 0 || nc == 0 {
		t.Fatalf("keys before: a %d, b %d, ab %d", na, nb, nc)
	}
	n, err := a.Drop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != na {
		t.Errorf("dropped %d keys, a had %d", n, na)
	}
	if got := count("run/a/"); got != 0 {
		t.Errorf("%d of a's keys left: %v", got, slices.DeleteFunc(srv.keys(), func(k string) bool { return !strings.HasPrefix(k, "snf:{run/a/") }))
	}
	if count("run/b/") != nb || count("run/ab/") != nc {
		t.Errorf("others' keys: b %d (was %d), ab %d (was %d)", count("run/b/"), nb, count("run/ab/"), nc)
	}
	if _, err := s.DropNamespace(context.Background(), ""); err == nil {
		t.Error("a drop of every namespace (empty prefix) was not refused")
	}
	// The embedded store has nothing to drop.
	if n, err := Namespaced(NewEmbedded(), "run/x").Drop(context.Background()); n != 0 || err != nil {
		t.Errorf("embedded: %d, %v", n, err)
	}
}
