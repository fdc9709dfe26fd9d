package engine

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/snf-dev/snf"
	"github.com/snf-dev/snf/internal/pkttest"
	"github.com/snf-dev/snf/policy"
	"github.com/snf-dev/snf/port/mem"
)

// slacks returns the timer slack of every thread of the process, in ns, by thread.
func slacks(t *testing.T) map[string]string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, d := range tasks {
		b, err := os.ReadFile("/proc/" + d.Name() + "/timerslack_ns")
		if err != nil {
			continue // (a thread that ended since)
		}
		m[d.Name()] = strings.TrimSpace(string(b))
	}
	return m
}

// allAt fails t unless every thread's timer slack is ns.
func allAt(t *testing.T, when, ns string) {
	t.Helper()
	for tid, s := range slacks(t) {
		if s != ns {
			t.Errorf("%s: thread %s's timer slack is %s ns, want %s", when, tid, s, ns)
		}
	}
}

// needSlackRights skips t without CAP_SYS_NICE (root), which setting another thread's timer
// slack needs, and makes t leave every thread's at 1 ns (as RunLive does).
func needSlackRights(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting other threads' timer slack needs CAP_SYS_NICE (root)")
	}
	t.Cleanup(func() { setTimerSlack(1) })
}

// TestSetTimerSlack: every thread's timer slack becomes what is asked, from Linux's default
// and back.
func TestSetTimerSlack(t *testing.T) {
	needSlackRights(t)
	for _, ns := range []string{"50000", "1", "50000"} {
		n := 50000
		if ns == "1" {
			set, threads := tightenTimerSlack()
			if set != threads || threads < 2 {
				t.Errorf("tightened %d threads of %d", set, threads)
			}
			n = 1
		} else if set, threads := setTimerSlack(n); set != threads {
			t.Errorf("set %d threads of %d", set, threads)
		}
		allAt(t, "after setting "+ns+" ns", ns)
	}
}

// TestRunLiveTimerSlack: RunLive tightens every thread's timer slack, once per process, and
// leaves it with KeepTimerSlack.
func TestRunLiveTimerSlack(t *testing.T) {
	needSlackRights(t)
	spec, err := snf.ChainFromNames("nat,firewall")
	if err != nil {
		t.Fatal(err)
	}
	frames := make([]mem.Frame, 1000)
	for i := range frames {
		frames[i] = mem.Frame{Data: pkttest.UDP(netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 50)}), netip.MustParseAddr("198.18.0.1"), uint16(1000+i%7), 53, nil), Time: int64(i) * 1000}
	}
	run := func(keep bool) {
		pol, _ := policy.New("static", policy.Options{StaticUnits: 2})
		if _, err := RunLive(context.Background(), LiveConfig{Spec: spec, In: mem.NewReader(frames), Policy: pol,
			MinUnits: 2, MaxUnits: 2, Capacity: 1e9, KeepTimerSlack: keep}); err != nil {
			t.Fatal(err)
		}
	}
	setTimerSlack(50000)
	slackOnce = sync.Once{} // (as in a process that has run nothing yet)
	t.Cleanup(func() { slackOnce = sync.Once{} })
	run(true)
	allAt(t, "after a run with KeepTimerSlack", "50000")
	run(false)
	allAt(t, "after a run", "1")
}
