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
	"github.com/gpufleet/telemetry/internal/ratelog"
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
	refillFails *ratelog.Limiter // "refill failed" lines; every failure is counted in metrics
	lowWater    int              // refill when fewer messages are ready
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
		t:           t,
		cfg:         t.r.cfg,
		first:       t.r.cfg.Range.First,
		ready:       make([][]*message, t.r.cfg.Range.Len()),
		held:        make(map[int64]*message),
		leases:      make(map[uuid.UUID]*lease),
		acked:       leasebook.NewRecent[uuid.UUID, struct{}](ackedMemory),
		seen:        leasebook.NewRecent[int64, int](max(2*t.r.cfg.BufferSize, 1024)),
		tombstones:  make(map[int64]struct{}),
		refillDone:  make(chan refillResult, 1),
		refillFails: ratelog.New(ratelog.Interval),
		deleteDone:  make(chan deleteResult, 1),
		deadDone:    make(chan deadResult, 1),
		recordDone:  make(chan error, 1),
		lowWater:    max(1, min(t.r.cfg.RefillBatch, t.r.cfg.BufferSize/2)),
		from:        noneAnnounced,
		rowBytes:    initialRowBytes,
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
