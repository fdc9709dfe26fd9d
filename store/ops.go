package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"
)

// Op is a merge operation of Registers, registered by name with RegisterOp. It is written
// twice, once per store, and both must compute the same function:
//
//   - Go computes the new value in the embedded store: cur is the stored value (nil when the
//     key is absent: present is false), arg the Merge argument. It must not modify cur or arg
//     nor keep them (it may return either: the store copies the result). A nil result is
//     stored as the empty value. An error (or a panic) fails the Merge and changes nothing.
//   - Lua is the body of a Lua function (cur, present, arg) run by the Redis store inside the
//     operation's script: cur is the stored value (” when absent), present a boolean, arg a
//     string. It returns the new value as a string, or fails with
//     `return redis.error_reply('message')` or error('message'), which changes nothing. The
//     body sees only its parameters and Lua's libraries (string, math, table, bit, struct,
//     cjson, cmsgpack): KEYS and ARGV are hidden and redis holds error_reply alone, so an op
//     cannot touch other keys.
//
// CheckArg, if set, validates arg before anything is sent or changed (both stores).
type Op struct {
	Go       func(cur []byte, present bool, arg []byte) ([]byte, error)
	Lua      string
	CheckArg func(arg []byte) error
}

// The merge operations built in, registered like any other (see RegisterOp).
const (
	MergeMaxInt64 = "max-int64" // value and arg: int64, 8 bytes big-endian; absent = arg
	MergeSetAdd   = "set-add"   // value: sorted (bytewise) distinct 8-byte members; arg: a member
	MergeOr       = "or"        // bytewise OR; the result is as long as the longer operand
)

// ErrUnknownMerge is wrapped by the error of a Merge naming an operation that is not
// registered.
var ErrUnknownMerge = errors.New("unknown merge operation")

// ErrOpsFrozen is wrapped by the error of a RegisterOp called after a store opened
// Registers.
var ErrOpsFrozen = errors.New("operations are fixed once a store has opened registers")

// maxOpName bounds the length of an operation's name.
const maxOpName = 64

// regOp is a registered operation: the Op and its Redis script.
type regOp struct {
	name   string
	op     Op
	script *rueidis.Lua
	text   string // the script's source
}

var ops struct {
	mu     sync.Mutex
	m      atomic.Pointer[map[string]*regOp] // copied on write; read without a lock
	frozen bool
}

// RegisterOp registers a merge operation for Registers.Merge in every store of the process.
// The name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or
// digit; a name already registered (the built-ins included) is an error, and so is an Op
// without Go or Lua. Operations must be registered before any store opens Registers (in an
// init function): later calls fail with ErrOpsFrozen, so the set of operations is fixed
// while stores use it.
func RegisterOp(name string, op Op) error {
	if err := checkOpName(name); err != nil {
		return err
	}
	if op.Go == nil {
		return fmt.Errorf("store: register op %q: no Go function", name)
	}
	if strings.TrimSpace(op.Lua) == "" {
		return fmt.Errorf("store: register op %q: no Lua body", name)
	}
	ops.mu.Lock()
	defer ops.mu.Unlock()
	old := opMap()
	if _, ok := old[name]; ok {
		return fmt.Errorf("store: register op %q: already registered", name)
	}
	if ops.frozen {
		return fmt.Errorf("store: register op %q: %w", name, ErrOpsFrozen)
	}
	m := maps.Clone(old)
	if m == nil {
		m = map[string]*regOp{}
	}
	text := mergeScriptText(name, op.Lua)
	m[name] = &regOp{name: name, op: op, script: rueidis.NewLuaScript(text), text: text}
	ops.m.Store(&m)
	return nil
}

func checkOpName(name string) error {
	if name == "" || len(name) > maxOpName {
		return fmt.Errorf("store: register op %q: name must be 1 to %d characters", name, maxOpName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("store: register op %q: bad character %q (a-z, 0-9, '.', '_', '-', not first)", name, c)
		}
	}
	return nil
}

// freezeOps fixes the set of operations; stores call it when they open Registers.
func freezeOps() {
	ops.mu.Lock()
	ops.frozen = true
	ops.mu.Unlock()
}

func opMap() map[string]*regOp {
	if p := ops.m.Load(); p != nil {
		return *p
	}
	return nil
}

// Ops returns the names of the registered operations, sorted.
func Ops() []string {
	return slices.Sorted(maps.Keys(opMap()))
}

// lookupOp returns the registered operation op after checking arg, or the error of a Merge
// that must not be sent.
func lookupOp(op string, arg []byte) (*regOp, error) {
	r, ok := opMap()[op]
	if !ok {
		return nil, fmt.Errorf("store: registers merge: %w %q (registered: %s)", ErrUnknownMerge, op, strings.Join(Ops(), ", "))
	}
	if r.op.CheckArg != nil {
		if err := r.op.CheckArg(arg); err != nil {
			return nil, fmt.Errorf("store: registers merge %s: %s", op, oneLine(err.Error()))
		}
	}
	return r, nil
}

// apply runs the Go function of the operation, turning a panic into an error.
func (r *regOp) apply(cur []byte, present bool, arg []byte) (v []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, fmt.Errorf("op %s panicked: %v", r.name, p)
		}
	}()
	return r.op.Go(cur, present, arg)
}

// oneLine joins the lines of an error message.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}

// mergeScriptText is the Redis script of an operation: a tagged operation whose result is
// recorded returns it again; otherwise the op's body computes the new value, which is
// stored, and the result is recorded for the window, atomically. KEYS: the register, [the
// result record]. ARGV: window in ms, arg (checked by the client). Returns '11' and the new
// value. The body runs in a function that hides KEYS, ARGV and every redis function but
// error_reply; nothing is written before it returns a string.
func mergeScriptText(name, body string) string {
	return `-- snf merge op ` + name + `
if KEYS[2] then
  local r = redis.call('GET', KEYS[2])
  if r then return r end
end
local op = function(cur, present, arg)
  local redis, KEYS, ARGV = {error_reply = redis.error_reply}, nil, nil
` + body + `
end
local cur = redis.call('GET', KEYS[1])
local present = cur ~= false
if not present then cur = '' end
local v = op(cur, present, ARGV[2])
if type(v) == 'table' and v.err then return v end
if type(v) ~= 'string' then return redis.error_reply('op ` + name + ` returned a ' .. type(v) .. ', want a string') end
if not present or v ~= cur then redis.call('SET', KEYS[1], v) end
local res = '11' .. v
if KEYS[2] then redis.call('SET', KEYS[2], res, 'PX', ARGV[1]) end
return res
`
}

// ---- the built-in operations ----

func init() {
	arg8 := func(arg []byte) error {
		if len(arg) != 8 {
			return fmt.Errorf("arg is %d bytes, want 8", len(arg))
		}
		return nil
	}
	// less8 (Lua): a[off+1..off+8] < b[1..8] bytewise; signed: the first byte as two's complement.
	const less8 = `
local function less(a, b, off, signed)
  for i = 1, 8 do
    local x, y = string.byte(a, off + i), string.byte(b, i)
    if signed and i == 1 then x = (x + 128) % 256; y = (y + 128) % 256 end
    if x ~= y then return x < y end
  end
  return false
end
`
	for _, b := range []struct {
		name string
		op   Op
	}{
		{MergeMaxInt64, Op{CheckArg: arg8, Go: mergeMaxInt64, Lua: less8 + `
if not present then return arg end
if #cur ~= 8 then return redis.error_reply('stored value is ' .. #cur .. ' bytes, want 8 for max-int64') end
if less(cur, arg, 0, true) then return arg end
return cur
`}},
		{MergeSetAdd, Op{CheckArg: arg8, Go: mergeSetAdd, Lua: less8 + `
if not present then return arg end
if #cur % 8 ~= 0 then return redis.error_reply('stored value is ' .. #cur .. ' bytes, not a multiple of 8 for set-add') end
local lo, hi = 0, #cur / 8
while lo < hi do
  local m = math.floor((lo + hi) / 2)
  if less(cur, arg, m * 8, false) then lo = m + 1 else hi = m end
end
if lo * 8 < #cur and string.sub(cur, lo * 8 + 1, lo * 8 + 8) == arg then return cur end
return string.sub(cur, 1, lo * 8) .. arg .. string.sub(cur, lo * 8 + 1)
`}},
		{MergeOr, Op{Go: mergeOr, Lua: `
if not present then return arg end
local out, n = {}, math.max(#cur, #arg)
for i = 1, n do
  out[i] = string.char(bit.bor(string.byte(cur, i) or 0, string.byte(arg, i) or 0))
end
return table.concat(out)
`}},
	} {
		if err := RegisterOp(b.name, b.op); err != nil {
			panic(err)
		}
	}
}

func mergeMaxInt64(cur []byte, present bool, arg []byte) ([]byte, error) {
	if !present {
		return arg, nil
	}
	if len(cur) != 8 {
		return nil, fmt.Errorf("stored value is %d bytes, want 8 for %s", len(cur), MergeMaxInt64)
	}
	if int64(binary.BigEndian.Uint64(arg)) > int64(binary.BigEndian.Uint64(cur)) {
		return arg, nil
	}
	return cur, nil
}

func mergeSetAdd(cur []byte, present bool, arg []byte) ([]byte, error) {
	if !present {
		return arg, nil
	}
	if len(cur)%8 != 0 {
		return nil, fmt.Errorf("stored value is %d bytes, not a multiple of 8 for %s", len(cur), MergeSetAdd)
	}
	lo, hi := 0, len(cur)/8
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(cur[m*8:m*8+8], arg) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo*8 < len(cur) && bytes.Equal(cur[lo*8:lo*8+8], arg) {
		return cur, nil
	}
	v := make([]byte, 0, len(cur)+8)
	v = append(v, cur[:lo*8]...)
	v = append(v, arg...)
	return append(v, cur[lo*8:]...), nil
}

func mergeOr(cur []byte, present bool, arg []byte) ([]byte, error) {
	if !present {
		return arg, nil
	}
	v := make([]byte, max(len(cur), len(arg)))
	copy(v, cur)
	for i, b := range arg {
		v[i] |= b
	}
	return v, nil
}
