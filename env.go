package snf

import (
	"log/slog"

	"github.com/snf-dev/snf/store"
)

// Env is what an NF instance gets at construction: its identity, logger, metrics, and the
// declarations of its state. It is valid only while the NF is being built.
type Env struct {
	chain *Chain
	index int
	name  string
	typ   string
	ns    string
	log   *slog.Logger
	inst  *nfInst
}

// Name returns the instance's name in the chain (by default its type).
func (e *Env) Name() string { return e.name }

// Namespace returns the store namespace of the instance's shared state (tenant/instance).
func (e *Env) Namespace() string { return e.ns }

// Logger returns the instance's logger (for construction-time and rare events; never log
// per packet).
func (e *Env) Logger() *slog.Logger { return e.log }

// Store returns the store the chain's shared state lives in.
func (e *Env) Store() store.Store { return e.chain.store }

// Metric declares a counter named name (reported as "<instance>.<name>"). Only the unit
// running the NF updates it, so Inc is a plain increment, not an atomic.
func (e *Env) Metric(name, help string) *Metric {
	m := &Metric{Name: name, Help: help}
	e.inst.metrics = append(e.inst.metrics, m)
	return m
}

// Metric is a monotonically increasing counter owned by one NF instance.
type Metric struct {
	Name, Help string
	v          uint64
}

// Inc adds one.
func (m *Metric) Inc() { m.v++ }

// Add adds n.
func (m *Metric) Add(n uint64) { m.v += n }

// Value returns the count. Read it from the goroutine that runs the chain (or after it).
func (m *Metric) Value() uint64 { return m.v }
