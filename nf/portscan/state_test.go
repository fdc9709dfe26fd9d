package portscan

import (
	"reflect"
	"testing"
)

// TestStateRoundTrip: the state types serialize and restore exactly, and refuse truncated
// or padded encodings.
func TestStateRoundTrip(t *testing.T) {
	s := source{llr: 2.5, next: 1000, low: 990, attempts: 12, successes: 3, failures: 4,
		flagged: true, started: true, flaggedAt: 1234567, flaggedLLR: 4.7}
	for _, seq := range []uint32{990, 995, 999} {
		s.pending |= 1 << (seq % window)
		s.deadline[seq%window] = int64(seq) * 1e6
	}
	b, err := s.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != sourceFixed+3*8 {
		t.Errorf("source: %d bytes, want %d", len(b), sourceFixed+24)
	}
	var s2 source
	if err := s2.UnmarshalBinary(b); err != nil || !reflect.DeepEqual(s, s2) {
		t.Errorf("source round trip: %v\n%+v\n%+v", err, s, s2)
	}
	for _, bad := range [][]byte{b[:len(b)-1], b[:sourceFixed-1], append(b, 0)} {
		if s2.UnmarshalBinary(bad) == nil {
			t.Errorf("source: %d bytes accepted", len(bad))
		}
	}

	a := attempt{state: flowPending, seq: 77}
	b, _ = a.AppendBinary(nil)
	var a2 attempt
	if err := a2.UnmarshalBinary(b); err != nil || a2 != a {
		t.Errorf("attempt round trip: %v %+v", err, a2)
	}
	if a2.UnmarshalBinary([]byte{9, 0, 0, 0, 1}) == nil || a2.UnmarshalBinary(b[:4]) == nil {
		t.Error("attempt: bad encodings accepted")
	}

	c := contact{seq: 5}
	b, _ = c.AppendBinary(nil)
	var c2 contact
	if err := c2.UnmarshalBinary(b); err != nil || c2 != c || c2.UnmarshalBinary(b[:3]) == nil {
		t.Errorf("contact round trip: %v %+v", err, c2)
	}
}
