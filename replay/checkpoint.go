// Package replay holds what makes the elastic runtime's output independent of failures:
// the units' checkpoints in the store and (to come) the root's packet log and recovery by
// replay (DESIGN.md, "Recovery").
package replay

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/snf-dev/snf/store"
)

// Checkpoints of one unit live in a store table under the unit's prefix: the records as
// "<unit>/<seq>", sequence numbers from 1, and "<unit>/head" (the latest sequence written)
// and "<unit>/base" (the latest full record). Restoring the records base..head in order
// rebuilds the unit's state. A full record makes the ones before it useless: the writer
// deletes them once the full one is in the store.

// DefaultFullEvery is how many records a writer writes between two full ones.
const DefaultFullEvery = 64

// Writer writes one unit's checkpoint records to the store in the background: the unit
// hands a record over without waiting (Offer), a goroutine writes it. It is what makes the
// write-back asynchronous: the unit's packets never wait for the store.
type Writer struct {
	t    store.Table
	unit string
	full int

	mu      sync.Mutex
	spare   [][]byte // buffers of records written, for the next ones (Buffer)
	pending *job     // the record waiting for the goroutine (at most one besides the one being written: the unit skips a beat when both are taken)
	broken  bool     // a write failed: incremental records are useless until the next full one
	wake    chan struct{}
	done    chan struct{}
	closed  bool

	seq, base uint64 // goroutine only
	n         uint64 // under mu: the records offered since the last full one

	durable atomic.Uint64 // clock of the latest record in the store
	written atomic.Uint64
	bytes   atomic.Uint64
	errs    atomic.Uint64
	skipped atomic.Uint64
	lastErr atomic.Pointer[error]
}

type job struct {
	rec   []byte
	clock uint64
	full  bool
}

// NewWriter returns a writer of unit's records to t, with a full record every fullEvery
// records (DefaultFullEvery if <= 0). It resumes the sequence found in t (a restarted unit
// goes on after its earlier records).
func NewWriter(t store.Table, unit int, fullEvery int) *Writer {
	if fullEvery <= 0 {
		fullEvery = DefaultFullEvery
	}
	w := &Writer{t: t, unit: strconv.Itoa(unit), full: fullEvery, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if v, ok := t.Get(w.key("head")); ok {
		w.seq, _ = strconv.ParseUint(string(v), 10, 64)
	}
	if v, ok := t.Get(w.key("base")); ok {
		w.base, _ = strconv.ParseUint(string(v), 10, 64)
	}
	w.n = uint64(fullEvery) // the first record is a full one
	go w.run()
	return w
}

func (w *Writer) key(s string) string { return w.unit + "/" + s }

// Ready reports whether the writer can take a record now (no record waiting to be
// written). A unit asks before it builds a record, so that the changes stay tracked when
// the writer is busy.
func (w *Writer) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending == nil && !w.closed
}

// Buffer returns the buffer of a record written, emptied, for the next record (nil: none):
// a unit that checkpoints every few milliseconds then allocates nothing for it.
func (w *Writer) Buffer() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := len(w.spare)
	if k == 0 {
		return nil
	}
	b := w.spare[k-1]
	w.spare = w.spare[:k-1]
	return b
}

// NextFull reports whether the next record should be a full one.
func (w *Writer) NextFull() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n >= uint64(w.full) || w.broken
}

// Offer hands a record over (the writer keeps rec). It returns false, keeping nothing, when
// a record is already waiting or the writer is closed.
func (w *Writer) Offer(rec []byte, clock uint64, full bool) bool {
	w.mu.Lock()
	if w.pending != nil || w.closed {
		w.mu.Unlock()
		return false
	}
	w.pending = &job{rec, clock, full}
	if full {
		w.n = 0
	} else {
		w.n++
	}
	select { // under the lock: Close closes wake under it
	case w.wake <- struct{}{}:
	default:
	}
	w.mu.Unlock()
	return true
}

func (w *Writer) run() {
	defer close(w.done)
	for {
		_, open := <-w.wake
		for {
			w.mu.Lock()
			j := w.pending
			w.pending = nil
			skip := j != nil && !j.full && w.broken
			w.mu.Unlock()
			if j == nil {
				break
			}
			if skip {
				w.skipped.Add(1) // it builds on a record that never reached the store
				continue
			}
			w.write(j)
			w.mu.Lock()
			if len(w.spare) < 2 { // the store keeps no reference to a value once Set returned
				w.spare = append(w.spare, j.rec[:0])
			}
			w.mu.Unlock()
		}
		if !open {
			return
		}
	}
}

// write stores a record, then moves head to it, then (a full one) base, so that a reader
// never sees a head whose record is missing nor a base beyond head: with head moved and base
// not yet, base..head still rebuilds the state (the full record last).
func (w *Writer) write(j *job) {
	seq := w.seq + 1
	if err := w.t.Set(w.key(strconv.FormatUint(seq, 10)), j.rec); err != nil {
		w.fail(err)
		return
	}
	if err := w.t.Set(w.key("head"), []byte(strconv.FormatUint(seq, 10))); err != nil {
		w.fail(err)
		return
	}
	if j.full {
		if err := w.t.Set(w.key("base"), []byte(strconv.FormatUint(seq, 10))); err != nil {
			w.fail(err)
			return
		}
	}
	if j.full {
		for s := w.base; s > 0 && s < seq; s++ {
			_ = w.t.Delete(w.key(strconv.FormatUint(s, 10))) // garbage: a failed delete costs only space
		}
		w.base = seq
	}
	w.seq = seq
	if j.full {
		w.mu.Lock()
		w.broken = false
		w.mu.Unlock()
	}
	w.durable.Store(j.clock)
	w.written.Add(1)
	w.bytes.Add(uint64(len(j.rec)))
}

func (w *Writer) fail(err error) {
	w.errs.Add(1)
	w.lastErr.Store(&err)
	// The record is lost; later incremental records would miss its changes: they are
	// dropped, and the next record is a full one.
	w.mu.Lock()
	w.n = uint64(w.full)
	w.broken = true
	w.mu.Unlock()
}

// Close writes the record waiting, if any, and stops the writer.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.wake)
	w.mu.Unlock()
	<-w.done
	if p := w.lastErr.Load(); p != nil {
		return fmt.Errorf("replay: unit %s checkpoints: %d writes failed, the last: %w", w.unit, w.errs.Load(), *p)
	}
	return nil
}

// WriterStats counts a writer's work.
type WriterStats struct {
	// Records and Bytes count the records in the store; Errors the failed writes; Skipped
	// the incremental records dropped after a failed one (until the next full record).
	Records, Bytes, Errors, Skipped uint64
	Durable                         uint64 // clock of the latest record in the store
}

// Durable returns Stats().Durable (one atomic load: the root asks it per batch it reads).
func (w *Writer) Durable() uint64 { return w.durable.Load() }

// Stats returns the writer's counters.
func (w *Writer) Stats() WriterStats {
	return WriterStats{Records: w.written.Load(), Bytes: w.bytes.Load(), Errors: w.errs.Load(), Skipped: w.skipped.Load(), Durable: w.durable.Load()}
}

// Written reports whether t holds records of unit (its head).
func Written(t store.Table, unit int) bool {
	_, ok := t.Get(strconv.Itoa(unit) + "/head")
	return ok
}

// Load returns unit's records in t, base..head, in the order to restore them; none when
// the unit wrote none.
func Load(t store.Table, unit int) ([][]byte, error) {
	u := strconv.Itoa(unit)
	get := func(k string) (uint64, bool, error) {
		v, ok := t.Get(u + "/" + k)
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("replay: unit %s checkpoints: bad %s %q", u, k, v)
		}
		return n, true, nil
	}
	head, ok, err := get("head")
	if err != nil || !ok {
		return nil, err
	}
	base, ok, err := get("base")
	if err != nil {
		return nil, err
	}
	if !ok || base == 0 || base > head {
		return nil, fmt.Errorf("replay: unit %s checkpoints: head %d without a full record", u, head)
	}
	var recs [][]byte
	for s := base; s <= head; s++ {
		v, ok := t.Get(u + "/" + strconv.FormatUint(s, 10))
		if !ok {
			return nil, fmt.Errorf("replay: unit %s checkpoints: record %d of %d..%d is missing", u, s, base, head)
		}
		recs = append(recs, v)
	}
	return recs, nil
}
