package snf

import (
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/store"
)

// Context is an NF's window on the runtime while it handles one packet. It is reused from
// packet to packet: never keep it beyond the call.
type Context struct {
	chain *Chain
	p     *packet.Packet
	nf    int
	now   int64
	clock uint64
	flow  int32 // index in the chain's flow table, -1 for none
	dir   Dir
	draws uint64
	ops   uint32
	end   bool
}

// Now returns the packet's timestamp (Unix ns): the only time an NF may use.
func (c *Context) Now() int64 { return c.now }

// Time returns Now as a time.Time.
func (c *Context) Time() time.Time { return time.Unix(0, c.now) }

// Clock returns the packet's logical clock, stamped at the chain's entry.
func (c *Context) Clock() uint64 { return c.clock }

// Rand returns a pseudo-random number that is a function of the packet's clock, the NF's
// place in the chain and how many numbers it drew before for this packet: a replay draws
// the same numbers.
func (c *Context) Rand() uint64 {
	c.draws++
	return splitmix(c.clock*0x9e3779b97f4a7c15 ^ uint64(c.nf)<<56 ^ c.draws)
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// HasFlow reports whether the packet belongs to a flow (it is a well-formed IP packet).
func (c *Context) HasFlow() bool { return c.flow >= 0 }

// Dir returns the packet's direction in its flow.
func (c *Context) Dir() Dir { return c.dir }

// FlowKey returns the flow's key in its original direction (that of its first packet, as
// it entered the chain). Zero when the packet has no flow.
func (c *Context) FlowKey() packet.Key {
	if c.flow < 0 {
		return packet.Key{}
	}
	return c.chain.table.Flow(c.flow).Key
}

// FlowStart returns the time of the flow's first packet.
func (c *Context) FlowStart() int64 {
	if c.flow < 0 {
		return 0
	}
	return c.chain.table.Flow(c.flow).First
}

// ExpectReply tells the runtime that packets with key k belong to this flow, in the
// direction opposite to the current packet's. A NAT calls it after rewriting a packet, with
// the reverse of the rewritten key, so that replies to the translated address find the flow
// (and every NF's state for it). A flow keeps one such key; a second call replaces the first.
// Calling it on every packet costs little: a key already in place changes nothing, and the
// elastic runtime's root hears of it once per flow in each batch of notes (Chain.noteAlias).
func (c *Context) ExpectReply(k packet.Key) {
	if c.flow >= 0 {
		f := c.chain.table.Flow(c.flow)
		changed := c.chain.table.Alias(f, k, c.dir^1)
		c.chain.noteAlias(f, c.dir, k, false, changed)
	}
}

// ForgetReply undoes ExpectReply for key k (a NAT whose mapping expired).
func (c *Context) ForgetReply(k packet.Key) {
	if c.flow >= 0 {
		f := c.chain.table.Flow(c.flow)
		c.chain.table.Unalias(f, k)
		c.chain.noteAlias(f, c.dir, k, true, true)
	}
}

// EndFlow ends the packet's flow once every NF has handled the packet (for instance after
// a TCP RST): NFs' FlowEnd hooks run and all flow state is freed.
func (c *Context) EndFlow() { c.end = true }

// Emit sends an extra frame out of the chain right after the current packet (whatever the
// current packet's verdict). The frame is copied; it does not pass the NFs after this one.
func (c *Context) Emit(frame []byte) {
	c.chain.emit(c, frame)
}

// tag returns the store tag of the NF's next operation for this packet.
func (c *Context) tag() store.Tag {
	c.ops++
	return store.Tag{Unit: c.chain.unit, Clock: c.clock, Seq: c.ops}
}
