package store

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRedisCluster runs the behavioural suite on a three-node Redis Cluster (no replicas):
// objects land on different nodes, and every operation must stay within one slot.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is not installed (it comes with redis-server: apt-get install -y redis-server)")
	}
	var nodes []*redisServer
	var addrs []string
	for range 3 {
		n := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr())
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for !strings.Contains(n.info("CLUSTER", "INFO"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ready: %s", n.info("CLUSTER", "INFO"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	b := &backend{name: "cluster", redis: nodes[0], open: func(t testing.TB) Store {
		t.Helper()
		s, err := Open(nodes[0].url(""))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}}
	spread := 0
	for name, fn := range map[string]func(*testing.T, *backend){
		"PoolDistinctExhaustRecycle": suitePoolDistinctExhaustRecycle,
		"PoolDedup":                  suitePoolDedup,
		"EveryOpTwiceAppliedOnce":    suiteEveryOpTwiceAppliedOnce,
		"PoolConcurrentTakes":        suitePoolConcurrentTakes,
		"ObjectsSharedByName":        suiteObjectsSharedByName,
		"Counters":                   suiteCounters,
		"Table":                      suiteTable,
		"RegistersCAS":               suiteRegistersCAS,
		"RegistersMerge":             suiteRegistersMerge,
		"RegistersRepeat":            suiteRegistersRepeat,
		"RegistersConcurrentCAS":     suiteRegistersConcurrentCAS,
		"RegistersCustomOps":         suiteRegistersCustomOps,
		"TableVersion":               suiteTableVersion,
	} {
		t.Run(name, func(t *testing.T) { fn(t, b) })
		if t.Failed() {
			break
		}
		used := 0
		for _, n := range nodes {
			if len(n.keys()) > 0 {
				used++
			}
		}
		t.Logf("%s: objects spread over %d of 3 nodes", name, used)
		spread = max(spread, used)
		for _, n := range nodes { // the next part starts empty
			n.info("FLUSHALL")
		}
	}
	if spread < 2 {
		t.Error("every object landed on one node: the test proves little")
	}

	// A namespace's objects spread over the nodes; its drop finds them on every node.
	s := b.open(t)
	a, other := Namespaced(s, "run/a"), Namespaced(s, "run/b")
	for i := range 8 {
		fillNamespace(t, a, fmt.Sprintf("nf%d", i))
	}
	fillNamespace(t, other, "nf0")
	on := func(pre string) (keys, nodesWith int) {
		for _, n := range nodes {
			k := 0
			for _, key := range n.keys() {
				if strings.HasPrefix(key, "snf:{"+pre) {
					k++
				}
			}
			keys += k
			if k > 0 {
				nodesWith++
			}
		}
		return keys, nodesWith
	}
	ka, na := on("run/a/")
	kb, _ := on("run/b/")
	if na < 2 {
		t.Errorf("namespace run/a on %d node(s): the drop's test proves little", na)
	}
	if n, err := a.Drop(context.Background()); err != nil || n != ka {
		t.Errorf("drop: %d keys (of %d), %v", n, ka, err)
	}
	if k, _ := on("run/a/"); k != 0 {
		t.Errorf("%d keys of run/a left after its drop", k)
	}
	if k, _ := on("run/b/"); k != kb {
		t.Errorf("run/b: %d keys, was %d", k, kb)
	}
}
