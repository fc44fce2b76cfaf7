// The queue's owner goroutine and the state it alone touches: topics,
// leases, the delivery limit and dead letters.

package memory

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/adapters/internal/leasebook"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// run is the owner goroutine: it applies requests one at a time and expires
// leases on its timer.
func (q *Queue) run(ctx context.Context) {
	s := q.state
	alarm := leasebook.NewAlarm() // the earliest lease expiry. Owned by run.
	defer alarm.Stop()
	for {
		select {
		case <-ctx.Done():
			q.log.Debug("memory queue closed", "messages_lost", s.held)
			return
		case req := <-q.ops:
			s.expire(time.Now())
			req(s)
		case <-alarm.C:
			alarm.Fired()
			s.expire(time.Now())
		}
		s.serveWaiters()
		alarm.Set(s.expiries.Next())
		q.metrics.ready.Set(float64(s.ready))
		q.metrics.leased.Set(float64(s.held - s.ready))
	}
}

// queuedMessage is one held message with its bookkeeping.
type queuedMessage struct {
	domain.Message
	seq        uint64 // publish order within the queue
	idempotent bool   // published with an idempotency key
	lastError  string // the reason of the last Release, if any
}

// liveLease is a live lease. Owned by run.
type liveLease struct {
	id        uuid.UUID
	topic     *topicState
	consumer  string
	expiresAt time.Time
	msgs      []*queuedMessage
	expiry    *leasebook.Entry[*liveLease] // in queueState.expiries
}

// fifo is one partition's ready messages in seq order.
type fifo struct {
	items []*queuedMessage
	head  int
}

func (f *fifo) len() int { return len(f.items) - f.head }

func (f *fifo) push(m *queuedMessage) { f.items = append(f.items, m) }

func (f *fifo) pop() *queuedMessage {
	if f.head == len(f.items) {
		return nil
	}
	m := f.items[f.head]
	f.items[f.head] = nil
	f.head++
	switch {
	case f.head == len(f.items):
		f.items, f.head = f.items[:0], 0
	case f.head >= 1024 && f.head*2 >= len(f.items):
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return m
}

// requeue merges ms (sorted by seq) back into the FIFO, keeping seq order.
func (f *fifo) requeue(ms []*queuedMessage) {
	rest := f.items[f.head:]
	merged := make([]*queuedMessage, 0, len(ms)+len(rest))
	i, j := 0, 0
	for i < len(ms) && j < len(rest) {
		if ms[i].seq < rest[j].seq {
			merged = append(merged, ms[i])
			i++
		} else {
			merged = append(merged, rest[j])
			j++
		}
	}
	merged = append(merged, ms[i:]...)
	merged = append(merged, rest[j:]...)
	f.items, f.head = merged, 0
}

// topicState is one topic's messages. Owned by run.
type topicState struct {
	name       string
	ready      [domain.NumPartitions]fifo
	readyCount int
	cursor     int // partition the next Lease starts from (round-robin)
	leases     map[uuid.UUID]*liveLease
	held       map[uuid.UUID]struct{} // ids ready or leased
}

// waiter is a parked Lease (one with a Wait, when nothing was ready): the
// owner answers it on reply as soon as its topic has ready messages. Owned
// by run while parked; its caller withdraws it when the wait ends.
type waiter struct {
	req   ports.LeaseRequest
	reply chan domain.Lease // 1-buffered
}

// queueState is everything the owner goroutine owns.
type queueState struct {
	topics      map[string]*topicState
	waiters     map[string][]*waiter                   // parked leases by topic, oldest first
	expiries    leasebook.Heap[*liveLease]             // live leases by expiry
	ackedLeases *leasebook.Recent[uuid.UUID, string]   // acked lease id → topic
	dedup       *leasebook.Recent[uuid.UUID, struct{}] // acked idempotent message ids
	capacity    int                                    // max held messages
	maxDeliver  int                                    // the delivery limit
	maxDead     int                                    // max dead letters kept
	dead        []domain.DeadLetter                    // oldest first, at most maxDead
	held        int                                    // messages ready or leased, all topics
	ready       int                                    // messages ready, all topics
	seq         uint64                                 // last assigned publish sequence
	metrics     *queueMetrics                          // shared, concurrency-safe collectors
	log         *slog.Logger                           // read-only
}

func (s *queueState) publish(topic string, msgs []*queuedMessage) (ports.PublishResult, error) {
	t := s.topics[topic]
	if t == nil {
		if len(s.topics) >= MaxTopics {
			return ports.PublishResult{}, fmt.Errorf("publish to %q: more than %d topics: %w", topic, MaxTopics, ports.ErrInvalidArgument)
		}
		t = &topicState{name: topic, leases: make(map[uuid.UUID]*liveLease), held: make(map[uuid.UUID]struct{})}
	}
	var res ports.PublishResult
	fresh := msgs[:0:0]
	inBatch := make(map[uuid.UUID]struct{}, len(msgs))
	for _, m := range msgs {
		_, held := t.held[m.ID]
		_, acked := s.dedup.Get(m.ID)
		_, dup := inBatch[m.ID]
		if held || acked || dup {
			res.Duplicates++
			continue
		}
		inBatch[m.ID] = struct{}{}
		fresh = append(fresh, m)
	}
	if s.held+len(fresh) > s.capacity {
		return ports.PublishResult{}, fmt.Errorf("publish to %q: %d messages held, capacity %d: %w",
			topic, s.held, s.capacity, ports.ErrBackpressure)
	}
	s.topics[topic] = t
	now := time.Now().UTC()
	for _, m := range fresh {
		s.seq++
		m.seq = s.seq
		m.CreatedAt = now
		t.held[m.ID] = struct{}{}
		t.ready[m.Partition].push(m)
	}
	t.readyCount += len(fresh)
	s.held += len(fresh)
	s.ready += len(fresh)
	res.Accepted = len(fresh)
	s.metrics.published.Add(float64(res.Accepted))
	s.metrics.duplicates.Add(float64(res.Duplicates))
	return res, nil
}

func (s *queueState) lease(req ports.LeaseRequest) domain.Lease {
	now := time.Now().UTC()
	out := domain.Lease{Topic: req.Topic, ConsumerID: req.ConsumerID, ExpiresAt: now.Add(req.LeaseDuration),
		Messages: []domain.Message{}}
	t := s.topics[req.Topic]
	if t == nil || t.readyCount == 0 {
		return out
	}
	l := &liveLease{id: uuid.New(), topic: t, consumer: req.ConsumerID, expiresAt: out.ExpiresAt,
		msgs: make([]*queuedMessage, 0, min(req.Max, t.readyCount))}
	p := t.cursor
	for len(l.msgs) < req.Max && t.readyCount > 0 {
		if m := t.ready[p].pop(); m != nil {
			m.Deliveries++
			l.msgs = append(l.msgs, m)
			t.readyCount--
		}
		p = (p + 1) % domain.NumPartitions
	}
	t.cursor = p
	s.ready -= len(l.msgs)
	t.leases[l.id] = l
	l.expiry = s.expiries.Push(l, l.expiresAt)
	out.ID = l.id
	out.Messages = make([]domain.Message, len(l.msgs))
	for i, m := range l.msgs {
		out.Messages[i] = m.Message
	}
	return out
}

// endLease takes the live lease ref names off the books once its consumer
// is checked; nil when no such lease is live.
func (s *queueState) endLease(op string, ref ports.LeaseRef) (*liveLease, error) {
	t := s.topics[ref.Topic]
	if t == nil {
		return nil, nil
	}
	l := t.leases[ref.LeaseID]
	if l == nil {
		return nil, nil
	}
	if err := domain.CheckOwner(ref, l.consumer); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	s.dropLease(l)
	return l, nil
}

func (s *queueState) ack(ref ports.LeaseRef) error {
	l, err := s.endLease("ack", ref)
	switch {
	case err != nil:
		return err
	case l != nil:
		for _, m := range l.msgs {
			delete(l.topic.held, m.ID)
			if m.idempotent {
				s.dedup.Put(m.ID, struct{}{})
			}
		}
		s.held -= len(l.msgs)
		s.ackedLeases.Put(l.id, l.topic.name)
		s.metrics.acked.Add(float64(len(l.msgs)))
		return nil
	}
	if topic, ok := s.ackedLeases.Get(ref.LeaseID); ok && topic == ref.Topic {
		return nil
	}
	return fmt.Errorf("ack lease %s on %q: %w", ref.LeaseID, ref.Topic, ports.ErrLeaseExpired)
}

func (s *queueState) release(ref ports.LeaseRef) error {
	l, err := s.endLease("release", ref)
	switch {
	case err != nil:
		return err
	case l == nil:
		return fmt.Errorf("release lease %s on %q: %w", ref.LeaseID, ref.Topic, ports.ErrLeaseExpired)
	}
	if ref.Reason != "" {
		for _, m := range l.msgs {
			m.lastError = ref.Reason
		}
	}
	s.requeue(l)
	s.metrics.released.Add(float64(len(l.msgs)))
	return nil
}

// expire requeues every lease due at now.
func (s *queueState) expire(now time.Time) {
	for e, ok := s.expiries.PopDue(now); ok; e, ok = s.expiries.PopDue(now) {
		l := e.Value
		s.dropLease(l)
		s.requeue(l)
		s.metrics.expired.Inc()
		s.log.Debug("lease expired", "topic", l.topic.name, "lease_id", l.id,
			"consumer_id", l.consumer, "messages", len(l.msgs))
	}
}

// dropLease forgets a live lease (not its messages).
func (s *queueState) dropLease(l *liveLease) {
	s.expiries.Remove(l.expiry)
	delete(l.topic.leases, l.id)
}

// requeue puts a dropped lease's messages back to ready, each partition in
// seq order, except those at the delivery limit: they are dead-lettered.
func (s *queueState) requeue(l *liveLease) {
	ms := make([]*queuedMessage, 0, len(l.msgs))
	for _, m := range l.msgs {
		if domain.Exhausted(m.Deliveries, s.maxDeliver) {
			s.deadLetter(l.topic, m)
			continue
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *queuedMessage) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.seq, b.seq))
	})
	for start := 0; start < len(ms); {
		end := start + 1
		for end < len(ms) && ms[end].Partition == ms[start].Partition {
			end++
		}
		l.topic.ready[ms[start].Partition].requeue(ms[start:end])
		start = end
	}
	l.topic.readyCount += len(ms)
	s.ready += len(ms)
}

// deadLetter moves a leased message at its delivery limit out of the queue
// into the dead letters.
func (s *queueState) deadLetter(t *topicState, m *queuedMessage) {
	delete(t.held, m.ID)
	s.held--
	if m.idempotent {
		s.dedup.Put(m.ID, struct{}{})
	}
	if len(s.dead) == s.maxDead {
		s.dead = slices.Delete(s.dead, 0, 1)
	}
	s.dead = append(s.dead, domain.DeadLetter{MsgUUID: m.ID, Topic: t.name, Payload: m.Payload,
		Reason: domain.ExhaustedReason(m.Deliveries, m.lastError), Deliveries: m.Deliveries,
		Source: domain.DeadLetterSourceQueue})
	s.metrics.deadLettered.Inc()
	s.log.Warn("message dead-lettered at its delivery limit", "topic", t.name, "msg_uuid", m.ID,
		"deliveries", m.Deliveries, "last_error", m.lastError)
}

// park queues a Lease that found nothing ready, for serveWaiters.
func (s *queueState) park(w *waiter) {
	if s.waiters == nil {
		s.waiters = make(map[string][]*waiter)
	}
	s.waiters[w.req.Topic] = append(s.waiters[w.req.Topic], w)
}

// withdraw takes a parked Lease off its queue (its wait or its caller's
// context ended); one already answered is not there any more.
func (s *queueState) withdraw(w *waiter) {
	ws := slices.DeleteFunc(s.waiters[w.req.Topic], func(x *waiter) bool { return x == w })
	if len(ws) == 0 {
		delete(s.waiters, w.req.Topic)
		return
	}
	s.waiters[w.req.Topic] = ws
}

// serveWaiters answers parked leases, oldest first, while their topics have
// ready messages: after a publish, a release or an expiry.
func (s *queueState) serveWaiters() {
	for topic, ws := range s.waiters {
		t := s.topics[topic]
		for len(ws) > 0 && t != nil && t.readyCount > 0 {
			ws[0].reply <- s.lease(ws[0].req)
			ws = ws[1:]
		}
		if len(ws) == 0 {
			delete(s.waiters, topic)
		} else {
			s.waiters[topic] = ws
		}
	}
}
