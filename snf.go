// Package snf is the API a network-function author writes against, and the fused chain
// that runs NFs on packet batches.
//
// An NF is a type with a per-packet handler:
//
//	Process(ctx *snf.Context, p *packet.Packet) snf.Verdict
//
// The handler reads and rewrites the packet in place — through the packet's rewrite methods
// (SetSrcAddr, SetDstPort, …), not by writing p.Data, unless it implements FrameWriter: with
// recovery on, the frame is the packet log's, which keeps a copy of only the headers those
// methods change — returns Forward or Drop, and may Emit extra packets. Everything it may
// ask that is not in the packet comes through the Context and is a function of the packet,
// so a replay of the same packets in the same order makes the same decisions:
//
//   - time: ctx.Now() is the packet's timestamp, never the wall clock;
//   - randomness: ctx.Rand() is derived from the packet's logical clock;
//   - flow state: a typed per-flow value (FlowState) that the runtime keeps, serializes
//     when a flow moves to another unit or is checkpointed, and frees when the flow ends;
//   - shared state: handles declared with an access pattern — Table (read-mostly),
//     Counters (write-mostly), Pool (read-write), Scoped (owned per scope key) — whose
//     operations are tagged with the packet's clock so a store can apply them once;
//   - metrics: counters declared at construction (Env.Metric).
//
// An NF is built from a config decoded strictly (an unknown field is an error), validated
// (a Validate() error method on the config), and may implement io.Closer. It registers
// by name in an init function:
//
//	package count
//
//	import (
//		"encoding/binary"
//		"errors"
//
//		"github.com/snf-dev/snf"
//		"github.com/snf-dev/snf/packet"
//	)
//
//	// Config is decoded strictly from the chain file.
//	type Config struct {
//		MaxPackets uint64 `json:"max_packets" doc:"drop a flow's packets after this many"`
//	}
//
//	func (c *Config) Validate() error {
//		if c.MaxPackets == 0 {
//			return errors.New("max_packets: must be > 0")
//		}
//		return nil
//	}
//
//	// flowCount is the per-flow state; it serializes itself for flow moves.
//	type flowCount struct{ n uint64 }
//
//	func (f *flowCount) AppendBinary(b []byte) ([]byte, error) { return binary.BigEndian.AppendUint64(b, f.n), nil }
//	func (f *flowCount) UnmarshalBinary(b []byte) error {
//		if len(b) != 8 {
//			return errors.New("count: bad state")
//		}
//		f.n = binary.BigEndian.Uint64(b)
//		return nil
//	}
//
//	type Count struct {
//		cfg     Config
//		flows   *snf.FlowState[flowCount, *flowCount]
//		dropped *snf.Metric
//	}
//
//	func init() {
//		snf.Register("count", "drops each flow's packets beyond a limit",
//			func() *Config { return &Config{MaxPackets: 1000} },
//			func(env *snf.Env, cfg *Config) (snf.NF, error) {
//				return &Count{
//					cfg:     *cfg,
//					flows:   snf.NewFlowState[flowCount](env, "count"),
//					dropped: env.Metric("dropped", "packets over the limit"),
//				}, nil
//			})
//	}
//
//	func (c *Count) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
//		st := c.flows.GetOrCreate(ctx)
//		if st == nil { // not an IP flow (a malformed packet): let it pass
//			return snf.Forward
//		}
//		st.n++
//		if st.n > c.cfg.MaxPackets {
//			c.dropped.Inc()
//			return snf.Drop
//		}
//		return snf.Forward
//	}
//
// The package's example test (example_test.go) is this NF, run.
package snf

import (
	"github.com/snf-dev/snf/flowtable"
	"github.com/snf-dev/snf/packet"
)

// NF is a network-function instance. One instance serves one unit: Process is never called
// concurrently on the same instance.
type NF interface {
	// Process handles one packet: it may rewrite p in place through p's rewrite methods
	// (writing p.Data itself only if the NF is a FrameWriter: the frame may be the packet
	// log's, lent), emit packets through ctx, and returns whether p goes on. It must not
	// change p's Time, WireLen, Clock, Flow or Pos, nor (unless a FrameWriter) the frame's
	// length: the packet log takes them from the batch once the chain processed it, and a
	// replay reads the frame again by them. p and ctx are valid only during the call.
	Process(ctx *Context, p *packet.Packet) Verdict
}

// FlowEnder is implemented by NFs that release resources when a flow ends (is expired,
// evicted, or ended by an NF): FlowEnd runs before the flow's state is freed, with
// ctx.Clock() and ctx.Now() those of the packet whose arrival ended it. Frames it emits leave
// with that packet; when a flow ends outside any packet (Chain.Expire, a flow arriving from
// another unit that evicts one) they are dropped and counted in ChainStats.EmitLost.
type FlowEnder interface {
	FlowEnd(ctx *Context)
}

// FlowTimeouter is implemented by NFs that need flows kept at least this long when idle
// (per protocol class); the chain's flow table uses the maximum over its NFs.
type FlowTimeouter interface {
	FlowTimeouts() flowtable.Timeouts
}

// FrameWriter is implemented by NFs that write a packet's bytes themselves (p.Data, which
// they may also reslice) rather than only through its rewrite methods, WritesFrames
// returning true: a chain with one gets copies of the frames instead of the packet log's,
// lent (the log keeps a copy of only the headers the rewrite methods change), and its units
// give the log each batch's metadata before the chain runs, not after.
type FrameWriter interface {
	WritesFrames() bool
}

// HeaderReader is implemented by NFs whose every decision, state change, alert and emitted
// packet depends only on a packet's headers — the bytes before its L4 payload
// (packet.Packet.PayloadOff) of a packet parsed to its L4 header — and on its Time,
// WireLen, Clock and frame length, never on its payload's bytes, HeadersOnly returning
// true. With recovery on, from an input that cannot read a frame again (a pipe),
// the packet log of a chain of such NFs keeps each frame only until the egress wrote its
// batch, and then only its headers: a replay gives the chain the payloads of those
// packets, whose outputs the egress already wrote (and drops), zeroed — the same decisions,
// as the NFs promise. (It saves the log the memory of a checkpoint interval of frames,
// most of its cost: BENCHMARKS.md.) An NF that does not say so gets the frames as read.
type HeaderReader interface {
	HeadersOnly() bool
}

// Verdict is what an NF decides for a packet.
type Verdict uint8

const (
	// Forward passes the packet to the next NF, or out of the chain after the last one.
	Forward Verdict = iota
	// Drop discards the packet; later NFs do not see it.
	Drop
)

// Dir is a packet's direction within its flow: Orig is the direction of the flow's first
// packet, Reply the other.
type Dir = flowtable.Dir

const (
	Orig  = flowtable.Orig
	Reply = flowtable.Reply
)
