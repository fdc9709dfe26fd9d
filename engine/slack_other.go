//go:build !linux

package engine

// tightenTimerSlack and setTimerSlack do nothing off Linux (slack_linux.go).
func tightenTimerSlack() (set, threads int)   { return 0, 0 }
func setTimerSlack(ns int) (set, threads int) { return 0, 0 }
