package store

import (
	"testing"
)

// Benchmarks, embedded beside Redis (a redis-server on loopback, started by the benchmark):
//
//	TableGetCached   a read-mostly table read served from the unit's cache (target < 50 ns)
//	CountersAdd      a non-blocking add, amortised (target < 100 ns): the caller's cost, while
//	                 the Redis handle sends batches in the background
//	CountersAddFlushed  the same, with the wait for the server to apply every add timed too
//	                 (the server's throughput, not the packet path's cost)
//	PoolTakePut      a blocking Take and Put: two round trips to Redis
//	TableVersion     a table's change version, read per packet by a cache holder (an atomic
//	                 load: target a few ns, 0 allocs)
func benchBackends(b *testing.B, fn func(b *testing.B, s Store)) {
	b.Run("embedded", func(b *testing.B) { fn(b, NewEmbedded()) })
	b.Run("redis", func(b *testing.B) {
		srv := startRedis(b)
		s, err := Open(srv.url(""))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
}

func BenchmarkTableGetCached(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		tb := mustTable(b, s, "t", "backends")
		keys := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}
		for _, k := range keys {
			if err := tb.Set(k, []byte("backend-"+k)); err != nil {
				b.Fatal(err)
			}
			tb.Get(k)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, ok := tb.Get(keys[i&3]); !ok {
				b.Fatal("miss")
			}
		}
	})
}

func BenchmarkTableVersion(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		tb := mustTable(b, s, "t", "backends")
		if err := tb.Set("k", []byte("v")); err != nil {
			b.Fatal(err)
		}
		seen := tb.Version()
		b.ReportAllocs()
		b.ResetTimer()
		changed := 0
		for i := 0; i < b.N; i++ {
			if v := tb.Version(); v != seen {
				seen = v
				changed++
			}
		}
		b.ReportMetric(float64(changed), "changes") // the own write's invalidations arriving late: 0-2
	})
}

func BenchmarkTableGetCachedParallel(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		tb := mustTable(b, s, "t", "backends")
		keys := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}
		for _, k := range keys {
			tb.Set(k, []byte("backend-"+k))
			tb.Get(k)
		}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				tb.Get(keys[i&3])
				i++
			}
		})
	})
}

func BenchmarkCountersAdd(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		c := mustCounters(b, s, "t", "c")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.Add(Tag{Unit: 1, Clock: uint64(i + 1), Seq: 1}, uint64(i&63), 1)
			if i&(1<<15-1) == 1<<15-1 {
				// This measures the caller's cost, which a server that cannot keep up (see
				// CountersAddFlushed) would hide behind MaxPending: untimed, drop what
				// the background flush has not taken yet.
				b.StopTimer()
				if rc, ok := c.(*redisCounters); ok {
					rc.mu.Lock()
					rc.buf = rc.buf[:0]
					rc.mu.Unlock()
				}
				b.StartTimer()
			}
		}
		b.StopTimer()
		if rc, ok := c.(*redisCounters); ok && rc.Dropped() != 0 {
			b.Fatalf("%d adds dropped", rc.Dropped())
		}
	})
}

func BenchmarkCountersAddFlushed(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		c := mustCounters(b, s, "t", "c")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.Add(Tag{Unit: 1, Clock: uint64(i + 1), Seq: 1}, uint64(i&63), 1)
		}
		mustFlush(b, c)
	})
}

func BenchmarkPoolTakePut(b *testing.B) {
	benchBackends(b, func(b *testing.B, s Store) {
		p := mustPool(b, s, "t", "ports", 1, 65535)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			v, ok, err := p.Take(Tag{Unit: 1, Clock: uint64(i + 1), Seq: 1})
			if !ok || err != nil {
				b.Fatal(ok, err)
			}
			if err := p.Put(Tag{Unit: 1, Clock: uint64(i + 1), Seq: 2}, v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
