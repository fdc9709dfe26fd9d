package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/snf-dev/snf/store"
)

// openRunStore opens the store named by url for one run. A server's store (Redis) may hold
// other runs' state — an earlier run's checkpoints, pools and counters, or a run going on
// beside this one — which this run must neither see nor change: the run's objects live
// under a namespace of their own, run/ID, deleted when the run ends (done). The embedded
// store lives and dies with the run.
func openRunStore(url string, stderr io.Writer) (st store.Store, done func(), err error) {
	st, err = store.Open(url)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := st.(store.NamespaceDropper); !ok {
		return st, func() { st.Close() }, nil
	}
	ns := store.Namespaced(st, fmt.Sprintf("run/%016x", rand.Uint64()))
	return ns, func() {
		// (A run that fails to delete its state leaves it behind; no other run reads it.)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Counter adds still buffered would be sent after the drop (by the store's flush
		// loop, or its Close) and make the namespace's keys again: flush first, a few
		// times through a short outage (the store fails operations at once for a moment
		// after one failed).
		for i := 0; ns.Flush() != nil && i < 20 && ctx.Err() == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := ns.Drop(ctx); err != nil {
			fmt.Fprintf(stderr, "snf: warning: could not delete this run's state (namespace %s) from the store: %v\n", ns.Prefix(), err)
		}
		st.Close()
	}, nil
}
