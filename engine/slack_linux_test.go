package engine

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTightenTimerSlack: the calling thread's timer slack becomes 1 ns, and as root
// (CAP_SYS_NICE) every thread's.
func TestTightenTimerSlack(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	slack := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	set, threads := tightenTimerSlack()
	if got := slack(fmt.Sprintf("/proc/%d/timerslack_ns", unix.Gettid())); got != "1" || set < 1 || threads < 1 {
		t.Fatalf("this thread's timer slack %s ns, %d threads set of %d; want 1 ns, at least this one", got, set, threads)
	}
	if os.Geteuid() != 0 {
		t.Logf("not root: %d of %d threads set (the others need CAP_SYS_NICE)", set, threads)
		return
	}
	if set != threads {
		t.Errorf("as root, %d threads set of %d", set, threads)
	}
	// (Threads made since may have been made by a thread set, or not yet: read those listed.)
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, d := range tasks {
		if got := slack("/proc/" + d.Name() + "/timerslack_ns"); got != "1" {
			t.Errorf("thread %s's timer slack is %s ns, want 1", d.Name(), got)
		}
	}
}
