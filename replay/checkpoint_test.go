package replay

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snf-dev/snf/store"
)

func table(t *testing.T) store.Table {
	t.Helper()
	s := store.NewEmbedded()
	t.Cleanup(func() { s.Close() })
	tb, err := s.Table("runtime", "checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// offer waits until w is ready and hands rec over.
func offer(t *testing.T, w *Writer, rec string, clock uint64) {
	t.Helper()
	for !w.Ready() {
		time.Sleep(10 * time.Microsecond)
	}
	full := w.NextFull()
	if !w.Offer([]byte(rec), clock, full) {
		t.Fatal("a ready writer refused a record")
	}
}

func loadStrings(t *testing.T, tb store.Table, unit int) []string {
	t.Helper()
	recs, err := Load(tb, unit)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range recs {
		s = append(s, string(r))
	}
	return s
}

// TestWriterSequence: records go out in order, a full one every fullEvery, the ones before
// a full one are deleted, Load returns base..head, and a new writer resumes the sequence.
func TestWriterSequence(t *testing.T) {
	tb := table(t)
	w := NewWriter(tb, 3, 3)
	for i := 1; i <= 7; i++ {
		offer(t, w, fmt.Sprintf("r%d", i), uint64(i*10))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// r1 full, r2 r3 r4, r5 full (after 3 incremental), r6 r7.
	if got := strings.Join(loadStrings(t, tb, 3), " "); got != "r5 r6 r7" {
		t.Errorf("loaded %q, want r5 r6 r7", got)
	}
	if _, ok := tb.Get("3/1"); ok {
		t.Error("record 1 is still in the store after the full record 5")
	}
	if s := w.Stats(); s.Records != 7 || s.Durable != 70 || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
	w2 := NewWriter(tb, 3, 3)
	offer(t, w2, "again", 80) // a restarted unit starts with a full record after the old ones
	w2.Close()
	if got := strings.Join(loadStrings(t, tb, 3), " "); got != "again" {
		t.Errorf("after a restart: loaded %q, want again", got)
	}
	if recs, err := Load(tb, 4); err != nil || recs != nil {
		t.Errorf("a unit without records: %v, %v", recs, err)
	}
}

// TestWriterBusy: a record offered while another waits is refused (the unit keeps its
// changes tracked); Close writes the waiting one; a closed writer takes nothing.
func TestWriterBusy(t *testing.T) {
	slow := &slowTable{Table: table(t), release: make(chan struct{})}
	w := NewWriter(slow, 0, 0)
	if !w.Offer([]byte("a"), 1, true) {
		t.Fatal("first offer refused")
	}
	for !slow.writing() {
		time.Sleep(10 * time.Microsecond)
	}
	if !w.Offer([]byte("b"), 2, false) { // the goroutine holds "a": "b" may wait
		t.Fatal("second offer refused while the first is being written")
	}
	if w.Ready() || w.Offer([]byte("c"), 3, false) {
		t.Error("a third record was taken while one waits")
	}
	close(slow.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(loadStrings(t, slow, 0), " "); got != "a b" {
		t.Errorf("loaded %q, want a b", got)
	}
	if w.Ready() || w.Offer([]byte("d"), 4, false) {
		t.Error("a closed writer took a record")
	}
}

// TestWriterFailure: a failed write is counted and reported by Close, and the next record
// is a full one (the incremental chain is broken).
func TestWriterFailure(t *testing.T) {
	ft := &failTable{Table: table(t)}
	w := NewWriter(ft, 1, 10)
	offer(t, w, "full", 1)
	offer(t, w, "inc", 2)
	waitRecords(t, w, 2)
	ft.fail(true)
	offer(t, w, "lost", 3)
	for w.Stats().Errors == 0 {
		time.Sleep(10 * time.Microsecond)
	}
	ft.fail(false)
	if !w.NextFull() {
		t.Error("after a failed write the next record is not a full one")
	}
	w.Offer([]byte("useless"), 4, false) // an incremental record after the lost one: dropped
	offer(t, w, "full2", 5)
	err := w.Close()
	if err == nil || !strings.Contains(err.Error(), "1 writes failed") {
		t.Errorf("close: %v", err)
	}
	if got := strings.Join(loadStrings(t, ft, 1), " "); got != "full2" {
		t.Errorf("loaded %q, want full2", got)
	}
	if s := w.Stats(); s.Skipped != 1 || s.Records != 3 {
		t.Errorf("stats %+v, want 1 skipped, 3 records", s)
	}
}

func waitRecords(t *testing.T, w *Writer, n uint64) {
	t.Helper()
	for w.Stats().Records < n {
		time.Sleep(10 * time.Microsecond)
	}
}

// TestLoadMissingRecord: a head whose records are gone is an error, not a silent partial
// state.
func TestLoadMissingRecord(t *testing.T) {
	tb := table(t)
	tb.Set("2/head", []byte("5"))
	tb.Set("2/base", []byte("4"))
	tb.Set("2/4", []byte("x"))
	if _, err := Load(tb, 2); err == nil || !strings.Contains(err.Error(), "record 5") {
		t.Errorf("load: %v", err)
	}
	tb.Set("2/base", []byte("zz"))
	if _, err := Load(tb, 2); err == nil {
		t.Error("a bad base loaded")
	}
}

type slowTable struct {
	store.Table
	mu      sync.Mutex
	busy    bool
	release chan struct{}
}

func (s *slowTable) writing() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.busy }

func (s *slowTable) Set(k string, v []byte) error {
	s.mu.Lock()
	s.busy = true
	s.mu.Unlock()
	<-s.release
	return s.Table.Set(k, v)
}

type failTable struct {
	store.Table
	mu  sync.Mutex
	bad bool
}

func (f *failTable) fail(b bool) { f.mu.Lock(); f.bad = b; f.mu.Unlock() }

func (f *failTable) Set(k string, v []byte) error {
	f.mu.Lock()
	bad := f.bad
	f.mu.Unlock()
	if bad {
		return errors.New("store: unavailable")
	}
	return f.Table.Set(k, v)
}

// TestWriterBuffer: once a record is written, its buffer comes back (Buffer) for the next
// one, emptied; writing into it changes nothing in the store.
func TestWriterBuffer(t *testing.T) {
	tb := table(t)
	w := NewWriter(tb, 5, 0)
	if w.Buffer() != nil {
		t.Fatal("a buffer before any record")
	}
	rec := append(make([]byte, 0, 64), "first"...)
	if !w.Offer(rec, 1, true) {
		t.Fatal("refused")
	}
	var b []byte
	for deadline := time.Now().Add(5 * time.Second); b == nil && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
		b = w.Buffer()
	}
	if b == nil || len(b) != 0 || cap(b) != 64 || &b[:1][0] != &rec[0] {
		t.Fatalf("buffer %d/%d, the record's: %v", len(b), cap(b), b != nil && &b[:1][0] == &rec[0])
	}
	b = append(b, "XXXXX"...)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(loadStrings(t, tb, 5), " "); got != "first" {
		t.Errorf("loaded %q after the buffer was reused, want first", got)
	}
}
