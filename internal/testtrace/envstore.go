package testtrace

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/snf-dev/snf/store"
)

// StoreEnv names the environment variable that runs the NF tests against another store:
// SNF_TEST_STORE=redis://127.0.0.1:6379 go test ./nf/... (scripts/test does it with a
// server it starts). Unset, every chain gets its own embedded store, as in production.
const StoreEnv = "SNF_TEST_STORE"

var (
	envOnce sync.Once
	envSt   store.Store
	envErr  error
	envSeq  atomic.Uint64
)

// envStore returns the store named by SNF_TEST_STORE, under a namespace of its own for each
// chain (chains built without a store do not share state, as with their own embedded
// stores), or nil when the variable is unset.
func envStore(tb testing.TB) store.Store {
	url := os.Getenv(StoreEnv)
	if url == "" {
		return nil
	}
	envOnce.Do(func() { envSt, envErr = store.Open(url) })
	if envErr != nil {
		tb.Fatalf("%s=%s: %v", StoreEnv, url, envErr)
	}
	return Namespaced(envSt, fmt.Sprintf("t%d-%d", os.Getpid(), envSeq.Add(1)))
}

// Namespaced returns st with every object under the namespace pre (runs or chains that must
// not share a pool, counters or checkpoints); its Close flushes, and does not close st.
func Namespaced(st store.Store, pre string) store.Store { return &prefixed{Store: st, pre: pre} }

// prefixed puts a chain's objects under a namespace of their own; Close does not close the
// shared store.
type prefixed struct {
	store.Store
	pre string
}

func (p *prefixed) Pool(ns, name string, lo, hi uint32) (store.Pool, error) {
	return p.Store.Pool(p.pre+"/"+ns, name, lo, hi)
}

func (p *prefixed) Counters(ns, name string) (store.Counters, error) {
	return p.Store.Counters(p.pre+"/"+ns, name)
}

func (p *prefixed) Table(ns, name string) (store.Table, error) {
	return p.Store.Table(p.pre+"/"+ns, name)
}

func (p *prefixed) Registers(ns, name string) (store.Registers, error) {
	rs, ok := p.Store.(store.RegistersStore)
	if !ok {
		return nil, fmt.Errorf("store %T has no registers", p.Store)
	}
	return rs.Registers(p.pre+"/"+ns, name)
}

func (p *prefixed) Close() error { return store.Flush(p.Store) }
