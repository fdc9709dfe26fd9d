package store

import (
	"sync"
	"testing"
)

func TestPoolHandsOutDistinctValuesAndRecycles(t *testing.T) {
	s := NewEmbedded()
	p, err := s.Pool("t/nat", "ports", 10, 12)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for i := range 3 {
		v, ok, err := p.Take(Tag{Clock: uint64(i + 1)})
		if !ok || err != nil || seen[v] || v < 10 || v > 12 {
			t.Fatalf("take %d: %d %v %v", i, v, ok, err)
		}
		seen[v] = true
	}
	if _, ok, _ := p.Take(Tag{Clock: 9}); ok || p.Free() != 0 {
		t.Fatal("an empty pool handed out a value")
	}
	if err := p.Put(Tag{Clock: 10}, 11); err != nil || p.Free() != 1 {
		t.Fatalf("put: %v, free %d", err, p.Free())
	}
	if v, ok, _ := p.Take(Tag{Clock: 11}); !ok || v != 11 {
		t.Fatalf("recycled %d %v, want 11", v, ok)
	}
	if err := p.Put(Tag{}, 99); err == nil {
		t.Error("put outside the range must fail")
	}
}

// TestPoolDedup: a Take repeated with the same tag (a replay) gets the same value and takes
// nothing more; a repeated Put returns the value once.
func TestPoolDedup(t *testing.T) {
	s := NewEmbedded()
	p, _ := s.Pool("t", "ports", 1, 100)
	a, _, _ := p.Take(Tag{Unit: 1, Clock: 5})
	b, _, _ := p.Take(Tag{Unit: 1, Clock: 5})
	c, _, _ := p.Take(Tag{Unit: 1, Clock: 5, Seq: 1})
	if a != b || a == c || p.Free() != 98 {
		t.Fatalf("a=%d b=%d c=%d free=%d", a, b, c, p.Free())
	}
	p.Put(Tag{Clock: 6}, a)
	p.Put(Tag{Clock: 6}, a)
	if p.Free() != 99 {
		t.Fatalf("double put: free %d, want 99", p.Free())
	}
}

func TestObjectsAreSharedByName(t *testing.T) {
	s := NewEmbedded()
	p1, _ := s.Pool("t", "ports", 1, 2)
	p2, _ := s.Pool("t", "ports", 1, 2)
	p1.Take(Tag{Clock: 1})
	if p2.Free() != 1 {
		t.Error("same name, different pool")
	}
	if _, err := s.Pool("t", "ports", 1, 3); err == nil {
		t.Error("reopening with another range must fail")
	}
	if _, err := s.Pool("t", "x", 5, 4); err == nil {
		t.Error("an empty range must fail")
	}
	c1, _ := s.Counters("t", "c")
	c2, _ := s.Counters("t", "c")
	c1.Add(Tag{}, 7, 3)
	c2.Add(Tag{}, 7, 4)
	if c1.Get(7) != 7 {
		t.Errorf("counter %d", c1.Get(7))
	}
	tb, _ := s.Table("t", "backends")
	tb.Set("a", []byte("1"))
	if v, ok := tb.Get("a"); !ok || string(v) != "1" {
		t.Error("table get")
	}
	tb.Delete("a")
	if _, ok := tb.Get("a"); ok {
		t.Error("table delete")
	}
	s.Close()
	if _, err := s.Counters("t", "d"); err != ErrClosed {
		t.Errorf("closed store: %v", err)
	}
}

func TestPoolConcurrentTakes(t *testing.T) {
	s := NewEmbedded()
	p, _ := s.Pool("t", "ports", 1, 4000)
	var mu sync.Mutex
	seen := map[uint32]bool{}
	var wg sync.WaitGroup
	for u := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				v, ok, _ := p.Take(Tag{Unit: uint32(u), Clock: uint64(i + 1)})
				mu.Lock()
				if !ok || seen[v] {
					t.Errorf("unit %d: %d %v", u, v, ok)
				}
				seen[v] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if p.Free() != 0 {
		t.Errorf("free %d", p.Free())
	}
}

// TestTagWindow checks the dedup window against an exact set: tags mostly in order, some
// late (held packets), some repeated (replays), from several units.
func TestTagWindow(t *testing.T) {
	w := newTagWindow(1 << 10)
	exact := map[Tag]bool{}
	rng := uint64(1)
	next := func() uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
	clocks := map[uint32]uint64{}
	var sent []Tag
	for i := range 20000 {
		u := uint32(next() % 3)
		var tg Tag
		switch r := next() % 10; {
		case r < 7 || len(sent) == 0: // in order
			clocks[u]++
			tg = Tag{Unit: u, Clock: clocks[u], Seq: uint32(next()%3 + 1)}
		case r < 8: // late: an older clock never sent
			tg = Tag{Unit: u, Clock: clocks[u] - next()%50, Seq: 100 + uint32(i)}
		default: // a replay of a recent tag
			tg = sent[len(sent)-1-int(next()%uint64(min(len(sent), 500)))]
		}
		if got, want := w.seen(tg), exact[tg]; got != want {
			t.Fatalf("op %d, tag %+v: seen %v, want %v", i, tg, got, want)
		}
		exact[tg] = true
		sent = append(sent, tg)
	}
}
