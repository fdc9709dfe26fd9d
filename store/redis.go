package store

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// RedisOptions configure OpenRedis; zero fields take the defaults below.
type RedisOptions struct {
	Addr string // host:port of a Redis 7 server, or of one node of a cluster
	DB   int    // database number (0 on a cluster)

	// Timeout bounds connecting (Open) and every operation that waits for the server: an
	// operation that gets no answer within it fails. Default 2s.
	Timeout time.Duration
	// CacheTTL bounds how long a table entry read from the server is served from the
	// unit's cache without asking again. Invalidations normally arrive much sooner; this is
	// the bound when they cannot. Default 10s.
	CacheTTL time.Duration
	// Batch: a Counters handle sends its buffered adds once this many are buffered.
	// Default 256 (also the most adds one server-side call applies).
	Batch int
	// FlushEvery: buffered adds are sent at least this often. Default 20ms.
	FlushEvery time.Duration
	// DedupWindow: how long the server remembers the tag of a counter add or a pool put to
	// drop a repeat of it. Default 60s.
	DedupWindow time.Duration
	// MaxPending: adds a Counters handle keeps while it cannot reach the server; further
	// adds are dropped (counted by Dropped). Default 1<<20.
	MaxPending int
	// Retry: a blocking operation (pool take and put, registers) that fails for want of the
	// server is tried again — every 10ms, with the same tag, so the server applies it once —
	// until it succeeds or Retry has passed since its first try. Zero (the default) fails at
	// once: the caller sees the outage (a NAT drops the new connection and counts it). With
	// Retry longer than a restart, a run waits through it instead, and its output is the
	// same as without the restart (URL option retry=5s).
	Retry time.Duration
	// Naive turns the strategies off — every access is a blocking round trip, as in a
	// design that keeps all state in a remote store (StatelessNF): Table reads skip the
	// client cache and Counters adds are sent one by one, waiting for the server. It exists
	// to measure what the strategies buy (URL option naive=1); never use it otherwise.
	Naive bool
}

const (
	defaultTimeout     = 2 * time.Second
	defaultCacheTTL    = 10 * time.Second
	defaultBatch       = 256
	defaultFlushEvery  = 20 * time.Millisecond
	defaultDedupWindow = 60 * time.Second
	defaultMaxPending  = 1 << 20

	// retryAfter: after an operation failed for want of the server (connection refused or
	// lost, no answer in time), operations fail at once for this long instead of each
	// waiting for the network; then the next one tries again.
	retryAfter = 250 * time.Millisecond
	// clockTick is the resolution of the coarse clock that table reads check entry ages
	// against (reading it costs an atomic load, time.Now costs more than the whole read).
	clockTick = 2 * time.Millisecond
	// writeGrace bounds how long a table handle distrusts its client cache for a key it
	// wrote itself, waiting for the invalidation of an older cached value (which normally
	// arrives within a millisecond).
	writeGrace = time.Second
	// flushPipeline: server-side calls (of Batch adds each) sent per round trip of a flush,
	// so that each round trip of a large backlog completes well within Timeout.
	flushPipeline = 16
	// verLen is the length of the version prefix of a stored table value (16 hex digits).
	verLen = 16
)

// ErrUnavailable is wrapped by the errors of operations that were not sent because the
// server failed another operation less than a quarter of a second before.
var ErrUnavailable = errors.New("store unavailable")

// OpError is the error of a failed Redis operation: which operation, on which object.
type OpError struct {
	Op     string // "pool take", "counters flush", "table set", …
	Object string // namespace/name
	Err    error
}

func (e *OpError) Error() string {
	return "store: redis " + e.Op + " " + e.Object + ": " + e.Err.Error()
}
func (e *OpError) Unwrap() error { return e.Err }

// Redis is the store on a Redis 7 server (or cluster). Every object's keys share one hash
// tag, snf:{namespace/name}:…, so that an object lives in one cluster slot and each
// operation is one atomic server-side script. See README.md for the guarantees.
type Redis struct {
	o     RedisOptions
	c     rueidis.Client
	start time.Time
	now   atomic.Int64 // coarse clock: nanoseconds since start, advanced every clockTick

	downUntil atomic.Int64  // coarse time until which operations fail at once
	retries   atomic.Uint64 // blocking operations tried again (Options.Retry)
	lastErr   atomic.Pointer[error]
	closed    atomic.Bool

	mu     sync.Mutex
	pools  map[string]*redisPool
	counts map[string]*redisCounters
	tables map[string]*redisTable // by objKey

	opsMu      sync.Mutex // guards opsChecked
	opsChecked bool       // the registered ops' scripts compiled in the server (checkOps)

	tmu      sync.RWMutex
	byPrefix map[string]*redisTable // by key prefix snf:{tag}:t: (invalidation routing)

	kick      chan struct{}
	armKick   chan struct{} // a table needs its version key tracked again (armLoop)
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	fetches  atomic.Uint64 // table reads that went to the client library (cache misses)
	bypasses atomic.Uint64 // of those, reads that bypassed the client cache (read-your-writes)
}

var _ Store = (*Redis)(nil)

// OpenRedis connects to the server at o.Addr. It fails, within o.Timeout, when the server
// cannot be reached or does not speak RESP3 (Redis 6 or later is needed; 7 is tested).
func OpenRedis(o RedisOptions) (*Redis, error) {
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = defaultCacheTTL
	}
	if o.Batch <= 0 {
		o.Batch = defaultBatch
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = defaultFlushEvery
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = defaultDedupWindow
	}
	if o.MaxPending <= 0 {
		o.MaxPending = defaultMaxPending
	}
	s := &Redis{
		o: o, start: time.Now(),
		pools: map[string]*redisPool{}, counts: map[string]*redisCounters{}, tables: map[string]*redisTable{},
		byPrefix: map[string]*redisTable{},
		kick:     make(chan struct{}, 1), armKick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{o.Addr},
		SelectDB:          o.DB,
		Dialer:            net.Dialer{Timeout: o.Timeout, KeepAlive: time.Second},
		ConnWriteTimeout:  o.Timeout,
		OnInvalidations:   s.onInvalidations,
		DisableRetry:      true, // an operation fails within Timeout; the caller (a replay) retries
		CacheSizeEachConn: 32 << 20,
		ClientName:        "snf",
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v", o.Timeout)
		}
		return nil, fmt.Errorf("store: redis %s unreachable: %w", o.Addr, err)
	}
	s.c = c
	s.wg.Add(3)
	go s.tick()
	go s.flushLoop()
	go s.armLoop()
	return s, nil
}

// Options returns the options in force (defaults filled in).
func (s *Redis) Options() RedisOptions { return s.o }

func (s *Redis) tick() {
	defer s.wg.Done()
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.now.Store(int64(time.Since(s.start)))
		}
	}
}

// clock returns the coarse time; ahead of the ticked value by at most clockTick.
func (s *Redis) clock() int64 { return s.now.Load() }

func (s *Redis) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.o.Timeout)
}

// check returns the error of an operation that must not be sent: the store is closed, or
// the server failed another operation moments ago.
func (s *Redis) check(op, obj string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if until := s.downUntil.Load(); until != 0 && int64(time.Since(s.start)) < until {
		last := errors.New("connection lost")
		if p := s.lastErr.Load(); p != nil {
			last = *p
		}
		return &OpError{op, obj, fmt.Errorf("%w (last error: %w)", ErrUnavailable, last)}
	}
	return nil
}

// retry runs op, and with Options.Retry runs it again while it fails for want of the server
// (not for an error reply, nor a closed store), every 10ms until Retry has passed. Each
// failed try is counted (Retries).
func (s *Redis) retry(op func() error) error {
	err := op()
	if err == nil || s.o.Retry <= 0 {
		return err
	}
	deadline := time.Now().Add(s.o.Retry)
	for err != nil && !errors.Is(err, ErrClosed) && !isReply(err) && time.Now().Before(deadline) {
		s.retries.Add(1)
		time.Sleep(10 * time.Millisecond)
		err = op()
	}
	return err
}

// isReply reports whether err is an error reply of the server that trying again gives
// again (not a transient one).
func isReply(err error) bool {
	var re *rueidis.RedisError
	return errors.As(err, &re) && !transient(err)
}

// transient reports whether err is the error reply of a server that cannot serve yet but
// will: one loading its data after a restart (LOADING), busy with a script, or a cluster
// whose slots are moving or whose master is down. For a caller it is an outage like a lost
// connection: Retry tries again, a Counters handle keeps its adds.
func transient(err error) bool {
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return re.IsLoading() || re.IsTryAgain() || re.IsClusterDown() || strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "BUSY ")
}

// Retries returns how many times blocking operations were tried again (Options.Retry).
func (s *Redis) Retries() uint64 { return s.retries.Load() }

// opErr wraps err; if it says the server is out of reach (not an error reply), operations
// fail at once for retryAfter.
func (s *Redis) opErr(op, obj string, err error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if _, reply := rueidis.IsRedisErr(err); !reply {
		s.lastErr.Store(&err)
		s.downUntil.Store(int64(time.Since(s.start) + retryAfter))
	}
	return &OpError{op, obj, err}
}

// objTag is the hash tag of an object: namespace/name with '{', '}' and '%' escaped, so
// that the tag ends at the first '}'.
func objTag(ns, name string) string {
	r := strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")
	return "snf:{" + r.Replace(ns+"/"+name) + "}:"
}

// tagArg encodes a Tag for the server: 16 bytes, or "" for the zero (untagged) Tag.
func tagArg(t Tag) string {
	if t == (Tag{}) {
		return ""
	}
	var b [16]byte
	binary.BigEndian.PutUint32(b[0:], t.Unit)
	binary.BigEndian.PutUint32(b[4:], t.Seq)
	binary.BigEndian.PutUint64(b[8:], t.Clock)
	return string(b[:])
}

// Close flushes the counters' buffered adds (within Timeout), then closes the connections.
// Operations on the store's objects return ErrClosed afterwards.
func (s *Redis) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		s.wg.Wait()
		err = s.Flush()
		s.closed.Store(true)
		s.c.Close()
		if err != nil {
			err = fmt.Errorf("store: close: %w", err)
		}
	})
	return err
}

// Flush implements Flusher: it sends every Counters handle's buffered adds and waits for
// the server to apply them. Its error is the first handle's that failed, with how many
// others did (an outage fails them all alike: one line, not one per object).
func (s *Redis) Flush() error {
	var first error
	failed := 0
	for _, c := range s.counterList() {
		if err := c.Flush(); err != nil {
			if failed++; first == nil {
				first = err
			}
		}
	}
	if failed > 1 {
		return fmt.Errorf("%w (and %d more counter objects not flushed)", first, failed-1)
	}
	return first
}

func (s *Redis) counterList() []*redisCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := make([]*redisCounters, 0, len(s.counts))
	for _, c := range s.counts {
		l = append(l, c)
	}
	return l
}

func (s *Redis) flushLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.o.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.kick:
		}
		for _, c := range s.counterList() {
			c.Flush() // errors are kept in the handle (Err) and the adds retried
		}
	}
}

// Pool implements Store.
func (s *Redis) Pool(ns, name string, lo, hi uint32) (Pool, error) {
	k := objKey(ns, name)
	if hi < lo {
		return nil, fmt.Errorf("store: pool %s: empty range %d-%d", k, lo, hi)
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	s.mu.Lock()
	p, ok := s.pools[k]
	s.mu.Unlock()
	if ok {
		if p.lo != lo || p.hi != hi {
			return nil, fmt.Errorf("store: pool %s: opened with range %d-%d, exists with %d-%d", k, lo, hi, p.lo, p.hi)
		}
		return p, nil
	}
	pre := objTag(ns, name)
	p = &redisPool{s: s, name: k, lo: lo, hi: hi,
		loS: strconv.FormatUint(uint64(lo), 10), hiS: strconv.FormatUint(uint64(hi), 10),
		keys: []string{pre + "pmeta", pre + "pfree", pre + "pused", pre + "ptaken", pre + "pputs"}}
	ctx, cancel := s.opCtx()
	defer cancel()
	r, err := poolOpenScript.Exec(ctx, s.c, p.keys[:1], []string{p.loS, p.hiS}).AsStrSlice()
	if err != nil {
		return nil, s.opErr("pool open", k, err)
	}
	if len(r) != 2 || r[0] != p.loS || r[1] != p.hiS {
		return nil, fmt.Errorf("store: pool %s: opened with range %d-%d, exists with %v", k, lo, hi, strings.Join(r, "-"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if q, ok := s.pools[k]; ok { // opened concurrently
		return q, nil
	}
	s.pools[k] = p
	return p, nil
}

// Counters implements Store.
func (s *Redis) Counters(ns, name string) (Counters, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	k, pre := objKey(ns, name), objTag(ns, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	return opened(s.counts, k, func() *redisCounters {
		return &redisCounters{s: s, name: k, keys: []string{pre + "c", pre + "cseen"},
			window: strconv.FormatInt(s.o.DedupWindow.Milliseconds(), 10)}
	}), nil
}

// Table implements Store.
func (s *Redis) Table(ns, name string) (Table, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	k, pre := objKey(ns, name), objTag(ns, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	return opened(s.tables, k, func() *redisTable {
		t := &redisTable{s: s, name: k, prefix: pre + "t:", verKey: pre + "tver",
			m: map[string]tEntry{}, lw: map[string]lastWrite{}, tverSeen: -1}
		t.ver.Store(1) // never 0: a holder starting from 0 sees a change at its first look
		t.needArm.Store(true)
		s.tmu.Lock()
		s.byPrefix[t.prefix] = t
		s.tmu.Unlock()
		s.kickArm()
		return t
	}), nil
}

// onInvalidations runs on the client library's reader: keys that another client (or this
// one) changed, or nil when a connection closed or the server flushed its data.
func (s *Redis) onInvalidations(keys []rueidis.RedisMessage) {
	if keys == nil {
		s.tmu.RLock()
		for _, t := range s.byPrefix {
			t.reset()
		}
		s.tmu.RUnlock()
		return
	}
	for _, m := range keys {
		k, err := m.ToString()
		if err != nil || !strings.HasPrefix(k, "snf:{") {
			continue
		}
		i := strings.IndexByte(k, '}')
		if i < 0 {
			continue
		}
		switch rest := k[i+1:]; {
		case strings.HasPrefix(rest, ":t:"):
			s.tmu.RLock()
			t := s.byPrefix[k[:i+4]]
			s.tmu.RUnlock()
			if t != nil {
				t.invalidate(k[i+4:])
			}
		case rest == ":tver": // a table changed: its version moves, and its key is tracked again
			s.tmu.RLock()
			t := s.byPrefix[k[:i+2]+"t:"]
			s.tmu.RUnlock()
			if t != nil {
				t.ver.Add(1)
				t.needArm.Store(true)
				s.kickArm()
			}
		}
	}
}

// ---- Pool ----

type redisPool struct {
	s        *Redis
	name     string
	lo, hi   uint32
	loS, hiS string
	keys     []string // pmeta, pfree, pused, ptaken, pputs
}

func (p *redisPool) Take(t Tag) (uint32, bool, error) {
	var n int64
	err := p.s.retry(func() error {
		if err := p.s.check("pool take", p.name); err != nil {
			return err
		}
		ctx, cancel := p.s.opCtx()
		defer cancel()
		var err error
		if n, err = takeScript.Exec(ctx, p.s.c, p.keys[:4], []string{p.loS, p.hiS, tagArg(t)}).AsInt64(); err != nil {
			return p.s.opErr("pool take", p.name, err)
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	if n < 0 {
		return 0, false, nil
	}
	return uint32(n), true, nil
}

func (p *redisPool) Put(t Tag, v uint32) error {
	if v < p.lo || v > p.hi {
		return fmt.Errorf("store: pool put %d: outside %d-%d", v, p.lo, p.hi)
	}
	return p.s.retry(func() error {
		if err := p.s.check("pool put", p.name); err != nil {
			return err
		}
		ctx, cancel := p.s.opCtx()
		defer cancel()
		err := putScript.Exec(ctx, p.s.c, p.keys, []string{strconv.FormatUint(uint64(v), 10), tagArg(t),
			strconv.FormatInt(p.s.o.DedupWindow.Milliseconds(), 10)}).Error()
		if err != nil {
			return p.s.opErr("pool put", p.name, err)
		}
		return nil
	})
}

// Free returns the number of free values, or -1 when the server cannot be asked.
func (p *redisPool) Free() int {
	if p.s.check("pool free", p.name) != nil {
		return -1
	}
	ctx, cancel := p.s.opCtx()
	defer cancel()
	n, err := freeScript.Exec(ctx, p.s.c, p.keys[:2], []string{p.loS, p.hiS}).AsInt64()
	if err != nil {
		p.s.opErr("pool free", p.name, err)
		return -1
	}
	return int(n)
}

// ---- Counters ----

type addOp struct {
	t     Tag
	key   uint64
	delta int64
}

type redisCounters struct {
	s      *Redis
	name   string
	keys   []string // c (hash of values), cseen (sorted set of applied tags)
	window string   // DedupWindow in ms

	flushMu  sync.Mutex // one flush at a time; Get holds it so no batch is half applied
	mu       sync.Mutex // guards buf, the inflight header, err
	buf      []addOp    // adds not yet taken by a flush
	inflight []addOp    // adds being sent, or kept after a failed send to be sent again
	err      error      // the last flush error, nil after a flush that succeeded
	dropped  atomic.Uint64
}

// Add buffers the update in the handle (it never waits for the server). The buffer is sent
// when it holds Batch adds, every FlushEvery, and on Flush. An add whose non-zero tag the
// server applied within DedupWindow is dropped by the server. While the server cannot be
// reached, up to MaxPending adds are kept and sent when it is back; adds beyond that are
// dropped and counted (Dropped).
func (c *redisCounters) Add(t Tag, key uint64, delta int64) {
	c.mu.Lock()
	if len(c.buf)+len(c.inflight) >= c.s.o.MaxPending {
		c.mu.Unlock()
		c.dropped.Add(1)
		return
	}
	c.buf = append(c.buf, addOp{t, key, delta})
	full := len(c.buf) == c.s.o.Batch
	c.mu.Unlock()
	if c.s.o.Naive {
		_ = c.Flush() // one round trip per add (errors are counted by the flush)
		return
	}
	if full {
		select {
		case c.s.kick <- struct{}{}:
		default:
		}
	}
}

// Get returns the server's value of key plus this handle's adds not yet applied there. If
// the server cannot be asked, it returns the unapplied adds alone (Err says why). An
// unflushed add that repeats an applied one is counted here until the flush drops it.
func (c *redisCounters) Get(key uint64) int64 {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	var v int64
	if err := c.s.check("counters get", c.name); err == nil {
		ctx, cancel := c.s.opCtx()
		n, err := c.s.c.Do(ctx, c.s.c.B().Hget().Key(c.keys[0]).Field(strconv.FormatUint(key, 10)).Build()).AsInt64()
		cancel()
		switch {
		case err == nil:
			v = n
		case rueidis.IsRedisNil(err):
		default:
			err = c.s.opErr("counters get", c.name, err)
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range [2][]addOp{c.inflight, c.buf} {
		for _, a := range l {
			if a.key == key {
				v += a.delta
			}
		}
	}
	return v
}

// Flush implements Flusher: it sends the buffered adds, pipelined, Batch per server-side
// call, and waits for the server to apply them. On error the adds are kept to be sent
// again (repeats are dropped by the server, so sending again is safe).
func (c *redisCounters) Flush() error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.mu.Lock()
	if len(c.buf) > 0 {
		if len(c.inflight) == 0 {
			c.inflight, c.buf = c.buf, c.inflight[:0]
		} else {
			c.inflight = append(c.inflight, c.buf...)
			c.buf = c.buf[:0]
		}
	}
	ops := c.inflight
	c.mu.Unlock()
	if len(ops) == 0 {
		return nil
	}
	setErr := func(err error) error {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		return err
	}
	if err := c.s.check("counters flush", c.name); err != nil {
		return setErr(err)
	}
	b := c.s.o.Batch
	var first error
	w := 0 // ops[:w] are kept to be sent again
	for start := 0; start < len(ops); start += b * flushPipeline {
		round := ops[start:min(start+b*flushPipeline, len(ops))]
		lost, err := c.send(round, &w, ops)
		if err != nil && first == nil {
			first = err
		}
		if lost { // the server is out of reach: keep the rest for the next flush
			w += copy(ops[w:], ops[start+len(round):])
			break
		}
	}
	c.mu.Lock()
	c.inflight = ops[:w]
	c.err = first
	c.mu.Unlock()
	return first
}

// send applies round (a slice of ops), pipelined, Batch adds per server-side call, within
// one Timeout. Adds of calls that failed for want of the server are copied to ops[*w:];
// lost reports such a failure.
func (c *redisCounters) send(round []addOp, w *int, ops []addOp) (lost bool, first error) {
	b := c.s.o.Batch
	args := make([][]string, 0, (len(round)+b-1)/b)
	cmds := make(rueidis.Commands, 0, cap(args))
	for i := 0; i < len(round); i += b {
		chunk := round[i:min(i+b, len(round))]
		a := make([]string, 1, 1+3*len(chunk))
		a[0] = c.window
		for _, op := range chunk {
			a = append(a, tagArg(op.t), strconv.FormatUint(op.key, 10), strconv.FormatInt(op.delta, 10))
		}
		args = append(args, a)
		cmds = append(cmds, c.s.c.B().Evalsha().Sha1(addScriptSHA).Numkeys(2).Key(c.keys...).Arg(a...).Build())
	}
	ctx, cancel := c.s.opCtx()
	defer cancel()
	for j, r := range c.s.c.DoMulti(ctx, cmds...) {
		chunk := round[j*b : min(j*b+b, len(round))]
		err := r.Error()
		if e, ok := rueidis.IsRedisErr(err); ok && e.IsNoScript() { // server restarted: load the script
			err = addScript.Exec(ctx, c.s.c, c.keys, args[j]).Error()
		}
		switch _, reply := rueidis.IsRedisErr(err); {
		case err == nil:
		case reply && !transient(err): // the server refused the batch (not an outage): sending it again would not help
			c.dropped.Add(uint64(len(chunk)))
			if first == nil {
				first = &OpError{"counters flush", c.name, err}
			}
		default:
			*w += copy(ops[*w:], chunk)
			lost = true
			if first == nil {
				first = c.s.opErr("counters flush", c.name, err)
			}
		}
	}
	return lost, first
}

// Err returns the error of the handle's last flush or Get, nil if it succeeded.
func (c *redisCounters) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Pending returns the number of adds not yet applied by the server.
func (c *redisCounters) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf) + len(c.inflight)
}

// Dropped returns the number of adds dropped: beyond MaxPending, or refused by the server.
func (c *redisCounters) Dropped() uint64 { return c.dropped.Load() }

// ---- Table ----

type tEntry struct {
	val   []byte
	ver   uint64
	exp   int64 // coarse time after which the entry is asked for again
	found bool
}

// lastWrite is this store's latest write of a key: until a read shows a version at least
// as new (or writeGrace passes), the client library's cache may still hold an older value
// whose invalidation is on its way, so reads of the key bypass it.
type lastWrite struct {
	ver     uint64
	deleted bool
	until   int64
}

type redisTable struct {
	s      *Redis
	name   string
	prefix string // snf:{tag}:t:  (a key's server name is prefix+key)
	verKey string // snf:{tag}:tver (the table's write counter)

	ver      atomic.Uint64 // Version: moved by invalidations, resets and own writes
	needArm  atomic.Bool   // the version key is not tracked for this client (armLoop tracks it)
	forceVer atomic.Bool   // tracking was lost (reset): the next arm moves the version anyway
	tverSeen int64         // the version key's value at the last arm; -1 before the first (armLoop only)

	mu    sync.RWMutex
	m     map[string]tEntry    // the unit's cache
	stale map[string]tEntry    // the cache as it was when the connection was lost (served while the server is out of reach)
	gen   uint64               // bumped by every invalidation: a read started before one does not fill the cache
	lw    map[string]lastWrite // this store's recent writes
}

// Get serves key from the handle's cache without a network round trip when it was read
// within CacheTTL and not invalidated since; otherwise it reads it through the client
// library's server-assisted cache (one round trip, after which the server tracks the key
// for this client and pushes an invalidation when it changes). While the server cannot be
// reached, it serves the value this store had when the connection was lost, if any.
func (t *redisTable) Get(key string) ([]byte, bool) {
	t.mu.RLock()
	e, ok := t.m[key]
	t.mu.RUnlock()
	if ok && e.exp > t.s.now.Load() && !t.s.o.Naive {
		return e.val, e.found
	}
	return t.fetch(key)
}

func (t *redisTable) fetch(key string) ([]byte, bool) {
	if t.s.check("table get", t.name) != nil {
		return t.fallback(key)
	}
	now := t.s.clock()
	t.mu.RLock()
	g := t.gen
	lw, haslw := t.lw[key]
	t.mu.RUnlock()
	if haslw && lw.until < now {
		haslw = false
	}
	t.s.fetches.Add(1)
	ctx, cancel := t.s.opCtx()
	defer cancel()
	rk := t.prefix + key
	var r rueidis.RedisResult
	if t.s.o.Naive {
		r = t.s.c.Do(ctx, t.s.c.B().Get().Key(rk).Build())
	} else {
		r = t.s.c.DoCache(ctx, t.s.c.B().Get().Key(rk).Cache(), t.s.o.CacheTTL)
	}
	e, err := decodeEntry(r)
	if err != nil {
		t.s.opErr("table get", t.name, err)
		return t.fallback(key)
	}
	if haslw && (e.found && e.ver < lw.ver || !e.found && !lw.deleted) {
		// The cached value predates this store's own write: read the server, do not cache.
		t.s.bypasses.Add(1)
		e, err = decodeEntry(t.s.c.Do(ctx, t.s.c.B().Get().Key(rk).Build()))
		if err != nil {
			t.s.opErr("table get", t.name, err)
			return t.fallback(key)
		}
		return e.val, e.found
	}
	ttl := t.s.o.CacheTTL
	if ms := r.CachePTTL(); ms >= 0 && time.Duration(ms)*time.Millisecond < ttl {
		ttl = time.Duration(ms) * time.Millisecond
	}
	e.exp = now + int64(ttl)
	t.mu.Lock()
	if haslw {
		delete(t.lw, key)
	}
	if t.gen == g {
		t.m[key] = e
	}
	t.stale = nil // the server answers: stale copies are no longer needed
	t.mu.Unlock()
	return e.val, e.found
}

// fallback serves the value the store had when it lost the connection (fail-static).
func (t *redisTable) fallback(key string) ([]byte, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e, ok := t.m[key]; ok { // not yet dropped: the loss is not noticed yet
		return e.val, e.found
	}
	e, ok := t.stale[key]
	return e.val, ok && e.found
}

func decodeEntry(r rueidis.RedisResult) (tEntry, error) {
	s, err := r.ToString()
	if rueidis.IsRedisNil(err) {
		return tEntry{}, nil
	}
	if err != nil {
		return tEntry{}, err
	}
	if len(s) < verLen {
		return tEntry{}, fmt.Errorf("malformed value (%d bytes, no version)", len(s))
	}
	ver, err := strconv.ParseUint(s[:verLen], 16, 64)
	if err != nil {
		return tEntry{}, fmt.Errorf("malformed value version %q", s[:verLen])
	}
	return tEntry{val: []byte(s[verLen:]), ver: ver, found: true}, nil
}

func (t *redisTable) invalidate(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.gen++
	t.mu.Unlock()
	t.ver.Add(1)
}

// Version implements Table: an atomic load. It moves on every invalidation the server
// pushes for the table: of a cached key, and of the table's write counter tver, which this
// client keeps tracked (armLoop) so that a change of any key moves it, read by this client
// or not; on a lost connection; and on this store's own writes.
func (t *redisTable) Version() uint64 { return t.ver.Load() }

func (s *Redis) kickArm() {
	select {
	case s.armKick <- struct{}{}:
	default:
	}
}

// armLoop has the server track the version key of each table that needs it: at open,
// after its invalidation (tracking is one-shot) and after a lost connection; it retries
// every retryAfter while the server cannot be reached.
func (s *Redis) armLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(retryAfter)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-s.armKick:
		case <-tick.C:
		}
		s.mu.Lock()
		var l []*redisTable
		for _, t := range s.tables {
			if t.needArm.Load() {
				l = append(l, t)
			}
		}
		s.mu.Unlock()
		for _, t := range l {
			t.arm()
		}
	}
}

// arm reads the table's version key through the client cache (so the server tracks it for
// this client and pushes an invalidation at the next write) and moves the version if the
// key changed since the last arm: writes between an invalidation and this read sent none.
func (t *redisTable) arm() {
	if !t.needArm.Swap(false) {
		return
	}
	if t.s.check("table version", t.name) != nil {
		t.needArm.Store(true)
		return
	}
	ctx, cancel := t.s.opCtx()
	defer cancel()
	n, err := t.s.c.DoCache(ctx, t.s.c.B().Get().Key(t.verKey).Cache(), t.s.o.CacheTTL).AsInt64()
	if rueidis.IsRedisNil(err) {
		n, err = 0, nil
	}
	if err != nil {
		t.s.opErr("table version", t.name, err)
		t.needArm.Store(true)
		return
	}
	// One write since the last arm is the one whose invalidation moved the version already
	// (-1 → 0: a table never written); more were not announced.
	if t.forceVer.Swap(false) || n != t.tverSeen+1 {
		t.ver.Add(1)
	}
	t.tverSeen = n
}

// reset: a connection closed (invalidations may be lost) or the server flushed its data.
func (t *redisTable) reset() {
	t.mu.Lock()
	if len(t.m) > 0 {
		if t.stale == nil {
			t.stale = t.m
		} else {
			for k, e := range t.m {
				t.stale[k] = e
			}
		}
		t.m = map[string]tEntry{}
	}
	clear(t.lw) // versions may restart with the server's data
	t.gen++
	t.mu.Unlock()
	t.ver.Add(1) // invalidations may have been missed
	t.forceVer.Store(true)
	t.needArm.Store(true)
	t.s.kickArm()
}

// Set writes through to the server (one round trip); other stores' caches of key are
// invalidated by the server, this store's at once.
func (t *redisTable) Set(key string, v []byte) error {
	return t.write("table set", key, v, false)
}

// Delete removes key, like Set.
func (t *redisTable) Delete(key string) error {
	return t.write("table delete", key, nil, true)
}

func (t *redisTable) write(op, key string, v []byte, del bool) error {
	if err := t.s.check(op, t.name); err != nil {
		return err
	}
	ctx, cancel := t.s.opCtx()
	defer cancel()
	keys := []string{t.verKey, t.prefix + key}
	var r rueidis.RedisResult
	if del {
		r = tableDelScript.Exec(ctx, t.s.c, keys, nil)
	} else {
		r = tableSetScript.Exec(ctx, t.s.c, keys, []string{string(v)})
	}
	ver, err := r.AsInt64()
	if err != nil {
		return t.s.opErr(op, t.name, err)
	}
	t.mu.Lock()
	delete(t.m, key)
	delete(t.stale, key)
	t.gen++
	t.lw[key] = lastWrite{ver: uint64(ver), deleted: del, until: t.s.clock() + int64(writeGrace)}
	t.mu.Unlock()
	t.ver.Add(1)
	return nil
}

// ---- server-side scripts ----

// poolOpenScript records a pool's range, or returns the range it was created with.
// KEYS: pmeta. ARGV: lo, hi.
var poolOpenScript = rueidis.NewLuaScript(`
local lo = redis.call('HGET', KEYS[1], 'lo')
if lo then return {lo, redis.call('HGET', KEYS[1], 'hi')} end
redis.call('HSET', KEYS[1], 'lo', ARGV[1], 'hi', ARGV[2])
return {ARGV[1], ARGV[2]}
`)

// takeScript: a Take whose tag is recorded returns its value again; otherwise the next
// never-used value (the range is set up lazily: a counter, not a list of free values), else
// the oldest returned one, else -1. KEYS: pmeta, pfree, pused (value→tag), ptaken
// (tag→value). ARGV: lo, hi, tag.
var takeScript = rueidis.NewLuaScript(`
local v = redis.call('HGET', KEYS[4], ARGV[3])
if v then return tonumber(v) end
local nxt = redis.call('HGET', KEYS[1], 'next')
if nxt then nxt = tonumber(nxt) else
  redis.call('HSET', KEYS[1], 'lo', ARGV[1], 'hi', ARGV[2])
  nxt = tonumber(ARGV[1])
end
if nxt <= tonumber(ARGV[2]) then
  v = nxt
  redis.call('HSET', KEYS[1], 'next', string.format('%d', nxt + 1))
else
  v = redis.call('LPOP', KEYS[2])
  if not v then return -1 end
  v = tonumber(v)
end
local vs = string.format('%d', v)
redis.call('HSET', KEYS[3], vs, ARGV[3])
redis.call('HSET', KEYS[4], ARGV[3], vs)
return v
`)

// putScript returns a taken value to the pool; a value not taken is left alone, and a Put
// whose (non-empty) tag was seen within the window is dropped. KEYS: pmeta, pfree, pused,
// ptaken, pputs (tag→time). ARGV: value, tag, window in ms.
var putScript = rueidis.NewLuaScript(`
if ARGV[2] ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local win = tonumber(ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', string.format('(%d', now - win))
  if redis.call('ZADD', KEYS[5], 'NX', now, ARGV[2]) == 0 then return 0 end
  redis.call('PEXPIRE', KEYS[5], 2 * win)
end
local tag = redis.call('HGET', KEYS[3], ARGV[1])
if not tag then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], tag)
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
`)

// freeScript counts the free values. KEYS: pmeta, pfree. ARGV: lo, hi.
var freeScript = rueidis.NewLuaScriptReadOnly(`
local n = redis.call('LLEN', KEYS[2])
local nxt = redis.call('HGET', KEYS[1], 'next')
if nxt then nxt = tonumber(nxt) else nxt = tonumber(ARGV[1]) end
if nxt <= tonumber(ARGV[2]) then n = n + tonumber(ARGV[2]) - nxt + 1 end
return n
`)

// addScript applies a batch of counter adds, each at most once per tag within the window:
// the applied tags are kept in a sorted set scored by the server's time. KEYS: c (hash),
// cseen. ARGV: window in ms, then tag, field, delta for each add (tag "" is untagged).
const addScriptText = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%d', now - win))
local n, tagged = 0, false
for i = 2, #ARGV, 3 do
  local tag = ARGV[i]
  local fresh = true
  if tag ~= '' then
    tagged = true
    fresh = redis.call('ZADD', KEYS[2], 'NX', now, tag) == 1
  end
  if fresh then
    redis.call('HINCRBY', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    n = n + 1
  end
end
if tagged then redis.call('PEXPIRE', KEYS[2], 2 * win) end
return n
`

var (
	addScript    = rueidis.NewLuaScript(addScriptText)
	addScriptSHA = func() string { h := sha1.Sum([]byte(addScriptText)); return hex.EncodeToString(h[:]) }()
)

// tableSetScript writes a table value prefixed by the table's next version (16 hex
// digits). KEYS: tver, the key. ARGV: value. Returns the version.
var tableSetScript = rueidis.NewLuaScript(`
local v = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], string.format('%016x', v) .. ARGV[1])
return v
`)

// tableDelScript deletes a table key, taking a version like a write. KEYS: tver, the key.
var tableDelScript = rueidis.NewLuaScript(`
local v = redis.call('INCR', KEYS[1])
redis.call('DEL', KEYS[2])
return v
`)

var _ NamespaceDropper = (*Redis)(nil)

// DropNamespace implements NamespaceDropper: it finds the keys of namespace pre and the
// namespaces under it on every node (SCAN) and unlinks them. Handles opened on those
// objects must not be used after it.
func (s *Redis) DropNamespace(ctx context.Context, pre string) (int, error) {
	if pre == "" {
		return 0, errors.New("store: redis: drop of an empty namespace (every object)")
	}
	r := strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D") // as objTag
	match := "snf:{" + globEscape(r.Replace(pre)) + "/*"
	keys := map[string]struct{}{}
	for _, node := range s.c.Nodes() { // (a cluster's replicas too: the same keys again)
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(match).Count(1000).Build()).AsScanEntry()
			if err != nil {
				return 0, s.opErr("drop", pre, err)
			}
			for _, k := range e.Elements {
				keys[k] = struct{}{}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	cmds := make(rueidis.Commands, 0, len(keys))
	for k := range keys {
		cmds = append(cmds, s.c.B().Unlink().Key(k).Build())
	}
	n := 0
	for _, res := range s.c.DoMulti(ctx, cmds...) {
		k, err := res.AsInt64() // (0: gone since the scan)
		if err != nil {
			return n, s.opErr("drop", pre, err)
		}
		n += int(k)
	}
	return n, nil
}
