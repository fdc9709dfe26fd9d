package trojan_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/snf-dev/snf/packet"
)

// fuzzPorts are the server ports a fuzz input may pick: HTTP, FTP, SSH, IRC, and ports
// where only the content decides.
var fuzzPorts = [...]uint16{80, 21, 22, 6667, 2121, 50000, 7000, 8080}

// segFrame builds an Ethernet/IPv4/TCP frame by hand (fuzzing wants speed; no checksums:
// nothing on the path checks them). The IP total length says ipPayload bytes of TCP
// payload, while only payload is in the frame (fewer when a snap length "cut" it).
func segFrame(buf []byte, fromClient bool, sport uint16, seq uint32, flags byte, payload []byte, claimed int) []byte {
	b := append(buf[:0], make([]byte, 54)...)
	b[12], b[13] = 0x08, 0x00
	ip := b[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, packet.ProtoTCP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+claimed))
	cli, srv := [4]byte{10, 66, 0, 7}, [4]byte{198, 51, 100, 20}
	cport := uint16(40001)
	tcp := b[34:54]
	if fromClient {
		copy(ip[12:], cli[:])
		copy(ip[16:], srv[:])
		binary.BigEndian.PutUint16(tcp[0:], cport)
		binary.BigEndian.PutUint16(tcp[2:], sport)
	} else {
		copy(ip[12:], srv[:])
		copy(ip[16:], cli[:])
		binary.BigEndian.PutUint16(tcp[0:], sport)
		binary.BigEndian.PutUint16(tcp[2:], cport)
	}
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12], tcp[13] = 5<<4, flags
	return append(b, payload...)
}

// FuzzTrojan drives one TCP connection of a host that opened SSH before, with segments cut
// from the input: each is [control][length][payload]; control bit 0 is the direction,
// bit 1 skips sequence space (loss), bit 2 repeats the previous sequence number
// (retransmission), bit 3 cuts the frame short of what its IP header says (snap length).
// The first byte picks the server port. Then the input is also sent as a raw frame, and
// fed to the state decoders. Nothing may panic, every packet must pass, and flow state must
// survive an export/import round trip byte for byte.
func FuzzTrojan(f *testing.F) {
	seed := func(port byte, segs ...string) []byte {
		b := []byte{port}
		for i, s := range segs {
			ctl := byte(0)
			if s[0] == '>' {
				ctl = 1
			}
			if i == 2 {
				ctl |= 4
			}
			b = append(b, ctl, byte(len(s)-1))
			b = append(b, s[1:]...)
		}
		return b
	}
	f.Add(seed(0, "<GET /a.exe HTTP/1.1\r\nHost: x\r\n\r\n", ">HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\nMZ\x90\x00"))
	f.Add(seed(0, "<GET / HTTP/1.1\r\n\r\n", ">HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nPK\x03\x04\r\n0\r\n\r\n", ">x"))
	f.Add(seed(1, ">220 hi\r\n", "<RETR a.zip\r\n", ">150 go\r\n", ">226 ok\r\n"))
	f.Add(seed(3, "<NICK x\r\nUSER x 0 * :x\r\nJOIN #c\r\n"))
	f.Add(seed(4, ">220 hi\r\n", "<USER a\r\n", "<RETR b.html\r\n", ">226 ok\r\n"))
	f.Add(seed(5, ">PK\x03\x04zip"))
	f.Add(seed(6, ">SSH-2.0-x\r\n"))
	f.Add([]byte{0, 1, 0, 2, 'H', 'T', 9, 40, 'x'})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		raw := data
		s, s2 := newSim(t, ""), newSim(t, "")
		s.play(victim, 0, sshStep)
		port := fuzzPorts[int(data[0])%len(fuzzPorts)]
		data = data[1:]
		seq := [2]uint32{1000, 500000}
		var last [2]uint32
		var buf []byte
		s.send(segFrame(buf, true, port, seq[0]-1, packet.TCPSyn, nil, 0), segFrame(buf, false, port, seq[1]-1, packet.TCPSyn|packet.TCPAck, nil, 0))
		for len(data) >= 2 {
			ctl, n := data[0], int(data[1])
			data = data[2:]
			n = min(n, len(data))
			payload := data[:n]
			data = data[n:]
			d := int(ctl & 1)
			if ctl&2 != 0 {
				seq[d] += uint32(ctl) * 7
			}
			at := seq[d]
			if ctl&4 != 0 {
				at = last[d]
			}
			claimed := len(payload)
			if ctl&8 != 0 && len(payload) > 0 {
				payload = payload[:len(payload)/2]
			}
			s.send(segFrame(buf, d == 0, port, at, packet.TCPAck|packet.TCPPsh, payload, claimed))
			last[d] = at
			if at == seq[d] {
				seq[d] += uint32(claimed)
			}
		}
		k := packet.KeyFrom(victim, server, 40001, port, packet.ProtoTCP)
		st, err := s.c.ExportFlow(k, nil)
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		if err := s2.c.ImportFlow(st); err != nil {
			t.Fatalf("import of an export: %v", err)
		}
		st2, err := s2.c.ExportFlow(k, nil)
		if err != nil || !bytes.Equal(st, st2) {
			t.Fatalf("state changed in an export/import round trip (%v)", err)
		}
		// The input as a frame of its own, and as flow state.
		s.send(raw)
		_ = s2.c.ImportFlow(raw)
	})
}
