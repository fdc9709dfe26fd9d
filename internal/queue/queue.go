// Package queue is a growable ring-buffer FIFO queue, for the engine's and the packet log's
// queues on the packet path: a push or a pop costs no allocation once the queue has grown to
// its working size.
package queue

// FIFO is a first-in first-out queue. The zero value is an empty queue.
type FIFO[T any] struct {
	buf     []T
	head, n int
}

// Len returns the number of elements in q.
func (q *FIFO[T]) Len() int { return q.n }

// Push adds v at the back of q, doubling its memory when it is full.
func (q *FIFO[T]) Push(v T) {
	if q.n == len(q.buf) {
		nb := make([]T, max(16, 2*len(q.buf)))
		for i := range q.n {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = v
	q.n++
}

// Front returns the element at the front of q (q must not be empty).
func (q *FIFO[T]) Front() *T { return &q.buf[q.head] }

// At returns the i-th element from the front of q (0 ≤ i < Len).
func (q *FIFO[T]) At(i int) *T { return &q.buf[(q.head+i)%len(q.buf)] }

// Pop removes the element at the front of q and returns it.
func (q *FIFO[T]) Pop() T {
	v := q.buf[q.head]
	q.Drop()
	return v
}

// Drop removes the element at the front of q. Its slot is zeroed: q keeps no reference to
// what it held.
func (q *FIFO[T]) Drop() {
	var zero T
	q.buf[q.head] = zero
	q.head++
	if q.head == len(q.buf) {
		q.head = 0
	}
	q.n--
}

// Back returns the element at the back of q (q must not be empty).
func (q *FIFO[T]) Back() *T { return q.At(q.n - 1) }

// DropBack removes the element at the back of q (its slot zeroed, as Drop's).
func (q *FIFO[T]) DropBack() {
	var zero T
	*q.Back() = zero
	q.n--
}

// Reset empties q, keeping its memory.
func (q *FIFO[T]) Reset() {
	clear(q.buf)
	q.head, q.n = 0, 0
}
