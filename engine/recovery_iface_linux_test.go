//go:build linux

package engine_test

import (
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/netnstest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port"
	"github.com/snf-dev/snf/port/afpacket"
	"github.com/snf-dev/snf/port/mem"
)

// BenchmarkRecoveryInterface is BenchmarkRecovery's throughput with a live interface as the
// input (port/afpacket, on a veth pair between two network namespaces; root only): before
// each run, not timed, the far end sends the run's 250,000 frames, which wait in the near
// end's receive ring; the run reads them from there at full speed. Off; on: the packet log
// keeps their positions in the ring, which holds them until released; copied: the ring's
// frames taken as read once (port.Copied), the log copying them as from a pipe. Generated
// traffic, and the capture of throughput-capture-short (../shared/traces).
//
//	go test -run x -bench RecoveryInterface -benchtime 40x ./engine/
func BenchmarkRecoveryInterface(b *testing.B) {
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		b.Fatal(err)
	}
	const n = 250000
	bench := func(b *testing.B, frames []mem.Frame) {
		l := netnstest.New(b)
		var far, near *afpacket.Port
		netnstest.In(b, l.NsA, func() { far, err = afpacket.Open(l.IfA, afpacket.Options{NoRx: true}) })
		if err != nil {
			b.Fatal(err)
		}
		defer far.Close()
		pkts := make([]*packet.Packet, len(frames))
		for i, f := range frames {
			pkts[i] = &packet.Packet{}
			pkts[i].SetData(f.Data, f.Time, len(f.Data))
		}
		done := func() {
			if near == nil {
				return
			}
			if st := near.Stats(); st.Received != uint64(len(frames)) || st.Dropped != 0 {
				b.Fatalf("the interface read %d frames and dropped %d, of %d", st.Received, st.Dropped, len(frames))
			}
			near.Close()
			near = nil
		}
		defer done()
		in := func() port.Reader {
			done()
			netnstest.In(b, l.NsB, func() {
				near, err = afpacket.Open(l.IfB, afpacket.Options{Frames: len(frames), NoTx: true, Count: int64(len(frames))})
			})
			if err != nil {
				b.Fatal(err)
			}
			for ps := pkts; len(ps) > 0; ps = ps[min(64, len(ps)):] {
				if err := far.Write(ps[:min(64, len(ps))]); err != nil {
					b.Fatal(err)
				}
			}
			return near
		}
		recoveryThroughput(b, spec, in, nil)
	}
	b.Run("generated", func(b *testing.B) { bench(b, generated(&testing.T{}, n)) })
	b.Run("capture", func(b *testing.B) { bench(b, captureCopies(b, n)) })
}
