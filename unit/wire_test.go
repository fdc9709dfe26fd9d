package unit_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/unit"
)

// wireFrame is a frame with its wire length (0: its own length).
type wireFrame struct {
	name    string
	data    []byte
	wireLen int
}

var (
	wire4a, wire4b = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.77")
	wire6a, wire6b = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:ffff::42")
)

// wireFrames returns frames of every shape the parser knows: IPv4 and IPv6 TCP, UDP and
// echo, VLAN-tagged, cut by a snaplen, malformed, non-IP, runts, an empty frame; with big
// set, also a jumbo frame and one of MaxDataLen bytes.
func wireFrames(big bool) []wireFrame {
	rng := rand.New(rand.NewPCG(1, 2))
	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	tcpBig := pkttest.TCP(wire4a, wire4b, 40000, 443, pkttest.ACK, payload(1400))
	vlan := pkttest.UDP(wire4a, wire4b, 5353, 53, payload(60))
	vlan = slices.Concat(vlan[:12], []byte{0x81, 0x00, 0x00, 0x2a}, vlan[12:])
	malformed := pkttest.UDP(wire4a, wire4b, 1, 2, payload(10))
	malformed[14] = 0x43 // IPv4 with IHL 3
	arp := make([]byte, 42)
	copy(arp, pkttest.MACB)
	copy(arp[6:], pkttest.MACA)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	lldp := payload(60)
	binary.BigEndian.PutUint16(lldp[12:], 0x88cc)
	fs := []wireFrame{
		{"tcp4 syn", pkttest.TCP(wire4a, wire4b, 40000, 443, pkttest.SYN, nil), 0},
		{"tcp4 1400", tcpBig, 0},
		{"udp4", pkttest.UDP(wire4a, wire4b, 5353, 53, payload(100)), 0},
		{"echo4", pkttest.Echo(wire4a, wire4b, 7, false), 0},
		{"tcp6", pkttest.TCP(wire6a, wire6b, 51000, 80, pkttest.SYNACK, payload(300)), 0},
		{"udp6", pkttest.UDP(wire6b, wire6a, 123, 123, payload(48)), 0},
		{"echo6 reply", pkttest.Echo(wire6b, wire6a, 9, true), 0},
		{"gre4", pkttest.IPProto(wire4a, wire4b, 47, payload(40)), 0},
		{"vlan udp4", vlan, 0},
		{"snaplen cut", tcpBig[:96], len(tcpBig)},
		{"malformed", malformed, 0},
		{"arp", arp, 0},
		{"lldp", lldp, 0},
		{"runt", payload(5), 0},
		{"empty", nil, 0},
		{"wirelen beyond 64k", payload(60), 1 << 20},
	}
	if big {
		jumbo := pkttest.UDP(wire6a, wire6b, 4789, 4789, payload(9000))
		huge := payload(unit.MaxDataLen)
		binary.BigEndian.PutUint16(huge[12:], 0x0800)
		fs = append(fs, wireFrame{"jumbo6", jumbo, 0}, wireFrame{"max", huge, 0})
	}
	return fs
}

func wireKey(v6 bool, sport uint16) packet.Key {
	k := packet.Key{SrcPort: sport, DstPort: 443, Proto: packet.ProtoTCP, V6: v6}
	if v6 {
		k.Src, k.Dst = wire6a.As16(), wire6b.As16()
	} else {
		a, b := wire4a.As4(), wire4b.As4()
		copy(k.Src[:], a[:])
		copy(k.Dst[:], b[:])
	}
	return k
}

// wireBatch returns a batch of n packets cycling through frames, with the given controls.
func wireBatch(frames []wireFrame, n int, ctl ...unit.Control) *unit.Batch {
	b := unit.NewBatch(n, nil)
	b.Unit, b.Stamp, b.Now = 3, 1_700_000_000_123_456_789, -42
	for i := range n {
		f := frames[i%len(frames)]
		p := &b.Pkts[i]
		p.SetData(f.data, 1_600_000_000_000_000_000+int64(i)*1000, f.wireLen)
		p.Clock, p.Flow = uint64(1000+i), uint64(i%7)*0x9e3779b97f4a7c15
	}
	b.N = n
	b.Ctl = ctl
	return b
}

// wireBatches returns the round-trip cases.
func wireBatches(big bool) map[string]*unit.Batch {
	fs := wireFrames(big)
	k4, k6 := wireKey(false, 40000), wireKey(true, 51000)
	m := map[string]*unit.Batch{
		"0 packets":                   wireBatch(fs, 0),
		"0 packets, controls at N":    wireBatch(fs, 0, unit.Control{At: 0, Kind: unit.Expect, Key: k4, Flow: 1, Peer: 0, Hid: 1}, unit.Control{At: 0, Kind: unit.Marker, Key: k6, Flow: 2, Peer: 9, Hid: 2}),
		"1 packet":                    wireBatch(fs[1:], 1),
		"1 packet, controls at 0 & N": wireBatch(fs[4:], 1, unit.Control{At: 0, Kind: unit.Marker, Key: k6, Flow: math.MaxUint64, Peer: math.MaxInt32, Hid: math.MaxUint64}, unit.Control{At: 1, Kind: unit.Expect, Key: k4.Reverse(), Flow: 5, Peer: math.MinInt32, Hid: 0x8000_0000_0000_0001}),
		"64 packets": wireBatch(fs, 64,
			unit.Control{At: 0, Kind: unit.Expect, Key: k4, Flow: 11, Peer: 1, Hid: 100},
			unit.Control{At: 0, Kind: unit.Marker, Key: k4, Flow: 11, Peer: 2, Hid: 101},
			unit.Control{At: 17, Kind: unit.Marker, Key: k6, Flow: 12, Peer: 3, Hid: 1 << 32},
			unit.Control{At: 17, Kind: unit.Expect, Key: k6.Reverse(), Flow: 13, Peer: 4, Hid: 1<<32 + 1},
			unit.Control{At: 40, Kind: unit.Expect, Key: packet.Key{}, Flow: 0, Peer: 0, Hid: 0},
			unit.Control{At: 63, Kind: unit.Marker, Key: k4.Reverse(), Flow: 14, Peer: 5, Hid: 0xfedc_ba98_7654_3210},
			unit.Control{At: 64, Kind: unit.Marker, Key: k6, Flow: 15, Peer: 6, Hid: 7},
			unit.Control{At: 64, Kind: unit.Expect, Key: k4, Flow: 16, Peer: 7, Hid: 7}),
	}
	// Seq and Checkpoint in every combination: a checkpoint request (Seq 0, Checkpoint), a
	// plain batch, a batch that also asks for a checkpoint, extreme Seqs.
	m["0 packets, controls at N"].Checkpoint = true
	m["64 packets"].Unit, m["64 packets"].Seq = math.MaxInt32, 0x0102_0304_0506_0708
	m["1 packet"].Unit, m["1 packet"].Stamp, m["1 packet"].Now = -1, 0, math.MaxInt64
	m["1 packet"].Seq, m["1 packet"].Checkpoint = math.MaxUint64, true
	m["1 packet, controls at 0 & N"].Seq, m["1 packet, controls at 0 & N"].Checkpoint = 1, true
	return m
}

func wireEncode(t testing.TB, m interface{ AppendBinary([]byte) ([]byte, error) }) []byte {
	t.Helper()
	enc, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// wireSamePacket checks that got has want's frame and metadata, and the parse results of a
// fresh parse of that frame. Every exported field of Packet is compared, so fields added
// later are covered.
func wireSamePacket(t testing.TB, what string, got, want *packet.Packet) {
	t.Helper()
	var fresh packet.Packet
	fresh.SetData(want.Data, want.Time, want.WireLen)
	fresh.Clock, fresh.Flow = want.Clock, want.Flow
	gv, fv := reflect.ValueOf(got).Elem(), reflect.ValueOf(&fresh).Elem()
	for i := range gv.NumField() {
		f := gv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Name == "Data" {
			if !bytes.Equal(got.Data, want.Data) {
				t.Errorf("%s: Data differs (%d bytes, want %d)", what, len(got.Data), len(want.Data))
			}
			continue
		}
		if g, w := gv.Field(i).Interface(), fv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: %s = %v, want %v", what, f.Name, g, w)
		}
	}
}

// wireSameBatch checks that got has want's input side.
func wireSameBatch(t testing.TB, got, want *unit.Batch) {
	t.Helper()
	if got.Unit != want.Unit || got.N != want.N || got.Stamp != want.Stamp || got.Now != want.Now ||
		got.Seq != want.Seq || got.Checkpoint != want.Checkpoint {
		t.Fatalf("header: unit %d N %d stamp %d now %d seq %d checkpoint %v, want %d %d %d %d %d %v",
			got.Unit, got.N, got.Stamp, got.Now, got.Seq, got.Checkpoint,
			want.Unit, want.N, want.Stamp, want.Now, want.Seq, want.Checkpoint)
	}
	if !slices.Equal(got.Ctl, want.Ctl) {
		t.Errorf("controls:\n got %+v\nwant %+v", got.Ctl, want.Ctl)
	}
	if len(got.Pkts) < got.N {
		t.Fatalf("%d packets for N = %d", len(got.Pkts), got.N)
	}
	for i := range want.N {
		wireSamePacket(t, "packet "+strconv.Itoa(i), &got.Pkts[i], &want.Pkts[i])
	}
}

func TestBatchRoundTrip(t *testing.T) {
	for name, want := range wireBatches(true) {
		t.Run(name, func(t *testing.T) {
			enc, err := want.AppendBinary([]byte("prefix"))
			if err != nil {
				t.Fatal(err)
			}
			if string(enc[:6]) != "prefix" {
				t.Fatalf("AppendBinary overwrote dst: %q", enc[:6])
			}
			enc = enc[6:]
			if n, _ := wireBatchLen(want); len(enc) != n {
				t.Errorf("encoding has %d bytes, want %d", len(enc), n)
			}
			home := make(chan *unit.Batch, 1)
			other := wireBatch(wireFrames(false), 70, unit.Control{At: 3, Kind: unit.Marker, Hid: 33})
			other.Seq, other.Checkpoint = 12345, true // overwritten, also by a Seq 0 without Checkpoint
			other.Out = append(other.Out, &other.Pkts[0])
			other.OutStamp = append(other.OutStamp, 1)
			other.Home = home
			targets := map[string]*unit.Batch{
				"zero value":        new(unit.Batch),
				"smaller":           unit.NewBatch(4, nil),
				"large":             unit.NewBatch(128, nil),
				"used, with output": other,
			}
			for tn, got := range targets {
				bufs := make([]*byte, len(got.Pkts))
				for i := range got.Pkts {
					if cap(got.Pkts[i].Data) > 0 {
						bufs[i] = &got.Pkts[i].Data[:1][0]
					}
				}
				if err := got.UnmarshalBinary(enc); err != nil {
					t.Fatalf("%s: %v", tn, err)
				}
				wireSameBatch(t, got, want)
				if len(got.Out) != 0 || len(got.OutStamp) != 0 {
					t.Errorf("%s: %d outputs and %d stamps left", tn, len(got.Out), len(got.OutStamp))
				}
				if tn == "used, with output" && got.Home != home {
					t.Errorf("%s: Home lost", tn)
				}
				for i, p := range bufs { // packets' buffers are reused
					if p != nil && i < got.N && len(got.Pkts[i].Data) > 0 && len(want.Pkts[i].Data) <= 2048 && &got.Pkts[i].Data[0] != p {
						t.Errorf("%s: packet %d got a new buffer", tn, i)
					}
				}
				re := wireEncode(t, got)
				if !bytes.Equal(re, enc) {
					t.Errorf("%s: re-encoding differs", tn)
				}
			}
			// The decoded batch does not retain src.
			got := new(unit.Batch)
			src := slices.Clone(enc)
			if err := got.UnmarshalBinary(src); err != nil {
				t.Fatal(err)
			}
			for i := range src {
				src[i] = 0xa5
			}
			wireSameBatch(t, got, want)
		})
	}
}

// wireBatchLen is the encoded length of b from the format table.
func wireBatchLen(b *unit.Batch) (int, bool) {
	n := 42 + 63*len(b.Ctl)
	for i := range b.N {
		n += 32 + len(b.Pkts[i].Data)
	}
	return n, true
}

// TestBatchWireGolden pins the format: a batch of one 4-byte frame and one control.
func TestBatchWireGolden(t *testing.T) {
	b := unit.NewBatch(1, nil)
	b.Unit, b.Stamp, b.Now = 2, 0x0102030405060708, -2
	b.Seq, b.Checkpoint = 0x6162636465666768, true
	b.Pkts[0].SetData([]byte{0xde, 0xad, 0xbe, 0xef}, 0x1112131415161718, 60)
	b.Pkts[0].Clock, b.Pkts[0].Flow = 0x2122232425262728, 0x3132333435363738
	b.N = 1
	k := packet.Key{SrcPort: 0x4142, DstPort: 0x4344, Proto: 6, V6: true}
	k.Src[0], k.Src[15], k.Dst[0], k.Dst[15] = 0xa0, 0xaf, 0xb0, 0xbf
	b.Ctl = []unit.Control{{At: 1, Kind: unit.Expect, Key: k, Flow: 0x5152535455565758, Peer: -3, Hid: 0x7172737475767778}}
	want := slices.Concat(
		[]byte("SNFB"), []byte{2},
		[]byte{0, 0, 0, 2}, []byte{0, 0, 0, 1}, []byte{0, 0, 0, 1},
		[]byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe},
		[]byte{0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68}, []byte{1},
		// control
		[]byte{0, 0, 0, 1}, []byte{2},
		[]byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaf},
		[]byte{0xb0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbf},
		[]byte{0x41, 0x42, 0x43, 0x44, 6, 1},
		[]byte{0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58}, []byte{0xff, 0xff, 0xff, 0xfd},
		[]byte{0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78},
		// packet
		[]byte{0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18}, []byte{0, 0, 0, 60},
		[]byte{0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28},
		[]byte{0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38},
		[]byte{0, 0, 0, 4}, []byte{0xde, 0xad, 0xbe, 0xef},
	)
	if got := wireEncode(t, b); !bytes.Equal(got, want) {
		t.Errorf("encoding\n got % x\nwant % x", got, want)
	}
	var dec unit.Batch
	if err := dec.UnmarshalBinary(want); err != nil {
		t.Fatal(err)
	}
	wireSameBatch(t, &dec, b)
	// Without Checkpoint, the flags byte (offset 41) is 0.
	b.Checkpoint = false
	want[41] = 0
	if got := wireEncode(t, b); !bytes.Equal(got, want) {
		t.Errorf("encoding without Checkpoint\n got % x\nwant % x", got, want)
	}

	s := unit.State{Key: k, Flow: 0x5152535455565758, From: 7, Sent: 0x0102030405060708, Hid: 0x8182838485868788, Data: []byte{9, 8}}
	want = slices.Concat(
		[]byte("SNFS"), []byte{2},
		[]byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaf},
		[]byte{0xb0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbf},
		[]byte{0x41, 0x42, 0x43, 0x44, 6, 1},
		[]byte{0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58}, []byte{0, 0, 0, 7},
		[]byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88},
		[]byte{1}, []byte{0, 0, 0, 2}, []byte{9, 8},
	)
	if got := wireEncode(t, &s); !bytes.Equal(got, want) {
		t.Errorf("state encoding\n got % x\nwant % x", got, want)
	}
	var sdec unit.State
	if err := sdec.UnmarshalBinary(want); err != nil {
		t.Fatal(err)
	}
	wireSameState(t, "golden state", sdec, s)
}

// TestBatchWireLen: a packet's WireLen below its length (a Packet filled without SetData)
// travels as its length, as SetData would have set it.
func TestBatchWireLen(t *testing.T) {
	b := unit.NewBatch(1, nil)
	b.Pkts[0] = packet.Packet{Data: []byte{1, 2, 3, 4, 5, 6, 7}}
	b.N = 1
	var got unit.Batch
	if err := got.UnmarshalBinary(wireEncode(t, b)); err != nil {
		t.Fatal(err)
	}
	if got.Pkts[0].WireLen != 7 {
		t.Errorf("WireLen = %d, want 7", got.Pkts[0].WireLen)
	}
}

func TestBatchUnmarshalAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation may allocate")
	}
	want := wireBatches(false)["64 packets"]
	enc := wireEncode(t, want)
	b := unit.NewBatch(64, nil)
	if err := b.UnmarshalBinary(enc); err != nil { // the first decode sizes the controls
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() {
		if err := b.UnmarshalBinary(enc); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("UnmarshalBinary into a reused batch: %v allocs per run", a)
	}
	wireSameBatch(t, b, want)
	buf := make([]byte, 0, len(enc))
	if a := testing.AllocsPerRun(100, func() {
		buf, _ = want.AppendBinary(buf[:0])
	}); a != 0 {
		t.Errorf("AppendBinary into a large enough buffer: %v allocs per run", a)
	}
}

// TestBatchTruncated: every strict prefix of a valid encoding, and the encoding with a byte
// more, fail cleanly and leave the batch as it was.
func TestBatchTruncated(t *testing.T) {
	ref := wireBatches(false)["1 packet, controls at 0 & N"]
	for name, want := range wireBatches(true) {
		enc := wireEncode(t, want)
		b := unit.NewBatch(2, nil)
		if err := b.UnmarshalBinary(wireEncode(t, ref)); err != nil {
			t.Fatal(err)
		}
		check := func(in []byte) {
			t.Helper()
			err := b.UnmarshalBinary(in)
			if err == nil || !errors.Is(err, unit.ErrMalformed) {
				t.Fatalf("%s: %d of %d bytes: err = %v", name, len(in), len(enc), err)
			}
			if len(in)%61 == 0 || len(in) < 200 {
				wireSameBatch(t, b, ref)
			}
		}
		for n := range len(enc) {
			check(enc[:n])
		}
		check(append(slices.Clone(enc), 0))
		wireSameBatch(t, b, ref)
	}
}

func TestBatchUnmarshalInvalid(t *testing.T) {
	valid := wireEncode(t, wireBatches(false)["1 packet, controls at 0 & N"])
	// Offsets in valid (see the format table): header 0, controls 42 and 105, packet 168.
	const ctl0, ctl1, pkt = 42, 105, 168
	patch := func(f func(b []byte)) []byte { b := slices.Clone(valid); f(b); return b }
	put32 := func(off int, v uint32) []byte {
		return patch(func(b []byte) { binary.BigEndian.PutUint32(b[off:], v) })
	}
	big := slices.Concat(valid[:9], []byte{0, 0, 0, 1, 0, 0, 0, 0}, valid[17:42],
		make([]byte, 28), []byte{0, 1, 0, 0}, make([]byte, 1<<16)) // one packet of 65536 bytes
	binary.BigEndian.PutUint32(big[42+8:], 1<<16)
	cases := []struct {
		name, in, want string
	}{
		{"empty", "", "0 bytes, shorter than its 42-byte header"},
		{"header cut", string(valid[:41]), "41 bytes, shorter than its 42-byte header"},
		{"bad magic", string(patch(func(b []byte) { b[0] = 'X' })), "bad magic"},
		{"state magic", string(patch(func(b []byte) { b[3] = 'S' })), "bad magic"},
		{"version 0", string(patch(func(b []byte) { b[4] = 0 })), "unsupported version 0"},
		{"version 1", string(patch(func(b []byte) { b[4] = 1 })), "unsupported version 1"},
		{"version 3", string(patch(func(b []byte) { b[4] = 3 })), "unsupported version 3"},
		{"flags 2", string(patch(func(b []byte) { b[41] = 2 })), "unknown flags 0x2"},
		{"flags 3", string(patch(func(b []byte) { b[41] = 3 })), "unknown flags 0x3"},
		{"flags 0x80", string(patch(func(b []byte) { b[41] = 0x80 })), "unknown flags 0x80"},
		{"flags 0xff", string(patch(func(b []byte) { b[41] = 0xff })), "unknown flags 0xff"},
		{"packets beyond input", string(put32(9, math.MaxUint32)), "do not fit"},
		{"controls beyond input", string(put32(13, math.MaxUint32)), "do not fit"},
		{"one packet too many", string(put32(9, 2)), "packet 1: truncated header"},
		{"kind 0", string(patch(func(b []byte) { b[ctl0+4] = 0 })), "unknown kind 0"},
		{"kind 3", string(patch(func(b []byte) { b[ctl1+4] = 3 })), "unknown kind 3"},
		{"at beyond N", string(put32(ctl1, 2)), "at 2 beyond 1 packets"},
		{"at huge", string(put32(ctl0, math.MaxUint32)), "beyond 1 packets"},
		{"at out of order", string(patch(func(b []byte) {
			binary.BigEndian.PutUint32(b[ctl0:], 1)
			binary.BigEndian.PutUint32(b[ctl1:], 0)
		})), "before the previous"},
		{"v6 byte 2", string(patch(func(b []byte) { b[ctl0+5+37] = 2 })), "v6 byte 2"},
		{"length beyond 65535", string(big), "length 65536 beyond 65535"},
		{"length huge", string(put32(pkt+28, math.MaxUint32)), "beyond 65535"},
		{"length beyond input", string(put32(pkt+28, uint32(len(valid)-pkt-32+1))), "left"},
		{"length short", string(put32(pkt+28, uint32(len(valid)-pkt-32-1))), "trailing"},
		{"wirelen below length", string(put32(pkt+8, 1)), "wire length 1"},
		{"wirelen beyond int32", string(put32(pkt+8, math.MaxInt32+1)), "wire length"},
	}
	for _, c := range cases {
		var b unit.Batch
		err := b.UnmarshalBinary([]byte(c.in))
		if err == nil || !errors.Is(err, unit.ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one saying %q", c.name, err, c.want)
		}
		if b.N != 0 || b.Pkts != nil || b.Ctl != nil || b.Seq != 0 || b.Checkpoint {
			t.Errorf("%s: batch changed", c.name)
		}
	}
	// The flags byte and the Seq, wherever their values: flags 0 is a batch without
	// Checkpoint; the Seq's every byte counts.
	for _, c := range []struct {
		name       string
		in         []byte
		seq        uint64
		checkpoint bool
	}{
		{"valid", valid, 1, true},
		{"flags 0", patch(func(b []byte) { b[41] = 0 }), 1, false},
		{"seq 0", patch(func(b []byte) { binary.BigEndian.PutUint64(b[33:], 0) }), 0, true},
		{"seq bytes", patch(func(b []byte) { copy(b[33:41], []byte{0x80, 2, 3, 4, 5, 6, 7, 0xff}) }), 0x80020304050607ff, true},
	} {
		b := unit.NewBatch(1, nil)
		b.Seq, b.Checkpoint = 99, !c.checkpoint
		if err := b.UnmarshalBinary(c.in); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if b.Seq != c.seq || b.Checkpoint != c.checkpoint {
			t.Errorf("%s: Seq %#x Checkpoint %v, want %#x %v", c.name, b.Seq, b.Checkpoint, c.seq, c.checkpoint)
		}
		if !bytes.Equal(wireEncode(t, b), c.in) {
			t.Errorf("%s: re-encoding differs", c.name)
		}
	}
	// A count that does not fit the input allocates nothing in its proportion.
	in := put32(9, math.MaxUint32)
	var b unit.Batch
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range 100 {
		_ = b.UnmarshalBinary(in)
	}
	runtime.ReadMemStats(&m1)
	if d := m1.TotalAlloc - m0.TotalAlloc; d > 100*1024 {
		t.Errorf("100 decodes of a huge count allocated %d bytes", d)
	}
}

func TestBatchAppendInvalid(t *testing.T) {
	fs := wireFrames(false)
	cases := map[string]func(b *unit.Batch){
		"N beyond Pkts":    func(b *unit.Batch) { b.N = len(b.Pkts) + 1 },
		"N negative":       func(b *unit.Batch) { b.N = -1 },
		"unit beyond":      func(b *unit.Batch) { b.Unit = math.MaxInt32 + 1 },
		"unit below":       func(b *unit.Batch) { b.Unit = math.MinInt32 - 1 },
		"kind 0":           func(b *unit.Batch) { b.Ctl[0].Kind = 0 },
		"kind 3":           func(b *unit.Batch) { b.Ctl[1].Kind = 3 },
		"at beyond N":      func(b *unit.Batch) { b.Ctl[1].At = b.N + 1 },
		"at negative":      func(b *unit.Batch) { b.Ctl[0].At = -1 },
		"at out of order":  func(b *unit.Batch) { b.Ctl[1].At = 0 },
		"peer beyond":      func(b *unit.Batch) { b.Ctl[0].Peer = math.MaxInt32 + 1 },
		"frame too long":   func(b *unit.Batch) { b.Pkts[1].SetData(make([]byte, unit.MaxDataLen+1), 0, 0) },
		"wirelen too long": func(b *unit.Batch) { b.Pkts[0].WireLen = math.MaxInt32 + 1 },
	}
	for name, f := range cases {
		b := wireBatch(fs, 2, unit.Control{At: 1, Kind: unit.Marker}, unit.Control{At: 2, Kind: unit.Expect})
		f(b)
		dst := []byte("keep")
		got, err := b.AppendBinary(dst)
		if err == nil || string(got) != "keep" {
			t.Errorf("%s: AppendBinary = %d bytes, %v; want dst unchanged and an error", name, len(got), err)
		}
	}
}

func wireStates() map[string]unit.State {
	data := make([]byte, unit.MaxDataLen)
	for i := range data {
		data[i] = byte(i * 7)
	}
	return map[string]unit.State{
		"nil data":   {Key: wireKey(false, 1234), Flow: 77, From: 2, Sent: 1_700_000_000_000_000_000, Hid: 1},
		"empty data": {Key: wireKey(true, 1), Flow: math.MaxUint64, From: 0, Sent: -1, Hid: math.MaxUint64, Data: []byte{}},
		"data v4":    {Key: wireKey(false, 80).Reverse(), Flow: 1, From: math.MaxInt32, Sent: 5, Hid: 0x0102_0304_0506_0708, Data: data[:100]},
		"data v6":    {Key: wireKey(true, 443), Flow: 2, From: math.MinInt32, Sent: math.MaxInt64, Hid: 0, Data: data[7:300]},
		"max data":   {Key: packet.Key{Proto: 17}, Flow: 3, From: 5, Hid: 1 << 63, Data: data},
	}
}

func wireSameState(t testing.TB, what string, got, want unit.State) {
	t.Helper()
	if got.Key != want.Key || got.Flow != want.Flow || got.From != want.From || got.Sent != want.Sent ||
		got.Hid != want.Hid || (got.Data == nil) != (want.Data == nil) || !bytes.Equal(got.Data, want.Data) {
		t.Errorf("%s: got %+v (nil data %v), want %+v (nil data %v)", what, got, got.Data == nil, want, want.Data == nil)
	}
}

func TestStateRoundTrip(t *testing.T) {
	for name, want := range wireStates() {
		enc, err := want.AppendBinary([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if string(enc[:6]) != "prefix" || len(enc) != 6+76+len(want.Data) {
			t.Fatalf("%s: %d bytes", name, len(enc))
		}
		enc = enc[6:]
		for tn, got := range map[string]unit.State{"zero": {}, "used": {Flow: 9, Sent: 3, Hid: 44, Data: []byte("old state")}} {
			if err := got.UnmarshalBinary(enc); err != nil {
				t.Fatalf("%s into %s: %v", name, tn, err)
			}
			wireSameState(t, name+" into "+tn, got, want)
			if re := wireEncode(t, &got); !bytes.Equal(re, enc) {
				t.Errorf("%s into %s: re-encoding differs", name, tn)
			}
		}
		// The decoded state does not retain src.
		src := slices.Clone(enc)
		var got unit.State
		if err := got.UnmarshalBinary(src); err != nil {
			t.Fatal(err)
		}
		for i := range src {
			src[i] = 0x5a
		}
		wireSameState(t, name+" after src changed", got, want)
	}
}

func TestStateTruncated(t *testing.T) {
	ref := wireStates()["data v4"]
	for name, want := range wireStates() {
		enc := wireEncode(t, &want)
		s := ref
		for n := range len(enc) + 1 {
			in := enc[:n]
			if n == len(enc) {
				in = append(slices.Clone(enc), 0)
			}
			if err := s.UnmarshalBinary(in); err == nil || !errors.Is(err, unit.ErrMalformed) {
				t.Fatalf("%s: %d of %d bytes: err = %v", name, len(in), len(enc), err)
			}
		}
		wireSameState(t, name, s, ref)
	}
}

func TestStateUnmarshalInvalid(t *testing.T) {
	valid := wireEncode(t, new(wireStates()["data v4"]))
	patch := func(f func(b []byte)) string { b := slices.Clone(valid); f(b); return string(b) }
	absent := wireEncode(t, new(wireStates()["nil data"]))
	// Offsets (see the format table): present 71, len 72, data 76; valid has 100 bytes of data.
	const present, length = 71, 72
	big := slices.Concat(valid[:length], []byte{0, 1, 0, 0}, make([]byte, 1<<16))
	cases := []struct{ name, in, want string }{
		{"empty", "", "0 bytes, shorter than its 76-byte header"},
		{"short", string(valid[:75]), "75 bytes, shorter than its 76-byte header"},
		{"v1 header", string(valid[:68]), "68 bytes, shorter than its 76-byte header"},
		{"bad magic", patch(func(b []byte) { b[3] = 'B' }), "bad magic"},
		{"version 1", patch(func(b []byte) { b[4] = 1 }), "unsupported version 1"},
		{"version 3", patch(func(b []byte) { b[4] = 3 }), "unsupported version 3"},
		{"v6 byte 2", patch(func(b []byte) { b[42] = 2 }), "v6 byte 2"},
		{"presence 2", patch(func(b []byte) { b[present] = 2 }), "presence byte 2"},
		{"absent with data", patch(func(b []byte) { b[present] = 0 }), "100 bytes of data marked absent"},
		{"absent with length", string(append(absent[:length:length], 0, 0, 0, 1, 0)), "1 bytes of data marked absent"},
		{"length beyond 65535", string(big), "length 65536 beyond 65535"},
		{"length huge", patch(func(b []byte) { binary.BigEndian.PutUint32(b[length:], math.MaxUint32) }), "beyond 65535"},
		{"length beyond input", patch(func(b []byte) { binary.BigEndian.PutUint32(b[length:], 101) }), "101 bytes of data, 100 left"},
		{"length short", patch(func(b []byte) { binary.BigEndian.PutUint32(b[length:], 99) }), "1 trailing bytes"},
		{"trailing", string(append(slices.Clone(valid), 1)), "trailing"},
		{"batch", string(wireEncode(t, wireBatches(false)["1 packet"])), "bad magic"},
	}
	for _, c := range cases {
		var s unit.State
		err := s.UnmarshalBinary([]byte(c.in))
		if err == nil || !errors.Is(err, unit.ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one saying %q", c.name, err, c.want)
		}
		wireSameState(t, c.name, s, unit.State{})
	}
	for name, s := range map[string]unit.State{
		"data too long": {Data: make([]byte, unit.MaxDataLen+1)},
		"from beyond":   {From: math.MaxInt32 + 1},
	} {
		if got, err := s.AppendBinary([]byte("keep")); err == nil || string(got) != "keep" {
			t.Errorf("%s: AppendBinary = %q, %v; want dst unchanged and an error", name, got, err)
		}
	}
}

func FuzzBatchUnmarshal(f *testing.F) {
	for _, b := range wireBatches(false) {
		f.Add(wireEncode(f, b))
	}
	f.Add([]byte("SNFB"))
	f.Add(slices.Concat([]byte("SNFB\x02"), make([]byte, 37)))            // an empty batch
	f.Add(slices.Concat([]byte("SNFB\x02"), make([]byte, 36), []byte{1})) // a checkpoint request
	f.Add(slices.Concat([]byte("SNFB\x02"), make([]byte, 36), []byte{2})) // unknown flags
	f.Add(slices.Concat([]byte("SNFB\x01"), make([]byte, 28)))            // an empty version 1 batch
	f.Fuzz(func(t *testing.T, in []byte) {
		var fresh unit.Batch
		err := fresh.UnmarshalBinary(in)
		used := unit.NewBatch(2, nil)
		used.N = 2
		used.Ctl = append(used.Ctl, unit.Control{At: 1, Kind: unit.Marker, Hid: 5})
		used.Seq, used.Checkpoint = 9, true
		used.Pkts[1].SetData(make([]byte, 3000), 0, 0)
		err2 := used.UnmarshalBinary(in)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("fresh: %v, reused: %v", err, err2)
		}
		if err != nil {
			if !errors.Is(err, unit.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if used.N != 2 || len(used.Ctl) != 1 || used.Ctl[0].Hid != 5 || used.Seq != 9 || !used.Checkpoint || len(used.Pkts[1].Data) != 3000 {
				t.Fatalf("a failed decode changed the batch")
			}
			return
		}
		for _, b := range []*unit.Batch{&fresh, used} {
			re, err := b.AppendBinary(nil)
			if err != nil {
				t.Fatalf("re-encoding a decoded batch: %v", err)
			}
			if !bytes.Equal(re, in) {
				t.Fatalf("re-encoding differs:\n  in % x\n  re % x", in, re)
			}
		}
		wireSameBatch(t, used, &fresh)
	})
}

func FuzzStateUnmarshal(f *testing.F) {
	for _, s := range wireStates() {
		if len(s.Data) < 1000 {
			f.Add(wireEncode(f, &s))
		}
	}
	f.Add([]byte("SNFS\x02"))
	f.Add(slices.Concat([]byte("SNFS\x02"), make([]byte, 71)))                        // a state without data
	f.Add(slices.Concat([]byte("SNFS\x02"), make([]byte, 66), []byte{1, 0, 0, 0, 0})) // with empty data
	f.Add(slices.Concat([]byte("SNFS\x01"), make([]byte, 63)))                        // a version 1 state
	f.Fuzz(func(t *testing.T, in []byte) {
		var s unit.State
		err := s.UnmarshalBinary(in)
		used := unit.State{Flow: 1, Hid: 2, Data: []byte("previous")}
		err2 := used.UnmarshalBinary(in)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("fresh: %v, reused: %v", err, err2)
		}
		if err != nil {
			if !errors.Is(err, unit.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if used.Flow != 1 || used.Hid != 2 || string(used.Data) != "previous" {
				t.Fatalf("a failed decode changed the state")
			}
			return
		}
		wireSameState(t, "reused", used, s)
		re, err := s.AppendBinary(nil)
		if err != nil {
			t.Fatalf("re-encoding a decoded state: %v", err)
		}
		if !bytes.Equal(re, in) {
			t.Fatalf("re-encoding differs:\n  in % x\n  re % x", in, re)
		}
	})
}

// wireBenchBatch returns a batch of 64 real frames (consecutive frames of a real capture,
// or, without the captures, a synthetic mix of sizes like Internet traffic's) as a root
// sends them: with clocks and flows, and two controls.
func wireBenchBatch(b *testing.B) (*unit.Batch, string) {
	var frames []wireFrame
	src := "synthetic"
	if f, err := os.Open("../../shared/traces/pcapplusplus_example.pcap"); err == nil {
		defer f.Close()
		r, err := pcapgo.NewReader(f)
		if err != nil {
			b.Fatal(err)
		}
		if r.LinkType() != layers.LinkTypeEthernet {
			b.Fatalf("link type %v", r.LinkType())
		}
		for len(frames) < 64 {
			data, ci, err := r.ReadPacketData()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			frames = append(frames, wireFrame{data: data, wireLen: ci.Length})
		}
		src = "pcapplusplus_example.pcap"
	}
	if len(frames) < 64 {
		frames, src = nil, "synthetic"
		for i := range 64 {
			var fr []byte
			switch i % 8 {
			case 0, 1, 2: // ACKs
				fr = pkttest.TCP(wire4a, wire4b, 40000+uint16(i), 443, pkttest.ACK, nil)
			case 3: // DNS
				fr = pkttest.UDP(wire4b, wire4a, 53, 5353, make([]byte, 120))
			case 4:
				fr = pkttest.TCP(wire6a, wire6b, 50000, 443, pkttest.ACK, make([]byte, 500))
			default: // full-size segments
				fr = pkttest.TCP(wire4b, wire4a, 443, 40000+uint16(i), pkttest.ACK, make([]byte, 1460))
			}
			frames = append(frames, wireFrame{data: fr})
		}
	}
	k := wireKey(false, 40000)
	return wireBatch(frames, 64, unit.Control{At: 10, Kind: unit.Expect, Key: k, Flow: 1, Peer: 1},
		unit.Control{At: 50, Kind: unit.Marker, Key: k, Flow: 1, Peer: 2}), src
}

func BenchmarkBatchAppend(b *testing.B) {
	batch, src := wireBenchBatch(b)
	buf := make([]byte, 0, 1<<17)
	buf, _ = batch.AppendBinary(buf)
	b.Logf("frames from %s, %d bytes encoded", src, len(buf))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = batch.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.N), "ns/packet")
}

func BenchmarkBatchUnmarshal(b *testing.B) {
	batch, src := wireBenchBatch(b)
	enc, err := batch.AppendBinary(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("frames from %s, %d bytes encoded", src, len(enc))
	dst := unit.NewBatch(64, nil)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if err := dst.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.N), "ns/packet")
}
