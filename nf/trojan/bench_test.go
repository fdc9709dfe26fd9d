package trojan_test

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
)

const batchSize = 64

// replay serves the packets of a capture held in memory in batches of 64, pass after
// pass. Each pass is 20 minutes of packet time after the previous one, so every flow of a
// pass has expired (idle) before the next pass starts it again: the detector sees whole new
// connections every pass, as with fresh traffic, not retransmissions of old bytes. The
// detector does not rewrite packets, so the frames need no restoring between passes.
type replay struct {
	pkts  []packet.Packet
	times []int64
	n     int
	pass  int64
	clock uint64
}

const passGap = int64(20 * time.Minute)

func loadReplay(t testing.TB, name string) *replay {
	t.Helper()
	r, err := pcapfile.Open(tracePath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rp := &replay{}
	batch := make([]packet.Packet, batchSize)
	for {
		n, err := r.Read(batch)
		for i := range batch[:n] {
			var p packet.Packet
			p.SetData(batch[i].Data, batch[i].Time, batch[i].WireLen)
			rp.pkts = append(rp.pkts, p)
			rp.times = append(rp.times, p.Time)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(rp.pkts) < batchSize {
		t.Fatalf("%s: only %d packets", name, len(rp.pkts))
	}
	return rp
}

// next returns the next batch, stamped with its pass's times and new clocks.
func (rp *replay) next() []packet.Packet {
	if rp.n+batchSize > len(rp.pkts) {
		rp.n = 0
		rp.pass++
	}
	batch := rp.pkts[rp.n : rp.n+batchSize]
	for j := range batch {
		rp.clock++
		batch[j].Time = rp.times[rp.n+j] + rp.pass*passGap
		batch[j].Clock = rp.clock
	}
	rp.n += batchSize
	return batch
}

func (rp *replay) batches() int { return len(rp.pkts) / batchSize }

func chainOf(t testing.TB, names string) *snf.Chain {
	t.Helper()
	spec, err := snf.ChainFromNames(names)
	if err != nil {
		t.Fatal(err)
	}
	c, err := snf.NewChain(spec, snf.ChainOptions{Alerts: &sink{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestNoAllocs: after a warm-up pass, processing a batch of a real capture allocates
// nothing, connections created and expired (with their parser state) included.
func TestNoAllocs(t *testing.T) {
	rp := loadReplay(t, "pcapplusplus_example.pcap")
	c := chainOf(t, "trojan")
	out := make([]*packet.Packet, 0, 2*batchSize)
	for range 2 * (rp.batches() + 1) {
		out = c.Process(rp.next(), out[:0])
	}
	allocs := testing.AllocsPerRun(3*rp.batches(), func() {
		out = c.Process(rp.next(), out[:0])
	})
	if allocs != 0 {
		t.Errorf("%.2f allocations per batch of %d, want 0", allocs, batchSize)
	}
	if h := chainMetric(c, "http_responses"); h < 3*337 {
		t.Errorf("http_responses = %d after four passes: the parsers did not run on every pass", h)
	}
}

// TestNoAllocsBuiltFrames: the same on frames the test builds: 32 hosts each open SSH and
// download HTML, ZIP and EXE (HTTP, FTP), every pass; the hosts' state expires between
// passes and is created again.
func TestNoAllocsBuiltFrames(t *testing.T) {
	rp := &replay{}
	for i := range 32 {
		h := netip.AddrFrom4([4]byte{10, 77, 0, byte(i)})
		for _, st := range []step{sshStep, htmlStep, zipStep, exeStep} {
			for _, f := range st(h) {
				var p packet.Packet
				p.SetData(f, t0+int64(len(rp.pkts))*int64(time.Millisecond), 0)
				rp.pkts = append(rp.pkts, p)
				rp.times = append(rp.times, p.Time)
			}
		}
	}
	if len(rp.pkts)%batchSize != 0 {
		t.Fatalf("%d frames: not whole batches", len(rp.pkts))
	}
	c := chainOf(t, "trojan")
	out := make([]*packet.Packet, 0, 2*batchSize)
	for range 2 * rp.batches() {
		out = c.Process(rp.next(), out[:0])
	}
	allocs := testing.AllocsPerRun(3*rp.batches(), func() {
		out = c.Process(rp.next(), out[:0])
	})
	if allocs != 0 {
		t.Errorf("%.2f allocations per batch of %d, want 0", allocs, batchSize)
	}
	passes := uint64(rp.pass + 1)
	if got := chainMetric(c, "sequences_started"); got < 32*(passes-1) {
		t.Errorf("sequences_started = %d after %d passes, want 32 a pass", got, passes)
	}
	if chainMetric(c, "downloads_exe") < 32*(passes-1) || chainMetric(c, "hosts_expired") < 32*(passes-2) {
		t.Errorf("exe %d, hosts expired %d: the passes did not run in full", chainMetric(c, "downloads_exe"), chainMetric(c, "hosts_expired"))
	}
}

// BenchmarkTrojan: the detector over batches of 64 packets of a real capture, beside the
// empty chain (its flow table alone: the detector's own cost is the difference); ns/pkt is
// per packet of the batch.
func BenchmarkTrojan(b *testing.B) {
	for _, names := range []string{"none", "trojan"} {
		b.Run(names, func(b *testing.B) {
			rp := loadReplay(b, "pcapplusplus_example.pcap")
			c := chainOf(b, names)
			out := make([]*packet.Packet, 0, 2*batchSize)
			for range rp.batches() + 1 {
				out = c.Process(rp.next(), out[:0])
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				out = c.Process(rp.next(), out[:0])
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/pkt")
		})
	}
}
