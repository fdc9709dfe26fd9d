package trojan

import (
	"encoding/binary"
	"fmt"
)

func errState(name string, have, want int) error {
	return fmt.Errorf("trojan: %s state: %d bytes, want %d", name, have, want)
}

// streamSize is the serialized size of a stream.
const streamSize = 4 + 1 + 1 + 1 + 1 + lineCap + 8 + 1 + 1 + 1 + 2 + 1 + 1 + 4 + 8

// parserSize is the serialized size of a parser.
const parserSize = 2*streamSize + 4 + 1 + 1 + 1

func (s *stream) appendBinary(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, s.next)
	b = append(b, boolByte(s.synced), boolByte(s.broken), s.st, s.n)
	b = append(b, s.line[:]...)
	b = binary.BigEndian.AppendUint64(b, s.roll)
	b = append(b, s.names, s.msg, s.ctype)
	b = binary.BigEndian.AppendUint16(b, s.status)
	b = append(b, s.hint, s.mn)
	b = append(b, s.magic[:]...)
	return binary.BigEndian.AppendUint64(b, s.left)
}

func (s *stream) unmarshal(b []byte) error {
	s.next = binary.BigEndian.Uint32(b)
	s.synced, s.broken, s.st, s.n = b[4] != 0, b[5] != 0, b[6], b[7]
	b = b[8:]
	copy(s.line[:], b)
	b = b[lineCap:]
	s.roll = binary.BigEndian.Uint64(b)
	s.names, s.msg, s.ctype = b[8], b[9], b[10]
	s.status = binary.BigEndian.Uint16(b[11:])
	s.hint, s.mn = b[13], b[14]
	copy(s.magic[:], b[15:19])
	s.left = binary.BigEndian.Uint64(b[19:])
	if s.st >= numStates || int(s.n) > lineCap || int(s.mn) > len(s.magic) {
		return fmt.Errorf("trojan: parser state: bad stream (state %d, line %d, magic %d)", s.st, s.n, s.mn)
	}
	return nil
}

// AppendBinary implements snf.StateCodec.
func (pr *parser) AppendBinary(b []byte) ([]byte, error) {
	for i := range pr.s {
		b = pr.s[i].appendBinary(b)
	}
	b = append(b, pr.fifo[:]...)
	return append(b, pr.fifoN, pr.fifoHead, pr.ftpPending), nil
}

// UnmarshalBinary implements snf.StateCodec.
func (pr *parser) UnmarshalBinary(b []byte) error {
	if len(b) != parserSize {
		return errState("parser", len(b), parserSize)
	}
	for i := range pr.s {
		if err := pr.s[i].unmarshal(b[:streamSize]); err != nil {
			return err
		}
		b = b[streamSize:]
	}
	copy(pr.fifo[:], b)
	pr.fifoN, pr.fifoHead, pr.ftpPending = b[4], b[5], b[6]
	if int(pr.fifoN) > len(pr.fifo) || int(pr.fifoHead) >= len(pr.fifo) {
		return fmt.Errorf("trojan: parser state: bad request queue (%d from %d)", pr.fifoN, pr.fifoHead)
	}
	return nil
}
