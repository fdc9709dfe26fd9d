package engine

import "github.com/snf-dev/snf/internal/queue"

// fifo is a growable ring-buffer queue (internal/queue, which the packet log uses too).
type fifo[T any] = queue.FIFO[T]
