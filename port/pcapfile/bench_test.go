package pcapfile

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/snf-dev/snf/packet"
)

// benchRead reads the capture at rel (under ../shared/traces) from memory, over and over,
// and reports the time per packet.
func benchRead(b *testing.B, rel string) {
	data, err := os.ReadFile(traceFile(b, rel))
	if err != nil {
		b.Fatal(err)
	}
	pkts := make([]packet.Packet, 32)
	packets := 0
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data), rel)
		if err != nil {
			b.Fatal(err)
		}
		for {
			n, err := r.Read(pkts)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			packets += n
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(packets), "ns/packet")
}

// BenchmarkReadPcap reads a real classic pcap (4,631 packets, 3.8 MB of dense web
// traffic) from memory; ns/packet includes Packet.SetData's copy and parse.
func BenchmarkReadPcap(b *testing.B) { benchRead(b, "pcapplusplus_example.pcap") }

// BenchmarkReadPcapng is the same for the one real pcapng capture.
func BenchmarkReadPcapng(b *testing.B) {
	benchRead(b, "trojan_ingredients/zeek_irc-dcc-send.pcapng")
}

// BenchmarkWritePcap writes the packets of a real capture to memory.
func BenchmarkWritePcap(b *testing.B) {
	data, err := os.ReadFile(traceFile(b, "pcapplusplus_example.pcap"))
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(data), "in")
	if err != nil {
		b.Fatal(err)
	}
	var pkts []packet.Packet
	for {
		batch := make([]packet.Packet, 64)
		n, err := r.Read(batch)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		pkts = append(pkts, batch[:n]...)
	}
	ptrs := make([]*packet.Packet, len(pkts))
	for i := range pkts {
		ptrs[i] = &pkts[i]
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w, err := NewWriter(io.Discard, "out", FormatPcap, LinkTypeEthernet, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Write(ptrs); err != nil {
			b.Fatal(err)
		}
		w.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(pkts)), "ns/packet")
}
