package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The Registers part of the behavioural suite (run against every backend, and on the
// cluster by TestRedisCluster).

func TestSuiteRegistersCAS(t *testing.T)           { forEachBackend(t, suiteRegistersCAS) }
func TestSuiteRegistersMerge(t *testing.T)         { forEachBackend(t, suiteRegistersMerge) }
func TestSuiteRegistersRepeat(t *testing.T)        { forEachBackend(t, suiteRegistersRepeat) }
func TestSuiteRegistersConcurrentCAS(t *testing.T) { forEachBackend(t, suiteRegistersConcurrentCAS) }

func mustRegisters(t testing.TB, s Store, ns, name string) Registers {
	t.Helper()
	rs, ok := s.(RegistersStore)
	if !ok {
		t.Fatalf("%T does not implement RegistersStore", s)
	}
	r, err := rs.Registers(ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func i64(v int64) []byte  { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// show renders a value and whether it is present, for comparisons.
func show(v []byte, ok bool) string {
	if !ok {
		return "<absent>"
	}
	return fmt.Sprintf("%q", v)
}

func wantReg(t testing.TB, r Registers, key string, want []byte, found bool) {
	t.Helper()
	v, ok, err := r.Get(key)
	if err != nil || show(v, ok) != show(want, found) {
		t.Fatalf("get %q: %s %v, want %s", key, show(v, ok), err, show(want, found))
	}
}

func wantCAS(t testing.TB, r Registers, tg Tag, key string, old, new []byte, wantCur []byte, wantSwapped bool) {
	t.Helper()
	cur, swapped, err := r.CompareAndSet(tg, key, old, new)
	if err != nil || swapped != wantSwapped || show(cur, cur != nil) != show(wantCur, wantCur != nil) {
		t.Fatalf("cas %v %q %s→%s: cur %s swapped %v err %v, want %s %v", tg, key,
			show(old, old != nil), show(new, new != nil), show(cur, cur != nil), swapped, err, show(wantCur, wantCur != nil), wantSwapped)
	}
}

func wantMerge(t testing.TB, r Registers, tg Tag, key, op string, arg, want []byte) {
	t.Helper()
	v, err := r.Merge(tg, key, op, arg)
	if err != nil || !bytes.Equal(v, want) {
		t.Fatalf("merge %v %q %s %x: %x %v, want %x", tg, key, op, arg, v, err, want)
	}
}

// suiteRegistersCAS: CompareAndSet on an absent key, a matching and a mismatching value;
// nil new deletes, empty values are values, binary keys, untagged ops, another client sees
// the result.
func suiteRegistersCAS(t *testing.T, b *backend) {
	s1, s2 := b.open(t), b.open(t)
	r, r2 := mustRegisters(t, s1, "t", "regs"), mustRegisters(t, s2, "t", "regs")
	seq := uint32(0)
	tag := func() Tag { seq++; return Tag{Unit: 1, Clock: 1, Seq: seq} }
	wantReg(t, r, "k", nil, false)
	wantCAS(t, r, tag(), "k", []byte("x"), []byte("a"), nil, false) // absent, old given
	wantCAS(t, r, tag(), "k", []byte{}, []byte("a"), nil, false)    // empty old is a value, not absent
	wantReg(t, r, "k", nil, false)
	wantCAS(t, r, tag(), "k", nil, []byte("a"), []byte("a"), true)  // absent, old nil: swap
	wantCAS(t, r, tag(), "k", nil, []byte("b"), []byte("a"), false) // present, old nil
	wantCAS(t, r, tag(), "k", []byte("z"), []byte("b"), []byte("a"), false)
	wantCAS(t, r, tag(), "k", []byte("a"), []byte("b"), []byte("b"), true)
	wantReg(t, r2, "k", []byte("b"), true)
	wantCAS(t, r2, tag(), "k", []byte("b"), nil, nil, true) // nil new deletes
	wantReg(t, r, "k", nil, false)

	wantCAS(t, r, tag(), "e", nil, []byte{}, []byte{}, true) // empty value, present
	wantReg(t, r2, "e", []byte{}, true)
	wantCAS(t, r, tag(), "e", nil, []byte("x"), []byte{}, false)
	wantCAS(t, r, tag(), "e", []byte{}, []byte("x"), []byte("x"), true)

	bin := "bin\x00\xff}{:r:x"
	val := []byte{0, '}', 0xff, '{'}
	wantCAS(t, r, tag(), bin, nil, val, val, true)
	wantReg(t, r2, bin, val, true)
	wantCAS(t, r, tag(), bin, []byte{0, '}', 0xff}, []byte("no"), val, false) // a prefix does not match
	wantReg(t, mustRegisters(t, s1, "t", "other"), bin, nil, false)

	// Untagged operations are never taken for repeats.
	wantCAS(t, r, Tag{}, "u", nil, []byte("1"), []byte("1"), true)
	wantCAS(t, r, Tag{}, "u", nil, []byte("1"), []byte("1"), false)
	wantCAS(t, r, Tag{}, "u", []byte("1"), []byte("2"), []byte("2"), true)
}

// suiteRegistersMerge: the built-in merges, and errors (unknown operation, bad argument,
// a stored value of the wrong shape) that change nothing.
func suiteRegistersMerge(t *testing.T, b *backend) {
	s1, s2 := b.open(t), b.open(t)
	r, r2 := mustRegisters(t, s1, "t", "regs"), mustRegisters(t, s2, "t", "regs")
	seq := uint32(0)
	tag := func() Tag { seq++; return Tag{Unit: 2, Clock: 1, Seq: seq} }

	for _, c := range [][2]int64{{-5, -5}, {3, 3}, {-100, 3}, {-1, 3}, {1 << 40, 1 << 40},
		{math.MaxInt64, math.MaxInt64}, {math.MinInt64, math.MaxInt64}} {
		wantMerge(t, r, tag(), "max", MergeMaxInt64, i64(c[0]), i64(c[1]))
	}
	wantMerge(t, r, tag(), "neg", MergeMaxInt64, i64(math.MinInt64), i64(math.MinInt64))
	wantMerge(t, r, tag(), "neg", MergeMaxInt64, i64(-1), i64(-1)) // 0xff… is -1, above MinInt64
	wantMerge(t, r, tag(), "neg", MergeMaxInt64, i64(-2), i64(-1))
	wantReg(t, r2, "max", i64(math.MaxInt64), true)

	set := func(ms ...uint64) []byte {
		var v []byte
		for _, m := range ms {
			v = append(v, u64(m)...)
		}
		return v
	}
	wantMerge(t, r, tag(), "set", MergeSetAdd, u64(5), set(5))
	wantMerge(t, r, tag(), "set", MergeSetAdd, u64(1), set(1, 5))
	wantMerge(t, r, tag(), "set", MergeSetAdd, u64(1<<63), set(1, 5, 1<<63))
	wantMerge(t, r, tag(), "set", MergeSetAdd, u64(3), set(1, 3, 5, 1<<63))
	wantMerge(t, r, tag(), "set", MergeSetAdd, u64(1), set(1, 3, 5, 1<<63)) // already a member
	wantMerge(t, r, tag(), "set", MergeSetAdd, u64(0), set(0, 1, 3, 5, 1<<63))
	wantMerge(t, r, tag(), "set", MergeSetAdd, u64(math.MaxUint64), set(0, 1, 3, 5, 1<<63, math.MaxUint64))
	wantReg(t, r2, "set", set(0, 1, 3, 5, 1<<63, math.MaxUint64), true)

	wantMerge(t, r, tag(), "bits", MergeOr, []byte{0x01}, []byte{0x01})
	wantMerge(t, r, tag(), "bits", MergeOr, []byte{0x10, 0x80}, []byte{0x11, 0x80})
	wantMerge(t, r, tag(), "bits", MergeOr, []byte{0x02}, []byte{0x13, 0x80})
	wantMerge(t, r, tag(), "bits", MergeOr, []byte{}, []byte{0x13, 0x80})
	big := bytes.Repeat([]byte{0x0f}, 4096)
	big[4095] = 0xf0
	want := bytes.Clone(big)
	want[0], want[1] = 0x1f, 0x8f
	wantMerge(t, r, tag(), "bits", MergeOr, big, want)
	wantReg(t, r2, "bits", want, true)

	// Errors change nothing.
	_, err := r.Merge(tag(), "max", "sum", i64(1))
	if !errors.Is(err, ErrUnknownMerge) || !strings.Contains(err.Error(), `"sum"`) || !strings.Contains(err.Error(), MergeMaxInt64) {
		t.Fatalf("unknown merge op: %v", err)
	}
	t.Logf("unknown op: %v", err)
	if _, err := r.Merge(tag(), "max", MergeMaxInt64, []byte{1, 2, 3}); err == nil || !strings.Contains(err.Error(), "want 8") {
		t.Fatalf("max-int64 with a 3-byte arg: %v", err)
	}
	if _, err := r.Merge(tag(), "set", MergeSetAdd, nil); err == nil {
		t.Fatal("set-add with no member must fail")
	}
	if _, err := r.Merge(tag(), "set", MergeMaxInt64, i64(1)); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("max-int64 on a 48-byte value: %v", err)
	} else {
		t.Logf("wrong shape: %v", err)
	}
	wantCAS(t, r, tag(), "odd", nil, []byte{1, 2, 3}, []byte{1, 2, 3}, true)
	if _, err := r.Merge(tag(), "odd", MergeSetAdd, u64(1)); err == nil {
		t.Fatal("set-add on a 3-byte value must fail")
	}
	wantReg(t, r, "odd", []byte{1, 2, 3}, true)
	wantReg(t, r, "max", i64(math.MaxInt64), true)
	wantReg(t, r, "set", set(0, 1, 3, 5, 1<<63, math.MaxUint64), true)
	wantReg(t, r, "bits", want, true)
}

// suiteRegistersRepeat: every operation repeated with the same tag (on the same client or
// another) gets the result it got the first time, even when the value changed since, and
// changes nothing more; then a sequence of operations sent once and sent twice ends with
// the same results and values.
func suiteRegistersRepeat(t *testing.T, b *backend) {
	s1, s2 := b.open(t), b.open(t)
	r, r2 := mustRegisters(t, s1, "t", "regs"), mustRegisters(t, s2, "t", "regs")
	tg := func(c uint64) Tag { return Tag{Unit: 3, Clock: c, Seq: 1} }

	wantCAS(t, r, tg(1), "k", nil, []byte("1"), []byte("1"), true)
	wantCAS(t, r, tg(2), "k", []byte("1"), []byte("2"), []byte("2"), true)
	wantCAS(t, r2, tg(1), "k", nil, []byte("1"), []byte("1"), true) // the first result; not applied
	wantCAS(t, r, tg(1), "k", nil, []byte("1"), []byte("1"), true)
	wantCAS(t, r2, tg(2), "k", []byte("1"), []byte("2"), []byte("2"), true)
	wantReg(t, r, "k", []byte("2"), true)
	wantCAS(t, r, tg(3), "k", []byte("9"), []byte("x"), []byte("2"), false) // mismatch
	wantCAS(t, r, tg(4), "k", []byte("2"), []byte("3"), []byte("3"), true)
	wantCAS(t, r2, tg(3), "k", []byte("9"), []byte("x"), []byte("2"), false) // the first result, though "3" now
	wantCAS(t, r, tg(5), "k", []byte("3"), nil, nil, true)                   // delete
	wantCAS(t, r, tg(6), "k", nil, []byte("4"), []byte("4"), true)
	wantCAS(t, r2, tg(5), "k", []byte("3"), nil, nil, true) // the repeated delete deletes nothing
	wantCAS(t, r2, tg(4), "k", []byte("2"), []byte("3"), []byte("3"), true)
	wantReg(t, r2, "k", []byte("4"), true)

	wantMerge(t, r, tg(10), "max", MergeMaxInt64, i64(5), i64(5))
	wantMerge(t, r, tg(11), "max", MergeMaxInt64, i64(9), i64(9))
	wantMerge(t, r2, tg(10), "max", MergeMaxInt64, i64(5), i64(5))
	wantMerge(t, r, tg(11), "max", MergeMaxInt64, i64(9), i64(9))
	wantReg(t, r, "max", i64(9), true)

	wantMerge(t, r, tg(20), "set", MergeSetAdd, u64(7), u64(7))
	wantMerge(t, r, tg(21), "set", MergeSetAdd, u64(2), append(u64(2), u64(7)...))
	wantMerge(t, r2, tg(20), "set", MergeSetAdd, u64(7), u64(7))
	wantMerge(t, r2, tg(21), "set", MergeSetAdd, u64(2), append(u64(2), u64(7)...))
	wantReg(t, r, "set", append(u64(2), u64(7)...), true)

	wantMerge(t, r, tg(30), "bits", MergeOr, []byte{1}, []byte{1})
	wantMerge(t, r, tg(31), "bits", MergeOr, []byte{2, 4}, []byte{3, 4})
	wantMerge(t, r2, tg(30), "bits", MergeOr, []byte{1}, []byte{1})
	wantMerge(t, r2, tg(31), "bits", MergeOr, []byte{2, 4}, []byte{3, 4})
	wantReg(t, r2, "bits", []byte{3, 4}, true)

	// A failed operation records nothing: once fixed, the same tag is applied.
	if _, err := r.Merge(tg(40), "set", MergeMaxInt64, i64(1)); err == nil {
		t.Fatal("max-int64 on a set must fail")
	}
	wantMerge(t, r, tg(40), "m2", MergeMaxInt64, i64(1), i64(1))

	// A sequence sent once, and sent twice (the copy through the other client).
	run := func(ns string, twice bool) string {
		a, c := mustRegisters(t, b.open(t), ns, "regs"), mustRegisters(t, b.open(t), ns, "regs")
		var out strings.Builder
		for clock := uint64(1); clock <= 60; clock++ {
			seq := uint32(0)
			tag := func() Tag { seq++; return Tag{Unit: 9, Clock: clock, Seq: seq} }
			key := "k" + strconv.Itoa(int(clock%3))
			cur, _, err := a.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			old := cur
			if clock%4 == 0 {
				old = []byte("stale")
			}
			nv := []byte(fmt.Sprint(clock))
			if clock%7 == 0 {
				nv = nil
			}
			ct := tag()
			v, sw, err := a.CompareAndSet(ct, key, old, nv)
			fmt.Fprintf(&out, "cas %s %v %v;", show(v, v != nil), sw, err)
			if twice {
				v2, sw2, err := c.CompareAndSet(ct, key, old, nv)
				if show(v2, v2 != nil) != show(v, v != nil) || sw2 != sw || err != nil {
					t.Fatalf("clock %d: repeated cas %s %v %v, first %s %v", clock, show(v2, v2 != nil), sw2, err, show(v, v != nil), sw)
				}
			}
			for _, m := range []struct {
				key, op string
				arg     []byte
			}{
				{"max", MergeMaxInt64, i64(int64(clock%17) - 8)},
				{"set", MergeSetAdd, u64(clock % 13 * 1000003)},
				{"bits", MergeOr, []byte{byte(1 << (clock % 8)), 0, byte(clock)}},
			} {
				mt := tag()
				v, err := a.Merge(mt, m.key, m.op, m.arg)
				fmt.Fprintf(&out, "%s %x %v;", m.op, v, err)
				if twice {
					if v2, err := c.Merge(mt, m.key, m.op, m.arg); !bytes.Equal(v2, v) || err != nil {
						t.Fatalf("clock %d: repeated %s %x %v, first %x", clock, m.op, v2, err, v)
					}
				}
			}
		}
		out.WriteString("\nfinal:")
		for _, k := range []string{"k0", "k1", "k2", "max", "set", "bits"} {
			v, ok, err := c.Get(k)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, " %s=%s", k, show(v, ok))
		}
		return out.String()
	}
	once, twice := run("once", false), run("twice", true)
	if once != twice {
		t.Fatalf("sent once:  %s\nsent twice: %s", once, twice)
	}
	t.Logf("%s", once[strings.Index(once, "final:"):])
}

// suiteRegistersConcurrentCAS: four clients increment one register by CAS (retrying until
// their CAS swaps, each attempt a new tag): exactly N increments land.
func suiteRegistersConcurrentCAS(t *testing.T, b *backend) {
	const units, each = 4, 50
	regs := make([]Registers, units)
	for u := range regs {
		regs[u] = mustRegisters(t, b.open(t), "t", "regs")
	}
	var wg sync.WaitGroup
	swaps := make([]int, units)
	conflicts := make([]int, units)
	for u := range units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := regs[u]
			cur, _, err := r.Get("n")
			if err != nil {
				t.Error(err)
				return
			}
			for i := range each {
				for attempt := uint32(1); ; attempt++ {
					if attempt > 100000 {
						t.Errorf("unit %d: increment %d never swapped", u, i)
						return
					}
					runtime.Gosched() // let the clients interleave (the embedded store's ops are short)
					n := 0
					if cur != nil {
						n, _ = strconv.Atoi(string(cur))
					}
					v, swapped, err := r.CompareAndSet(Tag{Unit: uint32(u + 1), Clock: uint64(i + 1), Seq: attempt},
						"n", cur, []byte(strconv.Itoa(n+1)))
					if err != nil {
						t.Error(err)
						return
					}
					cur = v
					if swapped {
						swaps[u]++
						break
					}
					conflicts[u]++
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range swaps {
		total += n
	}
	wantReg(t, regs[0], "n", []byte(strconv.Itoa(units*each)), true)
	if total != units*each {
		t.Fatalf("%d swaps, want %d", total, units*each)
	}
	t.Logf("swaps per client %v, failed attempts %v", swaps, conflicts)
}

// TestEmbeddedRegistersWindow: the embedded store remembers the results of the last
// DedupWindowOps tagged operations of an object; an older one repeated is applied again.
func TestEmbeddedRegistersWindow(t *testing.T) {
	r := mustRegisters(t, NewEmbedded(), "t", "regs")
	first := Tag{Unit: 1, Clock: 1, Seq: 1}
	wantMerge(t, r, first, "n", MergeMaxInt64, i64(1), i64(1))
	for i := range DedupWindowOps - 2 {
		wantMerge(t, r, Tag{Unit: 2, Clock: uint64(i + 1), Seq: 1}, "m", MergeOr, []byte{1}, []byte{1})
	}
	wantCAS(t, r, Tag{Unit: 3, Clock: 1, Seq: 1}, "n", i64(1), i64(0), i64(0), true)
	wantMerge(t, r, first, "n", MergeMaxInt64, i64(1), i64(1)) // still in the window: the first result
	wantReg(t, r, "n", i64(0), true)
	wantMerge(t, r, Tag{Unit: 3, Clock: 2, Seq: 1}, "m", MergeOr, []byte{2}, []byte{3}) // pushes first out
	wantMerge(t, r, first, "n", MergeMaxInt64, i64(1), i64(1))                          // applied again
	wantCAS(t, r, Tag{Unit: 3, Clock: 1, Seq: 1}, "n", i64(1), i64(0), i64(0), true)    // still remembered
	wantReg(t, r, "n", i64(1), true)
}
