package engine

import (
	"time"

	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
)

// Reshape returns a Reader that re-times the packets of r, read at a mean rate of base
// packets/s, so that their rate follows rates: rates[k] packets/s during the k-th step of
// the given length from the first packet, the last rate after the last step. Each gap
// between two packets is scaled by base/rates[k] for the step the earlier packet is in:
// a Poisson input stays Poisson with the new rate. Order, bytes and everything else are
// unchanged. A rate <= 0 is taken as base.
func Reshape(r port.Reader, base float64, rates []float64, step time.Duration) port.Reader {
	return &reshaped{r: r, base: base, rates: rates, step: int64(step)}
}

type reshaped struct {
	r       port.Reader
	base    float64
	rates   []float64
	step    int64
	started bool
	in, out int64 // the previous packet's original and new time
	first   int64
}

func (s *reshaped) Read(pkts []packet.Packet) (int, error) {
	n, err := s.r.Read(pkts)
	for i := range pkts[:n] {
		p := &pkts[i]
		if !s.started {
			s.started, s.in, s.out, s.first = true, p.Time, p.Time, p.Time
			continue
		}
		k := 0
		if s.step > 0 {
			k = int((s.out - s.first) / s.step)
		}
		rate := s.base
		if len(s.rates) > 0 {
			if v := s.rates[min(k, len(s.rates)-1)]; v > 0 {
				rate = v
			}
		}
		gap := max(p.Time-s.in, 0)
		s.in = p.Time
		s.out += int64(float64(gap) * s.base / rate)
		p.Time = s.out
	}
	return n, err
}

func (s *reshaped) Close() error { return s.r.Close() }

// LinkType implements port.LinkTyper (Ethernet unless r says otherwise).
func (s *reshaped) LinkType() uint32 {
	if lt, ok := s.r.(port.LinkTyper); ok {
		return lt.LinkType()
	}
	return 1
}
