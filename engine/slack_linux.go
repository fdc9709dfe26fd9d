package engine

import (
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// tightenTimerSlack sets the timer slack of the process's threads to 1 ns: the calling
// thread's by prctl(PR_SET_TIMERSLACK), the others' through /proc/TID/timerslack_ns
// (which needs CAP_SYS_NICE; without it, those keep theirs). A thread made later takes the
// slack of the thread that makes it. It returns how many threads it set, of how many.
//
// Linux lets a thread's timed sleeps end up to its timer slack late, 50 µs by default, and
// the Go scheduler sleeps 3 µs on a core that takes over a goroutine woken on another
// (runtime.runqgrab): the goroutine a channel send wakes waits on the sender's core. With
// the default slack, a unit woken by the root's batch ran 126–142 µs after it at the median
// on two cores, long enough to leave the root waiting for a free batch 12 % of the time;
// with 1 ns, 39–44 µs, the root waiting 0–5 % of the time and 25 % more packets/s (traced
// runs, BENCHMARKS.md "Eighteenth session").
func tightenTimerSlack() (set, threads int) { return setTimerSlack(1) }

// setTimerSlack sets the timer slack of the process's threads to ns nanoseconds, as
// tightenTimerSlack does.
func setTimerSlack(ns int) (set, threads int) {
	runtime.LockOSThread() // (the thread prctl sets is the one skipped below)
	defer runtime.UnlockOSThread()
	if unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0) == nil {
		set = 1
	}
	self := strconv.Itoa(unix.Gettid())
	tasks, _ := os.ReadDir("/proc/self/task")
	threads = max(len(tasks), 1)
	for _, d := range tasks {
		// (A thread's is /proc/TID/timerslack_ns: the task directories have none.)
		if d.Name() != self && os.WriteFile("/proc/"+d.Name()+"/timerslack_ns", []byte(strconv.Itoa(ns)), 0) == nil {
			set++
		}
	}
	return set, threads
}
