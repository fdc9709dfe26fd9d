package packet_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/snf-dev/snf/packet"
)

// TestZeroAllocs: Parse, the rewrites and the key operations allocate nothing.
func TestZeroAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation may allocate")
	}
	frames := [][]byte{}
	for _, c := range parseCases(t) {
		frames = append(frames, c.frame)
	}
	var p packet.Packet
	i := 0
	if a := testing.AllocsPerRun(1000, func() {
		p.Data = frames[i%len(frames)]
		p.Parse()
		i++
	}); a != 0 {
		t.Errorf("Parse: %v allocs per run", a)
	}

	t4 := tcpFrame(t, v4a, v4b, 40000, 443, payload100)
	u6 := udpFrame(t, v6a, v6b, 5353, 53, payload100)
	e4 := echoFrame(t, v4a, v4b, 1, 2, false, payload100)
	e6 := echoFrame(t, v6a, v6b, 1, 2, false, payload100)
	p4, p6, pe4, pe6 := parsed(t4), parsed(u6), parsed(e4), parsed(e6)
	n := uint16(0)
	if a := testing.AllocsPerRun(1000, func() {
		n++
		p4.SetSrcAddr(v4b)
		p4.SetSrcPort(n)
		p4.SetDstAddr(v4a)
		p4.SetDstPort(n)
		p6.SetSrcAddr(v6b)
		p6.SetDstAddr(v6a)
		p6.SetSrcPort(n)
		pe4.SetEchoID(n)
		pe6.SetEchoID(n)
	}); a != 0 {
		t.Errorf("rewrites: %v allocs per run", a)
	}
	var h uint64
	if a := testing.AllocsPerRun(1000, func() {
		k, _ := p4.Key.Canonical()
		h += k.Hash() + p6.Key.Reverse().Hash()
		h += uint64(len(p4.Payload()))
		_, ok := pe4.EchoID()
		if ok {
			h++
		}
	}); a != 0 {
		t.Errorf("key operations: %v allocs per run", a)
	}
	_ = h
}

func TestCopyFrom(t *testing.T) {
	var a, b packet.Packet
	a.SetData(tcpFrame(t, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 2, []byte("x")), 42, 100)
	a.Clock, a.Flow = 7, 9
	b.CopyFrom(&a)
	if &b.Data[0] == &a.Data[0] || string(b.Data) != string(a.Data) || b.Key != a.Key || b.Clock != 7 || b.Flow != 9 || b.Time != 42 || b.WireLen != 100 || b.PayloadOff != a.PayloadOff {
		t.Fatalf("copy differs: %+v", b)
	}
	a.Data[0] ^= 0xff
	if b.Data[0] == a.Data[0] {
		t.Fatal("copy shares the frame")
	}
	if n := testing.AllocsPerRun(100, func() { b.CopyFrom(&a) }); n != 0 {
		t.Errorf("CopyFrom allocates %v", n)
	}
}

// TestSwapBuf: the frame's buffer changes hands without a copy, the packet refills the new
// one, and a packet whose Data is not its own is left alone.
func TestSwapBuf(t *testing.T) {
	var a packet.Packet
	f1 := tcpFrame(t, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 2, []byte("one"))
	f2 := tcpFrame(t, netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4"), 3, 4, []byte("two"))
	a.SetData(f1, 1, 0)
	fresh := make([]byte, 5, 2048)
	got := a.SwapBuf(fresh)
	if string(got) != string(f1) || &got[0] != &a.Data[0] {
		t.Fatalf("swapped out %q (shares Data: %v), want the frame itself", got, len(got) > 0 && &got[0] == &a.Data[0])
	}
	a.SetData(f2, 2, 0)
	if string(got) != string(f1) {
		t.Fatal("the next SetData wrote into the buffer given away")
	}
	if &a.Data[0] != &fresh[:1][0] || string(a.Data) != string(f2) {
		t.Fatal("the packet did not refill the buffer it was given")
	}
	if n := testing.AllocsPerRun(100, func() { a.SetData(f2, 2, 0); fresh = a.SwapBuf(fresh) }); n != 0 {
		t.Errorf("SwapBuf allocates %v", n)
	}
	var b packet.Packet
	b.Data = f1
	if b.SwapBuf(make([]byte, 0, 2048)) != nil || &b.Data[0] != &f1[0] {
		t.Error("a packet whose Data is not its own buffer gave one away")
	}
}

// TestBorrowOwn: Borrow gives a packet src's metadata and parse results and reads the lent
// frame in place (no copy); Own copies it into the packet's own buffer (the one it had, or a
// larger one) and does nothing for a frame already there; neither allocates in steady state.
func TestBorrowOwn(t *testing.T) {
	var src, p packet.Packet
	src.SetData(tcpFrame(t, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 2, []byte("payload")), 7, 0)
	src.Clock, src.Flow = 42, 9
	p.Reserve(2048)
	p.SetData(src.Data, 0, 0) // p's own buffer
	own := p.Data[:1]
	lent := bytes.Clone(src.Data)
	p.Borrow(&src, lent)
	if &p.Data[0] != &lent[0] || p.Clock != 42 || p.Flow != 9 || p.Time != 7 || p.Key != src.Key || p.L4Off != src.L4Off {
		t.Fatalf("borrowed: in the lent frame %v, clock %d flow %d time %d", &p.Data[0] == &lent[0], p.Clock, p.Flow, p.Time)
	}
	p.Own()
	if &p.Data[0] == &lent[0] || &p.Data[0] != &own[0] || !bytes.Equal(p.Data, lent) {
		t.Fatalf("owned: still lent %v, in its own buffer %v, same bytes %v", &p.Data[0] == &lent[0], &p.Data[0] == &own[0], bytes.Equal(p.Data, lent))
	}
	p.Data[20] ^= 0xff
	if lent[20] == p.Data[20] {
		t.Error("a write after Own reached the lender's frame")
	}
	before := &p.Data[0]
	p.Own()
	if &p.Data[0] != before {
		t.Error("Own of an owned frame moved it")
	}
	if n := testing.AllocsPerRun(100, func() { p.Borrow(&src, lent); p.Own() }); n != 0 {
		t.Errorf("Borrow and Own allocate %v", n)
	}
	// A frame larger than the buffer gets a larger one; an empty one stays empty.
	big := make([]byte, 4000)
	big[3999] = 1
	p.Borrow(&src, big)
	p.Own()
	if &p.Data[0] == &big[0] || len(p.Data) != 4000 || p.Data[3999] != 1 {
		t.Error("a large lent frame was not copied")
	}
	p.Borrow(&src, nil)
	p.Own()
	if len(p.Data) != 0 {
		t.Error("an empty lent frame grew")
	}
}
