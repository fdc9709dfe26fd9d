package snf_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/packet"
)

// perSource counts packets per source address in Scoped state and alerts at the third.
type srcCount struct{ n uint32 }

func (s *srcCount) AppendBinary(b []byte) ([]byte, error) { return append(b, byte(s.n)), nil }
func (s *srcCount) UnmarshalBinary(b []byte) error {
	if len(b) != 1 {
		return errors.New("bad")
	}
	s.n = uint32(b[0])
	return nil
}

type perSource struct {
	st   *snf.Scoped[netip.Addr, srcCount, *srcCount]
	seen []uint32
}

type perSourceConfig struct{}

func init() {
	snf.Register("persource", "test NF", func() *perSourceConfig { return &perSourceConfig{} },
		func(env *snf.Env, _ *perSourceConfig) (snf.NF, error) {
			st, err := snf.NewScoped[netip.Addr, srcCount](env, "sources",
				snf.ScopeOptions{By: snf.BySource, MaxKeys: 2, Idle: 10 * time.Second})
			return &perSource{st: st}, err
		})
}

func (n *perSource) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	c := n.st.GetOrCreate(ctx, p.Key.SrcAddr())
	c.n++
	n.seen = append(n.seen, c.n)
	if c.n == 3 {
		ctx.Alert("third", "count", c.n)
	}
	return snf.Forward
}

type alertLog struct{ got []snf.Alert }

func (l *alertLog) Alert(a *snf.Alert) { l.got = append(l.got, *a) }

func TestScopedBoundIdleAndAlerts(t *testing.T) {
	spec, _ := snf.ChainFromNames("persource")
	var log alertLog
	c, err := snf.NewChain(spec, snf.ChainOptions{Alerts: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b, d := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	at := func(src netip.Addr, sec int) packet.Packet {
		var p packet.Packet
		p.SetData(udpFrame(src, hostB, 1, 2), int64(sec)*int64(time.Second), 0)
		return p
	}
	batch := []packet.Packet{
		at(a, 0), at(a, 1), at(b, 2), at(a, 3), // a reaches 3: alert
		at(d, 4),  // third key: evicts the least recently used (b)
		at(b, 5),  // b starts again at 1
		at(a, 30), // a idle 27s > 10s: expired, starts at 1
	}
	c.Process(batch, nil)
	n := c.NF(0).(*perSource)
	if want := []uint32{1, 2, 1, 3, 1, 1, 1}; !equal(n.seen, want) {
		t.Errorf("counts %v, want %v", n.seen, want)
	}
	if n.st.Len() > 2 {
		t.Errorf("%d keys, bound 2", n.st.Len())
	}
	m := map[string]uint64{}
	for _, v := range c.Report()[0].Metrics {
		m[v.Name] = v.Value
	}
	if m["sources_evicted"] != 2 || m["sources_expired"] < 1 {
		t.Errorf("metrics %v", m)
	}
	if len(log.got) != 1 || log.got[0].Rule != "third" || log.got[0].NF != "persource" || log.got[0].Clock != 4 ||
		log.got[0].Flow.SrcAddr() != a || log.got[0].Details["count"] != uint32(3) {
		t.Fatalf("alerts %+v", log.got)
	}
	var buf bytes.Buffer
	j := snf.NewJSONAlerts(&buf)
	j.Alert(&log.got[0])
	var obj map[string]any
	if err := json.Unmarshal(buf.Bytes(), &obj); err != nil {
		t.Fatal(err)
	}
	flow, _ := obj["flow"].(map[string]any)
	if obj["nf"] != "persource" || obj["rule"] != "third" || obj["time"] != "1970-01-01T00:00:03Z" ||
		flow["src"] != "10.0.0.1:1" || flow["proto"] != "udp" || !strings.HasSuffix(buf.String(), "\n") || j.Count() != 1 {
		t.Errorf("JSON alert %s", buf.String())
	}
	if s := c.Stats(); s.Alerts != 1 {
		t.Errorf("chain alerts %d", s.Alerts)
	}
}

func TestScopedNeedsAScope(t *testing.T) {
	snf.Register("badscope", "test NF", func() *perSourceConfig { return &perSourceConfig{} },
		func(env *snf.Env, _ *perSourceConfig) (snf.NF, error) {
			_, err := snf.NewScoped[netip.Addr, srcCount](env, "x", snf.ScopeOptions{})
			return nil, err
		})
	spec, _ := snf.ChainFromNames("badscope")
	if _, err := snf.NewChain(spec, snf.ChainOptions{}); err == nil || !strings.Contains(err.Error(), "--nfs: nfs[0] (badscope): scoped state x") {
		t.Errorf("err %v", err)
	}
}

// firstSeen keeps, per destination port, the clock of the first packet that reached it,
// with a compare-and-set on shared registers: a test NF for the Registers handle.
type firstSeen struct {
	r       *snf.Registers
	swapped int
}

func init() {
	snf.Register("firstseen", "test NF", func() *perSourceConfig { return &perSourceConfig{} },
		func(env *snf.Env, _ *perSourceConfig) (snf.NF, error) {
			r, err := snf.NewRegisters(env, "first")
			return &firstSeen{r: r}, err
		})
}

func (n *firstSeen) Process(ctx *snf.Context, p *packet.Packet) snf.Verdict {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], ctx.Clock())
	if _, swapped, ok := n.r.CompareAndSet(ctx, fmt.Sprint(p.Key.DstPort), nil, v[:]); ok && swapped {
		n.swapped++
	}
	return snf.Forward
}

func TestRegistersHandle(t *testing.T) {
	spec, _ := snf.ChainFromNames("firstseen")
	c, err := snf.NewChain(spec, snf.ChainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Process(batchOf(udpFrame(hostA, hostB, 1, 53), udpFrame(hostA, hostB, 2, 53), udpFrame(hostA, hostB, 3, 80)), nil)
	n := c.NF(0).(*firstSeen)
	if n.swapped != 2 {
		t.Errorf("%d first sightings, want 2 (ports 53 and 80)", n.swapped)
	}
	if v, ok, err := n.r.Get("53"); !ok || err != nil || binary.BigEndian.Uint64(v) != 1 {
		t.Errorf("port 53 first seen at clock %x, %v %v; want clock 1", v, ok, err)
	}
	if r := c.Report()[0]; len(r.Shared) != 1 || r.Shared[0].Access != snf.ReadWrite {
		t.Errorf("declared %+v", r.Shared)
	}
}
