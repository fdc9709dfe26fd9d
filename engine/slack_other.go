//go:build !linux

package engine

// tightenTimerSlack does nothing off Linux (slack_linux.go).
func tightenTimerSlack() (set, threads int) { return 0, 0 }
