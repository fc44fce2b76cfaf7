// The end of leases and of the topic owner: expiry, drain and abandon.

package pgqueue

import (
	"fmt"
	"time"

	"github.com/gpufleet/telemetry/ports"
)

// expire drops every live lease whose time has come.
func (s *topicState) expire(now time.Time) {
	for e, ok := s.expiry.PopDue(now); ok; e, ok = s.expiry.PopDue(now) {
		s.expireLease(e.Value)
	}
}

// expireLease drops a live lease and its messages from memory; the rows
// stay in PostgreSQL, so a later refill reloads and redelivers them.
func (s *topicState) expireLease(l *lease) {
	delete(s.leases, l.id)
	s.expiry.Remove(l.expiry)
	s.leasedCount -= len(l.msgs)
	for _, m := range s.endDeliveries(l.msgs, "") {
		s.forget(m)
		s.from = min(s.from, m.id) // its row is to be loaded again
	}
	if s.abandoned {
		s.t.r.abandoned.Add(1)
		return
	}
	s.t.r.metrics.expired.Inc()
}

// drain refuses new leases and lets go of the ready messages: they stay in
// PostgreSQL for the next owner.
func (s *topicState) drain() {
	if s.draining {
		return
	}
	s.draining = true
	if s.refillCancel != nil {
		s.refillCancel()
	}
	for _, c := range s.waiters {
		c.reply <- leaseReply{err: fmt.Errorf("reader is draining: %w", ports.ErrClosed)}
	}
	s.waiters = nil
	for i, q := range s.ready {
		for _, m := range q {
			s.forget(m)
		}
		s.ready[i] = nil
	}
	s.readyCount = 0
}

// abandon stops waiting for live leases; acks already in a DELETE finish.
func (s *topicState) abandon() {
	s.drain()
	s.abandoned = true
	for _, l := range s.leases {
		if !l.acking {
			s.expireLease(l)
		}
	}
}
