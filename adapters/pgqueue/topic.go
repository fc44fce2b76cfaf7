package pgqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/adapters/internal/leasebook"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// ackedMemory is how many acked lease ids a topic remembers, so a repeated
// Ack (a retry after a lost response) still succeeds.
const ackedMemory = 4096

// topic is the owner of one topic's in-memory state. Its goroutine, run,
// holds the state (a topicState local to run, so nothing else can touch it);
// callers reach it through the channels below and wait on 1-buffered reply
// channels, selecting on done and their context.
type topic struct {
	r    *Reader
	name string

	leases      chan leaseCall    // Lease → run; unbuffered
	settles     chan settleCall   // Ack, Release → run; unbuffered
	withdraws   chan withdrawCall // a waiting Lease whose wait or context ended → run; unbuffered
	pokes       chan struct{}     // the reader's listener → run: new rows were committed; 1-buffered, so pokes coalesce and the listener never blocks
	announced   atomic.Int64      // the lowest id the pokes since run last read it announced (noneAnnounced: none); set before the poke is sent
	abandon     chan struct{}     // closed by Reader.abandon: stop waiting for leases
	abandonOnce sync.Once
	done        chan struct{} // closed when run has returned and its I/O goroutines too

	held      atomic.Int64 // messages in memory; written by run, read by metrics
	heldBytes atomic.Int64 // their size (msgBytes); written by run, read by metrics
	backlog   atomic.Int64 // ready + leased messages; written by run, read by metrics

	// Measured in PostgreSQL by the reader's stats loop (see stats.go);
	// written by that loop, read by metrics.
	dbBacklog   atomic.Int64 // rows of the topic in the reader's range
	oldestNanos atomic.Int64 // created_at of the oldest of them (UnixNano); 0 when none
}

type leaseCall struct {
	req   ports.LeaseRequest
	reply chan leaseReply // 1-buffered
}

type leaseReply struct {
	lease domain.Lease
	err   error
}

// withdrawCall takes a parked lease (named by its reply channel) off the
// waiters; run closes done once it is off (or was answered before).
type withdrawCall struct {
	reply chan leaseReply
	done  chan struct{}
}

type settleCall struct {
	ref     ports.LeaseRef
	release bool
	// undeliver (with release) gives back a lease its caller never received:
	// its deliveries do not count.
	undeliver bool
	reply     chan error // 1-buffered
}

func newTopic(r *Reader, name string) *topic {
	t := &topic{
		r:         r,
		name:      name,
		leases:    make(chan leaseCall),
		settles:   make(chan settleCall),
		withdraws: make(chan withdrawCall),
		pokes:     make(chan struct{}, 1),
		abandon:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	t.announced.Store(noneAnnounced)
	return t
}

// noneAnnounced is topic.announced and topicState.from when no id is: no
// row is known to wait beyond what the topic loaded.
const noneAnnounced = math.MaxInt64

// announce lowers announced to from. Called by the listener before it
// pokes: run, woken by the poke, reads every announcement made before it.
func (t *topic) announce(from int64) {
	for {
		old := t.announced.Load()
		if from >= old || t.announced.CompareAndSwap(old, from) {
			return
		}
	}
}

// message is one queue row held in memory.
type message struct {
	id         int64
	uuid       uuid.UUID
	partition  int
	payload    json.RawMessage
	createdAt  time.Time
	deliveries int
	lastError  string // the last reason given on release, if any
}

// lease is an outstanding lease. A live lease is in the expiry heap. While
// acking, its ids are in a pending or in-flight DELETE, its ack callers wait
// in waiters, and it is out of the heap: it cannot expire then.
type lease struct {
	id       uuid.UUID
	consumer string
	expires  time.Time
	msgs     []*message
	acking   bool
	waiters  []chan error
	expiry   *leasebook.Entry[*lease] // in the expiry heap while live
}

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

type deleteResult struct {
	leases  []*lease
	err     error
	elapsed time.Duration
}

type deadResult struct {
	msgs []*message
	err  error
}

// topicState is everything run owns. Message lifecycle: a refill loads a row
// into ready (held from then on); Lease moves it into a lease; Ack moves the
// lease into pendingDel, then into an in-flight DELETE, and the row leaves
// memory when that commits; Release puts it back at the front of ready; an
// expired lease's messages leave memory, so a later refill reloads them
// (redelivery).
type topicState struct {
	t     *topic
	cfg   ReaderConfig
	first int // first partition of the range

	ready       [][]*message           // per partition (index p-first), FIFO
	readyCount  int                    // sum of len(ready[i])
	cursor      int                    // partition index the next take starts at; rotates for fairness
	held        map[int64]*message     // every message in memory: ready, leased, acked awaiting delete
	heldBytes   int64                  // sum of msgBytes over held
	rowBytes    int                    // average msgBytes of the last refill's rows: sizes the next refill's LIMIT
	leases      map[uuid.UUID]*lease   // live and acking leases
	leasedCount int                    // messages in live, not acking, leases
	expiry      leasebook.Heap[*lease] // live, not acking, leases by expiry
	acked       *leasebook.Recent[uuid.UUID, struct{}]
	seen        *leasebook.Recent[int64, int] // deliveries of messages this reader handed out

	// waiters are the parked leases (a Wait, and nothing was ready), oldest
	// first; each is answered as soon as messages are ready.
	waiters []leaseCall

	refilling    bool
	refillCancel context.CancelFunc
	refillMore   bool // the last refill filled its batch: more rows are likely waiting
	// from is the lowest id that may have rows to load, announced since the
	// last refill started: by a notification, an expired lease, or the last
	// refill's batch cut short (noneAnnounced: none). The next refill loads
	// from it, passing only the held ids from it on (see refillDue).
	from       int64
	refillTook time.Duration // how long the last refill ran
	lastRefill time.Time     // when the last refill ended
	lastFull   time.Time     // when the last full refill (from 0) ended
	// refillRetry: after a failed refill, none starts before this.
	refillRetry time.Time
	lowWater    int // refill when fewer messages are ready
	tombstones  map[int64]struct{}
	refillDone  chan refillResult // 1-buffered: one refill in flight, its goroutine never blocks

	pendingDel []*lease // acked leases waiting for the next DELETE
	pendingIDs int
	deleting   bool
	deleteDue  bool              // the oldest pending ack has waited DeleteInterval
	deleteDone chan deleteResult // 1-buffered: one DELETE in flight

	// The delivery limit. Messages at the limit wait in dead (still held,
	// so no refill reloads them) for the statement that moves them to
	// dead_letters; one runs at a time. Deliveries that ended without an
	// ack wait in marks for the UPDATE that records their counts.
	dead          []*message
	deadLettering bool
	deadRetry     time.Time       // after a failed move, not before this
	deadDone      chan deadResult // 1-buffered
	marks         []deliveryMark
	recording     bool
	recordDone    chan error // 1-buffered

	draining  bool // Lease refused; exit once no lease is outstanding
	abandoned bool // stop waiting for live leases; flush deletes and exit

	io sync.WaitGroup // refill and delete goroutines
}

// run owns the topic's state until the reader drains and every lease is
// settled or abandoned.
func (t *topic) run() {
	s := &topicState{
		t:          t,
		cfg:        t.r.cfg,
		first:      t.r.cfg.Range.First,
		ready:      make([][]*message, t.r.cfg.Range.Len()),
		held:       make(map[int64]*message),
		leases:     make(map[uuid.UUID]*lease),
		acked:      leasebook.NewRecent[uuid.UUID, struct{}](ackedMemory),
		seen:       leasebook.NewRecent[int64, int](max(2*t.r.cfg.BufferSize, 1024)),
		tombstones: make(map[int64]struct{}),
		refillDone: make(chan refillResult, 1),
		deleteDone: make(chan deleteResult, 1),
		deadDone:   make(chan deadResult, 1),
		recordDone: make(chan error, 1),
		lowWater:   max(1, min(t.r.cfg.RefillBatch, t.r.cfg.BufferSize/2)),
		from:       noneAnnounced,
		rowBytes:   initialRowBytes,
	}
	defer close(t.done)
	defer s.io.Wait()

	var (
		expiryAlarm = leasebook.NewAlarm()
		deleteTimer = time.NewTimer(time.Hour)
		deleteC     <-chan time.Time
		refillTimer = time.NewTimer(time.Hour)
		refillAt    time.Time // when refillTimer fires; zero while stopped
		quit        = t.r.quit
		abandon     = t.abandon
		cancelled   = t.r.ctx.Done()
	)
	deleteTimer.Stop()
	defer expiryAlarm.Stop()
	defer deleteTimer.Stop()
	refillTimer.Stop()
	defer refillTimer.Stop()

	s.maybeRefill(time.Now())
	for {
		pendingBefore := len(s.pendingDel)
		select {
		case c := <-t.leases:
			if rep := s.lease(c.req, time.Now()); len(rep.lease.Messages) > 0 || rep.err != nil || c.req.Wait == 0 {
				c.reply <- rep
			} else {
				s.waiters = append(s.waiters, c)
			}
		case <-t.pokes:
			s.from = min(s.from, t.announced.Swap(noneAnnounced))
		case c := <-t.withdraws:
			s.waiters = slices.DeleteFunc(s.waiters, func(w leaseCall) bool { return w.reply == c.reply })
			close(c.done)
		case c := <-t.settles:
			if waiting, err := s.settle(c, time.Now()); !waiting {
				c.reply <- err
			}
		case res := <-s.refillDone:
			s.refilled(res, time.Now())
		case res := <-s.deleteDone:
			s.deleted(res, time.Now())
		case res := <-s.deadDone:
			s.deadLettered(res, time.Now())
		case err := <-s.recordDone:
			s.recorded(err)
		case now := <-expiryAlarm.C:
			expiryAlarm.Fired()
			s.expire(now)
		case <-deleteC:
			deleteC, s.deleteDue = nil, true
		case <-refillTimer.C:
			refillAt = time.Time{}
		case <-quit:
			quit = nil
			s.drain()
		case <-abandon:
			abandon = nil
			s.abandon()
		case <-cancelled:
			cancelled = nil
			s.abandon()
		}
		now := time.Now()
		if pendingBefore == 0 && len(s.pendingDel) > 0 && s.cfg.DeleteInterval > 0 {
			s.deleteDue = false
			deleteTimer.Reset(s.cfg.DeleteInterval)
			deleteC = deleteTimer.C
		}
		s.maybeDelete()
		s.maybeDeadLetter(now)
		s.maybeRecord()
		s.serveWaiters(now)
		s.maybeRefill(now)
		if at, ok := s.refillWake(now); !ok && !refillAt.IsZero() {
			refillTimer.Stop()
			refillAt = time.Time{}
		} else if ok && !at.Equal(refillAt) {
			refillTimer.Reset(at.Sub(now))
			refillAt = at
		}
		expiryAlarm.Set(s.expiry.Next())
		t.held.Store(int64(len(s.held)))
		t.heldBytes.Store(s.heldBytes)
		t.backlog.Store(int64(s.readyCount + s.leasedCount))
		if s.draining && len(s.leases) == 0 && !s.refilling && !s.deleting && s.settledLimit() {
			t.held.Store(0)
			t.heldBytes.Store(0)
			t.backlog.Store(0)
			return
		}
	}
}

// serveWaiters answers the parked leases, oldest first, while messages are
// ready.
func (s *topicState) serveWaiters(now time.Time) {
	for len(s.waiters) > 0 && s.readyCount > 0 {
		c := s.waiters[0]
		s.waiters[0] = leaseCall{}
		s.waiters = s.waiters[1:]
		c.reply <- s.lease(c.req, now)
	}
	if len(s.waiters) == 0 {
		s.waiters = nil
	}
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

// lease takes up to req.Max ready messages under a new lease.
func (s *topicState) lease(req ports.LeaseRequest, now time.Time) leaseReply {
	if s.draining || s.t.r.draining.Load() {
		return leaseReply{err: fmt.Errorf("reader is draining: %w", ports.ErrClosed)}
	}
	empty := domain.Lease{Topic: s.t.name, ConsumerID: req.ConsumerID, Messages: []domain.Message{}}
	msgs := s.take(req.Max, s.cfg.LeaseMaxBytes)
	if len(msgs) == 0 {
		return leaseReply{lease: empty}
	}
	l := &lease{id: uuid.New(), consumer: req.ConsumerID, expires: now.Add(req.LeaseDuration), msgs: msgs}
	s.leases[l.id] = l
	l.expiry = s.expiry.Push(l, l.expires)
	s.leasedCount += len(msgs)
	out := make([]domain.Message, len(msgs))
	for i, m := range msgs {
		m.deliveries++
		if m.deliveries > 1 {
			s.t.r.metrics.redelivered.Inc()
		}
		s.seen.Put(m.id, m.deliveries)
		out[i] = domain.Message{ID: m.uuid, Topic: s.t.name, Partition: m.partition, Payload: m.payload,
			CreatedAt: m.createdAt, Deliveries: m.deliveries}
	}
	s.t.r.metrics.leased.Add(float64(len(msgs)))
	return leaseReply{lease: domain.Lease{ID: l.id, Topic: s.t.name, ConsumerID: req.ConsumerID,
		ExpiresAt: l.expires, Messages: out}}
}

// take removes up to n ready messages whose msgBytes sum to at most
// maxBytes (the first is taken whatever its size): fairly across partitions
// (each non-empty partition gives an equal share per pass, the pass starting
// at a rotating partition), first in, first out within each.
func (s *topicState) take(n, maxBytes int) []*message {
	n = min(n, s.readyCount)
	if n == 0 {
		return nil
	}
	out := make([]*message, 0, n)
	parts := len(s.ready)
	size, full := 0, false
	for len(out) < n && !full {
		nonEmpty := 0
		for _, q := range s.ready {
			if len(q) > 0 {
				nonEmpty++
			}
		}
		share := max(1, (n-len(out))/nonEmpty)
		for i := 0; i < parts && len(out) < n && !full; i++ {
			p := (s.cursor + i) % parts
			q := s.ready[p]
			if len(q) == 0 {
				continue
			}
			c := min(share, len(q), n-len(out))
			for k, m := range q[:c] {
				b := msgBytes(m)
				if len(out) > 0 && size+b > maxBytes {
					c, full = k, true
					break
				}
				size += b
				out = append(out, m)
			}
			clear(q[:c]) // drop references so leased messages are not kept alive by ready's array
			if c == len(q) {
				s.ready[p] = nil
			} else {
				s.ready[p] = q[c:]
			}
		}
		s.cursor = (s.cursor + 1) % parts
	}
	s.readyCount -= len(out)
	return out
}

// leaseEntryBytes is what one message costs beyond its payload, in a lease
// response (msg_uuid, partition, created_at, deliveries and the JSON around
// them) and, roughly, in memory (its struct and map entries).
const leaseEntryBytes = 160

// initialRowBytes sizes a topic's first refill before any row was seen: the
// default MQ_MAX_PAYLOAD_BYTES, so a first refill of large rows stays near
// RefillBytes (small rows make the next refill as large as RefillBatch).
const initialRowBytes = 64 << 10

// msgBytes is the size a message counts for in the byte budgets.
func msgBytes(m *message) int { return len(m.payload) + leaseEntryBytes }

// keep adds m to the messages in memory.
func (s *topicState) keep(m *message) {
	s.held[m.id] = m
	s.heldBytes += int64(msgBytes(m))
}

// forget drops m from memory.
func (s *topicState) forget(m *message) {
	if _, ok := s.held[m.id]; !ok {
		return
	}
	delete(s.held, m.id)
	s.heldBytes -= int64(msgBytes(m))
}

// settle handles Ack and Release. It returns waiting true when the ack
// waits for its DELETE (deleted answers it), else the answer.
func (s *topicState) settle(c settleCall, now time.Time) (waiting bool, err error) {
	l := s.leases[c.ref.LeaseID]
	switch {
	case l == nil:
		if _, ok := s.acked.Get(c.ref.LeaseID); ok && !c.release {
			return false, nil
		}
		return false, ports.ErrLeaseExpired
	case l.consumer != c.ref.ConsumerID:
		return false, domain.CheckOwner(c.ref, l.consumer)
	case l.acking && c.release:
		return false, fmt.Errorf("%w: lease is acked", ports.ErrLeaseExpired)
	case l.acking:
		l.waiters = append(l.waiters, c.reply)
		return true, nil
	case !now.Before(l.expires):
		s.expireLease(l)
		return false, fmt.Errorf("%w: lease expired at %s", ports.ErrLeaseExpired, l.expires.UTC().Format(time.RFC3339Nano))
	case c.release:
		if c.undeliver {
			for _, m := range l.msgs {
				m.deliveries--
				s.seen.Put(m.id, m.deliveries)
			}
		}
		s.release(l, c.ref.Reason)
		return false, nil
	}
	s.expiry.Remove(l.expiry)
	l.acking = true
	l.waiters = append(l.waiters, c.reply)
	s.leasedCount -= len(l.msgs)
	s.pendingDel = append(s.pendingDel, l)
	s.pendingIDs += len(l.msgs)
	return true, nil
}

// release puts a live lease's messages back at the front of their
// partitions, keeping their order. While draining they leave memory instead:
// nothing will lease them here.
func (s *topicState) release(l *lease, reason string) {
	delete(s.leases, l.id)
	s.expiry.Remove(l.expiry)
	s.leasedCount -= len(l.msgs)
	back := s.endDeliveries(l.msgs, reason)
	if s.draining {
		for _, m := range back {
			s.forget(m)
		}
		return
	}
	byPart := make(map[int][]*message)
	for _, m := range back {
		p := m.partition - s.first
		byPart[p] = append(byPart[p], m)
	}
	for p, ms := range byPart {
		s.ready[p] = append(ms, s.ready[p]...)
	}
	s.readyCount += len(back)
}

// endDeliveries settles the deliveries of messages whose lease ended
// without an ack (released, with reason if given, or expired): a message at
// the delivery limit goes to dead (it stays held until it is moved to
// dead_letters); every other one has its count recorded, and is returned.
func (s *topicState) endDeliveries(msgs []*message, reason string) []*message {
	back := msgs[:0:0]
	for _, m := range msgs {
		if reason != "" {
			m.lastError = reason
		}
		if domain.Exhausted(m.deliveries, s.cfg.MaxDeliveries) {
			s.dead = append(s.dead, m)
			continue
		}
		if m.deliveries > 0 { // zero: a given-back lease its caller never received
			s.marks = append(s.marks, deliveryMark{id: m.id, deliveries: m.deliveries, text: m.lastError})
		}
		back = append(back, m)
	}
	return back
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
		s.t.r.logger.Warn("refill failed", "topic", s.t.name, "err", res.err)
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
