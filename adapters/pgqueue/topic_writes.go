// The topic owner's writes to PostgreSQL: dead letters, delivery counts,
// and the batched DELETE of acked rows.

package pgqueue

import (
	"context"
	"fmt"
	"time"

	"github.com/gpufleet/telemetry/domain"
)

type deleteResult struct {
	leases  []*lease
	err     error
	elapsed time.Duration
}

type deadResult struct {
	msgs []*message
	err  error
}

// settledLimit reports whether no delivery-limit work is pending or running.
func (s *topicState) settledLimit() bool {
	return len(s.dead) == 0 && !s.deadLettering && len(s.marks) == 0 && !s.recording
}

// maybeDeadLetter starts moving the messages at their limit to
// dead_letters when no move is in flight (and a failed one's backoff has
// passed).
func (s *topicState) maybeDeadLetter(now time.Time) {
	if s.deadLettering || len(s.dead) == 0 || now.Before(s.deadRetry) {
		return
	}
	batch := s.dead[:min(len(s.dead), s.cfg.DeleteBatch):min(len(s.dead), s.cfg.DeleteBatch)]
	s.dead = s.dead[len(batch):]
	marks := make([]deliveryMark, len(batch))
	for i, m := range batch {
		marks[i] = deliveryMark{id: m.id, deliveries: m.deliveries, text: domain.ExhaustedReason(m.deliveries, m.lastError)}
	}
	s.deadLettering = true
	r, done := s.t.r, s.deadDone
	s.io.Go(func() {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.QueryTimeout)
		defer cancel()
		done <- deadResult{msgs: batch, err: r.rows.deadLetter(ctx, marks)}
	})
}

// deadLettered ends a move to dead_letters: the messages leave memory (and
// are tombstoned against a refill in flight), or, when it failed, wait for
// another try. While the reader stops, failed ones are let go: their rows
// keep the count, so the next owner moves them.
func (s *topicState) deadLettered(res deadResult, now time.Time) {
	s.deadLettering = false
	if res.err != nil {
		s.t.r.logger.Warn("moving messages to dead_letters failed; will retry", "topic", s.t.name,
			"messages", len(res.msgs), "err", res.err)
		if s.abandoned || s.draining {
			for _, m := range res.msgs {
				s.forget(m)
			}
			return
		}
		s.dead = append(res.msgs, s.dead...)
		s.deadRetry = now.Add(max(s.cfg.RefillInterval, time.Second))
		return
	}
	for _, m := range res.msgs {
		s.forget(m)
		s.seen.Delete(m.id)
		if s.refilling {
			s.tombstones[m.id] = struct{}{}
		}
		s.t.r.logger.Warn("message dead-lettered at its delivery limit", "topic", s.t.name,
			"msg_uuid", m.uuid, "deliveries", m.deliveries, "last_error", m.lastError)
	}
	s.t.r.metrics.deadLettered.Add(float64(len(res.msgs)))
}

// maybeRecord starts the UPDATE of the pending delivery counts when none is
// in flight. A failed one is logged and dropped: the reader's memory (seen)
// still has the counts; only a restart would forget them.
func (s *topicState) maybeRecord() {
	if s.recording || len(s.marks) == 0 {
		return
	}
	marks := s.marks
	s.marks = nil
	s.recording = true
	r, done := s.t.r, s.recordDone
	s.io.Go(func() {
		// Not cancelled when the reader stops: Close abandons at once, and
		// a count in flight then would be lost (the next owner would give
		// the message one delivery too many). Bounded by recordGrace.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), min(r.cfg.QueryTimeout, recordGrace))
		defer cancel()
		done <- r.rows.record(ctx, marks)
	})
}

// recordGrace bounds how long a stopping reader waits for the delivery
// counts already being written.
const recordGrace = 5 * time.Second

func (s *topicState) recorded(err error) {
	s.recording = false
	if err != nil {
		s.t.r.logger.Warn("recording delivery counts failed", "topic", s.t.name, "err", err)
	}
}

// maybeDelete starts the next batched DELETE when none is in flight and the
// pending acks are due.
func (s *topicState) maybeDelete() {
	if s.deleting || len(s.pendingDel) == 0 {
		return
	}
	if !(s.cfg.DeleteInterval == 0 || s.deleteDue || s.draining || s.pendingIDs >= s.cfg.DeleteBatch) {
		return
	}
	n, ids := 0, 0
	for n < len(s.pendingDel) && (n == 0 || ids+len(s.pendingDel[n].msgs) <= s.cfg.DeleteBatch) {
		ids += len(s.pendingDel[n].msgs)
		n++
	}
	batch := s.pendingDel[:n:n]
	s.pendingDel = s.pendingDel[n:]
	s.pendingIDs -= ids
	if len(s.pendingDel) == 0 {
		s.pendingDel, s.deleteDue = nil, false
	}
	idList := make([]int64, 0, ids)
	for _, l := range batch {
		for _, m := range l.msgs {
			idList = append(idList, m.id)
		}
	}
	s.deleting = true
	r, done := s.t.r, s.deleteDone
	s.io.Go(func() {
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.QueryTimeout)
		defer cancel()
		start := time.Now()
		err := r.rows.delete(ctx, idList)
		done <- deleteResult{leases: batch, err: err, elapsed: time.Since(start)}
	})
}

// deleted answers the acks of a finished DELETE. On success their messages
// leave memory (and are tombstoned against the refill in flight); on failure
// their leases are live again, unless expired or abandoned meanwhile.
func (s *topicState) deleted(res deleteResult, now time.Time) {
	s.deleting = false
	s.t.r.metrics.deleteTime.Observe(res.elapsed.Seconds())
	if res.err != nil {
		err := fmt.Errorf("delete acked messages: %w", translate(res.err))
		s.t.r.logger.Warn("ack delete failed", "topic", s.t.name, "leases", len(res.leases), "err", res.err)
		for _, l := range res.leases {
			l.acking = false
			s.leasedCount += len(l.msgs)
			for _, w := range l.waiters {
				w <- err
			}
			l.waiters = nil
			s.expiry.Requeue(l.expiry, l.expires)
			if s.abandoned || !now.Before(l.expires) {
				s.expireLease(l)
			}
		}
		return
	}
	acked := 0
	for _, l := range res.leases {
		delete(s.leases, l.id)
		for _, m := range l.msgs {
			s.forget(m)
			s.seen.Delete(m.id)
			if s.refilling {
				s.tombstones[m.id] = struct{}{}
			}
		}
		acked += len(l.msgs)
		s.acked.Put(l.id, struct{}{})
		for _, w := range l.waiters {
			w <- nil
		}
		l.waiters = nil
	}
	s.t.r.metrics.acked.Add(float64(acked))
}
