// Package trace generates synthetic traffic: a small, deterministic built-in source of
// realistic-looking packets for runs that have no capture to read (Generator, below), and a
// realistic link workload (Workload, in workload.go: flow sizes from published distributions,
// a load profile over time, Poisson flow arrivals, ON/OFF flowlets, scans). It also computes
// capture statistics (Stats) and merges captures (Compose).
//
// The rest of this comment describes Generator.
//
// A Generator is a port.Reader of Ethernet/IPv4 frames. It keeps GenConfig.Flows flows
// alive at once, split about 70/25/5 between TCP, UDP and ICMP, and about 70/25/5 of the
// packets are TCP/UDP/ICMP too. Every flow is opened by an inside host (an address of
// GenConfig.Inside, RFC 1918 by default, so that a NAT translates it) towards a server of
// GenConfig.Outside (Zipf-distributed popularity); replies come back from the server to the
// inside address.
//
//   - TCP (to 443, 80, 22 or 8080): SYN with options, SYN-ACK, ACK, a request, then data
//     segments mostly from the server (full 1460-byte segments or short ones), each side
//     ACKing every second segment in pure 54-byte ACKs, then FIN/ACK from one side, FIN/ACK
//     from the other and a last ACK. Sequence and acknowledgement numbers follow the bytes.
//   - UDP: DNS A queries to port 53 answered with one record, and longer QUIC-like flows to
//     port 443 with large and small datagrams.
//   - ICMP: echo requests and their replies (Linux ping payloads).
//
// Flow lengths are heavy-tailed (Lomax): most flows are short, a few are very long. When a
// flow ends its slot starts a new one, so the number of concurrent flows stays about Flows.
// Timestamps start at GenConfig.Start and increase at GenConfig.Rate packets per second with
// exponential inter-arrival times. Every header is valid: lengths, the IPv4 header checksum
// and the TCP, UDP and ICMP checksums are computed.
//
// The Generator is deterministic: all randomness comes from a PCG generator seeded with
// GenConfig.Seed, so the same configuration always yields the same frames and timestamps,
// whatever the batch sizes passed to Read. It does not allocate per packet.
package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

var (
	_ port.Releaser  = (*Generator)(nil)
	_ port.LinkTyper = (*Generator)(nil)
)

// GenConfig configures a Generator. NewGenerator applies no defaults: start from
// DefaultGenConfig and change what you need.
type GenConfig struct {
	// Seed seeds the random generator: the same GenConfig gives the same bytes.
	Seed uint64
	// Packets is the number of frames to generate before io.EOF.
	Packets int
	// Flows is the number of concurrent flows.
	Flows int
	// Hosts is the number of inside hosts (the first Hosts addresses of Inside).
	Hosts int
	// Inside is the IPv4 prefix of the hosts that open flows (default 10.0.0.0/16).
	Inside netip.Prefix
	// Outside is the IPv4 prefix of the servers (default 198.18.0.0/15, RFC 2544).
	Outside netip.Prefix
	// Rate is the mean number of packets per second of simulated time (default 100000).
	// Timestamps have nanosecond resolution, so rates above 1e9 are capped to 1e9.
	Rate float64
	// Start is the timestamp of the first packet (default 2026-01-01T00:00:00Z).
	Start time.Time
	// Rereadable makes the Generator a port.Releaser: it keeps what builds each frame it
	// delivered again (28 bytes a frame) until its reader releases it, so that a packet log
	// keeps the frames' positions (Packet.Pos) instead of copies. Its reader must call
	// Release as it goes, else the memory grows with every frame: the engines do (the live
	// one as its packet log trims; the others, and port.Copied, release every frame at once).
	Rereadable bool
}

// DefaultGenConfig returns the default configuration: seed 1, 100000 packets, 1000 flows
// from 200 hosts of 10.0.0.0/16 to 198.18.0.0/15, 100000 packets/s from 2026-01-01 UTC.
func DefaultGenConfig() GenConfig {
	return GenConfig{
		Seed: 1, Packets: 100000, Flows: 1000, Hosts: 200,
		Inside:  netip.MustParsePrefix("10.0.0.0/16"),
		Outside: netip.MustParsePrefix("198.18.0.0/15"),
		Rate:    100000,
		Start:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// Limits keep a configuration's memory bounded.
const (
	MaxFlows = 1 << 22
	MaxHosts = 1 << 24
)

func configErr(format string, args ...any) error {
	return fmt.Errorf("trace: bad generator config: "+format, args...)
}

// Validate reports the first problem of c as a one-line error, or nil.
func (c GenConfig) Validate() error {
	switch {
	case c.Packets < 0:
		return configErr("Packets is %d, want 0 or more", c.Packets)
	case c.Flows < 1 || c.Flows > MaxFlows:
		return configErr("Flows is %d, want 1 to %d", c.Flows, MaxFlows)
	case c.Hosts < 1 || c.Hosts > MaxHosts:
		return configErr("Hosts is %d, want 1 to %d", c.Hosts, MaxHosts)
	case !(c.Rate > 0) || math.IsInf(c.Rate, 1):
		return configErr("Rate is %g, want a finite number of packets per second > 0", c.Rate)
	case c.Start.Year() < 1678 || c.Start.Year() > 2261:
		return configErr("Start %s is outside the range of Unix nanoseconds (years 1678 to 2261)", c.Start.Format(time.RFC3339))
	}
	for _, p := range []struct {
		name string
		p    netip.Prefix
	}{{"Inside", c.Inside}, {"Outside", c.Outside}} {
		if !p.p.IsValid() || !p.p.Addr().Is4() {
			return configErr("%s prefix %s is not an IPv4 prefix", p.name, p.p)
		}
	}
	if n := hostsIn(c.Inside); n < uint64(c.Hosts) {
		return configErr("Inside prefix %s has room for %d hosts, want %d (Hosts)", c.Inside, n, c.Hosts)
	}
	if hostsIn(c.Outside) < 1 {
		return configErr("Outside prefix %s has no room for servers, want /30 or shorter", c.Outside)
	}
	if c.Inside.Overlaps(c.Outside) {
		return configErr("Inside prefix %s and Outside prefix %s overlap", c.Inside, c.Outside)
	}
	return nil
}

// hostsIn returns the number of addresses of p, minus the network and broadcast addresses.
func hostsIn(p netip.Prefix) uint64 {
	n := uint64(1) << (32 - p.Bits())
	if n < 4 {
		return 0
	}
	return n - 2
}

// ErrClosed is returned by a Read after Close.
var ErrClosed = errors.New("trace: generator is closed")

type kind uint8

const (
	kindNone kind = iota // an empty slot
	kindTCP
	kindDNS
	kindUDP // a longer QUIC-like UDP flow
	kindICMP
)

// Flows live in one slot pool per protocol, sized by the share of packets of that protocol,
// so that every flow gets packets at the same mean rate.
const (
	poolTCP = iota
	poolUDP
	poolICMP
	numPools
)

var poolShare = [numPools]float64{0.70, 0.25, 0.05}

// Side 0 (A) is the inside host that opened the flow, side 1 (B) the outside server.
type flow struct {
	kind   kind
	step   uint8
	closer uint8      // TCP: the side that sends the first FIN
	down   float32    // TCP, UDP: the probability that a data packet comes from B
	left   int32      // TCP, UDP: data-phase packets left; ICMP: echo requests left
	host   uint32     // index of the inside host
	ip     [2][4]byte // addresses of A and B
	port   [2]uint16  // ports of A and B; ICMP: port[0] is the echo identifier
	seq    [2]uint32  // TCP: next sequence number; UDP: stream offset; ICMP: seq[0] echo seq
	ipid   [2]uint16
	ttl    [2]uint8
	owe    [2]uint8 // TCP: segments side i received and has not ACKed yet
	dnsID  uint16
	name   uint8
	answer [4]byte // DNS: the A record
	echoT  int64   // ICMP: time of the pending request
}

// Generator is a port.Reader of synthetic traffic; see the package doc. It is not safe for
// concurrent use.
type Generator struct {
	rng      *rand.Rand
	servers  *rand.Zipf // server popularity
	hosts    *rand.Zipf // host activity (nil for a single host)
	pools    [numPools][]flow
	cum      [numPools]float64 // cumulative packet shares of the non-empty pools
	last     int               // the last non-empty pool
	nextPort []uint16          // per host: next ephemeral port
	nextEcho []uint16          // per host: next echo identifier
	inBase   uint32
	outBase  uint32
	payload  []byte // random payload bytes; the last maxSeg repeat the first ones
	names    [][]byte
	meanGap  float64 // ns
	now      int64
	left     int
	closed   bool
	pos      uint64  // the next frame's position (Packet.Pos): frames delivered
	rec      recipe  // the last frame built's recipe
	keep     recipes // with Rereadable: the recipes of the frames not released
	frame    [maxFrame]byte
}

const (
	ethLen     = 14
	ipLen      = 20
	l4Off      = ethLen + ipLen
	mss        = 1460
	maxSeg     = mss
	maxFrame   = l4Off + 20 + maxSeg
	payloadLen = 1 << 16
	portLo     = 32768 // Linux ephemeral port range
	portHi     = 60999
)

var (
	gatewayMAC = [6]byte{0x02, 0x53, 0x4e, 0x46, 0x00, 0x01}
	synOptions = []byte{2, 4, mss >> 8, mss & 0xff, 1, 3, 3, 7, 1, 1, 4, 2} // MSS, NOP, WS 7, NOP, NOP, SACK-permitted
	dnsLabels  = []string{"www", "api", "cdn", "mail", "img", "static", "login", "news"}
	dnsDomains = []string{"example.com", "example.net", "example.org"}
)

// NewGenerator returns a Generator for cfg, or the one-line error of cfg.Validate.
func NewGenerator(cfg GenConfig) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Generator{
		rng:      rand.New(rand.NewPCG(cfg.Seed, 0x736e662d74726163)),
		nextPort: make([]uint16, cfg.Hosts),
		nextEcho: make([]uint16, cfg.Hosts),
		inBase:   binary.BigEndian.Uint32(cfg.Inside.Masked().Addr().AsSlice()),
		outBase:  binary.BigEndian.Uint32(cfg.Outside.Masked().Addr().AsSlice()),
		payload:  make([]byte, payloadLen+maxSeg),
		meanGap:  1e9 / cfg.Rate,
		now:      cfg.Start.UnixNano(),
		left:     cfg.Packets,
		keep:     recipes{on: cfg.Rereadable},
	}
	g.servers = rand.NewZipf(g.rng, 1.2, 1, hostsIn(cfg.Outside)-1)
	if cfg.Hosts > 1 {
		g.hosts = rand.NewZipf(g.rng, 1.1, 20, uint64(cfg.Hosts-1))
	}
	for i := range g.nextPort {
		g.nextPort[i] = uint16(portLo + g.rng.IntN(portHi-portLo+1))
		g.nextEcho[i] = uint16(g.rng.Uint32())
	}
	for i := 0; i < payloadLen; i += 8 {
		binary.LittleEndian.PutUint64(g.payload[i:], g.rng.Uint64())
	}
	copy(g.payload[payloadLen:], g.payload)
	for _, d := range dnsDomains {
		for _, l := range dnsLabels {
			g.names = append(g.names, dnsName(l+"."+d))
		}
	}
	// Split the flows between the pools by largest remainder.
	sizes, assigned := [numPools]int{}, 0
	for p, s := range poolShare {
		sizes[p] = int(float64(cfg.Flows) * s)
		assigned += sizes[p]
	}
	for ; assigned < cfg.Flows; assigned++ {
		best, bestFrac := 0, -1.0
		for p, s := range poolShare {
			if frac := float64(cfg.Flows)*s - float64(sizes[p]); frac > bestFrac {
				best, bestFrac = p, frac
			}
		}
		sizes[best]++
	}
	total, sum := 0.0, 0.0
	for p := range sizes {
		g.pools[p] = make([]flow, sizes[p])
		if sizes[p] > 0 {
			total += poolShare[p]
		}
	}
	for p := range sizes {
		if sizes[p] > 0 {
			sum += poolShare[p]
			g.last = p
		}
		g.cum[p] = sum / total
	}
	return g, nil
}

// dnsName encodes a dotted name in DNS wire format.
func dnsName(s string) []byte {
	var b []byte
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '.' {
			i++
		}
		b = append(b, byte(i))
		b = append(b, s[:i]...)
		s = s[min(i+1, len(s)):]
	}
	return append(b, 0)
}

// LinkType returns LINKTYPE_ETHERNET.
func (g *Generator) LinkType() uint32 { return 1 }

// Close ends the Generator: later Reads return ErrClosed.
func (g *Generator) Close() error {
	g.closed = true
	return nil
}

// Rereadable reports GenConfig.Rereadable (port.Rereader), until a Release of every frame.
func (g *Generator) Rereadable() bool { return g.keep.on }

// Reread appends frame pos (a packet's Pos: frames are numbered from 0), of n bytes, to
// dst, built again from its recipe (port.Rereader). It fails when the Generator is not
// Rereadable, the frame was released or not delivered yet, or it is not n bytes.
func (g *Generator) Reread(dst []byte, pos uint64, n int) ([]byte, error) {
	k := &g.keep
	switch {
	case !k.on:
		return dst, fmt.Errorf("trace: frame %d cannot be read again: the generator keeps no recipes (Rereadable not set, or every frame released)", pos)
	case pos < k.head:
		return dst, fmt.Errorf("trace: frame %d cannot be read again: released (the generator keeps frames %d to %d)", pos, k.head, k.tail-1)
	case pos >= k.tail:
		return dst, fmt.Errorf("trace: frame %d cannot be read again: not generated yet (%d so far)", pos, k.tail)
	}
	b := g.build(&k.ring[pos&uint64(len(k.ring)-1)])
	if len(b) != n {
		return dst, fmt.Errorf("trace: frame %d is %d bytes, not %d", pos, len(b), n)
	}
	return append(dst, b...), nil
}

// Release forgets the recipes of the frames before pos (port.Releaser): they cannot be read
// again. Release(math.MaxUint64) forgets every one and stops keeping them.
func (g *Generator) Release(pos uint64) { g.keep.release(pos) }

// Kept returns how many frames the Generator can read again now (Rereadable: 28 bytes of
// memory each).
func (g *Generator) Kept() int { return g.keep.kept() }

// Read fills pkts with the next frames and returns how many it filled: n > 0 and a nil
// error until GenConfig.Packets frames have been generated, then 0 and io.EOF. Their Pos
// number them from 0.
func (g *Generator) Read(pkts []packet.Packet) (int, error) {
	if g.closed {
		return 0, ErrClosed
	}
	if g.left == 0 {
		return 0, io.EOF
	}
	n := min(len(pkts), g.left)
	for i := range pkts[:n] {
		g.deliver(&pkts[i], g.next(), g.now)
		g.now += max(1, int64(g.rng.ExpFloat64()*g.meanGap+0.5))
	}
	g.left -= n
	return n, nil
}

// next picks a flow, starting one in an empty slot, and builds its next frame.
func (g *Generator) next() []byte {
	u, p := g.rng.Float64(), 0
	for len(g.pools[p]) == 0 || (u >= g.cum[p] && p < g.last) {
		p++
	}
	f := &g.pools[p][g.rng.IntN(len(g.pools[p]))]
	if f.kind == kindNone {
		g.start(f, p)
	}
	switch f.kind {
	case kindTCP:
		return g.nextTCP(f)
	case kindDNS:
		return g.nextDNS(f)
	case kindUDP:
		return g.nextUDP(f)
	}
	return g.nextICMP(f)
}

// lomax draws a heavy-tailed (Lomax, Pareto type II) integer in [0, limit].
func (g *Generator) lomax(scale, alpha float64, limit int32) int32 {
	x := scale * (math.Pow(1-g.rng.Float64(), -1/alpha) - 1)
	if x >= float64(limit) {
		return limit
	}
	return int32(x)
}

func (g *Generator) server() [4]byte {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], g.outBase+1+uint32(g.servers.Uint64()))
	return a
}

// start opens a new flow of pool p in slot f.
func (g *Generator) start(f *flow, p int) {
	r := g.rng
	*f = flow{closer: uint8(r.IntN(2)), down: 0.3}
	if g.hosts != nil {
		f.host = uint32(g.hosts.Uint64())
	}
	binary.BigEndian.PutUint32(f.ip[0][:], g.inBase+1+f.host)
	f.ip[1] = g.server()
	f.ipid = [2]uint16{uint16(r.Uint32()), uint16(r.Uint32())}
	f.ttl = [2]uint8{64, [3]uint8{64, 128, 255}[r.IntN(3)] - uint8(4+r.IntN(20))}
	f.seq = [2]uint32{r.Uint32(), r.Uint32()}
	if r.IntN(10) < 7 {
		f.down = 0.85
	}
	switch p {
	case poolTCP:
		f.kind = kindTCP
		f.port[1] = [...]uint16{443, 443, 443, 443, 443, 443, 443, 80, 80, 22, 8080}[r.IntN(11)]
		f.left = 1 + g.lomax(6, 1.2, 100000) // data-phase packets after the request
	case poolUDP:
		f.kind, f.port[1] = kindUDP, 443
		f.left = 1 + g.lomax(10, 1.3, 100000)
		if r.IntN(10) < 7 {
			f.kind, f.port[1] = kindDNS, 53
			f.dnsID, f.name, f.answer = uint16(r.Uint32()), uint8(r.IntN(len(g.names))), g.server()
			binary.BigEndian.PutUint32(f.ip[1][:], g.outBase+1) // the resolver
		}
	default:
		f.kind = kindICMP
		f.port[0], f.seq[0] = g.nextEcho[f.host], 0
		g.nextEcho[f.host]++
		f.left = 1 + g.lomax(2, 1.5, 1000)
		return
	}
	f.port[0] = g.nextPort[f.host]
	if g.nextPort[f.host]++; g.nextPort[f.host] > portHi {
		g.nextPort[f.host] = portLo
	}
}

// ipv4 writes the Ethernet and IPv4 headers of a packet from side s of f with an L4 part of
// l4len bytes and returns the frame.
func (g *Generator) ipv4(f *flow, s int, proto uint8, l4len int) []byte {
	b := g.frame[:l4Off+l4len]
	host := [6]byte{0x02, 0x00}
	copy(host[2:], f.ip[0][:])
	if s == 0 {
		copy(b[0:6], gatewayMAC[:])
		copy(b[6:12], host[:])
	} else {
		copy(b[0:6], host[:])
		copy(b[6:12], gatewayMAC[:])
	}
	b[12], b[13] = 0x08, 0x00
	ip := b[ethLen:l4Off]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+l4len))
	binary.BigEndian.PutUint16(ip[4:], f.ipid[s])
	f.ipid[s]++
	ip[6], ip[7], ip[8], ip[9], ip[10], ip[11] = 0x40, 0, f.ttl[s], proto, 0, 0 // DF
	copy(ip[12:16], f.ip[s][:])
	copy(ip[16:20], f.ip[1-s][:])
	binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip, 0))
	return b
}

// l4Sum stores the L4 checksum of frame b at offset off of its L4 header. It sums eight
// bytes at a time (32-bit words fold to the same one's complement sum as 16-bit ones) and
// lets packet.Checksum finish the tail.
func l4Sum(b []byte, off int) {
	ip, l4 := b[ethLen:l4Off], b[l4Off:]
	var s uint64
	if ip[9] != packet.ProtoICMP { // the pseudo-header
		s = uint64(binary.BigEndian.Uint32(ip[12:])) + uint64(binary.BigEndian.Uint32(ip[16:])) +
			uint64(ip[9]) + uint64(len(l4))
	}
	t := l4
	for ; len(t) >= 8; t = t[8:] {
		v := binary.BigEndian.Uint64(t)
		s += v>>32 + v&0xffffffff
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	c := packet.Checksum(t, uint32(s))
	if c == 0 && ip[9] == packet.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

// tcp builds a TCP segment from side s carrying n payload bytes.
func (g *Generator) tcp(f *flow, s int, flags uint8, n int) []byte {
	g.note(opTCP, f, s, flags, n)
	hl := 20
	if flags&packet.TCPSyn != 0 {
		hl += len(synOptions)
	}
	b := g.ipv4(f, s, packet.ProtoTCP, hl+n)
	t := b[l4Off:]
	binary.BigEndian.PutUint16(t[0:], f.port[s])
	binary.BigEndian.PutUint16(t[2:], f.port[1-s])
	binary.BigEndian.PutUint32(t[4:], f.seq[s])
	binary.BigEndian.PutUint32(t[8:], 0)
	if flags&packet.TCPAck != 0 {
		binary.BigEndian.PutUint32(t[8:], f.seq[1-s]) // everything sent so far has arrived
	}
	t[12], t[13] = byte(hl/4)<<4, flags
	binary.BigEndian.PutUint16(t[14:], [2]uint16{64240, 65160}[s])
	t[16], t[17], t[18], t[19] = 0, 0, 0, 0
	copy(t[20:hl], synOptions)
	copy(t[hl:], g.payload[f.seq[s]%payloadLen:])
	f.seq[s] += uint32(n)
	if flags&(packet.TCPSyn|packet.TCPFin) != 0 {
		f.seq[s]++
	}
	l4Sum(b, 16)
	return b
}

func (g *Generator) nextTCP(f *flow) []byte {
	const ack, psh = packet.TCPAck, packet.TCPPsh
	c := int(f.closer)
	switch f.step++; f.step {
	case 1:
		return g.tcp(f, 0, packet.TCPSyn, 0)
	case 2:
		return g.tcp(f, 1, packet.TCPSyn|ack, 0)
	case 3:
		return g.tcp(f, 0, ack, 0)
	case 4: // the request
		f.owe[1]++
		return g.tcp(f, 0, psh|ack, 100+g.rng.IntN(500))
	case 5: // data until left runs out
		if f.left == 0 {
			return g.tcp(f, c, packet.TCPFin|ack, 0)
		}
		f.left--
		f.step--
		for s := range f.owe {
			if f.owe[s] >= 2 {
				f.owe[s] = 0
				return g.tcp(f, s, ack, 0)
			}
		}
		s := 0
		if g.rng.Float32() < f.down {
			s = 1
		}
		f.owe[s], f.owe[1-s] = 0, f.owe[1-s]+1
		if g.rng.IntN(100) < 15 {
			return g.tcp(f, s, psh|ack, 1+g.rng.IntN(600))
		}
		return g.tcp(f, s, ack, mss)
	case 6:
		return g.tcp(f, 1-c, packet.TCPFin|ack, 0)
	}
	f.kind = kindNone
	return g.tcp(f, c, ack, 0)
}

// udp writes the headers of a UDP datagram from side s with an n-byte payload and returns
// the frame and its payload; the caller fills the payload and calls l4Sum(b, 6).
func (g *Generator) udp(f *flow, s int, n int) (b, payload []byte) {
	b = g.ipv4(f, s, packet.ProtoUDP, 8+n)
	u := b[l4Off:]
	binary.BigEndian.PutUint16(u[0:], f.port[s])
	binary.BigEndian.PutUint16(u[2:], f.port[1-s])
	binary.BigEndian.PutUint16(u[4:], uint16(8+n))
	u[6], u[7] = 0, 0
	return b, u[8:]
}

func (g *Generator) nextUDP(f *flow) []byte {
	s, n := 0, 1200+g.rng.IntN(100) // the client's first datagram is padded
	if f.step > 0 {
		f.left--
		if g.rng.Float32() < f.down {
			s = 1
		}
		if g.rng.IntN(10) < 3 {
			n = 20 + g.rng.IntN(60)
		}
	}
	if f.step = 1; f.left == 0 {
		f.kind = kindNone
	}
	return g.udpStream(f, s, n)
}

// udpStream builds a datagram from side s carrying the next n bytes of its stream.
func (g *Generator) udpStream(f *flow, s int, n int) []byte {
	g.note(opUDP, f, s, 0, n)
	b, p := g.udp(f, s, n)
	copy(p, g.payload[f.seq[s]%payloadLen:])
	f.seq[s] += uint32(n)
	l4Sum(b, 6)
	return b
}

func (g *Generator) nextDNS(f *flow) []byte {
	s, n := 0, 12+len(g.names[f.name])+4
	if f.step == 0 {
		f.step = 1
	} else {
		s, n = 1, n+16
		f.kind = kindNone
	}
	return g.dns(f, s, n)
}

// dns builds f's query (side 0) or its response (side 1), n bytes of DNS.
func (g *Generator) dns(f *flow, s int, n int) []byte {
	g.note(opDNS, f, s, 0, n)
	b, p := g.udp(f, s, n)
	g.fillDNS(f, p)
	l4Sum(b, 6)
	return b
}

// fillDNS writes a query for an A record of f's name, or the response with f.answer.
func (g *Generator) fillDNS(f *flow, p []byte) {
	name := g.names[f.name]
	binary.BigEndian.PutUint16(p[0:], f.dnsID)
	binary.BigEndian.PutUint64(p[2:], 0x0100_0001_0000_0000) // RD, 1 question
	p[10], p[11] = 0, 0
	q := p[12+copy(p[12:], name):]
	binary.BigEndian.PutUint32(q, 0x0001_0001) // type A, class IN
	if len(q) > 4 {
		binary.BigEndian.PutUint64(p[2:], 0x8180_0001_0001_0000) // QR RD RA, 1 answer
		a := q[4:]
		binary.BigEndian.PutUint64(a, 0xc00c_0001_0001_0000) // name pointer to the question
		binary.BigEndian.PutUint32(a[8:], 300<<16|4)         // TTL 300, 4 bytes of data
		copy(a[12:], f.answer[:])
	}
}

// icmp builds an echo request (side 0) or reply (side 1) with a Linux ping payload.
func (g *Generator) icmp(f *flow, s int) []byte {
	g.note(opICMP, f, s, 0, 0)
	b := g.ipv4(f, s, packet.ProtoICMP, 8+56)
	m := b[l4Off:]
	m[0], m[1], m[2], m[3] = byte(8*(1-s)), 0, 0, 0
	binary.BigEndian.PutUint16(m[4:], f.port[0])
	binary.BigEndian.PutUint16(m[6:], uint16(f.seq[0]))
	binary.LittleEndian.PutUint32(m[8:], uint32(f.echoT/1e9))
	binary.LittleEndian.PutUint32(m[12:], uint32(f.echoT%1e9/1e3))
	for i := 16; i < len(m); i++ {
		m[i] = byte(i - 8)
	}
	l4Sum(b, 2)
	return b
}

func (g *Generator) nextICMP(f *flow) []byte {
	if f.step == 0 {
		f.step, f.echoT = 1, g.now
		f.seq[0]++
		return g.icmp(f, 0)
	}
	f.step = 0
	if f.left--; f.left == 0 {
		f.kind = kindNone
	}
	return g.icmp(f, 1)
}
