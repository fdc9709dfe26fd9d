package store

import (
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

var _ RegistersStore = (*Redis)(nil)

// Registers implements RegistersStore. Keys: r:<key> (one string per register), rd:<tag>
// (the result of a tagged operation, expiring after DedupWindow).
func (s *Redis) Registers(ns, name string) (Registers, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	freezeOps()
	if err := s.checkOps(); err != nil {
		return nil, err
	}
	pre := objTag(ns, name)
	return &redisRegisters{s: s, name: objKey(ns, name), prefix: pre + "r:", donePrefix: pre + "rd:",
		window: strconv.FormatInt(s.o.DedupWindow.Milliseconds(), 10)}, nil
}

// checkOps compiles every registered operation's script in the server (SCRIPT LOAD,
// pipelined), once per store, so that a Lua body that does not compile fails Registers
// rather than each Merge. When the server cannot be reached the check is left for the next
// Registers: the ops are then checked by their first use.
func (s *Redis) checkOps() error {
	s.opsMu.Lock()
	defer s.opsMu.Unlock()
	if s.opsChecked || s.check("registers open", "") != nil {
		return nil
	}
	m := opMap()
	l := make([]*regOp, 0, len(m))
	for _, n := range Ops() {
		l = append(l, m[n])
	}
	ok, err := s.compileOps(l)
	s.opsChecked = ok
	return err
}

// compileOps loads the scripts of l in the server; ok reports that the server answered.
func (s *Redis) compileOps(l []*regOp) (ok bool, err error) {
	cmds := make(rueidis.Commands, len(l))
	for i, o := range l {
		cmds[i] = s.c.B().ScriptLoad().Script(o.text).Build()
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		err := r.Error()
		if err == nil {
			continue
		}
		if isReply(err) {
			return true, fmt.Errorf("store: op %q: the Lua body does not compile: %s", l[i].name, oneLine(err.Error()))
		}
		s.opErr("registers open", "", err)
		return false, nil
	}
	return true, nil
}

type redisRegisters struct {
	s          *Redis
	name       string
	prefix     string // snf:{tag}:r:  (a register's server key is prefix+key)
	donePrefix string // snf:{tag}:rd: (+ the tag in hex: a tagged operation's result)
	window     string // DedupWindow in ms
}

// keys returns the script's KEYS: the register, and for a tagged operation its result record.
func (r *redisRegisters) keys(t Tag, key string) []string {
	if t == (Tag{}) {
		return []string{r.prefix + key}
	}
	return []string{r.prefix + key, r.donePrefix + hex.EncodeToString([]byte(tagArg(t)))}
}

// decodeRegResult decodes a script's result: '1'/'0' swapped, '1'/'0' present, the value.
func decodeRegResult(s string) (val []byte, present, swapped bool, err error) {
	if len(s) < 2 {
		return nil, false, false, fmt.Errorf("malformed result %q", s)
	}
	if s[1] == '1' {
		val, present = []byte(s[2:]), true
	}
	return val, present, s[0] == '1', nil
}

func (r *redisRegisters) CompareAndSet(t Tag, key string, old, new []byte) (v []byte, swapped bool, err error) {
	err = r.s.retry(func() error {
		var e error
		v, swapped, e = r.cas(t, key, old, new)
		return e
	})
	return v, swapped, err
}

func (r *redisRegisters) cas(t Tag, key string, old, new []byte) ([]byte, bool, error) {
	const op = "registers cas"
	if err := r.s.check(op, r.name); err != nil {
		return nil, false, err
	}
	flag := func(b []byte) string {
		if b == nil {
			return "0"
		}
		return "1"
	}
	ctx, cancel := r.s.opCtx()
	defer cancel()
	res, err := casScript.Exec(ctx, r.s.c, r.keys(t, key),
		[]string{r.window, flag(old), string(old), flag(new), string(new)}).ToString()
	if err != nil {
		return nil, false, r.s.opErr(op, r.name, err)
	}
	v, _, swapped, err := decodeRegResult(res)
	if err != nil {
		return nil, false, &OpError{op, r.name, err}
	}
	return v, swapped, nil
}

func (r *redisRegisters) Merge(t Tag, key, mop string, arg []byte) ([]byte, error) {
	o, err := lookupOp(mop, arg)
	if err != nil {
		return nil, err
	}
	var v []byte
	err = r.s.retry(func() error {
		var e error
		v, e = r.merge(t, key, o, arg)
		return e
	})
	return v, err
}

// merge runs the script of o (checked by lookupOp) on key.
func (r *redisRegisters) merge(t Tag, key string, o *regOp, arg []byte) ([]byte, error) {
	const op = "registers merge"
	mop := o.name
	if err := r.s.check(op, r.name); err != nil {
		return nil, err
	}
	ctx, cancel := r.s.opCtx()
	defer cancel()
	res, err := o.script.Exec(ctx, r.s.c, r.keys(t, key), []string{r.window, string(arg)}).ToString()
	if err != nil {
		e := r.s.opErr(op, r.name, err) // on the bare error: it tells a refusal from a lost server
		if _, reply := rueidis.IsRedisErr(err); reply {
			e = &OpError{op, r.name, fmt.Errorf("%s key %q: %w", mop, key, err)}
		}
		return nil, e
	}
	v, _, _, err := decodeRegResult(res)
	if err != nil {
		return nil, &OpError{op, r.name, err}
	}
	return v, nil
}

func (r *redisRegisters) Get(key string) ([]byte, bool, error) {
	const op = "registers get"
	if err := r.s.check(op, r.name); err != nil {
		return nil, false, err
	}
	ctx, cancel := r.s.opCtx()
	defer cancel()
	s, err := r.s.c.Do(ctx, r.s.c.B().Get().Key(r.prefix+key).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, r.s.opErr(op, r.name, err)
	}
	return []byte(s), true, nil
}

// casScript: a tagged operation whose result is recorded returns it again; otherwise sets
// the register to new (or deletes it) if it holds old (or is absent), and records the
// result for the window. KEYS: the register, [the result record]. ARGV: window in ms,
// old present ('0'/'1'), old, new present, new. Returns swapped, present ('0'/'1'), value.
var casScript = rueidis.NewLuaScript(`
if KEYS[2] then
  local r = redis.call('GET', KEYS[2])
  if r then return r end
end
local cur = redis.call('GET', KEYS[1])
local match
if ARGV[2] == '0' then match = not cur else match = cur and cur == ARGV[3] end
local res
if match then
  if ARGV[4] == '1' then
    redis.call('SET', KEYS[1], ARGV[5])
    res = '11' .. ARGV[5]
  else
    redis.call('DEL', KEYS[1])
    res = '10'
  end
elseif cur then
  res = '01' .. cur
else
  res = '00'
end
if KEYS[2] then redis.call('SET', KEYS[2], res, 'PX', ARGV[1]) end
return res
`)
