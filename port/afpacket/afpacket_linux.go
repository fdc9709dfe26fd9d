//go:build linux

package afpacket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snf-dev/snf/packet"
)

// Port is a live interface's frames, read and written through memory-mapped AF_PACKET rings
// (see the package doc). Its methods are for one goroutine, but Stop, which any may call.
type Port struct {
	iface string
	o     Options
	rx    ring
	tx    ring
	rxfd  int
	txfd  int // -1: no transmit ring
	evfd  int // Stop writes to it: a Read waiting wakes
	epfd  int // a Read waits here: the receive socket (edge-triggered) and evfd
	mtu   int

	next     uint64 // the sequence number of the next receive slot to read (a packet's Pos)
	released uint64 // slots below it went back to the kernel
	hold     bool   // slots read are kept until Release (false once Release(MaxUint64))
	waited   bool   // the last Read waited for its packets
	last     time.Time
	scratch  []byte // a frame with its VLAN tag put back
	txNext   uint64
	st       Stats

	mu      sync.Mutex // Stop against Close
	stopped atomic.Bool
	closed  bool
}

// ring is a memory-mapped TPACKET_V2 ring of frames slots of size bytes each.
type ring struct {
	mem    []byte
	frames int
	size   int
}

func (r *ring) slot(seq uint64) []byte {
	off := int(seq%uint64(r.frames)) * r.size
	return r.mem[off : off+r.size : off+r.size]
}

// status is the slot's tp_status word, which the kernel and the process hand each other.
func status(slot []byte) *uint32 { return (*uint32)(unsafe.Pointer(&slot[0])) }

const (
	// txData is where a transmit slot's frame starts (TPACKET2_HDRLEN - sizeof(sockaddr_ll)).
	txData = 32
	// llOff is where a receive slot's sockaddr_ll starts (TPACKET_ALIGN(sizeof(tpacket2_hdr))),
	// and llPkttype its packet type's offset in it.
	llOff     = 32
	llPkttype = 10
	// rxData is what a receive slot keeps before its frame (the kernel puts the MAC header
	// at TPACKET_ALIGN(TPACKET2_HDRLEN + 16) - 14 = 66).
	rxData = 66
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Open opens interface iface for reading, and for writing unless o.NoTx.
func Open(iface string, o Options) (*Port, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("afpacket: no interface %q: %v", iface, err)
	}
	p := &Port{iface: iface, o: o, rxfd: -1, txfd: -1, evfd: -1, epfd: -1, mtu: ifi.MTU, hold: true, last: time.Now()}
	fail := func(what string, err error) (*Port, error) {
		p.release()
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("afpacket: %s on %s: %v (it needs CAP_NET_RAW: run as root)", what, iface, err)
		}
		return nil, fmt.Errorf("afpacket: %s on %s: %v", what, iface, err)
	}
	if !o.NoRx {
		// Protocol 0 until the ring is set up: the socket receives nothing before its bind.
		if p.rxfd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return fail("socket", err)
		}
		if p.rx, err = setRing(p.rxfd, unix.PACKET_RX_RING, o.Frames, o.FrameSize); err != nil {
			return fail("receive ring", err)
		}
		// Our own writes would come back as outgoing frames (the kernel 4.20 on); older
		// kernels give them, and Read skips them by their packet type.
		_ = unix.SetsockoptInt(p.rxfd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		if err = unix.Bind(p.rxfd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return fail("bind", err)
		}
		if !o.NoPromisc {
			// (a membership of the socket's: the kernel drops it when the socket closes)
			mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
			if err = unix.SetsockoptPacketMreq(p.rxfd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
				return fail("promiscuous mode", err)
			}
		}
	}
	if !o.NoTx {
		if p.txfd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return fail("socket", err)
		}
		if p.tx, err = setRing(p.txfd, unix.PACKET_TX_RING, o.TxFrames, o.FrameSize); err != nil {
			return fail("transmit ring", err)
		}
		// Protocol 0: it sends only (receives nothing).
		if err = unix.Bind(p.txfd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
			return fail("bind", err)
		}
	}
	// snf reads and writes Ethernet frames (LinkType): another link layer's (a tun device's
	// IP packets, ARPHRD_NONE) would be taken for Ethernet frames.
	fd := p.rxfd
	if fd < 0 {
		fd = p.txfd
	}
	if sa, err := unix.Getsockname(fd); err != nil {
		return fail("getsockname", err)
	} else if ll, ok := sa.(*unix.SockaddrLinklayer); ok && ll.Hatype != unix.ARPHRD_ETHER && ll.Hatype != unix.ARPHRD_LOOPBACK {
		p.release()
		return nil, fmt.Errorf("afpacket: %s is not an Ethernet interface (its hardware type is %d): snf reads and writes Ethernet frames", iface, ll.Hatype)
	}
	if p.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fail("eventfd", err)
	}
	if p.rxfd >= 0 {
		// The kernel's poll of a receive ring reports a frame to read while the slot before
		// its head is not back with it — always, while the Port keeps the frames it read —
		// so a level-triggered wait would return at once. Edge-triggered, it returns at the
		// kernel's next wake-up: a frame received (or an error), whatever the slots' state.
		if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			return fail("epoll", err)
		}
		if err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, p.rxfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLERR | unix.EPOLLET, Fd: int32(p.rxfd)}); err != nil {
			return fail("epoll", err)
		}
		if err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, p.evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.evfd)}); err != nil {
			return fail("epoll", err)
		}
	}
	return p, nil
}

// setRing sets up a ring of at least frames slots of size bytes on fd (opt: the receive or
// the transmit ring) and maps it.
func setRing(fd, opt, frames, size int) (ring, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return ring{}, err
	}
	block := max(size, 128<<10) // a multiple of the page size: size is a power of two ≥ 256
	if block%unix.Getpagesize() != 0 {
		block = unix.Getpagesize()
	}
	per := block / size
	blocks := (frames + per - 1) / per
	if uint64(blocks)*uint64(block) > math.MaxInt32 {
		return ring{}, fmt.Errorf("a ring of %d frames of %d bytes is too large", frames, size)
	}
	req := unix.TpacketReq{Block_size: uint32(block), Block_nr: uint32(blocks), Frame_size: uint32(size), Frame_nr: uint32(blocks * per)}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, opt, &req); err != nil {
		return ring{}, err
	}
	mem, err := unix.Mmap(fd, 0, blocks*block, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return ring{}, err
	}
	return ring{mem: mem, frames: blocks * per, size: size}, nil
}

// release unmaps the rings and closes the descriptors.
func (p *Port) release() {
	for _, r := range []*ring{&p.rx, &p.tx} {
		if r.mem != nil {
			unix.Munmap(r.mem)
			r.mem = nil
		}
	}
	for _, fd := range []*int{&p.epfd, &p.rxfd, &p.txfd, &p.evfd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// Read fills pkts with the frames received (SetData on each; Pos: the frame's sequence
// number, for Reread) and returns how many. It waits up to Options.Poll for the first, and
// returns 0 and a nil error when none came (the interface down too); io.EOF once the input
// ended (Options.Count, Options.Idle, Stop); an error once the interface was removed.
func (p *Port) Read(pkts []packet.Packet) (int, error) {
	if p.closed {
		return 0, ErrClosed
	}
	if p.rxfd < 0 {
		return 0, fmt.Errorf("afpacket: %s was opened for writing only", p.iface)
	}
	p.waited = false
	var deadline time.Time
	for {
		if p.stopped.Load() || (p.o.Count > 0 && int64(p.st.Received) >= p.o.Count) {
			return 0, io.EOF
		}
		if n := p.fill(pkts); n > 0 {
			if p.o.Idle > 0 {
				p.last = time.Now()
			}
			return n, nil
		}
		if len(pkts) == 0 {
			return 0, nil
		}
		now := time.Now()
		if p.o.Idle > 0 && now.Sub(p.last) >= p.o.Idle {
			return 0, io.EOF
		}
		if deadline.IsZero() {
			deadline = now.Add(p.o.Poll)
		} else if !now.Before(deadline) {
			return 0, nil // nothing within Poll
		}
		p.waited = true
		if p.full() {
			// The kernel drops what comes: the caller releases some.
			time.Sleep(min(deadline.Sub(now), time.Millisecond))
			return 0, nil
		}
		d := deadline.Sub(now)
		if p.o.Idle > 0 {
			d = min(d, p.o.Idle-now.Sub(p.last))
		}
		if err := p.wait(d); err != nil {
			return 0, err
		}
	}
}

// fill reads the frames ready, up to len(pkts) (and Options.Count).
func (p *Port) fill(pkts []packet.Packet) int {
	if p.o.Count > 0 {
		pkts = pkts[:min(int64(len(pkts)), max(0, p.o.Count-int64(p.st.Received)))]
	}
	n := 0
	for n < len(pkts) {
		if p.full() {
			break // (the kernel drops meanwhile)
		}
		s := p.rx.slot(p.next)
		if atomic.LoadUint32(status(s))&unix.TP_STATUS_USER == 0 {
			break
		}
		seq := p.next
		p.next++
		if s[llOff+llPkttype] == unix.PACKET_OUTGOING {
			p.done(seq) // (a kernel that ignores no outgoing frame)
			continue
		}
		f, wire, ts := p.frame(s)
		pkts[n].SetData(f, ts, wire)
		pkts[n].Pos = seq
		if len(f) < wire {
			p.st.Truncated++
		}
		p.st.Received++
		p.done(seq)
		n++
	}
	return n
}

// full reports whether every slot holds a frame kept for rereads.
func (p *Port) full() bool { return p.next-p.released >= uint64(p.rx.frames) }

// done gives slot seq, read, back to the kernel unless the Port keeps the frames it read.
func (p *Port) done(seq uint64) {
	if p.hold {
		return
	}
	atomic.StoreUint32(status(p.rx.slot(seq)), unix.TP_STATUS_KERNEL)
	p.released = seq + 1
}

// frame returns receive slot s's frame (with its VLAN tag, which the kernel took out, put
// back: in the Port's scratch buffer), its length on the wire and its time.
func (p *Port) frame(s []byte) (f []byte, wire int, ts int64) {
	st := atomic.LoadUint32(status(s))
	h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&s[0]))
	mac, snap := int(h.Mac), int(h.Snaplen)
	wire = int(h.Len)
	ts = int64(h.Sec)*1e9 + int64(h.Nsec)
	if mac < rxData || mac+snap > len(s) { // (never from a kernel: its own layout)
		mac, snap = min(max(mac, rxData), len(s)), 0
	}
	f = s[mac : mac+snap]
	if st&unix.TP_STATUS_VLAN_VALID == 0 || len(f) < 12 {
		return f, wire, ts
	}
	tpid := uint16(packet.EtherTypeVLAN)
	if st&unix.TP_STATUS_VLAN_TPID_VALID != 0 && h.Vlan_tpid != 0 {
		tpid = h.Vlan_tpid
	}
	b := append(p.scratch[:0], f[:12]...)
	b = binary.BigEndian.AppendUint16(b, tpid)
	b = binary.BigEndian.AppendUint16(b, h.Vlan_tci)
	b = append(b, f[12:]...)
	p.scratch = b
	return b, wire + 4, ts
}

// wait waits up to d (at least 1 ms) for a frame, or for Stop. It fails once the interface is
// gone (removed: the socket is bound to none any more).
func (p *Port) wait(d time.Duration) error {
	// A frame that came since the caller looked at the ring left an edge pending: the wait
	// returns at once, and the caller looks again (an edge of a frame it read already gives
	// it nothing: it waits again, up to Poll).
	ms := max(1, int((d+time.Millisecond-1)/time.Millisecond)) // (never 0: no wait; nor < 0: for ever)
	var ev [2]unix.EpollEvent
	for {
		n, err := unix.EpollWait(p.epfd, ev[:], ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("afpacket: wait on %s: %v", p.iface, err)
		}
		for _, e := range ev[:n] {
			if e.Fd == int32(p.rxfd) && e.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				// An error on the socket (ENETDOWN: the interface went down, or away):
				// read, so that it is reported once.
				unix.GetsockoptInt(p.rxfd, unix.SOL_SOCKET, unix.SO_ERROR)
				return p.gone()
			}
		}
		if n == 0 {
			return p.gone()
		}
		return nil
	}
}

// gone fails once the interface was removed: the kernel unbinds its sockets from it (an
// interface down keeps them bound, and they receive again once it is up).
func (p *Port) gone() error {
	sa, err := unix.Getsockname(p.rxfd)
	if ll, ok := sa.(*unix.SockaddrLinklayer); err == nil && ok && ll.Ifindex <= 0 {
		return fmt.Errorf("afpacket: interface %s is gone", p.iface)
	}
	return nil
}

// Stop ends the input: the Read waiting, or the next, returns io.EOF. Any goroutine may call
// it, before or after Close.
func (p *Port) Stop() {
	p.stopped.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.evfd >= 0 {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(p.evfd, one[:])
	}
}

// Rereadable reports whether the Port keeps the frames it read (port.Rereader): until
// Release(math.MaxUint64).
func (p *Port) Rereadable() bool { return p.hold && !p.closed && p.rxfd >= 0 }

// Reread appends the n-byte frame at pos (a packet's Pos) to dst (port.Rereader): it fails
// for a frame released, or not read yet.
func (p *Port) Reread(dst []byte, pos uint64, n int) ([]byte, error) {
	if p.closed {
		return dst, ErrClosed
	}
	if !p.hold || p.rxfd < 0 || pos < p.released || pos >= p.next {
		return dst, fmt.Errorf("afpacket: %s no longer holds frame %d (it holds %d to %d)", p.iface, pos, p.released, p.next)
	}
	s := p.rx.slot(pos)
	f, _, _ := p.frame(s)
	if len(f) != n || s[llOff+llPkttype] == unix.PACKET_OUTGOING {
		return dst, fmt.Errorf("afpacket: %s holds no %d-byte frame at %d", p.iface, n, pos)
	}
	return append(dst, f...), nil
}

// Release gives the slots of the frames before pos back to the kernel (port.Releaser);
// Release(math.MaxUint64) all of them, and the Port keeps none from then on.
func (p *Port) Release(pos uint64) {
	if p.closed || p.rxfd < 0 {
		return
	}
	if pos == math.MaxUint64 {
		p.hold = false
	}
	for end := min(pos, p.next); p.released < end; p.released++ {
		atomic.StoreUint32(status(p.rx.slot(p.released)), unix.TP_STATUS_KERNEL)
	}
}

// Holds returns how many frames the Port can keep for rereads: its receive ring's slots
// (port.Holder). While it keeps that many, Read reads none, and the kernel drops what comes.
func (p *Port) Holds() int { return p.rx.frames }

// Waited reports whether the last Read waited for its packets (port.Waiter).
func (p *Port) Waited() bool { return p.waited }

// LinkType returns LINKTYPE_ETHERNET (port.LinkTyper).
func (p *Port) LinkType() uint32 { return linkTypeEthernet }

// Write sends pkts out of the interface: it queues their frames in the transmit ring and has
// the kernel send them, waiting while the ring is full. A frame shorter than an Ethernet
// header, or longer than a slot or the interface's MTU allows, is not sent: it is counted
// (Stats.TxDropped).
func (p *Port) Write(pkts []*packet.Packet) error {
	if p.closed {
		return ErrClosed
	}
	if p.txfd < 0 {
		return fmt.Errorf("afpacket: %s was opened for reading only", p.iface)
	}
	// The kernel refuses a frame longer than the MTU and an Ethernet header, but for a
	// VLAN-tagged one (4 bytes more), and fails the send: the ring then stops at it.
	limit := min(p.tx.size-txData, p.mtu+14)
	limitTagged := min(p.tx.size-txData, p.mtu+14+4)
	queued := 0
	for _, pk := range pkts {
		d := pk.Data
		if len(d) < 14 || len(d) > limitTagged || (len(d) > limit && !tagged(d)) {
			p.st.TxDropped++
			continue
		}
		s := p.tx.slot(p.txNext)
		for {
			st := atomic.LoadUint32(status(s))
			if st == unix.TP_STATUS_AVAILABLE {
				break
			}
			if st&unix.TP_STATUS_WRONG_FORMAT != 0 { // (the kernel refused it: counted)
				p.st.TxDropped++
				p.st.Sent-- // (counted when queued)
				atomic.StoreUint32(status(s), unix.TP_STATUS_AVAILABLE)
				break
			}
			// The ring is full: have the kernel send what is queued, and wait for it.
			if err := p.send(); err != nil {
				return err
			}
			queued = 0
		}
		h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&s[0]))
		copy(s[txData:], d)
		h.Len = uint32(len(d))
		atomic.StoreUint32(status(s), unix.TP_STATUS_SEND_REQUEST)
		p.txNext++
		p.st.Sent++
		queued++
	}
	if queued > 0 {
		return p.send()
	}
	return nil
}

// tagged reports whether frame d (14 bytes or more) carries a VLAN tag (802.1Q or 802.1ad).
func tagged(d []byte) bool {
	et := binary.BigEndian.Uint16(d[12:])
	return et == packet.EtherTypeVLAN || et == packet.EtherTypeQinQ
}

// send has the kernel send the frames queued in the transmit ring: it returns once they went.
func (p *Port) send() error {
	var full time.Time // since when the device's queue is full
	for {
		err := unix.Sendto(p.txfd, nil, 0, nil)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EAGAIN):
			// The device's queue is full: it drains — unless it stays full (a link that
			// does not send), which ends the writes rather than blocking them for ever.
			if full.IsZero() {
				full = time.Now()
			} else if time.Since(full) > sendStuck {
				return fmt.Errorf("afpacket: send on %s: the device's queue stayed full for %v: %v", p.iface, sendStuck, err)
			}
			time.Sleep(100 * time.Microsecond)
		default:
			return fmt.Errorf("afpacket: send on %s: %v", p.iface, err)
		}
	}
}

// sendStuck is how long a send waits for a device whose queue is full.
const sendStuck = 5 * time.Second

// Stats returns what the Port counted; Dropped from the kernel's counters, read now.
func (p *Port) Stats() Stats {
	if !p.closed {
		p.kernelStats()
	}
	return p.st
}

func (p *Port) kernelStats() {
	if p.rxfd < 0 {
		return
	}
	if ks, err := unix.GetsockoptTpacketStats(p.rxfd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		p.st.Dropped += uint64(ks.Drops) // (reading them resets them)
	}
}

// Close closes the Port: its rings and sockets. Later calls fail with ErrClosed.
func (p *Port) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.kernelStats()
	p.closed = true
	p.release()
	return nil
}
