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
	pre := objTag(ns, name)
	return &redisRegisters{s: s, name: objKey(ns, name), prefix: pre + "r:", donePrefix: pre + "rd:",
		window: strconv.FormatInt(s.o.DedupWindow.Milliseconds(), 10)}, nil
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

func (r *redisRegisters) CompareAndSet(t Tag, key string, old, new []byte) ([]byte, bool, error) {
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
	if err := checkMerge(mop, arg); err != nil {
		return nil, err
	}
	const op = "registers merge"
	if err := r.s.check(op, r.name); err != nil {
		return nil, err
	}
	ctx, cancel := r.s.opCtx()
	defer cancel()
	res, err := mergeScript.Exec(ctx, r.s.c, r.keys(t, key), []string{r.window, mop, string(arg)}).ToString()
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

// mergeScript applies a built-in merge (see merge in registers.go, which it mirrors) and
// records the result like casScript. KEYS: the register, [the result record]. ARGV:
// window in ms, op, arg (validated by the client). Returns '11' and the new value.
var mergeScript = rueidis.NewLuaScript(`
if KEYS[2] then
  local r = redis.call('GET', KEYS[2])
  if r then return r end
end
-- less: a < b bytewise over 8 bytes; signed: the first byte as two's complement
local function less(a, b, off, signed)
  for i = 1, 8 do
    local x, y = string.byte(a, off + i), string.byte(b, i)
    if signed and i == 1 then x = (x + 128) % 256; y = (y + 128) % 256 end
    if x ~= y then return x < y end
  end
  return false
end
local cur = redis.call('GET', KEYS[1])
local op, arg = ARGV[2], ARGV[3]
local v
if not cur then
  v = arg
elseif op == 'max-int64' then
  if #cur ~= 8 then return redis.error_reply('stored value is ' .. #cur .. ' bytes, want 8 for max-int64') end
  if less(cur, arg, 0, true) then v = arg else v = cur end
elseif op == 'set-add' then
  if #cur % 8 ~= 0 then return redis.error_reply('stored value is ' .. #cur .. ' bytes, not a multiple of 8 for set-add') end
  local lo, hi = 0, #cur / 8
  while lo < hi do
    local m = math.floor((lo + hi) / 2)
    if less(cur, arg, m * 8, false) then lo = m + 1 else hi = m end
  end
  if lo * 8 < #cur and string.sub(cur, lo * 8 + 1, lo * 8 + 8) == arg then v = cur
  else v = string.sub(cur, 1, lo * 8) .. arg .. string.sub(cur, lo * 8 + 1) end
elseif op == 'or' then
  local out, n = {}, math.max(#cur, #arg)
  for i = 1, n do
    out[i] = string.char(bit.bor(string.byte(cur, i) or 0, string.byte(arg, i) or 0))
  end
  v = table.concat(out)
else
  return redis.error_reply('unknown merge operation ' .. op)
end
if v ~= cur then redis.call('SET', KEYS[1], v) end
local res = '11' .. v
if KEYS[2] then redis.call('SET', KEYS[2], res, 'PX', ARGV[1]) end
return res
`)
