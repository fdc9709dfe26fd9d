//go:build unix

package store

import (
	"os"
	"syscall"
)

// sigCont continues a stopped process (TestRedisHungServer stops the server).
var sigCont os.Signal = syscall.SIGCONT
