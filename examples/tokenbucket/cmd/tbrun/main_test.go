package main

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/port/pcapfile"
)

// TestRun writes a capture of generated frames, runs the guide's chain file over it, and
// checks the summary, the alerts and the output capture.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.pcap"), filepath.Join(dir, "out.pcapng")
	w, err := pcapfile.Create(in, pcapfile.FormatPcap, 1 /* Ethernet */, 0)
	if err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("198.51.100.1")
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	// One source, one packet per ms for 100 ms, against 100 packets/s and a burst of 10: the
	// burst passes, then one packet per 10 ms of refill (at 10, 20, … 90 ms): 19 in all.
	pkts := make([]packet.Packet, 100)
	batch := make([]*packet.Packet, len(pkts))
	for i := range pkts {
		pkts[i].SetData(pkttest.UDP(src, dst, 40000, 53, []byte("snf")), t0+int64(i)*int64(time.Millisecond), 0)
		batch[i] = &pkts[i]
	}
	if err := w.Write(batch); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	var stdout, alerts bytes.Buffer
	if err := run("../../chain.yaml", in, out, &stdout, &alerts); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"100 packets in, 19 out, 81 dropped\n",
		"firewall: in 100, dropped 0",
		"tokenbucket: in 100, dropped 81, passed 19, dropped 81, limited 1",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary %q lacks %q", stdout.String(), want)
		}
	}
	if n := strings.Count(alerts.String(), "\n"); n != 1 || !strings.Contains(alerts.String(), `"rule":"rate_exceeded"`) ||
		!strings.Contains(alerts.String(), `"source":"10.0.0.1"`) {
		t.Errorf("alerts:\n%s", alerts.String())
	}

	r, err := pcapfile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := r.Read(make([]packet.Packet, 100)); got != 19 || r.Format() != pcapfile.FormatPcapNG {
		t.Errorf("output: %d packets (%s), want 19 in pcapng", got, r.Format())
	}

	if err := run("../../chain.yaml", filepath.Join(dir, "missing.pcap"), "", &stdout, &alerts); err == nil {
		t.Error("a missing input must be an error")
	}
}
