// Package packet is snf's zero-copy view over a raw Ethernet frame: a parse of the
// L2/L3/L4 headers into offsets and a 5-tuple, done once per packet for a whole chain,
// and in-place header rewrites with incremental checksum updates (RFC 1624).
//
// A Packet owns a reusable buffer: ports fill it with SetData and the runtime reuses the
// same Packet values batch after batch, so the steady state allocates nothing.
package packet

import "encoding/binary"

// Flags describe what Parse found in a frame.
type Flags uint16

const (
	// NonIP: the frame is not IPv4 or IPv6 (ARP, LLDP, a runt shorter than an Ethernet
	// header, …). Such frames pass through a chain untouched; NFs never see them.
	NonIP Flags = 1 << iota
	// Malformed: the EtherType says IP but the IP header, or the L4 header it announces, is
	// cut short or inconsistent (bad version, IHL < 5, header longer than the frame). NFs
	// see such packets (with no flow); each NF states what it does with them.
	Malformed
	IPv4
	IPv6
	// Fragment: an IPv4 fragment with a non-zero offset, or an IPv6 fragment header with a
	// non-zero offset. It carries no L4 header; its key has zero ports.
	Fragment
	// HasL4: the packet has a complete TCP, UDP, ICMP or ICMPv6 header at L4Off.
	HasL4
	// Truncated: the capture holds fewer bytes than the IP total length says (a snaplen cut).
	// Headers are complete; only payload is missing.
	Truncated
	// VLAN: the frame carries one or more 802.1Q / 802.1ad tags.
	VLAN
)

// IP protocol numbers used by the parser and NFs.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// TCP flag bits (the 13th byte of the TCP header).
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// Packet is one frame with its metadata and the result of Parse.
//
// Data is valid until the Packet is refilled by the next SetData (ports reuse Packets
// batch after batch): an NF that keeps bytes beyond its Process call must copy them.
type Packet struct {
	// Data is the frame, starting at the Ethernet header.
	Data []byte
	// Time is the capture (or arrival) timestamp in Unix nanoseconds.
	Time int64
	// WireLen is the frame's length on the wire; it exceeds len(Data) when the capture
	// was cut by a snaplen.
	WireLen int
	// Clock is the chain's logical clock, stamped at the chain's entry: a total order of
	// all packets of a run, and the identity a replay reproduces. 0 means unstamped.
	Clock uint64
	// Flow identifies the packet's flow at the chain's entry (set by the root of the
	// elastic runtime; 0 when unset): it survives header rewrites, so the egress can check
	// each flow's order.
	Flow uint64

	// Parse results.
	Flags      Flags
	EtherType  uint16 // EtherType after any VLAN tags
	Proto      uint8  // IP protocol of the L4 header (after IPv6 extension headers)
	L3Off      uint16 // offset of the IP header
	L4Off      uint16 // offset of the L4 header (valid with HasL4 or Fragment)
	PayloadOff uint16 // offset of the L4 payload (valid with HasL4)
	Key        Key    // the directional 5-tuple (valid unless NonIP or Malformed)

	// Pos is where the frame is in its input, set by a Reader that can read it again
	// (port.Rereader: an index in memory, a capture file's offset), for a packet log to keep
	// instead of the frame; it travels with the packet. (From an input read once, the packet
	// log sets it to where it keeps the frame: replay.Log.Keep.) (After the parse results, which
	// stay in the Packet's first cache lines; beside the buffer fields SetData reads.)
	Pos uint64

	buf   []byte // owned storage behind Data
	arena *Arena // if set, SetData puts frames there (UseArena)
	apos  uint64 // the frame's position in arena, plus 1 (0: not there)
}

// SetData copies frame into the Packet's own buffer (growing it only when a frame is larger
// than any seen before; with UseArena, into new memory of the arena) and parses it. ts is the timestamp in Unix nanoseconds and wireLen
// the original length (0 means len(frame)).
func (p *Packet) SetData(frame []byte, ts int64, wireLen int) {
	// Parse the frame where it is, then copy it: parsing the copy would read back bytes
	// whose stores may still wait for their memory (an arena's, not in cache) — measured
	// +10 ns per packet on the root with a packet log.
	p.Data = frame
	p.Parse()
	if p.arena != nil {
		p.setArena(len(frame))
	} else if cap(p.buf) < len(frame) {
		n := len(frame)
		if n < 2048 {
			n = 2048
		}
		p.buf = make([]byte, n)
	}
	p.Data = p.buf[:len(frame)]
	copy(p.Data, frame)
	p.Time = ts
	if wireLen < len(frame) {
		wireLen = len(frame)
	}
	p.WireLen = wireLen
	p.Clock, p.Flow, p.Pos = 0, 0, 0
}

// setArena gives p memory in its arena for an n-byte frame; when the arena has no room, new
// memory of its own (the last frame's may be kept by the arena's owner).
func (p *Packet) setArena(n int) {
	if n == 0 {
		p.buf, p.apos = nil, 0
		return
	}
	b, pos := p.arena.alloc(n)
	if b == nil {
		p.arena.stats.Overflows++
		b, pos = make([]byte, 0, max(n, 2048)), 0
	} else {
		pos++
	}
	p.buf, p.apos = b, pos
}

// Reserve makes sure p's own buffer holds at least n bytes (so that later SetData calls of
// frames up to n bytes allocate nothing).
func (p *Packet) Reserve(n int) {
	if cap(p.buf) < n {
		p.buf = make([]byte, 0, n)
	}
}

// CopyFrom makes p a copy of src: its frame in p's own buffer, and all metadata and parse
// results (no re-parse).
func (p *Packet) CopyFrom(src *Packet) {
	buf, a := p.buf, p.arena
	if a != nil {
		p.setArena(len(src.Data))
		buf = p.buf
	} else if cap(buf) < len(src.Data) {
		buf = make([]byte, max(len(src.Data), 2048))
	}
	apos := p.apos
	*p = *src
	p.buf, p.arena, p.apos = buf, a, apos
	p.Data = buf[:len(src.Data)]
	copy(p.Data, src.Data)
}

// Borrow makes p a copy of src — metadata and parse results — whose Data is frame, src's
// frame kept elsewhere (a packet log's, replay.Log.Keep), without copying its bytes: p reads
// and rewrites frame in place, in its lender's memory, until Own copies it into p's own
// buffer. The lender keeps that memory for p meanwhile (the packet log also keeps a copy of
// the headers rewrites change, to replay the frame as it was read).
func (p *Packet) Borrow(src *Packet, frame []byte) {
	buf, a, apos := p.buf, p.arena, p.apos
	*p = *src
	p.buf, p.arena, p.apos = buf, a, apos
	p.Data = frame
}

// Own copies a frame p borrows (Borrow, or Data set directly) into p's own buffer, so that
// p may be rewritten and its lender reuse the frame's memory. It does nothing when Data is
// in p's own buffer already.
func (p *Packet) Own() {
	n := len(p.Data)
	if n == 0 || (cap(p.buf) > 0 && &p.buf[:1][0] == &p.Data[0]) {
		return
	}
	if cap(p.buf) < n {
		p.buf = make([]byte, max(n, 2048))
	}
	d := p.buf[:n]
	copy(d, p.Data)
	p.Data = d
}

// SwapBuf gives p the buffer buf (for its next SetData or CopyFrom; what it holds does not
// matter) and returns the buffer holding p's frame, of length len(p.Data): the caller takes
// it over, and p.Data keeps pointing into it (for reading). Nothing is copied. If p.Data is
// not in p's own buffer (Data set directly), SwapBuf changes nothing and returns nil.
func (p *Packet) SwapBuf(buf []byte) []byte {
	if len(p.Data) == 0 || cap(p.buf) < len(p.Data) || &p.buf[:1][0] != &p.Data[0] {
		return nil
	}
	old := p.buf[:len(p.Data)]
	p.buf = buf[:0]
	return old
}

// Is reports whether all of f are set.
func (p *Packet) Is(f Flags) bool { return p.Flags&f == f }

// IP reports whether the packet parsed as a well-formed IPv4 or IPv6 packet.
func (p *Packet) IP() bool { return p.Flags&(NonIP|Malformed) == 0 }

// Payload returns the L4 payload as captured (possibly cut by a snaplen), or nil. It ends
// where the IP packet ends: Ethernet padding after a short packet is not payload.
func (p *Packet) Payload() []byte {
	if p.Flags&HasL4 == 0 || int(p.PayloadOff) > len(p.Data) {
		return nil
	}
	end, l3 := len(p.Data), int(p.L3Off)
	switch {
	case p.Flags&IPv4 != 0 && l3+4 <= end:
		end = min(end, l3+int(binary.BigEndian.Uint16(p.Data[l3+2:])))
	case p.Flags&IPv6 != 0 && l3+6 <= end:
		end = min(end, l3+40+int(binary.BigEndian.Uint16(p.Data[l3+4:])))
	}
	if end < int(p.PayloadOff) { // Data changed since Parse
		end = int(p.PayloadOff)
	}
	return p.Data[p.PayloadOff:end]
}

// TCPFlags returns the TCP flag byte, or 0 for a non-TCP packet.
func (p *Packet) TCPFlags() uint8 {
	if p.Flags&HasL4 == 0 || p.Proto != ProtoTCP {
		return 0
	}
	return p.Data[p.L4Off+13]
}

// ICMPType returns the ICMP or ICMPv6 type, or 0xff for other packets.
func (p *Packet) ICMPType() uint8 {
	if p.Flags&HasL4 == 0 || (p.Proto != ProtoICMP && p.Proto != ProtoICMPv6) {
		return 0xff
	}
	return p.Data[p.L4Off]
}
