//go:build race

package engine_test

// raceOn: the race detector is on (it makes the simulator about 100 times slower).
const raceOn = true
