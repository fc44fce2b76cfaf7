// Package leasebook holds the bookkeeping every queue adapter keeps about its
// leases, written once: an expiry heap whose entries can be removed or moved
// in O(log n) (a lease settled early leaves at once), a map that remembers
// only its newest entries (acked lease ids, delivery counts, dedup ids), and
// an alarm that keeps one timer armed for the earliest deadline. None of it
// is safe for concurrent use: each value belongs to one owner goroutine.
package leasebook

import (
	"container/heap"
	"time"
)

// Entry is a value in a Heap with its deadline. Its position is kept by the
// heap, so Remove and Fix need no search.
type Entry[T any] struct {
	Value T
	at    time.Time
	index int // position in the heap; -1 when not in it
}

// At is the entry's deadline.
func (e *Entry[T]) At() time.Time { return e.at }

// Queued reports whether the entry is in a heap.
func (e *Entry[T]) Queued() bool { return e != nil && e.index >= 0 }

// Heap orders entries by deadline, earliest first. The zero value is empty
// and ready to use.
type Heap[T any] struct {
	h entries[T]
}

// Push adds v with deadline at and returns its entry.
func (h *Heap[T]) Push(v T, at time.Time) *Entry[T] {
	e := &Entry[T]{Value: v, at: at, index: -1}
	heap.Push(&h.h, e)
	return e
}

// Requeue puts a removed entry back with deadline at; an entry still queued
// is moved instead.
func (h *Heap[T]) Requeue(e *Entry[T], at time.Time) {
	if e.Queued() {
		h.Fix(e, at)
		return
	}
	e.at = at
	heap.Push(&h.h, e)
}

// Remove takes e out of the heap; removing an entry that is not queued does
// nothing.
func (h *Heap[T]) Remove(e *Entry[T]) {
	if e.Queued() {
		heap.Remove(&h.h, e.index)
	}
}

// Fix moves e to deadline at.
func (h *Heap[T]) Fix(e *Entry[T], at time.Time) {
	e.at = at
	heap.Fix(&h.h, e.index)
}

// Len is the number of queued entries.
func (h *Heap[T]) Len() int { return len(h.h) }

// Peek returns the entry with the earliest deadline, or nil.
func (h *Heap[T]) Peek() *Entry[T] {
	if len(h.h) == 0 {
		return nil
	}
	return h.h[0]
}

// Next is the earliest deadline; ok is false when the heap is empty.
func (h *Heap[T]) Next() (at time.Time, ok bool) {
	if len(h.h) == 0 {
		return time.Time{}, false
	}
	return h.h[0].at, true
}

// PopDue removes and returns the earliest entry whose deadline is not after
// now; ok is false when none is due.
func (h *Heap[T]) PopDue(now time.Time) (e *Entry[T], ok bool) {
	if len(h.h) == 0 || now.Before(h.h[0].at) {
		return nil, false
	}
	return heap.Pop(&h.h).(*Entry[T]), true
}

// entries implements container/heap.Interface.
type entries[T any] []*Entry[T]

func (s entries[T]) Len() int           { return len(s) }
func (s entries[T]) Less(i, j int) bool { return s[i].at.Before(s[j].at) }
func (s entries[T]) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].index, s[j].index = i, j
}

func (s *entries[T]) Push(x any) {
	e := x.(*Entry[T])
	e.index = len(*s)
	*s = append(*s, e)
}

func (s *entries[T]) Pop() any {
	old := *s
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*s = old[:len(old)-1]
	return e
}

// Recent is a map that remembers at most its capacity of the most recently
// added keys: adding one more forgets the oldest. Memory is bounded by the
// capacity whatever the input. Delete frees a key at once; its slot in the
// insertion order is skipped when its turn to be forgotten comes.
type Recent[K comparable, V any] struct {
	m    map[K]slot[V]
	ring []ringEntry[K] // insertion order; a ring of capacity entries
	head int            // oldest entry
	n    int            // entries in ring
	seq  uint64         // last sequence number handed out
}

type slot[V any] struct {
	v   V
	seq uint64 // the ring entry that owns this key
}

type ringEntry[K comparable] struct {
	k   K
	seq uint64
}

// NewRecent returns a Recent holding at most capacity keys (at least 1).
func NewRecent[K comparable, V any](capacity int) *Recent[K, V] {
	capacity = max(capacity, 1)
	return &Recent[K, V]{m: make(map[K]slot[V]), ring: make([]ringEntry[K], capacity)}
}

// Get returns the value of k.
func (r *Recent[K, V]) Get(k K) (V, bool) {
	s, ok := r.m[k]
	return s.v, ok
}

// Put sets k to v. A new key counts as the newest; updating a key keeps its
// place in the order.
func (r *Recent[K, V]) Put(k K, v V) {
	if s, ok := r.m[k]; ok {
		s.v = v
		r.m[k] = s
		return
	}
	if r.n == len(r.ring) {
		old := r.ring[r.head]
		if s, ok := r.m[old.k]; ok && s.seq == old.seq {
			delete(r.m, old.k)
		}
		r.head = (r.head + 1) % len(r.ring)
		r.n--
	}
	r.seq++
	r.ring[(r.head+r.n)%len(r.ring)] = ringEntry[K]{k: k, seq: r.seq}
	r.n++
	r.m[k] = slot[V]{v: v, seq: r.seq}
}

// Delete forgets k.
func (r *Recent[K, V]) Delete(k K) { delete(r.m, k) }

// Len is the number of keys remembered.
func (r *Recent[K, V]) Len() int { return len(r.m) }

// Alarm keeps one timer armed for a deadline that the owner recomputes after
// every event. C is nil while nothing is due, so a select case on it is
// switched off. Set arms, re-arms or stops the timer only when the deadline
// changes.
type Alarm struct {
	timer *time.Timer
	at    time.Time // the armed deadline; zero when stopped
	C     <-chan time.Time
}

// NewAlarm returns a stopped alarm.
func NewAlarm() *Alarm {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Alarm{timer: t}
}

// Set arms the alarm for at, or stops it when ok is false.
func (a *Alarm) Set(at time.Time, ok bool) {
	switch {
	case !ok && !a.at.IsZero():
		a.timer.Stop()
		a.at, a.C = time.Time{}, nil
	case ok && !at.Equal(a.at):
		a.timer.Reset(time.Until(at))
		a.at, a.C = at, a.timer.C
	}
}

// Fired records that the owner received from C: the alarm is stopped until
// the next Set.
func (a *Alarm) Fired() { a.at, a.C = time.Time{}, nil }

// Stop stops the timer for good.
func (a *Alarm) Stop() { a.timer.Stop() }
