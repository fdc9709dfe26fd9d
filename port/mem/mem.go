// Package mem is an in-memory port for tests: a Reader that serves a list of frames in
// batches, and a Writer that records copies of what is written to it.
package mem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

var (
	_ port.Reader = (*Reader)(nil)
	_ port.Writer = (*Writer)(nil)
)

// Frame is one frame with its metadata.
type Frame struct {
	// Data is the frame, starting at the Ethernet header.
	Data []byte
	// Time is the timestamp in Unix nanoseconds.
	Time int64
	// WireLen is the length on the wire (0 means len(Data) for the Reader).
	WireLen int
}

// ReadAll reads r to its end (io.EOF) into memory, copying each frame. On another error it
// returns the frames read before it with the error. r is any batched reader: a port.Reader,
// or a generator without Close.
func ReadAll(r interface {
	Read([]packet.Packet) (int, error)
}) ([]Frame, error) {
	return ReadAllContext(context.Background(), r)
}

// ReadAllContext is ReadAll that stops once ctx is done: it then returns the frames read
// before with ctx's error. (It looks at ctx between reads: a Read that blocks ends when its
// reader's own wait does — port.PacedWith.)
func ReadAllContext(ctx context.Context, r interface {
	Read([]packet.Packet) (int, error)
}) ([]Frame, error) {
	var fr []Frame
	batch := make([]packet.Packet, 64)
	done := ctx.Done()
	for {
		select {
		case <-done:
			return fr, ctx.Err()
		default:
		}
		n, err := r.Read(batch)
		for _, p := range batch[:n] {
			fr = append(fr, Frame{Data: append([]byte(nil), p.Data...), Time: p.Time, WireLen: p.WireLen})
		}
		if err == io.EOF {
			return fr, nil
		}
		if err != nil {
			return fr, err
		}
	}
}

// ErrClosed is returned by a Read or Write after Close.
var ErrClosed = errors.New("mem: port is closed")

// Reader serves a list of frames. It is not safe for concurrent use.
type Reader struct {
	frames []Frame
	next   int
	end    error
	closed bool
}

// NewReader returns a Reader of frames. It does not copy them: Read copies each frame into
// the caller's Packet with SetData, and Reread reads them again (a packet log keeps their
// positions): they must not change while the Reader is in use.
func NewReader(frames []Frame) *Reader {
	return &Reader{frames: frames, end: io.EOF}
}

// NewReaderError returns a Reader of frames that ends with err instead of io.EOF, like a
// file that is corrupt after its last good packet.
func NewReaderError(frames []Frame, err error) *Reader {
	return &Reader{frames: frames, end: err}
}

// Read fills pkts with the next frames (SetData on each) and returns how many it filled:
// n > 0 and a nil error while frames remain, then 0 and io.EOF (or the error given to
// NewReaderError).
func (r *Reader) Read(pkts []packet.Packet) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	n := 0
	for n < len(pkts) && r.next < len(r.frames) {
		f := &r.frames[r.next]
		pkts[n].SetData(f.Data, f.Time, f.WireLen)
		pkts[n].Pos = uint64(r.next)
		n++
		r.next++
	}
	if n == 0 && len(pkts) > 0 {
		return 0, r.end
	}
	return n, nil
}

// Rereadable reports true: a Reader can read any of its frames again (port.Rereader), by
// their Pos, their index. The frames must not change while it is open.
func (r *Reader) Rereadable() bool { return true }

// Reread appends frame pos (a packet's Pos), of n bytes, to dst (port.Rereader).
func (r *Reader) Reread(dst []byte, pos uint64, n int) ([]byte, error) {
	if pos >= uint64(len(r.frames)) || len(r.frames[pos].Data) != n {
		return dst, fmt.Errorf("mem: no %d-byte frame at %d (of %d frames)", n, pos, len(r.frames))
	}
	return append(dst, r.frames[pos].Data...), nil
}

// Remaining returns the number of frames not yet read.
func (r *Reader) Remaining() int { return len(r.frames) - r.next }

// Close ends the Reader: later Reads return ErrClosed.
func (r *Reader) Close() error {
	r.closed = true
	return nil
}

// Writer records copies of the packets written to it. Its zero value is ready to use, and
// it is safe for concurrent use.
type Writer struct {
	mu     sync.Mutex
	frames []Frame
	closed bool
}

// NewWriter returns an empty Writer.
func NewWriter() *Writer { return &Writer{} }

// Write records a copy of each packet's Data, Time and WireLen.
func (w *Writer) Write(pkts []*packet.Packet) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	for _, p := range pkts {
		w.frames = append(w.frames, Frame{
			Data:    append([]byte(nil), p.Data...),
			Time:    p.Time,
			WireLen: p.WireLen,
		})
	}
	return nil
}

// Frames returns the frames written so far, in order. The slice is the caller's; the
// frames' Data are shared with the Writer and must not be modified.
func (w *Writer) Frames() []Frame {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Frame(nil), w.frames...)
}

// Close ends the Writer: later Writes return ErrClosed. Frames stays available.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

// Closed reports whether Close was called.
func (w *Writer) Closed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}
