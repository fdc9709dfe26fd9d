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
	return store.Namespaced(envSt, fmt.Sprintf("t%d-%d", os.Getpid(), envSeq.Add(1)))
}
