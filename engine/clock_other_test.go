//go:build !unix

package engine_test

import "time"

// monotonic and cpuTime are the benchmarks' clocks (clock_unix_test.go): not measured here.
func monotonic() float64 { return 0 }

func cpuTime() time.Duration { return 0 }
