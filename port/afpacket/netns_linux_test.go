//go:build linux

package afpacket_test

import (
	"testing"

	"github.com/snf-dev/snf/internal/netnstest"
	"github.com/snf-dev/snf/port/afpacket"
)

// open opens interface iface of namespace ns.
func open(t testing.TB, ns, iface string, o afpacket.Options) *afpacket.Port {
	t.Helper()
	var p *afpacket.Port
	var err error
	netnstest.In(t, ns, func() { p, err = afpacket.Open(iface, o) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
