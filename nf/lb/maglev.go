package lb

import "net/netip"

// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
// Load Balancer", NSDI 2016, §3.4). Every backend has a preference list over the M slots of
// the lookup table — the permutation (offset + j·skip) mod M, with offset and skip drawn from
// two hashes of the backend's name and M prime so that every skip in 1..M-1 makes a full
// permutation. The table is filled round-robin: in each round every backend takes its next
// preferred slot that is still free, until all M are taken. Each backend therefore ends with
// ⌊M/N⌋ or ⌈M/N⌉ slots, and a change of the backend set moves few slots besides those of the
// backends added or removed.

// noBackend marks a free slot while the table fills.
const noBackend = 0xffff

// maxBackends is the number of backends per address family a table can index.
const maxBackends = noBackend

// populate fills entry (its length is the table size M, a prime) from the backends' names,
// in the order given (callers sort them, so that the table does not depend on the order of a
// configured list). It returns entry.
func populate(names [][]byte, entry []uint16) []uint16 {
	m := uint64(len(entry))
	for i := range entry {
		entry[i] = noBackend
	}
	if len(names) == 0 {
		return entry
	}
	pos := make([]uint64, len(names))  // each backend's current place in its permutation
	skip := make([]uint64, len(names)) // and its step
	for i, name := range names {
		pos[i] = hashName(name, 0x6d61676c65763031) % m
		skip[i] = hashName(name, 0x6d61676c65763032)%(m-1) + 1
	}
	filled := uint64(0)
	for {
		for i := range names {
			c := pos[i]
			for entry[c] != noBackend {
				if c += skip[i]; c >= m {
					c -= m
				}
			}
			entry[c] = uint16(i)
			if c += skip[i]; c >= m {
				c -= m
			}
			pos[i] = c
			if filled++; filled == m {
				return entry
			}
		}
	}
}

// hashName is a seeded 64-bit hash of a backend's name (FNV-1a over the bytes, then the
// splitmix64 finaliser): stable across processes, so every unit builds the same table.
func hashName(b []byte, seed uint64) uint64 {
	h := uint64(0xcbf29ce484222325) ^ seed
	for _, c := range b {
		h ^= uint64(c)
		h *= 0x100000001b3
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

// backendName is the name a backend is hashed by: its address in network byte order (4
// bytes for IPv4, 16 for IPv6).
func backendName(a netip.Addr) []byte { return a.AsSlice() }

// table is the Maglev lookup table of one address family.
type table struct {
	backends []netip.Addr // sorted
	entry    []uint16     // M slots, each an index into backends
	flows    []uint64     // new flows sent to each backend since the table was built
}

func newTable(backends []netip.Addr, m int) *table {
	t := &table{backends: backends, flows: make([]uint64, len(backends))}
	if len(backends) == 0 {
		return t // never looked up
	}
	names := make([][]byte, len(backends))
	for i, a := range backends {
		names[i] = backendName(a)
	}
	t.entry = populate(names, make([]uint16, m))
	return t
}

// lookup returns the index of the backend of a flow hash; the table must have backends.
func (t *table) lookup(h uint64) int { return int(t.entry[h%uint64(len(t.entry))]) }

// isPrime reports whether n is prime (n is at most a few million: trial division).
func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// encode writes a backend list as it is stored in the shared table: per address a family
// byte (4 or 6) and the address bytes.
func encode(addrs []netip.Addr) []byte {
	var b []byte
	for _, a := range addrs {
		if a.Is4() {
			b = append(b, 4)
		} else {
			b = append(b, 6)
		}
		b = append(b, a.AsSlice()...)
	}
	return b
}

// decode reads what encode wrote.
func decode(b []byte) ([]netip.Addr, bool) {
	var out []netip.Addr
	for len(b) > 0 {
		switch {
		case b[0] == 4 && len(b) >= 5:
			out = append(out, netip.AddrFrom4([4]byte(b[1:5])))
			b = b[5:]
		case b[0] == 6 && len(b) >= 17:
			out = append(out, netip.AddrFrom16([16]byte(b[1:17])))
			b = b[17:]
		default:
			return nil, false
		}
	}
	return out, true
}
