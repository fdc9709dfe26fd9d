package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"
)

// NF-defined merge operations, registered by name (RegisterOp) for the whole test binary:
//
//	test.kmv        a bounded set: the kmvK smallest distinct 8-byte members (a k-minimum-values
//	                distinct-count sketch); arg one member (CheckArg: 8 bytes)
//	test.sum-capped a decimal counter: cur + delta, capped at cap; arg "delta,cap"; fails when
//	                the sum would go negative (error_reply), or on a malformed value or arg
//	test.fail       returns arg, except arg "err" (an error: error_reply in Lua) and "panic"
//	                (a Go panic; Lua's error())
const kmvK = 8

func init() {
	for _, o := range []struct {
		name string
		op   Op
	}{
		{"test.kmv", Op{Go: kmvGo, Lua: kmvLua, CheckArg: func(arg []byte) error {
			if len(arg) != 8 {
				return fmt.Errorf("member is %d bytes, want 8", len(arg))
			}
			return nil
		}}},
		{"test.sum-capped", Op{Go: sumCappedGo, Lua: sumCappedLua}},
		{"test.fail", Op{Go: failGo, Lua: failLua}},
	} {
		if err := RegisterOp(o.name, o.op); err != nil {
			panic(err)
		}
	}
}

func kmvGo(cur []byte, present bool, arg []byte) ([]byte, error) {
	if len(cur)%8 != 0 {
		return nil, fmt.Errorf("stored value is %d bytes, not a multiple of 8", len(cur))
	}
	i := 0
	for i < len(cur) && bytes.Compare(cur[i:i+8], arg) < 0 {
		i += 8
	}
	if i < len(cur) && bytes.Equal(cur[i:i+8], arg) {
		return cur, nil
	}
	v := append(append(append([]byte{}, cur[:i]...), arg...), cur[i:]...)
	return v[:min(len(v), kmvK*8)], nil
}

// kmvLua compares bytes, not strings: Lua's < on strings follows the server's collation
// locale.
const kmvLua = `
if #cur % 8 ~= 0 then return redis.error_reply('stored value is ' .. #cur .. ' bytes, not a multiple of 8') end
local function less(off)
  for j = 1, 8 do
    local x, y = string.byte(cur, off + j), string.byte(arg, j)
    if x ~= y then return x < y end
  end
  return false
end
local i = 0
while i < #cur and less(i) do i = i + 8 end
if i < #cur and string.sub(cur, i + 1, i + 8) == arg then return cur end
local v = string.sub(cur, 1, i) .. arg .. string.sub(cur, i + 1)
return string.sub(v, 1, 8 * 8)
`

// dec parses a decimal of at most 15 digits (exact in Lua's doubles), as the Lua body does.
func dec(s string, signed bool) (int64, bool) {
	d := s
	if signed && strings.HasPrefix(d, "-") {
		d = d[1:]
	}
	if d == "" || len(d) > 15 || strings.Trim(d, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func sumCappedGo(cur []byte, present bool, arg []byte) ([]byte, error) {
	a, c, ok := strings.Cut(string(arg), ",")
	delta, ok1 := dec(a, true)
	capv, ok2 := dec(c, false)
	if !ok || !ok1 || !ok2 {
		return nil, fmt.Errorf("arg (%d bytes) is not delta,cap", len(arg))
	}
	var n int64
	if present {
		if n, ok = dec(string(cur), false); !ok {
			return nil, fmt.Errorf("stored value (%d bytes) is not a count", len(cur))
		}
	}
	n += delta
	if n < 0 {
		return nil, fmt.Errorf("would go negative (%d)", n)
	}
	return []byte(strconv.FormatInt(min(n, capv), 10)), nil
}

const sumCappedLua = `
local function dec(s, signed)
  local d = s
  if signed and string.sub(d, 1, 1) == '-' then d = string.sub(d, 2) end
  if #d == 0 or #d > 15 or string.find(d, '[^0-9]') then return nil end
  return tonumber(s)
end
local a, c = string.match(arg, '^([^,]*),(.*)$')
local delta, cap = a and dec(a, true), c and dec(c, false)
if not delta or not cap then return redis.error_reply('arg (' .. #arg .. ' bytes) is not delta,cap') end
local n = 0
if present then
  n = dec(cur, false)
  if not n then return redis.error_reply('stored value (' .. #cur .. ' bytes) is not a count') end
end
n = n + delta
if n < 0 then return redis.error_reply(string.format('would go negative (%d)', n)) end
return string.format('%d', math.min(n, cap))
`

func failGo(cur []byte, present bool, arg []byte) ([]byte, error) {
	switch string(arg) {
	case "err":
		return nil, errors.New("failed as asked\nsecond line")
	case "panic":
		var m map[string]int
		m["x"] = 1 // a nil map: panics
	}
	return arg, nil
}

const failLua = `
if arg == 'err' then return redis.error_reply('failed as asked\nsecond line') end
if arg == 'panic' then error('failed as asked\nat length') end
return arg
`

func TestRegisterOpErrors(t *testing.T) {
	ok := Op{Go: failGo, Lua: failLua}
	if _, err := NewEmbedded().Registers("t", "freeze"); err != nil { // fixes the set of ops
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		op   Op
		want string
	}{
		{"", ok, "1 to 64 characters"},
		{strings.Repeat("a", 65), ok, "1 to 64 characters"},
		{"Max", ok, "bad character 'M'"},
		{"a b", ok, "bad character ' '"},
		{"-x", ok, "bad character '-'"},
		{"x\n", ok, `bad character '\n'`},
		{"test.nogo", Op{Lua: failLua}, "no Go function"},
		{"test.nolua", Op{Go: failGo, Lua: " \n"}, "no Lua body"},
		{MergeOr, ok, "already registered"},
		{"test.kmv", ok, "already registered"},
		{"test.late", ok, "fixed once a store has opened registers"},
	} {
		err := RegisterOp(c.name, c.op)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("RegisterOp(%q): %v, want an error with %q", c.name, err, c.want)
		}
	}
	if !errors.Is(RegisterOp("test.late", ok), ErrOpsFrozen) {
		t.Error("a late registration does not wrap ErrOpsFrozen")
	}
	want := []string{MergeMaxInt64, MergeOr, MergeSetAdd, "test.fail", "test.kmv", "test.sum-capped"}
	if got := Ops(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Ops() = %v, want %v", got, want)
	}
}

// TestEmbeddedOpPanics: an op whose Go function panics fails the Merge with a one-line
// error and changes nothing; the store keeps working.
func TestEmbeddedOpPanics(t *testing.T) {
	r := mustRegisters(t, NewEmbedded(), "t", "regs")
	wantMerge(t, r, Tag{Unit: 1, Clock: 1}, "k", "test.fail", []byte("a"), []byte("a"))
	_, err := r.Merge(Tag{Unit: 1, Clock: 2}, "k", "test.fail", []byte("panic"))
	if err == nil || !strings.Contains(err.Error(), "panicked") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("panicking op: %v", err)
	}
	t.Logf("panic: %v", err)
	wantReg(t, r, "k", []byte("a"), true)
	wantMerge(t, r, Tag{Unit: 1, Clock: 2}, "k", "test.fail", []byte("b"), []byte("b")) // the tag was not recorded
}

// suiteRegistersCustomOps: NF-defined operations behave as their Go function says on every
// store (on Redis, their Lua body runs): results, repeats applied once, errors one line and
// changing nothing, and a random sequence against the embedded store as the oracle.
func suiteRegistersCustomOps(t *testing.T, b *backend) {
	s1, s2 := b.open(t), b.open(t)
	r, r2 := mustRegisters(t, s1, "t", "custom"), mustRegisters(t, s2, "t", "custom")
	tg := func(c uint64) Tag { return Tag{Unit: 4, Clock: c, Seq: 1} }
	set := func(ms ...uint64) []byte {
		var v []byte
		for _, m := range ms {
			v = append(v, u64(m)...)
		}
		return v
	}

	// test.kmv keeps the 8 smallest distinct members.
	for i, m := range []uint64{50, 10, 90, 10, 30, 1 << 63, 70, 20, 60, 40, 80, 5} {
		wantMerge(t, r, tg(uint64(100+i)), "kmv", "test.kmv", u64(m), nil2(kmvModel(r, "kmv", m)))
	}
	wantReg(t, r2, "kmv", set(5, 10, 20, 30, 40, 50, 60, 70), true)
	// A repeat (other client, value changed since) gets its first result and changes nothing.
	wantMerge(t, r2, tg(100), "kmv", "test.kmv", u64(50), set(50))
	wantMerge(t, r2, tg(111), "kmv", "test.kmv", u64(5), set(5, 10, 20, 30, 40, 50, 60, 70))
	wantReg(t, r, "kmv", set(5, 10, 20, 30, 40, 50, 60, 70), true)
	if _, err := r.Merge(tg(199), "kmv", "test.kmv", []byte{1}); err == nil || !strings.Contains(err.Error(), "want 8") {
		t.Fatalf("kmv with a 1-byte member: %v", err)
	}

	// test.sum-capped: capped sums, and refusals that change nothing and record nothing.
	wantMerge(t, r, tg(200), "n", "test.sum-capped", []byte("5,100"), []byte("5"))
	wantMerge(t, r, tg(201), "n", "test.sum-capped", []byte("90,100"), []byte("95"))
	wantMerge(t, r2, tg(202), "n", "test.sum-capped", []byte("90,100"), []byte("100"))
	wantMerge(t, r2, tg(201), "n", "test.sum-capped", []byte("90,100"), []byte("95")) // repeat
	wantMerge(t, r, tg(203), "n", "test.sum-capped", []byte("-30,100"), []byte("70"))
	for _, c := range []struct {
		key, arg, want string
	}{
		{"n", "-71,100", "would go negative (-1)"},
		{"n", "5", `arg (1 bytes) is not delta,cap`},
		{"n", "1e3,100", `arg (7 bytes) is not delta,cap`},
		{"bad", "1,100", `stored value (3 bytes) is not a count`},
	} {
		if c.key == "bad" {
			wantCAS(t, r, Tag{}, "bad", nil, []byte("x\ny"), []byte("x\ny"), true)
		}
		_, err := r.Merge(tg(204), c.key, "test.sum-capped", []byte(c.arg))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("sum-capped %s %q: %v, want %q", c.key, c.arg, err, c.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("a multi-line error: %q", err)
		}
		t.Logf("refused: %v", err)
	}
	wantReg(t, r2, "n", []byte("70"), true)
	wantReg(t, r2, "bad", []byte("x\ny"), true)
	wantMerge(t, r2, tg(204), "n", "test.sum-capped", []byte("-70,100"), []byte("0")) // the refused tag was not recorded

	// test.fail: an error reply and a raised Lua error (a Go panic) are one line, change nothing.
	wantMerge(t, r, tg(300), "f", "test.fail", []byte("v1"), []byte("v1"))
	for _, arg := range []string{"err", "panic"} {
		_, err := r.Merge(tg(301), "f", "test.fail", []byte(arg))
		if err == nil || strings.Contains(err.Error(), "\n") || arg == "err" && !strings.Contains(err.Error(), "failed as asked") {
			t.Fatalf("test.fail %s: %q", arg, err)
		}
		t.Logf("%s: %v", arg, err)
	}
	wantReg(t, r2, "f", []byte("v1"), true)

	// Unknown: the error names the registered ops.
	_, err := r.Merge(tg(400), "f", "test.nope", nil)
	if !errors.Is(err, ErrUnknownMerge) || !strings.Contains(err.Error(), "test.kmv") || !strings.Contains(err.Error(), MergeOr) {
		t.Fatalf("unknown op: %v", err)
	}

	// A random sequence, compared with the embedded store's (the Go functions').
	oracle := NewEmbedded()
	want := playRegisterOps(t, mustRegisters(t, oracle, "t", "rand"), mustRegisters(t, oracle, "t", "rand"), randomRegisterOps(1, 300))
	got := playRegisterOps(t, mustRegisters(t, s1, "t", "rand"), mustRegisters(t, s2, "t", "rand"), randomRegisterOps(1, 300))
	compareTranscripts(t, "oracle", want, b.name, got)
}

// kmvModel returns what test.kmv makes of key's value with m.
func kmvModel(r Registers, key string, m uint64) ([]byte, error) {
	cur, ok, err := r.Get(key)
	if err != nil {
		return nil, err
	}
	return kmvGo(cur, ok, u64(m))
}

func nil2(v []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return v
}

// regCall is one operation of a random sequence.
type regCall struct {
	tag      Tag
	key, op  string // op "" is an untagged write (of junk: a value of the wrong shape)
	arg, new []byte
	repeat   bool // a repeat of an earlier call, sent through the second client
}

// randomRegisterOps returns n calls over four keys: merges of every op (the built-ins, test.kmv,
// test.sum-capped, test.fail), some CAS writes of values of the wrong shape, and ~20%
// repeats of earlier calls (same tag and arguments).
func randomRegisterOps(seed uint64, n int) []regCall {
	rng := rand.New(rand.NewPCG(seed, seed*7919+1))
	keys := []string{"a", "b", "c", "d"}
	var calls []regCall
	for i := range n {
		if len(calls) > 0 && rng.IntN(5) == 0 {
			c := calls[rng.IntN(len(calls))]
			c.repeat = true
			calls = append(calls, c)
			continue
		}
		c := regCall{tag: Tag{Unit: uint32(1 + rng.IntN(3)), Clock: uint64(i + 1), Seq: uint32(rng.IntN(3))}}
		if rng.IntN(8) == 0 {
			c.tag = Tag{} // untagged: never a repeat
		}
		kind := rng.IntN(9)
		c.key = keys[kind%len(keys)] // mostly one op per key, so that values grow
		if rng.IntN(4) == 0 {
			c.key = keys[rng.IntN(len(keys))]
		}
		switch kind {
		case 0:
			c.new = [][]byte{[]byte("junk"), []byte("12"), u64(rng.Uint64N(100)), {}}[rng.IntN(4)]
		case 1, 2:
			c.op, c.arg = "test.kmv", u64(rng.Uint64N(64)<<58|rng.Uint64N(16))
		case 3, 4:
			c.op = "test.sum-capped"
			c.arg = fmt.Appendf(nil, "%d,%d", rng.IntN(41)-15, 20+rng.IntN(200))
			if rng.IntN(10) == 0 {
				c.arg = []byte("7,x")
			}
		case 5:
			c.op, c.arg = MergeMaxInt64, i64(rng.Int64N(2000)-1000)
		case 6:
			c.op, c.arg = MergeSetAdd, u64(rng.Uint64N(20)<<56)
		case 7:
			c.op, c.arg = MergeOr, []byte{byte(rng.IntN(256)), byte(rng.IntN(256))}[:1+rng.IntN(2)]
		case 8:
			c.op, c.arg = "test.fail", []byte([]string{"err", "panic", "ok"}[rng.IntN(3)])
		}
		calls = append(calls, c)
	}
	return calls
}

// playRegisterOps sends calls (repeats through r2) and returns one line per call (the result
// or "error"), then the final values.
func playRegisterOps(t testing.TB, r, r2 Registers, calls []regCall) []string {
	t.Helper()
	var out []string
	for i, c := range calls {
		via := r
		if c.repeat {
			via = r2
		}
		if c.op == "" { // untagged: read, then overwrite whatever is there
			cur, ok, err := via.Get(c.key)
			if err != nil {
				t.Fatalf("call %d: get: %v", i, err)
			}
			if !ok {
				cur = nil
			}
			_, swapped, err := via.CompareAndSet(Tag{}, c.key, cur, c.new)
			if err != nil || !swapped {
				t.Fatalf("call %d: cas %x over %x: %v %v", i, c.new, cur, swapped, err)
			}
			out = append(out, fmt.Sprintf("%s = %x", c.key, c.new))
			continue
		}
		var line string
		v, err := via.Merge(c.tag, c.key, c.op, c.arg)
		if err != nil {
			if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) {
				t.Fatalf("call %d: %v", i, err)
			}
			line = fmt.Sprintf("%s %s %x: error", c.key, c.op, c.arg)
		} else {
			line = fmt.Sprintf("%s %s %x: %x", c.key, c.op, c.arg, v)
		}
		out = append(out, line)
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		v, ok, err := r2.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("final %s = %s", k, show(v, ok)))
	}
	return out
}

func compareTranscripts(t testing.TB, an string, a []string, bn string, b []string) {
	t.Helper()
	for i := range max(len(a), len(b)) {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			t.Fatalf("line %d differs:\n%s: %s\n%s: %s", i, an, x, bn, y)
		}
	}
	errs := 0
	for _, l := range a {
		if strings.HasSuffix(l, ": error") {
			errs++
		}
	}
	if errs == 0 || errs == len(a) {
		t.Fatalf("%d of %d calls failed: the sequence tests little", errs, len(a))
	}
	t.Logf("%d calls equal (%d refused); %s", len(a), errs, strings.Join(a[len(a)-4:], "; "))
}

// TestCustomOpsEmbeddedMatchesRedis: random sequences of every op (repeats included) give
// the same results and final values on the embedded store and on Redis.
func TestCustomOpsEmbeddedMatchesRedis(t *testing.T) {
	rb := redisBackend(t, "")
	for seed := uint64(1); seed <= 5; seed++ {
		e := NewEmbedded()
		want := playRegisterOps(t, mustRegisters(t, e, "t", "p"), mustRegisters(t, e, "t", "p"), randomRegisterOps(seed, 400))
		ns := "seed" + strconv.Itoa(int(seed))
		got := playRegisterOps(t, mustRegisters(t, rb.open(t), ns, "p"), mustRegisters(t, rb.open(t), ns, "p"), randomRegisterOps(seed, 400))
		compareTranscripts(t, "embedded", want, "redis", got)
	}
}

// TestRedisOpScripts: a Lua body that does not compile fails Registers-time checking with a
// one-line error naming the op; one that returns a non-string, or reaches for KEYS or
// redis.call (hidden from it), fails the Merge and changes nothing.
func TestRedisOpScripts(t *testing.T) {
	srv := startRedis(t)
	s := openRedis(t, srv, "")
	mk := func(name, body string) *regOp {
		text := mergeScriptText(name, body)
		return &regOp{name: name, op: Op{Go: failGo, Lua: body}, text: text, script: rueidis.NewLuaScript(text)}
	}
	_, err := s.compileOps([]*regOp{mk("good", "return arg"), mk("broken", "return arg +* 1")})
	if err == nil || !strings.Contains(err.Error(), `op "broken": the Lua body does not compile`) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("broken body: %v", err)
	}
	t.Logf("%v", err)
	if ok, err := s.compileOps([]*regOp{mk("good", "return arg")}); !ok || err != nil {
		t.Fatalf("good body: %v %v", ok, err)
	}
	if _, err := s.Registers("t", "r"); err != nil { // the registered ops compile
		t.Fatal(err)
	}
	r := mustRegisters(t, s, "t", "r").(*redisRegisters)
	wantCAS(t, r, Tag{}, "k", nil, []byte("v"), []byte("v"), true)
	for _, c := range []struct{ body, want string }{
		{"return 42", "returned a number, want a string"},
		{"return nil", "returned a nil, want a string"},
		{"return KEYS[1]", "attempt to index"},
		{"redis.call('SET', 'x', '1') return arg", "attempt to call"},
	} {
		_, err := r.merge(Tag{Unit: 1, Clock: 1}, "k", mk("x", c.body), []byte("new"))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("body %q: %v, want %q", c.body, err, c.want)
		}
		t.Logf("%s: %v", c.body, err)
	}
	wantReg(t, r, "k", []byte("v"), true)
	if n := len(srv.keys()); n != 1 {
		t.Fatalf("%d keys in the server (%v), want the register alone", n, srv.keys())
	}
}
