package queue

import (
	"math/rand/v2"
	"testing"
)

// TestFIFOModel: random pushes, pops and drops against a slice, across the queue's growth
// and wrap-around; At and Front see what the slice does.
func TestFIFOModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var q FIFO[int]
	var model []int
	next := 0
	for step := range 20000 {
		switch k := r.IntN(10); {
		case k < 5 || len(model) == 0:
			q.Push(next)
			model = append(model, next)
			next++
		case k < 8:
			if v := q.Pop(); v != model[0] {
				t.Fatalf("step %d: popped %d, want %d", step, v, model[0])
			}
			model = model[1:]
		case k < 9:
			if r.IntN(2) == 0 {
				q.Drop()
				model = model[1:]
			} else {
				q.DropBack()
				model = model[:len(model)-1]
			}
		default:
			if step%7 == 0 {
				q.Reset()
				model = model[:0]
			}
		}
		if q.Len() != len(model) {
			t.Fatalf("step %d: Len %d, want %d", step, q.Len(), len(model))
		}
		if len(model) > 0 {
			i := r.IntN(len(model))
			if *q.Front() != model[0] || *q.At(i) != model[i] || *q.Back() != model[len(model)-1] {
				t.Fatalf("step %d: Front %d At(%d) %d Back %d, want %d, %d, %d", step, *q.Front(), i, *q.At(i), *q.Back(), model[0], model[i], model[len(model)-1])
			}
		}
	}
}

// TestFIFODropsReferences: a popped or dropped slot keeps no pointer (the packet log's
// entries must not stay reachable from its queue).
func TestFIFODropsReferences(t *testing.T) {
	var q FIFO[*int]
	for i := range 3 {
		q.Push(&i)
	}
	q.Pop()
	q.Drop()
	for i, p := range q.buf {
		if p != nil && i != q.head {
			t.Fatalf("slot %d still holds a pointer after Pop and Drop", i)
		}
	}
	q.Reset()
	for i, p := range q.buf {
		if p != nil {
			t.Fatalf("slot %d still holds a pointer after Reset", i)
		}
	}
}

// TestFIFOSteadyAllocs: once grown, pushing and popping allocates nothing.
func TestFIFOSteadyAllocs(t *testing.T) {
	var q FIFO[int]
	for i := range 100 {
		q.Push(i)
	}
	if a := testing.AllocsPerRun(1000, func() { q.Push(1); q.Pop() }); a != 0 {
		t.Fatalf("%v allocations per push and pop", a)
	}
}
