package monitor_test

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snf-dev/snf/internal/testtrace"
	"github.com/snf-dev/snf/nf/monitor"
	"github.com/snf-dev/snf/packet"
	"github.com/snf-dev/snf/store"
)

// TestTopMatchesExact: on pcapplusplus_example.pcap the reported top 10 by bytes are the
// exact top 10 computed from the capture directly, each with bytes and packets within the
// count-min bound (true <= reported <= true + εN), and the report prints them.
func TestTopMatchesExact(t *testing.T) {
	pkts := testtrace.Packets(t, "pcapplusplus_example.pcap")
	want := exactCounts(pkts)
	c, m, s := newChain(t, "", nil, 0)
	testtrace.Process(c, pkts)

	b, p, _ := m.Totals()
	if b != want.totalBytes || p != want.totalPackets {
		t.Fatalf("totals %d bytes %d packets, capture has %d and %d", b, p, want.totalBytes, want.totalPackets)
	}
	bound := m.Bound()
	pbound := uint64(math.Ceil(math.E / 2048 * float64(want.totalPackets)))
	keys := make([]packet.Key, 0, len(want.bytes))
	for k := range want.bytes {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b packet.Key) int { return cmp.Compare(want.bytes[b], want.bytes[a]) })
	exactTop := keys[:10]

	top := m.Top()
	if len(top) != 10 {
		t.Fatalf("top has %d flows", len(top))
	}
	for i, f := range top {
		k := canon(f.Key)
		tb, tp := want.bytes[k], want.packets[k]
		if f.Bytes < tb || f.Bytes > tb+bound || f.Packets < tp || f.Packets > tp+pbound {
			t.Errorf("#%d %s: reported %d bytes %d packets, true %d and %d (bounds %d, %d)", i+1, f.Key, f.Bytes, f.Packets, tb, tp, bound, pbound)
		}
		if k != exactTop[i] {
			// Only a flow within the sketch's error of the exact one may take its place.
			if d := int64(want.bytes[exactTop[i]]) - int64(tb); d > int64(bound) || d < -int64(bound) {
				t.Errorf("#%d is %s (%d bytes), exact #%d is %s (%d bytes)", i+1, f.Key, tb, i+1, exactTop[i], want.bytes[exactTop[i]])
			}
		}
		t.Logf("#%2d %-50s %5d packets %8d bytes (exact %d, %d)", i+1, f.Key, f.Packets, f.Bytes, tp, tb)
	}
	t.Logf("%d flows, %d packets, %d bytes; εN = %d bytes", len(want.bytes), want.totalPackets, want.totalBytes, bound)

	var sb strings.Builder
	if err := c.WriteReports(&sb); err != nil {
		t.Fatal(err)
	}
	rep := sb.String()
	for i, f := range top {
		line := rep[strings.Index(rep, fmt.Sprintf("\n  %4d  ", i+1))+1:]
		line = line[:strings.IndexByte(line, '\n')]
		for _, field := range []string{f.Key.SrcAddr().String(), f.Key.DstAddr().String(), strconv.FormatUint(f.Packets, 10), strconv.FormatUint(f.Bytes, 10)} {
			if !strings.Contains(line, field) {
				t.Errorf("report line %q lacks %s", line, field)
			}
		}
	}
	if s.Len() != 0 {
		t.Errorf("%d alerts", s.Len())
	}
	t.Logf("report:\n%s", rep)
}

// TestSketchBound: for every flow of two real captures, the count-min estimate never
// falls below the true count and, at the default width, never exceeds it by more than
// εN = e/width · N. A narrow sketch really does over-estimate (the test can fail), and then
// exceeds εN for no more flows than the e^-depth the bound allows (with slack).
func TestSketchBound(t *testing.T) {
	for _, name := range []string{"pcapplusplus_example.pcap", "ndpi_gnutella.pcap"} {
		pkts := testtrace.Packets(t, name)
		want := exactCounts(pkts)
		for _, w := range []int{2048, 64} {
			c, m, _ := newChain(t, "{width: "+strconv.Itoa(w)+", depth: 4, candidates: 64}", nil, 0)
			testtrace.Process(c, pkts)
			eps := math.E / float64(w) * float64(want.totalBytes)
			var over, beyond int
			var maxErr uint64
			for k, tb := range want.bytes {
				eb, ep := m.Estimate(k)
				if eb < tb || ep < want.packets[k] {
					t.Fatalf("%s width %d: %s estimated %d bytes %d packets, true %d and %d", name, w, k, eb, ep, tb, want.packets[k])
				}
				if eb != tb {
					over++
				}
				if float64(eb-tb) > eps {
					beyond++
				}
				maxErr = max(maxErr, eb-tb)
			}
			n := len(want.bytes)
			switch {
			case w == 2048 && beyond > 0:
				t.Errorf("%s width %d: %d flows beyond εN = %.0f", name, w, beyond, eps)
			case w == 64 && over == 0:
				t.Errorf("%s width %d: no flow over-estimated with %d flows in 64 columns", name, w, n)
			case float64(beyond) > 2*math.Exp(-4)*float64(n)+1:
				t.Errorf("%s width %d: %d of %d flows beyond εN", name, w, beyond, n)
			}
			t.Logf("%s width %d: %d flows, %d over-estimated, %d beyond εN = %.0f (max error %d bytes)", name, w, n, over, beyond, eps, maxErr)
		}
	}
}

// TestHalvesMerge: two chains (two units) sharing one store, each running one half of
// the capture, report the same top flows with the same counts as one chain running all of
// it — from either chain.
func TestHalvesMerge(t *testing.T) {
	pkts := testtrace.Packets(t, "pcapplusplus_example.pcap")
	whole, mw, _ := newChain(t, "", nil, 0)
	testtrace.Process(whole, pkts)
	want := mw.Top()

	pkts = testtrace.Packets(t, "pcapplusplus_example.pcap")
	half := len(pkts) / 2
	st := store.NewEmbedded()
	a, ma, _ := newChain(t, "", st, 1)
	b, mb, _ := newChain(t, "", st, 2)
	testtrace.Process(a, pkts[:half])
	// The first unit's flows end after its half (as they would on a flowlet move or
	// expiry), pushing what it still holds.
	a.Expire(pkts[half-1].Time + int64(time.Hour))
	testtrace.Process(b, pkts[half:])

	same := func(who string, got []monitor.Flow) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d flows, want %d", who, len(got), len(want))
		}
		for i := range want {
			if canon(got[i].Key) != canon(want[i].Key) || got[i].Bytes != want[i].Bytes || got[i].Packets != want[i].Packets {
				t.Errorf("%s #%d: %s %d packets %d bytes, one chain says %s %d %d", who, i+1,
					got[i].Key, got[i].Packets, got[i].Bytes, want[i].Key, want[i].Packets, want[i].Bytes)
			}
		}
	}
	same("second unit", mb.Top())
	wb, wp, _ := mw.Totals()
	if gb, gp, _ := mb.Totals(); gb != wb || gp != wp {
		t.Errorf("merged totals %d bytes %d packets, one chain %d and %d", gb, gp, wb, wp)
	}
	// Once the second unit's flows end too, the first unit reports the same.
	b.Expire(pkts[len(pkts)-1].Time + int64(time.Hour))
	same("first unit", ma.Top())
	// Both units published candidates: the directory is shared.
	if testtrace.Metric(a, 0, "candidates_published") == 0 || testtrace.Metric(b, 0, "candidates_published") == 0 {
		t.Errorf("published: %d and %d", testtrace.Metric(a, 0, "candidates_published"), testtrace.Metric(b, 0, "candidates_published"))
	}
	t.Logf("units published %d and %d candidates; one chain %d", testtrace.Metric(a, 0, "candidates_published"),
		testtrace.Metric(b, 0, "candidates_published"), testtrace.Metric(whole, 0, "candidates_published"))
}
