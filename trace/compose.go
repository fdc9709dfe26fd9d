package trace

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

// ComposeInput is one capture to merge with Compose, moved in time and re-addressed.
type ComposeInput struct {
	// Reader is the input. Compose reads it to its end and does not close it.
	Reader port.Reader
	// Shift is added to every timestamp of the input (ignored when Start is set).
	Shift time.Duration
	// Start, when not zero, moves the input so that its first packet is at Start (every
	// packet by the same amount), instead of Shift.
	Start time.Time
	// Rewrite maps addresses to new ones. It applies to the source and to the destination
	// of every well-formed IP packet (each looked up in the packet as read, so A→B and B→A
	// swap two hosts), with the IPv4 header and TCP/UDP/ICMPv6 checksums updated
	// incrementally (packet.SetSrcAddr, SetDstAddr). An address and its replacement must be
	// of one family. Addresses inside payloads (ICMP errors, FTP PORT commands) and in
	// malformed packets are left as they are.
	Rewrite map[netip.Addr]netip.Addr
}

const composeBatch = 64

// composeSrc is one input during the merge: a buffer of packets read ahead.
type composeSrc struct {
	in    *ComposeInput
	idx   int
	rw    map[netip.Addr]netip.Addr // Rewrite with IPv4-mapped addresses unmapped
	buf   []packet.Packet
	n, i  int   // buf[i:n] are pending
	shift int64 // ns added to timestamps, known after the first read
	init  bool
	eof   bool
}

// Compose merges inputs into one capture written to w, in timestamp order (a k-way merge:
// each input is expected in time order, as captures are; packets with equal timestamps
// keep input order, then each input's order), after moving each input in time and
// rewriting its addresses as its ComposeInput says. It returns the number of packets
// written. It closes neither the inputs nor w (close w to flush it). An input's read
// error, or a write error, ends the merge with an error naming the input.
func Compose(inputs []ComposeInput, w port.Writer) (n int, err error) {
	srcs := make([]*composeSrc, len(inputs))
	for i := range inputs {
		in := &inputs[i]
		if in.Reader == nil {
			return 0, fmt.Errorf("trace: compose: input %d: no reader", i)
		}
		s := &composeSrc{in: in, idx: i, buf: make([]packet.Packet, composeBatch)}
		for from, to := range in.Rewrite {
			from, to = from.Unmap().WithZone(""), to.Unmap().WithZone("")
			if !from.IsValid() || !to.IsValid() || from.Is4() != to.Is4() {
				return 0, fmt.Errorf("trace: compose: input %d: cannot rewrite %s to %s (want two addresses of one family)", i, from, to)
			}
			if s.rw == nil {
				s.rw = map[netip.Addr]netip.Addr{}
			}
			s.rw[from] = to
		}
		srcs[i] = s
	}
	out := make([]*packet.Packet, 0, composeBatch)
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		if err := w.Write(out); err != nil {
			return fmt.Errorf("trace: compose: write: %w", err)
		}
		n += len(out)
		out = out[:0]
		return nil
	}
	// h is a binary min-heap of the inputs with a pending packet, by (time, input index).
	h := make([]*composeSrc, 0, len(srcs))
	less := func(a, b *composeSrc) bool {
		ta, tb := a.buf[a.i].Time, b.buf[b.i].Time
		return ta < tb || ta == tb && a.idx < b.idx
	}
	down := func(i int) {
		for {
			l, small := 2*i+1, i
			if l < len(h) && less(h[l], h[small]) {
				small = l
			}
			if r := l + 1; r < len(h) && less(h[r], h[small]) {
				small = r
			}
			if small == i {
				return
			}
			h[i], h[small] = h[small], h[i]
			i = small
		}
	}
	for _, s := range srcs {
		ok, err := s.fill()
		if err != nil {
			return n, err
		}
		if ok {
			h = append(h, s)
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		down(i)
	}
	for len(h) > 0 {
		s := h[0]
		out = append(out, &s.buf[s.i])
		s.i++
		if len(out) == cap(out) {
			if err := flush(); err != nil {
				return n, err
			}
		}
		if s.i == s.n {
			// The buffer is about to be refilled: write what points into it first.
			if err := flush(); err != nil {
				return n, err
			}
			ok, err := s.fill()
			if err != nil {
				return n, err
			}
			if !ok {
				h[0] = h[len(h)-1]
				h = h[:len(h)-1]
			}
		}
		if len(h) > 0 {
			down(0)
		}
	}
	return n, flush()
}

// fill reads the input's next batch, shifts and rewrites it; false at the input's end.
func (s *composeSrc) fill() (bool, error) {
	if s.eof {
		return false, nil
	}
	k, err := s.in.Reader.Read(s.buf)
	switch {
	case k > 0:
		s.prepare(k)
		return true, nil
	case errors.Is(err, io.EOF):
		s.eof = true
		return false, nil
	case err == nil:
		err = io.ErrNoProgress
	}
	return false, fmt.Errorf("trace: compose: input %d: %w", s.idx, err)
}

func (s *composeSrc) prepare(k int) {
	if !s.init {
		s.init = true
		s.shift = int64(s.in.Shift)
		if !s.in.Start.IsZero() {
			s.shift = s.in.Start.UnixNano() - s.buf[0].Time
		}
	}
	s.n, s.i = k, 0
	for j := range s.buf[:k] {
		p := &s.buf[j]
		p.Time += s.shift
		if s.rw != nil && p.IP() {
			src, dst := p.Key.SrcAddr(), p.Key.DstAddr()
			if to, ok := s.rw[src]; ok {
				p.SetSrcAddr(to)
			}
			if to, ok := s.rw[dst]; ok {
				p.SetDstAddr(to)
			}
		}
	}
}
