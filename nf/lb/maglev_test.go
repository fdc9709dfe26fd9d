package lb

import (
	"math"
	"net/netip"
	"slices"
	"testing"

	"github.com/snf-dev/snf/packet"
)

func backendsN(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i + 1)})
	}
	return out
}

// slotsOf counts the table's slots per backend address.
func slotsOf(t *table) map[netip.Addr]int {
	c := map[netip.Addr]int{}
	for _, e := range t.entry {
		c[t.backends[e]]++
	}
	return c
}

// TestTableBalance: round-robin filling gives every backend ⌊M/N⌋ or ⌈M/N⌉ slots, so its
// share of the hash space is 1/N within 1/M; and the flow hashes of real keys spread over
// the slots as the shares say.
func TestTableBalance(t *testing.T) {
	const m = 65537
	for _, n := range []int{1, 2, 3, 7, 10, 100, 1000} {
		tab := newTable(backendsN(n), m)
		c := slotsOf(tab)
		if len(c) != n {
			t.Fatalf("N=%d: %d backends have slots", n, len(c))
		}
		for a, k := range c {
			if k != m/n && k != (m+n-1)/n {
				t.Errorf("N=%d: %s has %d slots, want %d or %d", n, a, k, m/n, (m+n-1)/n)
			}
		}
	}
	// One million flow keys (5-tuples from 16 × 65536 clients to one VIP, hashed as the
	// balancer hashes them) over 10 backends: each share within 5 standard deviations of the
	// binomial sampling around 1/10 (±1.5 %), plus the table's 1/M.
	const n, flows = 10, 1 << 20
	tab := newTable(backendsN(n), m)
	got := make([]int, n)
	vip := netip.MustParseAddr("198.51.100.1")
	for i := range flows {
		k := packet.KeyFrom(netip.AddrFrom4([4]byte{100, 64, byte(i >> 16), byte(i >> 8)}), vip, uint16(1024+i&0xff), 443, packet.ProtoTCP)
		got[tab.lookup(k.Hash())]++
	}
	p := 1.0 / n
	sd := math.Sqrt(flows * p * (1 - p))
	for i, g := range got {
		if math.Abs(float64(g)-flows*p) > 5*sd+flows/m {
			t.Errorf("backend %d: %d of %d flows, want %.0f ± %.0f", i, g, flows, flows*p, 5*sd)
		}
	}
}

// TestTableDisruption: Maglev moves few slots of the backends that stay. The bound stated
// in README.md: with table_size at least 650 × N (the default 65537 up to 100 backends),
// removing or adding one backend moves at most 1 % of the hash space besides the slots the
// removed backend had or the added one takes (measured: 0.22 % at N=10, 0.66 % at N=100).
// Adding one moves 1/(N+1) of the space, within that same 1 %.
func TestTableDisruption(t *testing.T) {
	const m = 65537
	for _, n := range []int{3, 10, 50, 100} {
		all := backendsN(n + 1)
		base := newTable(all[:n], m)
		worst := 0
		for k := 0; k < n; k += max(n/10, 1) { // up to 10 of the backends, each removed in turn
			rest := slices.Delete(slices.Clone(all[:n]), k, k+1)
			after := newTable(rest, m)
			extra := 0
			for s := range base.entry {
				was, now := base.backends[base.entry[s]], after.backends[after.entry[s]]
				if was != all[k] && was != now {
					extra++
				}
			}
			worst = max(worst, extra)
		}
		if worst > m/100 {
			t.Errorf("N=%d: removing a backend moved up to %d slots of others (%.2f%%), bound 1%%", n, worst, 100*float64(worst)/m)
		}
		grown := newTable(all, m)
		moved, elsewhere := 0, 0
		for s := range base.entry {
			was, now := base.backends[base.entry[s]], grown.backends[grown.entry[s]]
			if was != now {
				moved++
				if now != all[n] {
					elsewhere++
				}
			}
		}
		share := float64(moved) / m
		if want := 1 / float64(n+1); share < want-1.0/m || share > want+0.01 || elsewhere > m/100 {
			t.Errorf("N=%d: adding a backend moved %.4f of the space (want %.4f + at most 0.01), %d slots not to it", n, share, want, elsewhere)
		}
		t.Logf("N=%d: removal moves at most %.2f%% besides the removed backend's; addition moves %.2f%% (1/(N+1) = %.2f%%)",
			n, 100*float64(worst)/m, 100*share, 100/float64(n+1))
	}
}

// TestPermutationFillsTable: every slot is taken even with one backend, and a small prime
// table works.
func TestPermutationFillsTable(t *testing.T) {
	for _, m := range []int{2, 3, 13, 251} {
		for _, n := range []int{1, 2, m} {
			tab := newTable(backendsN(n), m)
			for s, e := range tab.entry {
				if int(e) >= n {
					t.Fatalf("M=%d N=%d: slot %d empty", m, n, s)
				}
			}
			if c := slotsOf(tab); len(c) != n {
				t.Errorf("M=%d N=%d: %d backends hold slots", m, n, len(c))
			}
		}
	}
}

func TestPrimesAndEncoding(t *testing.T) {
	for n, want := range map[int]bool{0: false, 1: false, 2: true, 3: true, 4: false, 65537: true, 65536: false, 5003: true, 5001: false} {
		if isPrime(n) != want {
			t.Errorf("isPrime(%d) = %v", n, !want)
		}
	}
	in := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")}
	out, ok := decode(encode(in))
	if !ok || !slices.Equal(in, out) {
		t.Errorf("decode(encode(%v)) = %v, %v", in, out, ok)
	}
	for _, bad := range [][]byte{{4, 1, 2}, {6, 1}, {5}} {
		if _, ok := decode(bad); ok {
			t.Errorf("decode(%v) accepted", bad)
		}
	}
}

func TestAffinityCodec(t *testing.T) {
	for _, a := range []affinity{
		{backend: [16]byte{10, 1, 0, 1}, vip: [16]byte{198, 51, 100, 1}, toDir: 1},
		{backend: netip.MustParseAddr("fd00::1").As16(), vip: netip.MustParseAddr("2001:db8::1").As16(), v6: true},
	} {
		b, err := a.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		var back affinity
		if err := back.UnmarshalBinary(b); err != nil || back != a {
			t.Errorf("round trip of %+v: %+v, %v", a, back, err)
		}
		if err := back.UnmarshalBinary(b[:len(b)-1]); err == nil {
			t.Error("truncated state accepted")
		}
	}
	var x affinity
	if x.UnmarshalBinary([]byte{2, 0}) == nil || x.UnmarshalBinary(nil) == nil {
		t.Error("bad header accepted")
	}
}
