//go:build linux

package engine_test

import (
	"testing"
	"time"

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
// traffic, and the capture of throughput-capture-short (../shared/traces). latency: the
// root-to-egress latency of the three modes at 100,000 packets/s, sent while the run reads.
//
//	go test -run x -bench RecoveryInterface -benchtime 40x ./engine/
func BenchmarkRecoveryInterface(b *testing.B) {
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		b.Fatal(err)
	}
	const n = 250000
	bench := func(b *testing.B, frames []mem.Frame) {
		l, far, pkts := farEnd(b, frames)
		var near *afpacket.Port
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
	b.Run("latency", func(b *testing.B) {
		// Root-to-egress latency at a moderate rate, the far end sending while the run
		// reads: 40,000 frames, 16 every 160 µs (100,000 packets/s); off, on (positions in
		// the ring) and copied in turn, each first in turn; the medians over the iterations.
		frames := generated(&testing.T{}, 40000)
		l, far, pkts := farEnd(b, frames)
		modes := []struct {
			name         string
			on, readOnce bool
		}{{"off", false, false}, {"on", true, false}, {"copied", true, true}}
		var p50, p99 [3][]float64
		for i := 0; b.Loop(); i++ {
			for j := range modes {
				k := (j + i) % len(modes)
				var near *afpacket.Port
				netnstest.In(b, l.NsB, func() {
					near, err = afpacket.Open(l.IfB, afpacket.Options{Frames: 65536, NoTx: true, Count: int64(len(frames))})
				})
				if err != nil {
					b.Fatal(err)
				}
				var in port.Reader = near
				if modes[k].readOnce {
					in = port.Copied(near)
				}
				sent := make(chan error, 1)
				go func() {
					due := time.Now().Add(50 * time.Millisecond) // (after the run's setup)
					for q := pkts; len(q) > 0; q = q[min(16, len(q)):] {
						time.Sleep(time.Until(due))
						due = due.Add(160 * time.Microsecond)
						if err := far.Write(q[:min(16, len(q))]); err != nil {
							sent <- err
							return
						}
					}
					sent <- nil
				}()
				s := runRecovery(b, spec, in, modes[k].on, nil)
				if err := <-sent; err != nil {
					b.Fatal(err)
				}
				if st := near.Stats(); st.Received != uint64(len(frames)) || st.Dropped != 0 {
					b.Fatalf("%s: the interface read %d frames and dropped %d, of %d", modes[k].name, st.Received, st.Dropped, len(frames))
				}
				near.Close()
				p50[k] = append(p50[k], float64(s.Latency.P50.Nanoseconds())/1e3)
				p99[k] = append(p99[k], float64(s.Latency.P99.Nanoseconds())/1e3)
			}
		}
		for k, m := range modes {
			b.ReportMetric(median(p50[k]), m.name+"-p50-µs")
			b.ReportMetric(median(p99[k]), m.name+"-p99-µs")
		}
	})
	b.Run("capture", func(b *testing.B) { bench(b, captureCopies(b, n)) })
}

// farEnd makes a link (netnstest) and opens its far end for sending frames, given as packets
// (closed when b ends).
func farEnd(b *testing.B, frames []mem.Frame) (netnstest.Link, *afpacket.Port, []*packet.Packet) {
	l := netnstest.New(b)
	var far *afpacket.Port
	var err error
	netnstest.In(b, l.NsA, func() { far, err = afpacket.Open(l.IfA, afpacket.Options{NoRx: true}) })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { far.Close() })
	pkts := make([]*packet.Packet, len(frames))
	for i, f := range frames {
		pkts[i] = &packet.Packet{}
		pkts[i].SetData(f.Data, f.Time, len(f.Data))
	}
	return l, far, pkts
}
