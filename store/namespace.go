package store

import (
	"context"
	"fmt"
	"strings"
)

// Namespaced returns st with every object under the namespace pre: runs or chains that
// share a server but must not share a pool, counters, a table or checkpoints. Its Close
// flushes what it buffered and does not close st; Drop deletes what it stored.
func Namespaced(st Store, pre string) *Namespace { return &Namespace{st: st, pre: pre} }

// Namespace is a store's objects under one namespace prefix (Namespaced).
type Namespace struct {
	st  Store
	pre string
}

var (
	_ Store          = (*Namespace)(nil)
	_ RegistersStore = (*Namespace)(nil)
	_ Flusher        = (*Namespace)(nil)
)

// Prefix returns the namespace prefix.
func (n *Namespace) Prefix() string { return n.pre }

// Pool implements Store.
func (n *Namespace) Pool(ns, name string, lo, hi uint32) (Pool, error) {
	return n.st.Pool(n.pre+"/"+ns, name, lo, hi)
}

// Counters implements Store.
func (n *Namespace) Counters(ns, name string) (Counters, error) {
	return n.st.Counters(n.pre+"/"+ns, name)
}

// Table implements Store.
func (n *Namespace) Table(ns, name string) (Table, error) {
	return n.st.Table(n.pre+"/"+ns, name)
}

// Registers implements RegistersStore, when the store under it has registers.
func (n *Namespace) Registers(ns, name string) (Registers, error) {
	rs, ok := n.st.(RegistersStore)
	if !ok {
		return nil, fmt.Errorf("store %T has no registers", n.st)
	}
	return rs.Registers(n.pre+"/"+ns, name)
}

// Flush implements Flusher: what the store under it buffered is sent.
func (n *Namespace) Flush() error { return Flush(n.st) }

// Close flushes; it does not close the store under it.
func (n *Namespace) Close() error { return Flush(n.st) }

// Drop deletes every object stored under the namespace, where the store under it can
// (NamespaceDropper; the embedded store's objects go with its process), and returns how
// many keys it deleted. Call it once nothing uses the namespace's objects.
func (n *Namespace) Drop(ctx context.Context) (int, error) {
	d, ok := n.st.(NamespaceDropper)
	if !ok {
		return 0, nil
	}
	return d.DropNamespace(ctx, n.pre)
}

// NamespaceDropper is implemented by stores that can delete every object of the namespaces
// under a prefix (the Redis store).
type NamespaceDropper interface {
	// DropNamespace deletes the objects of namespace pre and of the namespaces under it
	// (pre/…), and returns how many server keys it deleted.
	DropNamespace(ctx context.Context, pre string) (int, error)
}

// globEscape escapes the characters a Redis SCAN MATCH pattern treats specially.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}
