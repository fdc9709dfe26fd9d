package mem

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

func frames(n int) []Frame {
	fs := make([]Frame, n)
	for i := range fs {
		fs[i] = Frame{Data: bytes.Repeat([]byte{byte(i)}, 20+i), Time: int64(i) * 1000, WireLen: 100 + i}
	}
	return fs
}

func TestReaderBatches(t *testing.T) {
	in := frames(10)
	r := NewReader(in)
	pkts := make([]packet.Packet, 4)
	var got []int
	for i := 0; ; {
		n, err := r.Read(pkts)
		if err == io.EOF {
			if n != 0 {
				t.Fatalf("EOF with n=%d", n)
			}
			break
		}
		if err != nil || n == 0 {
			t.Fatalf("Read = %d, %v", n, err)
		}
		got = append(got, n)
		for _, p := range pkts[:n] {
			f := in[i]
			if !bytes.Equal(p.Data, f.Data) || p.Time != f.Time || p.WireLen != f.WireLen {
				t.Fatalf("packet %d differs", i)
			}
			i++
		}
	}
	if want := []int{4, 4, 2}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("batches %v, want %v", got, want)
	}
	if n, err := r.Read(pkts); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v", n, err)
	}
	r.Close()
	if _, err := r.Read(pkts); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close = %v", err)
	}
}

func TestReaderError(t *testing.T) {
	bad := errors.New("bad")
	r := NewReaderError(frames(3), bad)
	pkts := make([]packet.Packet, 8)
	if n, err := r.Read(pkts); n != 3 || err != nil {
		t.Fatalf("first Read = %d, %v", n, err)
	}
	if n, err := r.Read(pkts); n != 0 || err != bad {
		t.Fatalf("second Read = %d, %v", n, err)
	}
}

func TestWriterCopies(t *testing.T) {
	var w Writer
	var p packet.Packet
	p.SetData([]byte{1, 2, 3}, 42, 60)
	if err := w.Write([]*packet.Packet{&p}); err != nil {
		t.Fatal(err)
	}
	p.Data[0] = 9 // the caller reuses its packet
	fs := w.Frames()
	if len(fs) != 1 || !bytes.Equal(fs[0].Data, []byte{1, 2, 3}) || fs[0].Time != 42 || fs[0].WireLen != 60 {
		t.Fatalf("Frames = %+v", fs)
	}
	w.Close()
	if !w.Closed() {
		t.Fatal("not closed")
	}
	if err := w.Write([]*packet.Packet{&p}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
}

// TestReadAll: every frame comes back copied (the reader's buffers are reused), with its
// time and wire length, in more than one batch; a reader's error comes back after the frames
// before it.
func TestReadAll(t *testing.T) {
	var in []Frame
	for i := range 150 {
		in = append(in, Frame{Data: []byte{byte(i), byte(i >> 8), 1, 2}, Time: int64(i), WireLen: 60 + i})
	}
	got, err := ReadAll(NewReader(in))
	if err != nil || len(got) != len(in) {
		t.Fatalf("ReadAll: %d frames, %v; want %d, nil", len(got), err, len(in))
	}
	for i := range in {
		if !bytes.Equal(got[i].Data, in[i].Data) || got[i].Time != in[i].Time || got[i].WireLen != in[i].WireLen {
			t.Fatalf("frame %d: %+v, want %+v", i, got[i], in[i])
		}
	}
	bad := errors.New("truncated")
	got, err = ReadAll(NewReaderError(in[:10], bad))
	if !errors.Is(err, bad) || len(got) != 10 {
		t.Errorf("with an error: %d frames, %v; want 10, %v", len(got), err, bad)
	}
}

// TestReread: a Reader reads any frame again by the position Read gave it; a wrong position
// or length is an error; port.Copied hides that it can.
func TestReread(t *testing.T) {
	frames := []Frame{{Data: []byte{1, 2, 3}}, {Data: []byte{4}}, {Data: []byte{5, 6}}}
	r := NewReader(frames)
	var rr port.Rereader = r
	pkts := make([]packet.Packet, 2)
	var pos []uint64
	read := 0
	for {
		n, err := r.Read(pkts)
		read += n
		for i := range n {
			pos = append(pos, pkts[i].Pos)
		}
		if err != nil {
			break
		}
	}
	if !rr.Rereadable() || len(pos) != 3 {
		t.Fatalf("rereadable %v, %d positions", rr.Rereadable(), len(pos))
	}
	for i := len(pos) - 1; i >= 0; i-- {
		if b, err := rr.Reread([]byte{9}, pos[i], len(frames[i].Data)); err != nil || !bytes.Equal(b, append([]byte{9}, frames[i].Data...)) {
			t.Errorf("frame %d: %v, %v", i, b, err)
		}
	}
	if _, err := rr.Reread(nil, 3, 1); err == nil {
		t.Error("a position past the frames: want an error")
	}
	if _, err := rr.Reread(nil, 0, 2); err == nil {
		t.Error("a wrong length: want an error")
	}
	if _, ok := port.Copied(r).(port.Rereader); ok {
		t.Error("port.Copied still a Rereader")
	}
	// Read sets each packet's Pos, whatever the packet held before.
	r2 := NewReader(frames)
	r2.Read(pkts[:1])
	pkts[1].Pos = 77
	if n, _ := r2.Read(pkts); n != 2 || pkts[0].Pos != 1 || pkts[1].Pos != 2 {
		t.Fatalf("read %d at %d, %d: want 2 at 1, 2", n, pkts[0].Pos, pkts[1].Pos)
	}
	r2.Close()
	if n, err := r2.Read(pkts); n != 0 || err != ErrClosed {
		t.Errorf("after Close: read %d (%v): want none, ErrClosed", n, err)
	}
}
