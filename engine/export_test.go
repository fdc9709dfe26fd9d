package engine

// SetTimerSlack lets the external tests set every thread's timer slack (BenchmarkTimerSlack).
var SetTimerSlack = setTimerSlack
