//go:build !race

package snftest

const raceEnabled = false
