// Refills: when a topic owner loads rows from PostgreSQL, and what it does
// with what it loaded.

package pgqueue

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/domain"
)

// loadedRow is a row a refill read.
type loadedRow struct {
	id        int64
	uuid      uuid.UUID
	payload   []byte
	partition int16
	createdAt time.Time
	// deliveries and lastError are what earlier deliveries recorded
	// (migration 0003): deliveries that ended without an ack.
	deliveries int
	lastError  string
}

type refillResult struct {
	from     int64 // the id the refill loaded from (0: in full)
	rows     []loadedRow
	limit    int
	maxBytes int
	err      error
	elapsed  time.Duration
}

// refillWake is when run must wake for the next refill to start on time:
// false when none could start then anyway (one is in flight, the topic is
// draining, full, or has enough ready), for each of those ends with an
// event that runs the loop.
func (s *topicState) refillWake(now time.Time) (time.Time, bool) {
	if s.refilling || s.draining || !s.refillRoom() {
		return time.Time{}, false
	}
	at, _ := s.refillDue()
	return at, at.After(now)
}

// refillDue is when the next refill comes due and the id it loads from (0:
// a full refill, which passes every held id). A refill that filled its
// batch is followed at once, from the row after its last. Otherwise, with
// the listener up, a topic refills in full every FullRefillInterval and in
// between from the lowest announced id (s.from), FastRefillInterval after
// the last refill: commits arriving faster share a refill. With the
// listener down it polls in full every RefillInterval, or every
// FastRefillInterval while a lease waits. Never sooner than the last
// refill took, so refills keep a database connection busy at most half
// the time however many held rows the query walks, and never sooner than
// RefillInterval after a failed refill.
func (s *topicState) refillDue() (time.Time, int64) {
	at, from := s.refillSchedule()
	if at.Before(s.refillRetry) {
		at = s.refillRetry
	}
	return at, from
}

// refillSchedule is refillDue before a failed refill's pause.
func (s *topicState) refillSchedule() (time.Time, int64) {
	if s.refillMore {
		return s.lastRefill, s.from
	}
	full := s.cfg.FullRefillInterval
	if !s.t.r.listening.Load() {
		full = s.cfg.RefillInterval
		if len(s.waiters) > 0 {
			full = min(s.cfg.FastRefillInterval, full)
		}
	}
	fullAt := s.lastFull.Add(max(full, s.refillTook))
	if s.from == noneAnnounced {
		return fullAt, 0
	}
	fast := min(s.cfg.FastRefillInterval, s.cfg.RefillInterval)
	if at := s.lastRefill.Add(max(fast, s.refillTook)); at.Before(fullAt) {
		return at, s.from
	}
	return fullAt, 0
}

// refillRoom reports whether a refill would load anything: there is room
// by count and bytes, and fewer than lowWater messages are ready.
func (s *topicState) refillRoom() bool {
	return len(s.held) < s.cfg.BufferSize && s.heldBytes < s.cfg.BufferBytes && s.readyCount < s.lowWater
}

// maybeRefill starts a refill when none is in flight, ready runs low, there
// is room, and one is due (refillDue).
func (s *topicState) maybeRefill(now time.Time) {
	if s.refilling || s.draining || !s.refillRoom() {
		return
	}
	at, from := s.refillDue()
	if at.After(now) {
		return
	}
	room := s.cfg.BufferSize - len(s.held)
	roomBytes := s.cfg.BufferBytes - s.heldBytes
	held := make([]int64, 0, len(s.held))
	for id := range s.held {
		if id >= from {
			held = append(held, id)
		}
	}
	maxBytes := int(min(int64(s.cfg.RefillBytes), roomBytes))
	// The LIMIT the bytes allow at the last refill's average row size: rows
	// past maxBytes are read and dropped by load, so this keeps that waste
	// small when rows are large.
	limit := max(1, min(s.cfg.RefillBatch, room, maxBytes/max(s.rowBytes, 1)))
	r, name, done := s.t.r, s.t.name, s.refillDone
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.QueryTimeout)
	s.refilling, s.refillCancel, s.from = true, cancel, noneAnnounced
	s.io.Go(func() {
		defer cancel()
		start := time.Now()
		rows, err := r.rows.load(ctx, name, *r.cfg.Range, from, held, limit, maxBytes)
		done <- refillResult{from: from, rows: rows, limit: limit, maxBytes: maxBytes, err: err, elapsed: time.Since(start)}
	})
}

// refilled adds a refill's rows to ready, skipping any row held now or
// deleted while the query ran (its snapshot may predate the DELETE).
func (s *topicState) refilled(res refillResult, now time.Time) {
	s.refilling, s.refillCancel = false, nil
	s.lastRefill, s.refillTook = now, res.elapsed
	s.refillMore = false
	defer clear(s.tombstones)
	if s.draining {
		return
	}
	s.t.r.metrics.refillTime.Observe(res.elapsed.Seconds())
	if res.err != nil {
		s.t.r.metrics.refillFails.Inc()
		s.refillFails.Warn(s.t.r.logger, now, "refill failed", "topic", s.t.name, "err", res.err)
		s.from = min(s.from, res.from)                // what it was to load is still to load,
		s.refillRetry = now.Add(s.cfg.RefillInterval) // at the polling pace: a failing database is not asked in a loop
		return
	}
	s.refillRetry = time.Time{}
	if res.from == 0 {
		s.lastFull = now
	}
	loaded := 0
	for _, row := range res.rows {
		loaded += loadedBytes(row)
		if _, ok := s.held[row.id]; ok {
			continue
		}
		if _, ok := s.tombstones[row.id]; ok {
			continue
		}
		p := int(row.partition) - s.first
		if p < 0 || p >= len(s.ready) {
			continue
		}
		m := &message{id: row.id, uuid: row.uuid, partition: int(row.partition), payload: row.payload,
			createdAt: row.createdAt, deliveries: row.deliveries, lastError: row.lastError}
		if d, ok := s.seen.Get(row.id); ok {
			m.deliveries = max(m.deliveries, d)
		}
		s.keep(m)
		if domain.Exhausted(m.deliveries, s.cfg.MaxDeliveries) {
			s.dead = append(s.dead, m) // its last delivery ended before a restart or crash
			continue
		}
		s.ready[p] = append(s.ready[p], m)
		s.readyCount++
	}
	if len(res.rows) > 0 {
		s.rowBytes = loaded / len(res.rows)
	}
	// Full by count, or cut by bytes (the next row would not have fit): more
	// rows are likely waiting, after the last one loaded.
	s.refillMore = len(res.rows) > 0 && (len(res.rows) == res.limit || loaded+s.rowBytes > res.maxBytes)
	if s.refillMore {
		s.from = min(s.from, res.rows[len(res.rows)-1].id+1)
	}
}
