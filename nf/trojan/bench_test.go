package trojan_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/packet"
)

// passGap is how much later in packet time each pass of a replay is than the previous one:
// 20 minutes, so every flow of a pass has expired (idle) before the next pass starts it
// again. The detector sees whole new connections every pass, as with fresh traffic, not
// retransmissions of old bytes. It does not rewrite packets, so the frames need no
// restoring between passes.
const passGap = 20 * time.Minute

// loadReplay replays a real capture held in memory.
func loadReplay(t testing.TB, name string) *testtrace.Replay {
	t.Helper()
	pkts := testtrace.Packets(t, name)
	if len(pkts) < testtrace.BatchSize {
		t.Fatalf("%s: only %d packets", name, len(pkts))
	}
	return testtrace.NewReplay(pkts, passGap)
}

func chainOf(t testing.TB, names string) *snf.Chain {
	t.Helper()
	return testtrace.ChainOf(t, names, snf.ChainOptions{Alerts: &testtrace.Alerts{}})
}

// TestNoAllocs: after a warm-up pass, processing a batch of a real capture allocates
// nothing, connections created and expired (with their parser state) included.
func TestNoAllocs(t *testing.T) {
	rp := loadReplay(t, "pcapplusplus_example.pcap")
	c := chainOf(t, "trojan")
	for range 2 * (rp.Batches() + 1) {
		rp.Batch(c)
	}
	allocs := testing.AllocsPerRun(3*rp.Batches(), func() { rp.Batch(c) })
	if allocs != 0 {
		t.Errorf("%.2f allocations per batch of %d, want 0", allocs, testtrace.BatchSize)
	}
	if h := testtrace.Metric(c, 0, "http_responses"); h < 3*337 {
		t.Errorf("http_responses = %d after four passes: the parsers did not run on every pass", h)
	}
}

// TestNoAllocsBuiltFrames: the same on frames the test builds: 32 hosts each open SSH and
// download HTML, ZIP and EXE (HTTP, FTP), every pass; the hosts' state expires between
// passes and is created again.
func TestNoAllocsBuiltFrames(t *testing.T) {
	var pkts []packet.Packet
	for i := range 32 {
		h := netip.AddrFrom4([4]byte{10, 77, 0, byte(i)})
		for _, st := range []step{sshStep, htmlStep, zipStep, exeStep} {
			for _, f := range st(h) {
				var p packet.Packet
				p.SetData(f, t0+int64(len(pkts))*int64(time.Millisecond), 0)
				pkts = append(pkts, p)
			}
		}
	}
	if len(pkts)%testtrace.BatchSize != 0 {
		t.Fatalf("%d frames: not whole batches", len(pkts))
	}
	rp := testtrace.NewReplay(pkts, passGap)
	c := chainOf(t, "trojan")
	for range 2 * rp.Batches() {
		rp.Batch(c)
	}
	allocs := testing.AllocsPerRun(3*rp.Batches(), func() { rp.Batch(c) })
	if allocs != 0 {
		t.Errorf("%.2f allocations per batch of %d, want 0", allocs, testtrace.BatchSize)
	}
	passes := uint64(rp.Passes())
	if got := testtrace.Metric(c, 0, "sequences_started"); got < 32*(passes-1) {
		t.Errorf("sequences_started = %d after %d passes, want 32 a pass", got, passes)
	}
	if testtrace.Metric(c, 0, "downloads_exe") < 32*(passes-1) || testtrace.Metric(c, 0, "hosts_expired") < 32*(passes-2) {
		t.Errorf("exe %d, hosts expired %d: the passes did not run in full", testtrace.Metric(c, 0, "downloads_exe"), testtrace.Metric(c, 0, "hosts_expired"))
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
			testtrace.BenchBatches(b, rp.Batches()+1, func() { rp.Batch(c) })
		})
	}
}
