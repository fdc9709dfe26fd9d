package packet

import "sync"

// Arena gives SetData the memory of each frame, one after another, from blocks of memory:
// frames read in order lie in order, packed, so that a packet log can keep them where they
// were read (replay.Log) instead of copying them, and its memory stays compact. Memory is
// freed in the order it was given: its owner says below which position it needs nothing
// (Free), and freed blocks are reused, the most recently freed first (still in cache).
//
// A frame that does not fit (the arena is at its size, or the frame is larger than a block)
// gets memory of its own (Stats().Overflows counts them). An Arena is used by one goroutine.
type Arena struct {
	block      uint64   // block size, a power of two
	shift      uint     // log2(block)
	limit      uint64   // the most blocks the arena holds
	table      [][]byte // by virtual block number & (len(table)-1) (a power of two ≥ limit): its memory
	free       [][]byte // free blocks, the most recently freed last
	blocks     int      // blocks allocated
	head, tail uint64   // positions: the next frame's, and the lowest still needed

	// OnNeed, if set, is called when the arena needs a block and has no free one, before it
	// allocates one (its owner may Free what it no longer needs).
	OnNeed func()

	stats ArenaStats
}

// ArenaStats counts an arena's work.
type ArenaStats struct {
	Frames, Overflows uint64
	Blocks, Bytes     int // blocks allocated, and their memory
}

// NewArena returns an arena of at most size bytes, in blocks of block bytes (rounded up to
// a power of two; at least 4 KiB). (Powers of two: a frame's block and offset are a shift
// and a mask, not divisions, on the per-packet path.)
func NewArena(size, block int) *Arena {
	shift := uint(12)
	for 1<<shift < block {
		shift++
	}
	block = 1 << shift
	n := max((size+block-1)/block, 2)
	t := 2
	for t < n {
		t *= 2
	}
	return &Arena{block: uint64(block), shift: shift, limit: uint64(n), table: make([][]byte, t)}
}

// UseArena makes SetData put p's frames in a (nil: in p's own buffer). Every frame then
// gets new memory: p never writes a frame twice into the same place.
func (p *Packet) UseArena(a *Arena) { p.arena, p.apos = a, 0 }

// ArenaPos returns the position of p's frame in its arena, if SetData put it in one.
func (p *Packet) ArenaPos() (uint64, bool) { return p.apos - 1, p.apos != 0 }

// alloc returns memory for an n-byte frame (length 0, capacity n) and its position, or nil
// when the arena has no room.
func (a *Arena) alloc(n int) ([]byte, uint64) {
	need := (uint64(n) + 63) &^ 63
	if need > a.block || need == 0 {
		return nil, 0
	}
	off := a.head & (a.block - 1)
	if off+need > a.block { // the rest of this block is too short: go to the next one
		a.head += a.block - off
		off = 0
	}
	k := a.head >> a.shift
	if off == 0 && !a.enter(k) {
		return nil, 0
	}
	pos := a.head
	a.head += need
	a.stats.Frames++
	b := a.table[k&uint64(len(a.table)-1)]
	return b[off : off : off+uint64(n)], pos
}

// enter gives virtual block k memory: a free block, else a new one, unless the arena is at
// its size.
func (a *Arena) enter(k uint64) bool {
	if k-a.tail>>a.shift >= a.limit {
		if a.OnNeed != nil {
			a.OnNeed()
		}
		if k-a.tail>>a.shift >= a.limit {
			return false
		}
	}
	if len(a.free) == 0 && a.OnNeed != nil {
		a.OnNeed()
	}
	var b []byte
	switch f := len(a.free); {
	case f > 0:
		b = a.free[f-1]
		a.free = a.free[:f-1]
	case uint64(a.blocks) < a.limit:
		if b = pooled(a.block); b == nil {
			b = make([]byte, a.block)
		}
		a.blocks++
	default:
		return false
	}
	a.table[k&uint64(len(a.table)-1)] = b
	return true
}

// Free says that nothing below position pos is needed any more: the blocks wholly below it
// are reused.
func (a *Arena) Free(pos uint64) {
	pos = min(pos, a.head)
	if pos <= a.tail {
		return
	}
	for k := a.tail >> a.shift; k < pos>>a.shift; k++ {
		i := k & uint64(len(a.table)-1)
		if a.table[i] != nil {
			a.free = append(a.free, a.table[i])
			a.table[i] = nil
		}
	}
	a.tail = pos
}

// Close gives the arena's memory to the arenas made after it (up to 256 MiB kept in all, for
// the process): a run's arena then starts on memory already mapped, where fresh memory costs a
// page fault per 4 KiB on its first write (a packet log at full speed fills 15–25 MB: some
// 5,000 faults per run). Nothing may use the arena, nor any frame it gave, after Close; a
// closed arena is empty (a later frame gets new memory).
func (a *Arena) Close() {
	blockPool.mu.Lock()
	defer blockPool.mu.Unlock()
	for _, b := range append(a.free, a.table...) {
		if b != nil && blockPool.bytes+len(b) <= blockPoolMax {
			blockPool.free[a.block] = append(blockPool.free[a.block], b)
			blockPool.bytes += len(b)
		}
	}
	clear(a.table)
	a.free, a.blocks = a.free[:0], 0
	a.head = (a.head + a.block - 1) &^ (a.block - 1) // the next frame starts a block
	a.tail = a.head
}

// blockPool holds the blocks of closed arenas, by block size.
var blockPool = struct {
	mu    sync.Mutex
	free  map[uint64][][]byte
	bytes int
}{free: map[uint64][][]byte{}}

const blockPoolMax = 256 << 20

// pooled returns a block of size n from a closed arena, or nil.
func pooled(n uint64) []byte {
	blockPool.mu.Lock()
	defer blockPool.mu.Unlock()
	f := blockPool.free[n]
	if len(f) == 0 {
		return nil
	}
	b := f[len(f)-1]
	blockPool.free[n] = f[:len(f)-1]
	blockPool.bytes -= len(b)
	return b
}

// Frame returns the n bytes at position pos (a frame given out and not freed).
func (a *Arena) Frame(pos uint64, n int) []byte {
	b := a.table[(pos>>a.shift)&uint64(len(a.table)-1)]
	off := pos & (a.block - 1)
	return b[off : off+uint64(n) : off+uint64(n)]
}

// Head returns the position the next frame gets (everything given out is below it).
func (a *Arena) Head() uint64 { return a.head }

// Stats returns the arena's counters.
func (a *Arena) Stats() ArenaStats {
	s := a.stats
	s.Blocks, s.Bytes = a.blocks, a.blocks*int(a.block)
	return s
}
