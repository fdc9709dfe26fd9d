package snftest

import (
	"context"
	"errors"
	"testing"

	"github.com/snf-dev/snf"
)

// TestReferenceContext: the reference run stops with the context's error once it is done,
// and otherwise gives Reference's result.
func TestReferenceContext(t *testing.T) {
	spec, err := snf.ChainFromNames("firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames, err := LoadInput("generated:2000", "")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Reference(spec, frames)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReferenceContext(context.Background(), spec, frames)
	if err != nil || Compare(want, got, Exact, frames) != nil {
		t.Errorf("ReferenceContext: %v, %v; want Reference's result", err, Compare(want, got, Exact, frames))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ReferenceContext(ctx, spec, frames); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}
