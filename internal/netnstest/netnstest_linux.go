//go:build linux

// Package netnstest makes network namespaces joined by veth pairs for tests: hosts of their
// own, whose traffic no other host sees.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Link is a veth pair whose ends sit in two network namespaces of their own (made for the
// test, removed after it): what one end sends, the other receives, and no other host sees.
type Link struct {
	NsA, NsB string // the namespaces' names (ip netns)
	IfA, IfB string // the interfaces, one in each
}

// New makes a Link; it skips the test, saying why, where namespaces cannot be made
// (not root, no ip command).
func New(t testing.TB) Link {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("this test makes network namespaces and raw sockets: it needs root (scripts/test runs as root in CI)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("this test needs the ip command (iproute2; scripts/test installs it)")
	}
	var b [4]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	l := Link{NsA: "snf-a-" + id, NsB: "snf-b-" + id, IfA: "va" + id, IfB: "vb" + id}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", l.NsA).CombinedOutput(); err != nil {
		// (a container without CAP_SYS_ADMIN): the machine's, not the code's
		t.Skipf("this test makes network namespaces, which this machine refuses: ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.NsA).Run() })
	run("netns", "add", l.NsB)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.NsB).Run() })
	for _, ns := range []string{l.NsA, l.NsB} {
		// No IPv6: its autoconfiguration would send frames of its own on the link.
		run("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	run("link", "add", l.IfA, "netns", l.NsA, "type", "veth", "peer", "name", l.IfB, "netns", l.NsB)
	run("-n", l.NsA, "link", "set", l.IfA, "up")
	run("-n", l.NsB, "link", "set", l.IfB, "up")
	return l
}

// In runs fn on a thread in namespace ns: sockets made there stay in it.
func In(t testing.TB, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked: it ends with this goroutine, never reused elsewhere.
		t.Fatalf("back to the test's namespace: %v", err)
	}
	runtime.UnlockOSThread()
}
