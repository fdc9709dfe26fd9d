package snf_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// The NF of the package documentation, registered and run.

type CountConfig struct {
	MaxPackets uint64 `json:"max_packets" doc:"drop a flow's packets after this many"`
}

func (c *CountConfig) Validate() error {
	if c.MaxPackets == 0 {
		return errors.New("max_packets: must be > 0")
	}
	return nil
}

type flowCount struct{ n uint64 }

func (f *flowCount) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(b, f.n), nil
}

func (f *flowCount) UnmarshalBinary(b []byte) error {
	if len(b) != 8 {
		return errors.New("count: bad state")
	}
	f.n = binary.BigEndian.Uint64(b)
	return nil
}

type Count struct {
	cfg     CountConfig
	flows   *snf.FlowState[flowCount, *flowCount]
	dropped *snf.Metric
}

func init() {
	snf.Register("count", "drops each flow's packets beyond a limit",
		func() *CountConfig { return &CountConfig{MaxPackets: 1000} },
		func(env *snf.Env, cfg *CountConfig) (snf.NF, error) {
			return &Count{
				cfg:     *cfg,
				flows:   snf.NewFlowState[flowCount](env, "count"),
				dropped: env.Metric("dropped", "packets over the limit"),
			}, nil
		})
}

func (c *Count) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	st := c.flows.GetOrCreate(ctx)
	if st == nil {
		return snf.Forward
	}
	st.n++
	if st.n > c.cfg.MaxPackets {
		c.dropped.Inc()
		return snf.Drop
	}
	return snf.Forward
}

func Example() {
	spec, err := snf.ParseChain([]byte("nfs:\n  - nf: count\n    config: {max_packets: 3}\n"), "example.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	chain, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer chain.Close()

	// Five packets of one flow (both directions), then one of another flow.
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	batch := make([]packet.Packet, 6)
	for i := range batch {
		src, dst, sport, dport := a, b, uint16(1000), uint16(53)
		if i%2 == 1 {
			src, dst, sport, dport = b, a, dport, sport
		}
		if i == 5 {
			sport = 2000
		}
		batch[i].SetData(udpFrame(src, dst, sport, dport), int64(i), 0)
	}
	out := chain.Process(batch, nil)
	fmt.Println("out:", len(out), "dropped:", chain.Stats().Dropped)
	fmt.Println(chain.Report()[0].Metrics[0].Name, chain.Report()[0].Metrics[0].Value)
	// Output:
	// out: 4 dropped: 2
	// dropped 2
}
