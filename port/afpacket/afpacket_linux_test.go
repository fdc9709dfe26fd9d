//go:build linux

package afpacket_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/netnstest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/afpacket"
)

// frame returns an Ethernet/IPv4/UDP frame numbered i (in its payload), of size bytes
// (≥ 46), between two made-up hosts.
func frame(i, size int) []byte {
	f := make([]byte, size)
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 2})
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	copy(ip[12:16], []byte{10, 0, 0, 1})
	copy(ip[16:20], []byte{10, 0, 0, 2})
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], uint16(1024+i%1000))
	binary.BigEndian.PutUint16(udp[2:], 53)
	binary.BigEndian.PutUint16(udp[4:], uint16(size-34))
	binary.BigEndian.PutUint32(udp[8:], uint32(i))
	return f
}

func packets(frames [][]byte) []*packet.Packet {
	ps := make([]*packet.Packet, len(frames))
	for i, f := range frames {
		ps[i] = &packet.Packet{}
		ps[i].SetData(f, 0, len(f))
	}
	return ps
}

// send writes frames out of p in batches of 64.
func send(t testing.TB, p *afpacket.Port, frames [][]byte) {
	t.Helper()
	ps := packets(frames)
	for len(ps) > 0 {
		k := min(64, len(ps))
		if err := p.Write(ps[:k]); err != nil {
			t.Fatal(err)
		}
		ps = ps[k:]
	}
}

// receive reads n packets from p (failing after a few seconds without them), copies.
func receive(t testing.TB, p *afpacket.Port, n int) ([][]byte, []uint64) {
	t.Helper()
	var got [][]byte
	var pos []uint64
	batch := make([]packet.Packet, 64)
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d frames of %d in 5 s", len(got), n)
		}
		k, err := p.Read(batch[:min(64, n-len(got))])
		if err != nil {
			t.Fatalf("read after %d frames: %v", len(got), err)
		}
		for _, pk := range batch[:k] {
			got = append(got, append([]byte(nil), pk.Data...))
			pos = append(pos, pk.Pos)
		}
	}
	return got, pos
}

// TestSendReceive: frames written at one end of a link are read at the other, whole, in
// order, with increasing positions and their times; the counters agree.
func TestSendReceive(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 4096})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 4096, NoTx: true})
	var frames [][]byte
	for i := range 2000 {
		frames = append(frames, frame(i, 60+i%1400))
	}
	start := time.Now()
	send(t, a, frames)
	got, pos := receive(t, b, len(frames))
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d: got %x…, want %x…", i, got[i][:min(48, len(got[i]))], frames[i][:48])
		}
		if i > 0 && pos[i] <= pos[i-1] {
			t.Fatalf("positions %d then %d", pos[i-1], pos[i])
		}
	}
	if st := a.Stats(); st.Sent != uint64(len(frames)) || st.TxDropped != 0 {
		t.Errorf("sender's stats %+v, want %d sent", st, len(frames))
	}
	if st := b.Stats(); st.Received != uint64(len(frames)) || st.Dropped != 0 || st.Truncated != 0 {
		t.Errorf("receiver's stats %+v, want %d received, none dropped", st, len(frames))
	}
	// Times: the kernel's, on receipt.
	batch := make([]packet.Packet, 1)
	send(t, a, [][]byte{frame(0, 60)})
	if n, err := b.Read(batch); n != 1 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	if ts := time.Unix(0, batch[0].Time); ts.Before(start.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("a frame's time %v, want about now (%v)", ts, start)
	}
	var _ port.Releaser = b
	var _ port.Waiter = b
	var _ port.Writer = a
	var _ port.LinkTyper = a
}

// TestRereadRelease: the Port keeps every frame it read for Reread until Release, which
// gives their slots back; Release(MaxUint64) ends rereads.
func TestRereadRelease(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 1024})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 1024, NoTx: true})
	var frames [][]byte
	for i := range 500 {
		frames = append(frames, frame(i, 100+i))
	}
	send(t, a, frames)
	_, pos := receive(t, b, len(frames))
	for i, p := range pos {
		got, err := b.Reread([]byte("x"), p, len(frames[i]))
		if err != nil || !bytes.Equal(got[1:], frames[i]) || got[0] != 'x' {
			t.Fatalf("Reread of frame %d at %d: %v", i, p, err)
		}
	}
	if _, err := b.Reread(nil, pos[0], len(frames[0])+1); err == nil {
		t.Error("a Reread with the wrong length succeeded")
	}
	if _, err := b.Reread(nil, pos[len(pos)-1]+1, 60); err == nil {
		t.Error("a Reread of a frame not read yet succeeded")
	}
	b.Release(pos[250])
	if _, err := b.Reread(nil, pos[249], len(frames[249])); err == nil || !strings.Contains(err.Error(), "no longer holds") {
		t.Errorf("Reread of a released frame: %v, want an error", err)
	}
	if _, err := b.Reread(nil, pos[250], len(frames[250])); err != nil {
		t.Errorf("Reread of the first frame kept: %v", err)
	}
	b.Release(math.MaxUint64)
	if b.Rereadable() {
		t.Error("Rereadable after Release(MaxUint64)")
	}
	if _, err := b.Reread(nil, pos[499], len(frames[499])); err == nil {
		t.Error("a Reread after Release(MaxUint64) succeeded")
	}
}

// TestRingFull: frames kept fill the ring; what arrives then is dropped by the kernel and
// counted, never a frame kept overwritten; a Read then returns nothing, without blocking;
// once released, frames flow again. With nothing kept (ReleaseAll), every slot returns at
// once read and the same traffic is read whole.
func TestRingFull(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 256})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, Poll: 5 * time.Millisecond})
	var frames [][]byte
	for i := range 1000 {
		frames = append(frames, frame(i, 200))
	}
	send(t, a, frames)
	got, pos := receive(t, b, 256)
	for i := range got {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d changed", i)
		}
	}
	batch := make([]packet.Packet, 64)
	t0 := time.Now()
	if n, err := b.Read(batch); n != 0 || err != nil {
		t.Fatalf("read of a full ring: %d, %v; want 0, nil", n, err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("a read of a full ring took %v", d)
	}
	for i, p := range pos { // none overwritten
		if f, err := b.Reread(nil, p, 200); err != nil || !bytes.Equal(f, frames[i]) {
			t.Fatalf("frame %d after the drops: %v", i, err)
		}
	}
	if st := b.Stats(); st.Dropped != 1000-256 || st.Received != 256 {
		t.Errorf("stats %+v, want 256 received and 744 dropped", st)
	}
	port.ReleaseAll(b)
	for round := range 4 { // 4 × 250 frames through 256 slots: each returned once read
		send(t, a, frames[250*round:250*(round+1)])
		got, _ = receive(t, b, 250)
		for i := range got {
			if !bytes.Equal(got[i], frames[250*round+i]) {
				t.Fatalf("after ReleaseAll, round %d, frame %d: got %x…", round, i, got[i][:48])
			}
		}
	}
	if st := b.Stats(); st.Dropped != 1000-256 {
		t.Errorf("dropped %d after ReleaseAll, want none more than 744", st.Dropped)
	}
}

// TestEnds: a Read with nothing to read returns 0 and a nil error after Poll; the input ends
// (io.EOF) after Count packets, after Idle, or at Stop from another goroutine.
func TestEnds(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 256})
	batch := make([]packet.Packet, 64)

	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, Poll: 20 * time.Millisecond, Count: 10})
	t0 := time.Now()
	if n, err := b.Read(batch); n != 0 || err != nil || !b.Waited() {
		t.Fatalf("read of nothing: %d, %v, waited %t; want 0, nil, true", n, err, b.Waited())
	}
	if d := time.Since(t0); d < 15*time.Millisecond || d > 2*time.Second {
		t.Errorf("an empty read waited %v, want about Poll (20 ms)", d)
	}
	var frames [][]byte
	for i := range 30 {
		frames = append(frames, frame(i, 80))
	}
	send(t, a, frames)
	got, _ := receive(t, b, 10)
	if len(got) != 10 {
		t.Fatal(len(got))
	}
	if n, err := b.Read(batch); n != 0 || err != io.EOF {
		t.Errorf("read after Count: %d, %v; want io.EOF", n, err)
	}
	b.Close()

	t0 = time.Now() // (the idle time counts from the Port's opening)
	c := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, Poll: 10 * time.Millisecond, Idle: 100 * time.Millisecond})
	var err error
	for err == nil {
		_, err = c.Read(batch)
	}
	if d := time.Since(t0); err != io.EOF || d < 100*time.Millisecond || d > 3*time.Second {
		t.Errorf("idle input: %v after %v, want io.EOF after about 100 ms", err, d)
	}
	c.Close()

	d := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, Poll: time.Hour})
	go func() {
		time.Sleep(50 * time.Millisecond)
		d.Stop()
	}()
	read := make(chan error, 1)
	go func() {
		n, err := d.Read(batch)
		if n != 0 {
			err = errors.New("a frame")
		}
		read <- err
	}()
	select {
	case err := <-read:
		if err != io.EOF {
			t.Errorf("read at Stop: %v; want io.EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not end a Read waiting within 5 s")
	}
	d.Close()
	d.Stop() // (after Close: nothing)
	if _, err := d.Read(batch); !errors.Is(err, afpacket.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
}

// TestVLAN: a tagged frame is read, and read again, with its tag, as sent (the kernel hands
// the outer tag apart, with its TPID).
func TestVLAN(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 256})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true})
	plain := frame(7, 120)
	tagged := append(append(append([]byte(nil), plain[:12]...), 0x81, 0x00, 0x20, 0x05), plain[12:]...)
	// 802.1ad (QinQ): an outer service tag, whose TPID the kernel hands apart too.
	qinq := append(append(append([]byte(nil), plain[:12]...), 0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x20, 0x05), plain[12:]...)
	sent := [][]byte{tagged, plain, qinq}
	send(t, a, sent)
	got, pos := receive(t, b, len(sent))
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Errorf("frame %d: got %x…, want %x…", i, got[i][:24], sent[i][:24])
		}
		if f, err := b.Reread(nil, pos[i], len(sent[i])); err != nil || !bytes.Equal(f, sent[i]) {
			t.Errorf("Reread of frame %d: %x, %v", i, f, err)
		}
	}
}

// TestWriteRefuses: frames too short for an Ethernet header or too long for the interface
// (its MTU, 4 bytes more for a VLAN-tagged frame only) are counted and not sent; the others
// go; a Port opened for reading only refuses to write.
func TestWriteRefuses(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 256, FrameSize: 4096})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, FrameSize: 4096})
	plain := frame(6, 1514)
	tagged := append(append(append([]byte(nil), plain[:12]...), 0x81, 0x00, 0x20, 0x05), plain[12:]...)
	frames := [][]byte{frame(0, 100), frame(1, 100)[:10], frame(2, 3000), frame(3, 1514), frame(4, 1515+4),
		frame(5, 1516), tagged, frame(7, 100)}
	send(t, a, frames)
	got, _ := receive(t, b, 4)
	for i, want := range [][]byte{frames[0], frames[3], tagged, frames[7]} {
		if !bytes.Equal(got[i], want) {
			t.Errorf("received frame %d: %d bytes %x…, want %d bytes %x…", i, len(got[i]), got[i][:20], len(want), want[:20])
		}
	}
	if st := a.Stats(); st.Sent != 4 || st.TxDropped != 4 {
		t.Errorf("stats %+v, want 4 sent, 4 refused", st)
	}
	if err := b.Write(packets([][]byte{frame(0, 100)})); err == nil || !strings.Contains(err.Error(), "reading only") {
		t.Errorf("Write on a port without a transmit ring: %v", err)
	}
}

// TestTruncated: a frame longer than a slot is read truncated, with its length on the wire,
// and counted.
func TestTruncated(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 256, FrameSize: 4096})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, FrameSize: 1024})
	send(t, a, [][]byte{frame(0, 1500)})
	batch := make([]packet.Packet, 4)
	var n int
	var err error
	for n == 0 && err == nil {
		n, err = b.Read(batch)
	}
	if n != 1 || len(batch[0].Data) != 1024-66 || batch[0].WireLen != 1500 {
		t.Fatalf("read %d: %d bytes of %d on the wire, %v", n, len(batch[0].Data), batch[0].WireLen, err)
	}
	if st := b.Stats(); st.Truncated != 1 {
		t.Errorf("truncated %d, want 1", st.Truncated)
	}
}

// TestOpenErrors: a missing interface and bad options get one line each.
func TestOpenErrors(t *testing.T) {
	for _, c := range []struct {
		iface string
		o     afpacket.Options
		want  string
	}{
		{"snf-no-such", afpacket.Options{}, `no interface "snf-no-such"`},
		{"lo", afpacket.Options{FrameSize: 1000}, "power of two"},
		{"lo", afpacket.Options{Frames: -1}, "negative"},
	} {
		_, err := afpacket.Open(c.iface, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%q, %+v): %v, want one line with %q", c.iface, c.o, err, c.want)
		}
	}
}

// TestWaitHeld: a Read of nothing waits about Poll while the frames read before are kept for
// rereads too (the kernel's poll would return at once: a caller reading again would spin),
// and still returns a frame, or ends at Stop, as soon as it comes.
func TestWaitHeld(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 256})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, Poll: 20 * time.Millisecond})
	send(t, a, [][]byte{frame(0, 100), frame(1, 100)})
	receive(t, b, 2) // (kept: not released)
	if reads := emptyReads(t, b, "nothing"); reads > 20 {
		t.Errorf("%d reads of nothing in 200 ms with Poll 20 ms: a Read did not wait", reads)
	}
	batch := make([]packet.Packet, 8)

	c := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, Poll: time.Hour})
	send(t, a, [][]byte{frame(2, 100)})
	receive(t, c, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		if err := a.Write(packets([][]byte{frame(3, 100)})); err != nil {
			t.Error(err)
		}
		time.Sleep(50 * time.Millisecond)
		c.Stop()
	}()
	t0 := time.Now()
	if n, err := c.Read(batch); n != 1 || err != nil || binary.BigEndian.Uint32(batch[0].Data[42:]) != 3 {
		t.Fatalf("read of a frame sent while the one before is kept: %d, %v", n, err)
	}
	if d := time.Since(t0); d > 90*time.Millisecond { // sent at 50 ms
		t.Errorf("a frame sent at 50 ms was read at %v: the wait did not wake on it", d)
	}
	if n, err := c.Read(batch); n != 0 || err != io.EOF {
		t.Fatalf("read at Stop while frames are kept: %d, %v; want io.EOF", n, err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("a frame and Stop took %v", d)
	}
}

// TestInterfaceDown: while the interface is down a Read of nothing still waits (the error
// the kernel reports on the socket does not make it spin); once up again, frames come; once
// the interface is removed, Read fails.
func TestInterfaceDown(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 256})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, Poll: 20 * time.Millisecond})
	port.ReleaseAll(b)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", l.NsB}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("link", "set", l.IfB, "down")
	if reads := emptyReads(t, b, "a down interface"); reads > 20 {
		t.Errorf("%d reads of a down interface in 200 ms with Poll 20 ms: a Read did not wait", reads)
	}
	batch := make([]packet.Packet, 8)
	ip("link", "set", l.IfB, "up")
	// (sent again until one comes: the link may take a moment to carry frames once up)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("no frame read in 5 s after the interface came up again")
		}
		send(t, a, [][]byte{frame(1, 100)})
		n, err := b.Read(batch[:1])
		if err != nil {
			t.Fatalf("read after up: %v", err)
		}
		if n == 1 {
			if binary.BigEndian.Uint32(batch[0].Data[42:]) != 1 {
				t.Fatalf("after up: got frame %x", batch[0].Data)
			}
			break
		}
	}
	ip("link", "del", l.IfB)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := b.Read(batch)
		if err != nil {
			if !strings.Contains(err.Error(), "gone") {
				t.Errorf("read of a removed interface: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("reads of a removed interface return nothing, without an error, for 5 s")
		}
	}
}

// TestOpenNotEthernet: an interface whose frames are not Ethernet frames (a tun device's IP
// packets) is refused, for reading as for writing, rather than read as Ethernet.
func TestOpenNotEthernet(t *testing.T) {
	l := netnstest.New(t)
	if out, err := exec.Command("ip", "-n", l.NsB, "tuntap", "add", "dev", "snftun", "mode", "tun").CombinedOutput(); err != nil {
		t.Skipf("no tun device: %v: %s", err, out)
	}
	exec.Command("ip", "-n", l.NsB, "link", "set", "snftun", "up").Run()
	for _, o := range []afpacket.Options{{Frames: 256, NoTx: true}, {TxFrames: 256, NoRx: true}} {
		var err error
		netnstest.In(t, l.NsB, func() {
			var p *afpacket.Port
			if p, err = afpacket.Open("snftun", o); err == nil {
				p.Close()
			}
		})
		if err == nil || !strings.Contains(err.Error(), "not an Ethernet interface") {
			t.Errorf("Open of a tun device (%+v): %v, want it refused", o, err)
		}
	}
	open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256}) // (a veth is Ethernet)
}

// TestPromisc: a Port that reads puts its interface in promiscuous mode while it is open
// (a NIC would otherwise filter out the frames of other hosts that a middlebox must see),
// unless NoPromisc; a Port that only writes does not.
func TestPromisc(t *testing.T) {
	l := netnstest.New(t)
	promiscuity := func() int {
		out, err := exec.Command("ip", "-n", l.NsB, "-d", "link", "show", l.IfB).CombinedOutput()
		if err != nil {
			t.Fatalf("ip link: %v: %s", err, out)
		}
		m := regexp.MustCompile(`promiscuity (\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no promiscuity in %s", out)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	if n := promiscuity(); n != 0 {
		t.Fatalf("promiscuity %d before any Port", n)
	}
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true})
	if n := promiscuity(); n != 1 {
		t.Errorf("promiscuity %d with a Port reading, want 1", n)
	}
	b.Close()
	if n := promiscuity(); n != 0 {
		t.Errorf("promiscuity %d once it closed, want 0", n)
	}
	c := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 256, NoTx: true, NoPromisc: true})
	w := open(t, l.NsB, l.IfB, afpacket.Options{NoRx: true})
	if n := promiscuity(); n != 0 {
		t.Errorf("promiscuity %d with NoPromisc and a Port writing only, want 0", n)
	}
	c.Close()
	w.Close()
}

// TestNoAllocs: reading frames (VLAN-tagged ones too) and writing them allocate nothing in
// steady state.
func TestNoAllocs(t *testing.T) {
	l := netnstest.New(t)
	a := open(t, l.NsA, l.IfA, afpacket.Options{Frames: 256})
	b := open(t, l.NsB, l.IfB, afpacket.Options{Frames: 8192, NoTx: true})
	port.ReleaseAll(b)
	var frames [][]byte
	for i := range 64 {
		f := frame(i, 300)
		if i%2 == 1 {
			f = append(append(append([]byte(nil), f[:12]...), 0x81, 0x00, 0x00, 0x07), f[12:]...)
		}
		frames = append(frames, f)
	}
	out := packets(frames)
	batch := make([]packet.Packet, 64)
	round := func() {
		if err := a.Write(out); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < len(out); {
			n, err := b.Read(batch)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	round() // (buffers sized)
	if n := testing.AllocsPerRun(50, round); n != 0 {
		t.Errorf("%.1f allocations per batch of 64 written and read", n)
	}
}

// emptyReads reads p for 200 ms, each Read wanted to give nothing (0, nil), and returns how
// many there were (what names the input in a failure).
func emptyReads(t *testing.T, p *afpacket.Port, what string) int {
	t.Helper()
	batch := make([]packet.Packet, 8)
	reads := 0
	for t0 := time.Now(); time.Since(t0) < 200*time.Millisecond; reads++ {
		if n, err := p.Read(batch); n != 0 || err != nil {
			t.Fatalf("read of %s: %d, %v; want 0, nil", what, n, err)
		}
	}
	return reads
}
