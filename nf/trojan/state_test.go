package trojan

import (
	"bytes"
	"testing"
)

// The state codecs: a value survives a round trip, and bad input is refused.
func TestStateCodecs(t *testing.T) {
	h := host{a: [2]attempt{
		{on: true, ssh: 1_700_000_000_000_000_000, got: kindHTML | kindEXE, when: [3]int64{1, 0, -3}},
		{on: true, ssh: 42, got: kindZIP, when: [3]int64{0, 1 << 62, 0}},
	}}
	b, err := h.AppendBinary([]byte("prefix"))
	if err != nil || !bytes.HasPrefix(b, []byte("prefix")) || len(b) != 6+2*attemptSize {
		t.Fatalf("host AppendBinary: %d bytes, %v", len(b), err)
	}
	var h2 host
	if err := h2.UnmarshalBinary(b[6:]); err != nil || h2 != h {
		t.Fatalf("host round trip: %+v, %v; want %+v", h2, err, h)
	}
	if err := h2.UnmarshalBinary(b[6 : len(b)-1]); err == nil {
		t.Error("short host state accepted")
	}

	c := conn{kind: connFTP, flags: cfAnswered | cfBanner220, segs: 5}
	cb, _ := c.AppendBinary(nil)
	var c2 conn
	if err := c2.UnmarshalBinary(cb); err != nil || c2 != c {
		t.Fatalf("conn round trip: %+v, %v", c2, err)
	}
	if err := c2.UnmarshalBinary([]byte{connOther + 1, 0, 0}); err == nil {
		t.Error("conn state with an unknown kind accepted")
	}

	var pr parser
	for i := range pr.s {
		s := &pr.s[i]
		s.next, s.synced, s.broken, s.st, s.n = 0xfffffff0+uint32(i), true, i == 1, stChunkData, lineCap
		for j := range s.line {
			s.line[j] = byte(j + i)
		}
		s.roll, s.names, s.msg, s.ctype, s.status = extHTML, kindHTML, mfMagic|mfLen, ctOctet, 206
		s.hint, s.mn, s.magic, s.left = hintHead|kindZIP, 3, [4]byte{'P', 'K', 3, 0}, 1<<40+7
	}
	pr.fifo, pr.fifoN, pr.fifoHead, pr.ftpPending = [4]uint8{1, 2, 3, 4}, 3, 2, kindEXE
	pb, _ := pr.AppendBinary(nil)
	if len(pb) != parserSize {
		t.Fatalf("parser state: %d bytes, want %d", len(pb), parserSize)
	}
	var pr2 parser
	if err := pr2.UnmarshalBinary(pb); err != nil || pr2 != pr {
		t.Fatalf("parser round trip: %v\n got %+v\nwant %+v", err, pr2, pr)
	}
	for name, corrupt := range map[string]func([]byte){
		"state":      func(b []byte) { b[6] = numStates },
		"line":       func(b []byte) { b[7] = lineCap + 1 },
		"magic":      func(b []byte) { b[8+lineCap+14] = 5 },
		"queue":      func(b []byte) { b[2*streamSize+4] = 5 },
		"queue head": func(b []byte) { b[2*streamSize+5] = 4 },
	} {
		bad := bytes.Clone(pb)
		corrupt(bad)
		if err := pr2.UnmarshalBinary(bad); err == nil {
			t.Errorf("parser state with a bad %s accepted", name)
		}
	}
	if err := pr2.UnmarshalBinary(pb[1:]); err == nil {
		t.Error("short parser state accepted")
	}
}

// The request queue keeps the newest 4 hints when pipelining goes deeper.
func TestRequestQueue(t *testing.T) {
	var pr parser
	for h := uint8(1); h <= 6; h++ {
		pr.push(h)
	}
	for want := uint8(3); want <= 6; want++ {
		if got := pr.pop(); got != want {
			t.Fatalf("pop %d, want %d", got, want)
		}
	}
	if pr.pop() != 0 || pr.fifoN != 0 {
		t.Error("empty queue must pop 0")
	}
}
