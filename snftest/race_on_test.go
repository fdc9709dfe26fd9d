//go:build race

package snftest

const raceEnabled = true
