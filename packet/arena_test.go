package packet_test

import (
	"bytes"
	"testing"

	"github.com/snf-dev/snf/packet"
)

// TestArenaPacks: frames read through an arena lie one after another (64-byte aligned) and
// stay as they were when the packet reads its next ones; a frame too large for a block, or
// an empty one, takes no arena memory; CopyFrom into a packet without an arena copies.
func TestArenaPacks(t *testing.T) {
	a := packet.NewArena(64<<10, 4096)
	var p packet.Packet
	p.UseArena(a)
	frames := [][]byte{bytes.Repeat([]byte{1}, 100), bytes.Repeat([]byte{2}, 60), bytes.Repeat([]byte{3}, 1500)}
	var datas [][]byte
	for i, f := range frames {
		p.SetData(f, 0, 0)
		pos, ok := p.ArenaPos()
		if want := []uint64{0, 128, 192}[i]; !ok || pos != want {
			t.Fatalf("frame %d at %d (in arena: %v), want %d: frames packed, 64-byte aligned", i, pos, ok, want)
		}
		datas = append(datas, p.Data)
	}
	for i, d := range datas {
		if !bytes.Equal(d, frames[i]) {
			t.Errorf("frame %d overwritten", i)
		}
	}
	p.SetData(make([]byte, 5000), 0, 0) // larger than a block
	if _, ok := p.ArenaPos(); ok || len(p.Data) != 5000 || a.Stats().Overflows != 1 {
		t.Errorf("a frame larger than a block: in arena %v, %d bytes, stats %+v", ok, len(p.Data), a.Stats())
	}
	p.SetData(nil, 0, 0) // an empty frame takes nothing
	if _, ok := p.ArenaPos(); ok || len(p.Data) != 0 {
		t.Error("an empty frame took arena memory")
	}
	p.SetData(frames[0], 0, 0)
	var q packet.Packet
	q.CopyFrom(&p)
	if _, ok := q.ArenaPos(); ok || &q.Data[0] == &p.Data[0] || !bytes.Equal(q.Data, frames[0]) {
		t.Error("CopyFrom into a packet without an arena took arena memory or shared the frame")
	}
}

// TestArenaReuse: memory below Free's position is reused, never memory still needed; at
// its size the arena asks its owner (OnNeed), then gives frames memory of their own.
func TestArenaReuse(t *testing.T) {
	const block = 4096
	a := packet.NewArena(4*block, block)
	var p packet.Packet
	p.UseArena(a)
	f := bytes.Repeat([]byte{7}, 1000) // 1024 in the arena: 4 per block
	held := map[uint64][]byte{}
	needs := 0
	var low uint64
	a.OnNeed = func() { needs++; a.Free(low) }
	for i := range 64 {
		f[0] = byte(i)
		p.SetData(f, 0, 0)
		pos, ok := p.ArenaPos()
		if !ok {
			t.Fatalf("frame %d not in the arena (stats %+v)", i, a.Stats())
		}
		held[pos] = p.Data
		if i >= 8 { // keep the last 8 frames (two blocks)
			low = pos - 7*1024
		}
		for q, d := range held {
			if q < low {
				delete(held, q)
			} else if d[0] != byte(q/1024) {
				t.Fatalf("frame at %d overwritten while needed (frame %d)", q, i)
			}
		}
	}
	if s := a.Stats(); s.Blocks > 4 || s.Overflows != 0 || needs == 0 {
		t.Errorf("stats %+v, %d calls of OnNeed: want at most 4 blocks, reused", s, needs)
	}
	// Nothing freed: past its size the arena overflows, and what it held stays intact.
	a.OnNeed = nil
	for range 32 {
		p.SetData(f, 0, 0)
	}
	if a.Stats().Overflows == 0 {
		t.Error("an arena with nothing freed never overflowed")
	}
	for q, d := range held {
		if d[0] != byte(q/1024) {
			t.Fatalf("frame at %d overwritten after the arena filled", q)
		}
	}
}

// TestArenaSteadyState: reading through an arena whose memory is freed behind allocates
// nothing.
func TestArenaSteadyState(t *testing.T) {
	a := packet.NewArena(1<<20, 64<<10)
	var p packet.Packet
	p.UseArena(a)
	f := make([]byte, 700)
	step := func() {
		for range 64 {
			p.SetData(f, 0, 0)
		}
		a.Free(a.Head())
	}
	for range 100 {
		step()
	}
	if n := testing.AllocsPerRun(100, step); n != 0 {
		t.Errorf("%v allocations per 64 frames", n)
	}
}

// TestArenaCloseReuse: a closed arena's blocks go to the next arena (memory already mapped),
// which fills them with its own frames; the closed arena is empty.
func TestArenaCloseReuse(t *testing.T) {
	const block = 8192
	a := packet.NewArena(64*block, block)
	var p packet.Packet
	p.UseArena(a)
	frame := bytes.Repeat([]byte{1}, 1000)
	p.SetData(frame, 0, 0)
	first := &p.Data[0]
	for range 39 { // 40 frames of 1 KiB: five blocks
		p.SetData(frame, 0, 0)
	}
	if a.Stats().Blocks != 5 {
		t.Fatalf("%d blocks, want 5", a.Stats().Blocks)
	}
	a.Close()
	if s := a.Stats(); s.Blocks != 0 || s.Bytes != 0 {
		t.Errorf("closed arena: %+v, want empty", s)
	}
	b := packet.NewArena(64*block, block)
	var q packet.Packet
	q.UseArena(b)
	reused := false
	for range 40 {
		q.SetData(bytes.Repeat([]byte{2}, 1000), 0, 0)
		reused = reused || &q.Data[0] == first
		if q.Data[0] != 2 || q.Data[999] != 2 {
			t.Fatal("a frame in a reused block is not the one read")
		}
	}
	if !reused {
		t.Error("the next arena did not reuse the closed one's blocks")
	}
	b.Close()
}
