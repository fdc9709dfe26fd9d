package trace

import (
	"encoding/binary"
	"math"

	"github.com/snf-dev/snf/packet"
)

// Reading generated frames again (port.Rereader, port.Releaser).
//
// A packet log that cannot read a frame again from its input keeps a copy of it for a
// checkpoint interval: megabytes of frames that the root writes into memory not in its
// cache. A generator can build any frame it delivered again from a few fields of its flow
// at the time: a recipe, 28 bytes against the 700 of an average frame. With Rereadable set,
// the Generator (and the Workload) keeps each delivered frame's recipe, from its first Read
// on, until the reader releases it (Release); Reread rebuilds the frame from it with the
// same code that built it first.

// A recipe is what builds one frame again: the fields of its flow the builder read, before
// it advanced them.
type recipe struct {
	ip    [2][4]byte
	a, b  uint32    // TCP: seq[s], seq[1-s]; UDP: seq[s]; DNS: the answer, dnsID | name<<16; ICMP: echoT
	port  [2]uint16 // ICMP: the echo identifier, the echo sequence number
	ipid  uint16    // ipid[s]
	n     uint16    // payload bytes (TCP, UDP, DNS)
	ttl   uint8     // ttl[s]
	op    uint8     // opTCP, ...
	s     uint8     // the side that sends
	flags uint8     // TCP flags
}

// What a recipe builds (recipe.op).
const (
	opTCP = iota + 1
	opUDP // a datagram whose payload follows the flow's stream offset
	opDNS
	opICMP
)

// note records, in g.rec, the recipe of the frame a builder is about to build from side s of
// f (every builder calls it first).
func (g *Generator) note(op uint8, f *flow, s int, flags uint8, n int) {
	r := &g.rec
	r.ip, r.port, r.ipid, r.ttl = f.ip, f.port, f.ipid[s], f.ttl[s]
	r.op, r.s, r.flags, r.n = op, uint8(s), flags, uint16(n)
	switch op {
	case opTCP:
		r.a, r.b = f.seq[s], f.seq[1-s]
	case opUDP:
		r.a, r.b = f.seq[s], 0
	case opDNS:
		r.a, r.b = binary.BigEndian.Uint32(f.answer[:]), uint32(f.dnsID)|uint32(f.name)<<16
	case opICMP:
		r.a, r.b = uint32(f.echoT), uint32(uint64(f.echoT)>>32)
		r.port[1] = uint16(f.seq[0])
	}
}

// build builds the frame of recipe r again, in g.frame (a Generator's or a Workload's
// builder: the same code as the first time, on a flow made of r's fields).
func (g *Generator) build(r *recipe) []byte {
	var f flow
	s := int(r.s)
	f.ip, f.port, f.ipid[s], f.ttl[s] = r.ip, r.port, r.ipid, r.ttl
	switch r.op {
	case opTCP:
		f.seq[s], f.seq[1-s] = r.a, r.b
		return g.tcp(&f, s, r.flags, int(r.n))
	case opUDP:
		f.seq[s] = r.a
		return g.udpStream(&f, s, int(r.n))
	case opDNS:
		binary.BigEndian.PutUint32(f.answer[:], r.a)
		f.dnsID, f.name = uint16(r.b), uint8(r.b>>16)
		return g.dns(&f, s, int(r.n))
	}
	f.echoT, f.seq[0] = int64(uint64(r.a)|uint64(r.b)<<32), uint32(r.port[1])
	return g.icmp(&f, s)
}

// recipes keeps the recipes of the frames delivered from position head to tail (a ring).
type recipes struct {
	on         bool // keeping (Rereadable, until a Release of every position)
	ring       []recipe
	head, tail uint64
}

// add keeps the recipe of the frame at position tail.
func (k *recipes) add(r *recipe) {
	if k.tail-k.head == uint64(len(k.ring)) {
		k.grow()
	}
	k.ring[k.tail&uint64(len(k.ring)-1)] = *r
	k.tail++
}

func (k *recipes) grow() {
	ring := make([]recipe, max(1024, 2*len(k.ring)))
	for p := k.head; p < k.tail; p++ {
		ring[p&uint64(len(ring)-1)] = k.ring[p&uint64(len(k.ring)-1)]
	}
	k.ring = ring
}

// release forgets the recipes below pos; math.MaxUint64 forgets them all and stops keeping.
func (k *recipes) release(pos uint64) {
	if pos == math.MaxUint64 {
		k.on, k.ring = false, nil
	}
	k.head = max(k.head, min(pos, k.tail))
}

// deliver puts frame, of time t, the last one built, in p: its Pos numbers the frames
// delivered (a Workload's builder delivers for it), and with Rereadable its recipe is kept.
func (g *Generator) deliver(p *packet.Packet, frame []byte, t int64) {
	p.SetData(frame, t, 0)
	p.Pos = g.pos
	g.pos++
	if g.keep.on {
		g.keep.add(&g.rec)
	}
}

func (k *recipes) kept() int { return int(k.tail - k.head) }
