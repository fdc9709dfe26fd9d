//go:build !unix

package store

import "os"

// sigCont: no process is stopped where there is no SIGSTOP (TestRedisHungServer is Unix's).
var sigCont os.Signal
