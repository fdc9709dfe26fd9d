package engine

import (
	"cmp"
	"slices"
	"sync"

	"github.com/snf-dev/snf/unit"
)

// mailbox is a unit slot's unbounded queue of incoming states (a handover is per flowlet,
// not per packet: a lock here is not on the packet path). Its forwarder feeds the unit's
// State channel in arrival order. It never blocks a sender: two units that ship many flows
// to each other at once would otherwise wait on each other's full queues.
//
// With recovery on, it also keeps every state delivered until a checkpoint of the unit
// covers the batch that expected it (a replacement unit replays that batch and needs the
// state again), and drops a state whose handover id it delivered before (a recovering peer
// replaying a Marker it had already carried out).
type mailbox struct {
	mu        sync.Mutex
	q         []unit.State
	wake      chan struct{}
	keep      bool
	retained  map[uint64]unit.State // by handover id
	delivered map[uint64]struct{}   // handover ids delivered (until the Marker's batch is covered)
	dups      uint64
}

func newMailbox(keep bool) *mailbox {
	m := &mailbox{wake: make(chan struct{}, 1), keep: keep}
	if keep {
		m.retained, m.delivered = map[uint64]unit.State{}, map[uint64]struct{}{}
	}
	return m
}

func (m *mailbox) put(s unit.State) {
	m.mu.Lock()
	if m.keep && s.Hid != 0 {
		if _, dup := m.delivered[s.Hid]; dup {
			m.dups++
			m.mu.Unlock()
			return
		}
		m.delivered[s.Hid] = struct{}{}
		m.retained[s.Hid] = s
	}
	m.q = append(m.q, s)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// consumed forgets the state of handover hid: a checkpoint of the unit covers the batch
// that expected it.
func (m *mailbox) consumed(hid uint64) {
	m.mu.Lock()
	delete(m.retained, hid)
	m.mu.Unlock()
}

// settled forgets that handover hid was delivered: the batch holding its Marker is covered,
// so no replay can send its state again.
func (m *mailbox) settled(hid uint64) {
	m.mu.Lock()
	delete(m.delivered, hid)
	m.mu.Unlock()
}

// restart makes the queue the states retained for a replacement unit, in handover order.
func (m *mailbox) restart() {
	m.mu.Lock()
	m.q = m.q[:0]
	for _, s := range m.retained {
		m.q = append(m.q, s)
	}
	slices.SortFunc(m.q, func(a, b unit.State) int { return cmp.Compare(a.Hid, b.Hid) })
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// forward delivers the mailbox's states to to until quit is closed.
func (m *mailbox) forward(to chan<- unit.State, quit <-chan struct{}) {
	var spare []unit.State
	for {
		select {
		case <-m.wake:
		case <-quit:
			return
		}
		m.mu.Lock()
		q := m.q
		m.q = spare[:0]
		m.mu.Unlock()
		for i, s := range q {
			select {
			case to <- s:
			case <-quit:
				// A unit replaced meanwhile: what it did not take goes back in front.
				m.mu.Lock()
				m.q = append(slices.Clone(q[i:]), m.q...)
				m.mu.Unlock()
				return
			}
		}
		clear(q)
		spare = q
	}
}
