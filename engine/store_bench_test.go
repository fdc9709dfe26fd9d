package engine_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/engine"
	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port/mem"
	"github.com/snf-dev/snf/store"
)

// BenchmarkStateStrategies runs the chain nat,portscan,monitor over pcapplusplus_example with
// its state in Redis, three ways:
//   - strategies: flow state in the unit, the NAT's port pool a blocking operation per new
//     flow, the monitor's counters batched non-blocking adds, reads cached (snf's design);
//   - naive: every access a blocking round trip — flow state read from and written back to
//     the store on every packet, counters sent one by one, no client cache (the StatelessNF
//     design, and what a per-packet serverless platform forces);
//   - embedded: the strategies with the in-process store, for reference.
//
// The ratio of the packets/s is what the strategies buy.
//
//	go test -run x -bench StateStrategies -benchtime 3x ./engine/
func BenchmarkStateStrategies(b *testing.B) {
	path, _ := filepath.Abs("../../shared/traces/pcapplusplus_example.pcap")
	if !fileExists(path) {
		b.Skipf("real capture not found at %s", path)
	}
	frames := readFrames(&testing.T{}, path)
	url := testtrace.RedisServer(b)
	spec, err := snf.ChainFromNames("nat,portscan,monitor")
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, storeURL string, naive bool) {
		for i := 0; b.Loop(); i++ {
			st, err := store.Open(storeURL)
			if err != nil {
				b.Fatal(err)
			}
			// A fresh namespace per run: pools and counters start empty.
			ps := store.Namespaced(st, b.Name()+string(rune('a'+i%26))+string(rune('a'+i/26%26)))
			if naive {
				pol, _ := policy.New("perpacket", policy.Options{})
				if _, err := engine.RunLive(context.Background(), engine.LiveConfig{Spec: spec, In: mem.NewReader(frames),
					Policy: pol, MinUnits: 1, MaxUnits: 1, Capacity: 1e9, Store: ps}); err != nil {
					b.Fatal(err)
				}
			} else {
				chain, err := snf.NewChain(spec, snf.ChainOptions{Store: ps})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := engine.Run(context.Background(), engine.Config{Chain: chain, In: mem.NewReader(frames)}); err != nil {
					b.Fatal(err)
				}
				chain.Close()
			}
			store.Flush(st)
			st.Close()
		}
		b.ReportMetric(float64(b.N*len(frames))/b.Elapsed().Seconds(), "packets/s")
	}
	b.Run("embedded", func(b *testing.B) { run(b, "embedded", false) })
	b.Run("redis-strategies", func(b *testing.B) { run(b, url, false) })
	b.Run("redis-naive", func(b *testing.B) { run(b, url+"?naive=1", true) })
}
