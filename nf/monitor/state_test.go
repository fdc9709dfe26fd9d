package monitor

import "testing"

// TestFlowStateRoundTrip: the per-flow state serializes and restores (the unit-local
// candidate index excepted), and refuses other lengths.
func TestFlowStateRoundTrip(t *testing.T) {
	f := flowStats{hash: 0xdeadbeef, packets: [2]uint64{3, 4}, bytes: [2]uint64{300, 4000}, first: 5, last: 9,
		tcpFlags: [2]uint8{0x12, 0x11}, live: true, registered: true, cand: 7}
	b, err := f.AppendBinary(nil)
	if err != nil || len(b) != flowStatsSize {
		t.Fatalf("%v, %d bytes", err, len(b))
	}
	var g flowStats
	if err := g.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	f.cand = 0
	if g != f {
		t.Errorf("round trip:\n%+v\n%+v", f, g)
	}
	if g.UnmarshalBinary(b[1:]) == nil || g.UnmarshalBinary(append(b, 0)) == nil {
		t.Error("bad lengths accepted")
	}
}
