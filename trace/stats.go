package trace

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

// TraceStats summarizes a capture; Stats computes it.
//
// The definitions follow the table of ../shared/traces/README.md, which counts flows as
// bidirectional TCP/UDP 5-tuples:
//
//   - Flows are TCP and UDP flows only: both directions of a 5-tuple (the canonical
//     packet.Key) are one flow, for the whole capture (no idle timeout). Flows of other
//     protocols (ICMP, ICMPv6, GRE, …) are counted apart in OtherFlows. Non-first IP
//     fragments carry no ports: they are counted in Fragments and belong to no flow.
//   - Flowlets are bursts of a TCP/UDP flow's packets: a packet that arrives more than Gap
//     after the flow's previous packet starts a new flowlet; every flow has at least one.
//     Gaps are compared exactly, in nanoseconds. GapTies counts the gaps exactly equal to
//     Gap (kept within a flowlet): a tool that compares timestamps as float64 seconds puts
//     some of these on either side by rounding, which is how the README's table differs by
//     up to GapTies.
//   - SYNs are TCP packets with SYN set and ACK clear (connection attempts, not SYN-ACKs).
//   - SrcAddrs are the distinct source addresses of TCP and UDP packets.
//   - MaxConcurrent is the largest number of TCP/UDP flows active at once, a flow being
//     active from its first to its last packet.
type TraceStats struct {
	Packets uint64
	Bytes   uint64 // on-wire lengths (what the capture says the frames were)
	Stored  uint64 // captured bytes (less than Bytes when a snap length cut frames)

	IP, IPv4, IPv6 uint64 // well-formed IP packets
	NonIP          uint64 // frames that are not IPv4/IPv6 (ARP, LLDP, runts, …)
	Malformed      uint64 // IP EtherType but cut or inconsistent IP/L4 headers
	Fragments      uint64 // non-first IP fragments (no ports, no flow)

	TCPPackets, UDPPackets uint64
	OtherPackets           uint64 // IP packets of other protocols, fragments included

	Flows              int // TCP + UDP flows
	TCPFlows, UDPFlows int
	OtherFlows         int // flows of other IP protocols (address pair, protocol, echo id)

	Gap      time.Duration // the flowlet gap Stats was called with
	Flowlets int           // flowlets of the TCP/UDP flows at Gap
	GapTies  int           // TCP/UDP flow gaps exactly equal to Gap (kept within a flowlet)

	SYNs          uint64
	SrcAddrs      int
	MaxConcurrent int

	First, Last time.Time // the earliest and latest timestamps (UTC; zero for no packets)
	Duration    time.Duration
	// Mean rates over Duration (0 when Duration is 0).
	PacketsPerSec, BitsPerSec float64
}

// acc accumulates what TraceStats summarizes.
type acc struct {
	s           TraceStats
	flows       map[packet.Key]*flowStat
	srcs        map[netip.Addr]struct{}
	first, last int64
	any         bool
}

type flowStat struct {
	first, last int64
	proto       uint8
}

// Stats reads r to its end and returns the capture's statistics with flowlets counted at
// gap (see TraceStats for the definitions). It does not close r. A read error ends it: the
// statistics of the packets before the error are returned with the error.
func Stats(r port.Reader, gap time.Duration) (TraceStats, error) {
	a := &acc{s: TraceStats{Gap: gap}, flows: map[packet.Key]*flowStat{}, srcs: map[netip.Addr]struct{}{}}
	batch := make([]packet.Packet, 64)
	var err error
	for {
		var n int
		n, err = r.Read(batch)
		for i := range batch[:n] {
			a.add(&batch[i])
		}
		if err != nil {
			break
		}
		if n == 0 {
			err = io.ErrNoProgress
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	a.finish()
	return a.s, err
}

func (a *acc) add(p *packet.Packet) {
	s := &a.s
	s.Packets++
	s.Bytes += uint64(max(p.WireLen, len(p.Data)))
	s.Stored += uint64(len(p.Data))
	if !a.any || p.Time < a.first {
		a.first = p.Time
	}
	if !a.any || p.Time > a.last {
		a.last = p.Time
	}
	a.any = true
	switch {
	case p.Flags&packet.NonIP != 0:
		s.NonIP++
		return
	case p.Flags&packet.Malformed != 0:
		s.Malformed++
		return
	}
	s.IP++
	if p.Flags&packet.IPv4 != 0 {
		s.IPv4++
	} else {
		s.IPv6++
	}
	tcpUDP := p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP
	if p.Flags&packet.Fragment != 0 {
		s.Fragments++
		s.OtherPackets++
		return
	}
	switch p.Proto {
	case packet.ProtoTCP:
		s.TCPPackets++
		if f := p.TCPFlags(); f&packet.TCPSyn != 0 && f&packet.TCPAck == 0 {
			s.SYNs++
		}
	case packet.ProtoUDP:
		s.UDPPackets++
	default:
		s.OtherPackets++
	}
	if tcpUDP {
		a.srcs[p.Key.SrcAddr()] = struct{}{}
	}
	k, _ := p.Key.Canonical()
	f := a.flows[k]
	if f == nil {
		a.flows[k] = &flowStat{first: p.Time, last: p.Time, proto: p.Proto}
		if tcpUDP {
			s.Flowlets++
		}
		return
	}
	if tcpUDP {
		switch d := p.Time - f.last; {
		case d > int64(s.Gap):
			s.Flowlets++
		case d == int64(s.Gap):
			s.GapTies++
		}
	}
	f.last = max(f.last, p.Time)
}

func (a *acc) finish() {
	s := &a.s
	s.SrcAddrs = len(a.srcs)
	type event struct {
		t     int64
		delta int
	}
	events := make([]event, 0, 2*len(a.flows))
	for _, f := range a.flows {
		switch f.proto {
		case packet.ProtoTCP:
			s.TCPFlows++
		case packet.ProtoUDP:
			s.UDPFlows++
		default:
			s.OtherFlows++
			continue
		}
		events = append(events, event{f.first, 1}, event{f.last, -1})
	}
	s.Flows = s.TCPFlows + s.UDPFlows
	// A flow that starts when another ends overlaps it (both are active at that instant).
	slices.SortFunc(events, func(x, y event) int {
		if x.t != y.t {
			return cmp.Compare(x.t, y.t)
		}
		return y.delta - x.delta
	})
	cur := 0
	for _, e := range events {
		cur += e.delta
		s.MaxConcurrent = max(s.MaxConcurrent, cur)
	}
	if a.any {
		s.First, s.Last = time.Unix(0, a.first).UTC(), time.Unix(0, a.last).UTC()
		s.Duration = time.Duration(a.last - a.first)
	}
	if s.Duration > 0 {
		sec := s.Duration.Seconds()
		s.PacketsPerSec = float64(s.Packets) / sec
		s.BitsPerSec = float64(s.Bytes) * 8 / sec
	}
}

// Format writes the statistics as aligned "name: value" lines.
func (s TraceStats) Format(w io.Writer) error {
	first, last := "-", "-"
	if s.Packets > 0 {
		first, last = s.First.Format(time.RFC3339Nano), s.Last.Format(time.RFC3339Nano)
	}
	lines := []struct{ k, v string }{
		{"packets", fmt.Sprintf("%d (IP %d: IPv4 %d, IPv6 %d; non-IP %d; malformed %d; fragments %d)",
			s.Packets, s.IP, s.IPv4, s.IPv6, s.NonIP, s.Malformed, s.Fragments)},
		{"by protocol", fmt.Sprintf("TCP %d, UDP %d, other %d packets", s.TCPPackets, s.UDPPackets, s.OtherPackets)},
		{"bytes", fmt.Sprintf("%d on the wire, %d captured", s.Bytes, s.Stored)},
		{"flows", fmt.Sprintf("%d TCP/UDP (TCP %d, UDP %d), %d other", s.Flows, s.TCPFlows, s.UDPFlows, s.OtherFlows)},
		{"flowlets", fmt.Sprintf("%d at gap %s (%d gaps exactly %s)", s.Flowlets, s.Gap, s.GapTies, s.Gap)},
		{"SYNs", fmt.Sprint(s.SYNs)},
		{"source addresses", fmt.Sprint(s.SrcAddrs)},
		{"max concurrent flows", fmt.Sprint(s.MaxConcurrent)},
		{"first", first},
		{"last", last},
		{"duration", s.Duration.String()},
		{"mean rate", fmt.Sprintf("%.1f packets/s, %s", s.PacketsPerSec, bitRate(s.BitsPerSec))},
	}
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%-21s %s\n", l.k+":", l.v); err != nil {
			return err
		}
	}
	return nil
}

func bitRate(b float64) string {
	switch {
	case b >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", b/1e9)
	case b >= 1e6:
		return fmt.Sprintf("%.2f Mbit/s", b/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.2f kbit/s", b/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", b)
}
