package engine

// fifo is a growable ring-buffer queue.
type fifo[T any] struct {
	buf        []T
	head, size int
}

func (q *fifo[T]) push(v T) {
	if q.size == len(q.buf) {
		nb := make([]T, max(16, 2*len(q.buf)))
		for i := range q.size {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = v
	q.size++
}

func (q *fifo[T]) front() *T { return &q.buf[q.head] }

func (q *fifo[T]) pop() T {
	v := q.buf[q.head]
	q.drop()
	return v
}

func (q *fifo[T]) drop() {
	q.head++
	if q.head == len(q.buf) {
		q.head = 0
	}
	q.size--
}

// reset empties q, keeping its memory.
func (q *fifo[T]) reset() { q.head, q.size = 0, 0 }
