package unit

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/snf-dev/snf/packet"
)

// WireVersion is the version of the wire format of the transport seam's messages, which
// lets a network transport carry a Batch (root → unit, over UDP) and a State (unit → unit,
// over TCP) without the components knowing. All integers are big-endian (network order, as
// in the chain's own flow-state export); offsets and sizes are in bytes. A message is
// exactly its encoding: framing (one UDP datagram, or a length prefix on a TCP stream) is
// the transport's, and trailing bytes are an error.
//
// Batch (magic "SNFB"): the input side only — Unit, Pkts[:N], N, Ctl, Stamp, Now, Seq,
// Checkpoint. Out, OutStamp, OutClock and Home are local to the process holding the batch.
//
//	off size field    type
//	header, 42 bytes
//	  0  4  magic     "SNFB"
//	  4  1  version   2
//	  5  4  unit      int32
//	  9  4  npkts     uint32  N
//	 13  4  nctl      uint32  len(Ctl)
//	 17  8  stamp     int64   Unix ns
//	 25  8  now       int64   the root's packet time
//	 33  8  seq       uint64  the unit's batch number (0: not part of its input)
//	 41  1  flags     uint8   bit 0: Checkpoint; other bits 0
//	nctl controls, 63 bytes each, in order of At (non-decreasing)
//	  0  4  at        uint32  0 ≤ at ≤ npkts (at == npkts: after the last packet)
//	  4  1  kind      uint8   1 Marker, 2 Expect
//	  5 38  key       src[16] dst[16] sport:u16 dport:u16 proto:u8 v6:u8 (0 or 1)
//	 43  8  flow      uint64
//	 51  4  peer      int32
//	 55  8  hid       uint64  the handover's id
//	npkts packets, 32 bytes + data each
//	  0  8  time      int64   Unix ns
//	  8  4  wirelen   uint32  len ≤ wirelen ≤ 2³¹-1 (encoded as max(WireLen, len(Data)))
//	 12  8  clock     uint64
//	 20  8  flow      uint64
//	 28  4  len       uint32  ≤ MaxDataLen
//	 32 len data      the frame from its Ethernet header
//
// State (magic "SNFS"):
//
//	off size field    type
//	  0  4  magic     "SNFS"
//	  4  1  version   2
//	  5 38  key       as in a control
//	 43  8  flow      uint64
//	 51  4  from      int32
//	 55  8  sent      int64   Unix ns
//	 63  8  hid       uint64  the handover's id
//	 71  1  present   uint8   0: Data is nil (the sender held no state; len must be 0),
//	                          1: Data present (possibly empty)
//	 72  4  len       uint32  ≤ MaxDataLen
//	 76 len data      what snf.Chain.MoveOut wrote
//
// Decoding validates the whole input before it touches the destination: on error the
// message is left unchanged, nothing is allocated in proportion to a count that does not fit
// the input, and the error wraps ErrMalformed.
const WireVersion = 2

var (
	_ encoding.BinaryAppender    = (*Batch)(nil)
	_ encoding.BinaryUnmarshaler = (*Batch)(nil)
	_ encoding.BinaryAppender    = (*State)(nil)
	_ encoding.BinaryUnmarshaler = (*State)(nil)
)

// ErrMalformed is wrapped by the errors of Batch.UnmarshalBinary and State.UnmarshalBinary
// for input that is not a valid encoding.
var ErrMalformed = errors.New("malformed")

// MaxDataLen bounds the length of a packet's frame and of a state's data on the wire.
const MaxDataLen = 65535

const (
	batchMagic = "SNFB"
	stateMagic = "SNFS"

	wireKeyLen      = 16 + 16 + 2 + 2 + 1 + 1
	batchHeaderLen  = 4 + 1 + 4 + 4 + 4 + 8 + 8 + 8 + 1
	controlWireLen  = 4 + 1 + wireKeyLen + 8 + 4 + 8
	packetHeaderLen = 8 + 4 + 8 + 8 + 4
	stateHeaderLen  = 4 + 1 + wireKeyLen + 8 + 4 + 8 + 8 + 1 + 4

	maxWireLen = math.MaxInt32 // a frame's wire length, which may exceed MaxDataLen (snaplen-cut jumbo/GRO frames)
)

var be = binary.BigEndian

func malformed(what, format string, args ...any) error {
	return fmt.Errorf("unit: %w %s: %s", ErrMalformed, what, fmt.Sprintf(format, args...))
}

func fitsInt32(v int) bool { return v >= math.MinInt32 && v <= math.MaxInt32 }

// AppendBinary appends the wire encoding of b's input side (see WireVersion for the format) to dst.
// It fails, leaving dst unchanged, when b cannot be encoded: N outside Pkts, a control out
// of order, beyond N or of an unknown kind, a frame longer than MaxDataLen, a unit or peer
// beyond int32.
func (b *Batch) AppendBinary(dst []byte) ([]byte, error) {
	size, err := b.wireSize()
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, size)
	dst = append(dst, batchMagic...)
	dst = append(dst, WireVersion)
	dst = be.AppendUint32(dst, uint32(int32(b.Unit)))
	dst = be.AppendUint32(dst, uint32(b.N))
	dst = be.AppendUint32(dst, uint32(len(b.Ctl)))
	dst = be.AppendUint64(dst, uint64(b.Stamp))
	dst = be.AppendUint64(dst, uint64(b.Now))
	dst = be.AppendUint64(dst, b.Seq)
	flags := byte(0)
	if b.Checkpoint {
		flags = 1
	}
	dst = append(dst, flags)
	for i := range b.Ctl {
		c := &b.Ctl[i]
		dst = be.AppendUint32(dst, uint32(c.At))
		dst = append(dst, byte(c.Kind))
		dst = appendWireKey(dst, &c.Key)
		dst = be.AppendUint64(dst, c.Flow)
		dst = be.AppendUint32(dst, uint32(int32(c.Peer)))
		dst = be.AppendUint64(dst, c.Hid)
	}
	for i := range b.N {
		p := &b.Pkts[i]
		dst = be.AppendUint64(dst, uint64(p.Time))
		dst = be.AppendUint32(dst, uint32(max(p.WireLen, len(p.Data))))
		dst = be.AppendUint64(dst, p.Clock)
		dst = be.AppendUint64(dst, p.Flow)
		dst = be.AppendUint32(dst, uint32(len(p.Data)))
		dst = append(dst, p.Data...)
	}
	return dst, nil
}

// wireSize checks that b can be encoded and returns the length of its encoding.
func (b *Batch) wireSize() (int, error) {
	if !fitsInt32(b.Unit) {
		return 0, fmt.Errorf("unit: encode batch: unit %d beyond int32", b.Unit)
	}
	if b.N < 0 || b.N > len(b.Pkts) || uint64(b.N) > math.MaxUint32 {
		return 0, fmt.Errorf("unit: encode batch: N = %d with %d packets", b.N, len(b.Pkts))
	}
	if uint64(len(b.Ctl)) > math.MaxUint32 {
		return 0, fmt.Errorf("unit: encode batch: %d controls", len(b.Ctl))
	}
	prev := 0
	for i := range b.Ctl {
		c := &b.Ctl[i]
		switch {
		case c.Kind != Marker && c.Kind != Expect:
			return 0, fmt.Errorf("unit: encode batch: control %d: unknown kind %d", i, c.Kind)
		case c.At < prev || c.At > b.N:
			return 0, fmt.Errorf("unit: encode batch: control %d: At = %d out of order or beyond N = %d", i, c.At, b.N)
		case !fitsInt32(c.Peer):
			return 0, fmt.Errorf("unit: encode batch: control %d: peer %d beyond int32", i, c.Peer)
		}
		prev = c.At
	}
	size := batchHeaderLen + len(b.Ctl)*controlWireLen
	for i := range b.N {
		p := &b.Pkts[i]
		if len(p.Data) > MaxDataLen {
			return 0, fmt.Errorf("unit: encode batch: packet %d: %d bytes, more than %d", i, len(p.Data), MaxDataLen)
		}
		if p.WireLen > maxWireLen {
			return 0, fmt.Errorf("unit: encode batch: packet %d: wire length %d beyond %d", i, p.WireLen, maxWireLen)
		}
		size += packetHeaderLen + len(p.Data)
	}
	return size, nil
}

// UnmarshalBinary makes b the batch src encodes (see WireVersion for the format), as a root would
// have filled it: b is Reset (its Out, OutStamp, OutClock and emitted copies emptied; Home kept), and
// its input side set. The packets are refilled with Packet.SetData — so they reuse b's
// Packets and their buffers, and are parsed afresh — then given their clock and flow; Pkts
// grows only when it holds fewer than N packets. src is not retained.
//
// src is validated in full first: on error b is unchanged and the error wraps ErrMalformed.
func (b *Batch) UnmarshalBinary(src []byte) error {
	n, nctl, err := checkBatch(src)
	if err != nil {
		return err
	}
	b.Reset()
	b.Unit = int(int32(be.Uint32(src[5:])))
	b.N = n
	b.Stamp = int64(be.Uint64(src[17:]))
	b.Now = int64(be.Uint64(src[25:]))
	b.Seq, b.Checkpoint = be.Uint64(src[33:]), src[41]&1 != 0
	off := batchHeaderLen
	b.Ctl = slices.Grow(b.Ctl[:0], nctl)
	for range nctl {
		c := src[off : off+controlWireLen]
		b.Ctl = append(b.Ctl, Control{
			At:   int(be.Uint32(c)),
			Kind: ControlKind(c[4]),
			Key:  readWireKey(c[5 : 5+wireKeyLen]),
			Flow: be.Uint64(c[43:]),
			Peer: int(int32(be.Uint32(c[51:]))),
			Hid:  be.Uint64(c[55:]),
		})
		off += controlWireLen
	}
	if len(b.Pkts) < n {
		// Grow copies all of Pkts' capacity, so packets beyond len(Pkts) keep their buffers.
		b.Pkts = slices.Grow(b.Pkts, n-len(b.Pkts))[:n]
	}
	for i := range n {
		h := src[off : off+packetHeaderLen]
		l := int(be.Uint32(h[28:]))
		off += packetHeaderLen
		p := &b.Pkts[i]
		p.SetData(src[off:off+l], int64(be.Uint64(h)), int(be.Uint32(h[8:])))
		p.Clock, p.Flow = be.Uint64(h[12:]), be.Uint64(h[20:])
		off += l
	}
	return nil
}

// checkBatch validates a batch encoding and returns its packet and control counts.
func checkBatch(src []byte) (n, nctl int, err error) {
	const what = "batch"
	if len(src) < batchHeaderLen {
		return 0, 0, malformed(what, "%d bytes, shorter than its %d-byte header", len(src), batchHeaderLen)
	}
	if string(src[:4]) != batchMagic {
		return 0, 0, malformed(what, "bad magic %q", src[:4])
	}
	if src[4] != WireVersion {
		return 0, 0, malformed(what, "unsupported version %d", src[4])
	}
	if src[41] > 1 {
		return 0, 0, malformed(what, "unknown flags %#x", src[41])
	}
	n64, c64 := uint64(be.Uint32(src[9:])), uint64(be.Uint32(src[13:]))
	rest := uint64(len(src) - batchHeaderLen)
	if c64*controlWireLen+n64*packetHeaderLen > rest { // at most 2³²·95: no overflow
		return 0, 0, malformed(what, "%d packets and %d controls do not fit in %d bytes", n64, c64, rest)
	}
	n, nctl = int(n64), int(c64) // both below len(src)
	off, prev := batchHeaderLen, 0
	for i := range nctl {
		c := src[off : off+controlWireLen]
		at, kind := be.Uint32(c), ControlKind(c[4])
		switch {
		case kind != Marker && kind != Expect:
			return 0, 0, malformed(what, "control %d: unknown kind %d", i, kind)
		case uint64(at) > n64:
			return 0, 0, malformed(what, "control %d: at %d beyond %d packets", i, at, n64)
		case int(at) < prev:
			return 0, 0, malformed(what, "control %d: at %d before the previous control's %d", i, at, prev)
		case c[5+wireKeyLen-1] > 1:
			return 0, 0, malformed(what, "control %d: bad key (v6 byte %d)", i, c[5+wireKeyLen-1])
		}
		prev = int(at)
		off += controlWireLen
	}
	for i := range n {
		if len(src)-off < packetHeaderLen {
			return 0, 0, malformed(what, "packet %d: truncated header", i)
		}
		h := src[off : off+packetHeaderLen]
		wl, l := be.Uint32(h[8:]), be.Uint32(h[28:])
		off += packetHeaderLen
		switch {
		case l > MaxDataLen:
			return 0, 0, malformed(what, "packet %d: length %d beyond %d", i, l, MaxDataLen)
		case int(l) > len(src)-off:
			return 0, 0, malformed(what, "packet %d: %d bytes of data, %d left", i, l, len(src)-off)
		case wl < l || wl > maxWireLen:
			return 0, 0, malformed(what, "packet %d: wire length %d with %d bytes of data", i, wl, l)
		}
		off += int(l)
	}
	if off != len(src) {
		return 0, 0, malformed(what, "%d trailing bytes", len(src)-off)
	}
	return n, nctl, nil
}

// AppendBinary appends the wire encoding of s (see WireVersion for the format) to dst. It fails,
// leaving dst unchanged, when Data is longer than MaxDataLen or From is beyond int32.
func (s *State) AppendBinary(dst []byte) ([]byte, error) {
	if len(s.Data) > MaxDataLen {
		return dst, fmt.Errorf("unit: encode state: %d bytes of data, more than %d", len(s.Data), MaxDataLen)
	}
	if !fitsInt32(s.From) {
		return dst, fmt.Errorf("unit: encode state: from %d beyond int32", s.From)
	}
	dst = slices.Grow(dst, stateHeaderLen+len(s.Data))
	dst = append(dst, stateMagic...)
	dst = append(dst, WireVersion)
	dst = appendWireKey(dst, &s.Key)
	dst = be.AppendUint64(dst, s.Flow)
	dst = be.AppendUint32(dst, uint32(int32(s.From)))
	dst = be.AppendUint64(dst, uint64(s.Sent))
	dst = be.AppendUint64(dst, s.Hid)
	present := byte(0)
	if s.Data != nil {
		present = 1
	}
	dst = append(dst, present)
	dst = be.AppendUint32(dst, uint32(len(s.Data)))
	return append(dst, s.Data...), nil
}

// UnmarshalBinary makes s the state src encodes (see WireVersion for the format). Data is a fresh
// copy (nil when the sender held no state, non-nil when it held an empty one): a State is
// handed on by value and its Data kept until the flow is installed, so reusing the previous
// Data's storage would corrupt a state still in flight.
//
// src is validated in full first: on error s is unchanged and the error wraps ErrMalformed.
func (s *State) UnmarshalBinary(src []byte) error {
	const what = "state"
	if len(src) < stateHeaderLen {
		return malformed(what, "%d bytes, shorter than its %d-byte header", len(src), stateHeaderLen)
	}
	if string(src[:4]) != stateMagic {
		return malformed(what, "bad magic %q", src[:4])
	}
	if src[4] != WireVersion {
		return malformed(what, "unsupported version %d", src[4])
	}
	if v6 := src[5+wireKeyLen-1]; v6 > 1 {
		return malformed(what, "bad key (v6 byte %d)", v6)
	}
	present, l := src[71], be.Uint32(src[72:])
	switch {
	case present > 1:
		return malformed(what, "bad presence byte %d", present)
	case present == 0 && l != 0:
		return malformed(what, "%d bytes of data marked absent", l)
	case l > MaxDataLen:
		return malformed(what, "length %d beyond %d", l, MaxDataLen)
	case int(l) > len(src)-stateHeaderLen:
		return malformed(what, "%d bytes of data, %d left", l, len(src)-stateHeaderLen)
	case int(l) < len(src)-stateHeaderLen:
		return malformed(what, "%d trailing bytes", len(src)-stateHeaderLen-int(l))
	}
	var data []byte
	if present == 1 {
		data = make([]byte, l)
		copy(data, src[stateHeaderLen:])
	}
	*s = State{
		Key:  readWireKey(src[5 : 5+wireKeyLen]),
		Flow: be.Uint64(src[43:]),
		From: int(int32(be.Uint32(src[51:]))),
		Sent: int64(be.Uint64(src[55:])),
		Hid:  be.Uint64(src[63:]),
		Data: data,
	}
	return nil
}

func appendWireKey(b []byte, k *packet.Key) []byte {
	b = append(b, k.Src[:]...)
	b = append(b, k.Dst[:]...)
	b = be.AppendUint16(b, k.SrcPort)
	b = be.AppendUint16(b, k.DstPort)
	v6 := byte(0)
	if k.V6 {
		v6 = 1
	}
	return append(b, k.Proto, v6)
}

// readWireKey decodes a key of wireKeyLen bytes whose v6 byte was checked.
func readWireKey(b []byte) packet.Key {
	var k packet.Key
	copy(k.Src[:], b[0:16])
	copy(k.Dst[:], b[16:32])
	k.SrcPort, k.DstPort = be.Uint16(b[32:]), be.Uint16(b[34:])
	k.Proto, k.V6 = b[36], b[37] == 1
	return k
}
