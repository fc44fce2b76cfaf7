package memory

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/internal/actor"
	"github.com/gpufleet/telemetry/adapters/internal/leasebook"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

// MaxTopics caps the topics one Queue has seen (topics are never dropped);
// the other limits are the queue's rules in domain.
const MaxTopics = 1024

// Defaults of QueueOptions.
const (
	// DefaultMinLease is the shortest lease accepted when QueueOptions.MinLease is zero.
	DefaultMinLease = 50 * time.Millisecond
	// DefaultCapacity is the number of messages (ready and leased) a Queue
	// holds before Publish fails with ports.ErrBackpressure.
	DefaultCapacity = 1 << 20
	// DefaultAckedLeases is how many acked lease ids are remembered so that a
	// repeated Ack succeeds.
	DefaultAckedLeases = 10000
	// DefaultDedupWindow is how many acked message ids (of messages published
	// with an idempotency key) are remembered so that a late retry of their
	// publish is still reported as a duplicate.
	DefaultDedupWindow = 100000
	// DefaultDeadLetters is how many dead letters a Queue keeps (the oldest
	// are forgotten first).
	DefaultDeadLetters = 10000
)

// QueueOptions configure a Queue. The zero value is ready to use.
type QueueOptions struct {
	// MinLease is the shortest lease accepted; zero means DefaultMinLease.
	MinLease time.Duration
	// Capacity caps the messages held, ready or leased, over all topics; a
	// publish that would exceed it stores nothing and fails with
	// ports.ErrBackpressure. Zero means DefaultCapacity.
	Capacity int
	// AckedLeases bounds the memory of acked lease ids; zero means DefaultAckedLeases.
	AckedLeases int
	// DedupWindow bounds the memory of acked idempotent message ids; zero
	// means DefaultDedupWindow.
	DedupWindow int
	// MaxDeliveries is the delivery limit (domain.MaxDeliveriesOf: zero
	// means domain.DefaultMaxDeliveries). A message delivered that many
	// times without an ack is dead-lettered when its last lease ends.
	MaxDeliveries int
	// DeadLetters bounds the dead letters kept in memory; zero means
	// DefaultDeadLetters.
	DeadLetters int
	// Logger receives debug logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the queue's metrics.
	Registerer prometheus.Registerer
}

// Queue is an in-memory ports.Queue. All state belongs to one goroutine (run);
// methods send it requests. It is not durable: Close loses every message.
//
// Ack and Release identify a lease by its id and topic and must name the
// consumer it was granted to (domain.CheckOwner).
type Queue struct {
	opts    QueueOptions // read-only after NewQueue
	log     *slog.Logger // read-only
	metrics queueMetrics // read-only; the collectors are safe for concurrent use

	ops   chan func(*queueState) // requests to run; unbuffered
	state *queueState            // handed to run by Start; owned by run from then on
	svc   *startstop.Service     // runs run once
}

var (
	_ ports.Queue            = (*Queue)(nil)
	_ ports.Checker          = (*Queue)(nil)
	_ ports.DeadLetterReader = (*Queue)(nil)
)

// NewQueue builds a queue; it starts nothing. Start runs its owner goroutine
// (calls before Start fail), Close stops it. It panics on a MaxDeliveries
// out of domain's bounds (a programming error: configuration is checked by
// the app, see NewQueueChecked).
func NewQueue(opts QueueOptions) *Queue {
	q, err := NewQueueChecked(opts)
	if err != nil {
		panic(err)
	}
	return q
}

// NewQueueChecked is NewQueue returning an error for options out of bounds.
func NewQueueChecked(opts QueueOptions) (*Queue, error) {
	maxDeliveries, err := domain.MaxDeliveriesOf(opts.MaxDeliveries)
	if err != nil {
		return nil, fmt.Errorf("memory queue: %w", err)
	}
	opts.MaxDeliveries = maxDeliveries
	if opts.DeadLetters <= 0 {
		opts.DeadLetters = DefaultDeadLetters
	}
	if opts.MinLease <= 0 {
		opts.MinLease = DefaultMinLease
	}
	if opts.Capacity <= 0 {
		opts.Capacity = DefaultCapacity
	}
	if opts.AckedLeases <= 0 {
		opts.AckedLeases = DefaultAckedLeases
	}
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = DefaultDedupWindow
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	q := &Queue{
		opts:    opts,
		log:     log.With("component", "memory.queue"),
		metrics: newQueueMetrics(opts.Registerer),
		ops:     make(chan func(*queueState)),
		svc:     startstop.NewService(),
	}
	q.state = &queueState{
		topics:      make(map[string]*topicState),
		ackedLeases: leasebook.NewRecent[uuid.UUID, string](opts.AckedLeases),
		dedup:       leasebook.NewRecent[uuid.UUID, struct{}](opts.DedupWindow),
		capacity:    opts.Capacity,
		maxDeliver:  opts.MaxDeliveries,
		maxDead:     opts.DeadLetters,
		metrics:     &q.metrics,
		log:         q.log,
	}
	return q, nil
}

// DeadLetters returns up to limit of topic's dead letters, oldest first
// (ports.DeadLetterReader). The queue keeps the last QueueOptions.DeadLetters
// of all topics.
func (q *Queue) DeadLetters(ctx context.Context, topic string, limit int) ([]domain.DeadLetter, error) {
	return queueCall(ctx, q, "dead letters", func(s *queueState) ([]domain.DeadLetter, error) {
		out := []domain.DeadLetter{}
		for _, d := range s.dead {
			if d.Topic == topic && len(out) < limit {
				d.Payload = slices.Clone(d.Payload)
				out = append(out, d)
			}
		}
		return out, nil
	})
}

// Start runs the owner goroutine on a context of its own. A queue starts
// once; Start after Start or Close fails with ports.ErrClosed.
func (q *Queue) Start(context.Context) error {
	if !q.svc.Start(q.run) {
		return fmt.Errorf("start: %w", errQueueClosed)
	}
	return nil
}

// Close stops the owner goroutine and waits for it. Messages still held are
// lost; later calls fail with ports.ErrClosed. Close is idempotent.
func (q *Queue) Close() {
	_ = q.svc.Stop(context.Background())
}

// Check reports ports.ErrClosed once the queue is closed.
func (q *Queue) Check(ctx context.Context) error {
	_, err := queueCall(ctx, q, "check", func(*queueState) (struct{}, error) { return struct{}{}, nil })
	return err
}

// QueueStats is a snapshot of what a Queue holds.
type QueueStats struct {
	Topics int
	Ready  int
	Leased int
	Leases int
}

// Stats returns a snapshot of the queue's content, after expiring due leases.
func (q *Queue) Stats(ctx context.Context) (QueueStats, error) {
	return queueCall(ctx, q, "stats", func(s *queueState) (QueueStats, error) {
		st := QueueStats{Topics: len(s.topics), Leases: s.expiries.Len()}
		for _, t := range s.topics {
			st.Ready += t.readyCount
		}
		st.Leased = s.held - st.Ready
		return st, nil
	})
}

// Publish validates msgs, then stores them on topic in one step: all of them
// or, on an error, none.
func (q *Queue) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	if err := ctx.Err(); err != nil {
		return ports.PublishResult{}, fmt.Errorf("publish: %w", err)
	}
	prepared, err := prepareMessages(topic, msgs)
	if err != nil {
		return ports.PublishResult{}, fmt.Errorf("publish to %q: %w", topic, err)
	}
	return queueCall(ctx, q, "publish", func(s *queueState) (ports.PublishResult, error) {
		return s.publish(topic, prepared)
	})
}

// Lease hands out up to req.Max ready messages of req.Topic: round-robin over
// partitions, in publish order within each. With nothing ready it returns a
// lease with id uuid.Nil and no messages.
func (q *Queue) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	if err := ctx.Err(); err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	}
	if err := req.Validate(q.opts.MinLease); err != nil {
		return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, err)
	}
	var granted domain.Lease // written and read only by the owner goroutine
	l, err := queueCall(ctx, q, "lease", func(s *queueState) (domain.Lease, error) {
		granted = s.lease(req)
		return granted, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			q.giveBack(&granted)
		}
		return domain.Lease{}, err
	}
	// Payloads are immutable inside the queue; hand the caller its own copies.
	for i := range l.Messages {
		l.Messages[i].Payload = slices.Clone(l.Messages[i].Payload)
	}
	return l, nil
}

// giveBack releases the lease a caller stopped waiting for, if the owner
// granted one: left alone, nobody would ack it and its messages would wait
// for the expiry. The owner runs this after the lease call, if that call
// reached it at all, since one goroutine's sends arrive in order.
func (q *Queue) giveBack(granted *domain.Lease) {
	_, _ = queueCall(context.Background(), q, "give back", func(s *queueState) (struct{}, error) {
		if len(granted.Messages) > 0 {
			// Never delivered: the lease does not count against the limit.
			if t := s.topics[granted.Topic]; t != nil {
				if l := t.leases[granted.ID]; l != nil {
					for _, m := range l.msgs {
						m.Deliveries--
					}
				}
			}
			_ = s.release(ports.LeaseRef{Topic: granted.Topic, ConsumerID: granted.ConsumerID, LeaseID: granted.ID})
		}
		return struct{}{}, nil
	})
}

// Ack deletes a live lease's messages. An already acked lease succeeds; an
// expired or unknown one fails with ports.ErrLeaseExpired.
func (q *Queue) Ack(ctx context.Context, ref ports.LeaseRef) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	if err := ref.Validate(); err != nil {
		return fmt.Errorf("ack lease %s: %w", ref.LeaseID, err)
	}
	_, err := queueCall(ctx, q, "ack", func(s *queueState) (struct{}, error) {
		return struct{}{}, s.ack(ref)
	})
	return err
}

// Release returns a live lease's messages to the front of their partitions,
// in order. An expired, acked or unknown lease fails with ports.ErrLeaseExpired.
func (q *Queue) Release(ctx context.Context, ref ports.LeaseRef) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if err := ref.Validate(); err != nil {
		return fmt.Errorf("release lease %s: %w", ref.LeaseID, err)
	}
	_, err := queueCall(ctx, q, "release", func(s *queueState) (struct{}, error) {
		return struct{}{}, s.release(ref)
	})
	return err
}

// prepareMessages validates a publish and builds its messages outside the owner
// goroutine, so the loop only does bookkeeping.
func prepareMessages(topic string, msgs []ports.OutgoingMessage) ([]*queuedMessage, error) {
	if err := domain.ValidatePublish(topic, msgs); err != nil {
		return nil, err
	}
	out := make([]*queuedMessage, len(msgs))
	for i, m := range msgs {
		id := domain.MessageID(topic, m.IdempotencyKey)
		out[i] = &queuedMessage{
			Message: domain.Message{
				ID:        id,
				Topic:     topic,
				Partition: domain.PartitionOf(domain.PartitionKey(m, id)),
				Payload:   slices.Clone(m.Payload),
			},
			idempotent: m.IdempotencyKey != "",
		}
	}
	return out, nil
}

// queueCall runs fn on the owner goroutine and waits for its answer, the
// caller's context or the queue's end.
func queueCall[T any](ctx context.Context, q *Queue, op string, fn func(*queueState) (T, error)) (T, error) {
	if !q.svc.Started() {
		var zero T
		return zero, fmt.Errorf("%s: %w", op, errNotStarted)
	}
	return actor.Do(ctx, q.ops, q.svc.Done(), op, errQueueClosed, fn)
}

var (
	errQueueClosed = fmt.Errorf("memory queue: %w", ports.ErrClosed)
	errNotStarted  = fmt.Errorf("memory queue not started: %w", ports.ErrClosed)
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

// queueState is everything the owner goroutine owns.
type queueState struct {
	topics      map[string]*topicState
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

func (s *queueState) ack(ref ports.LeaseRef) error {
	if t := s.topics[ref.Topic]; t != nil {
		if l := t.leases[ref.LeaseID]; l != nil {
			if err := domain.CheckOwner(ref, l.consumer); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
			s.dropLease(l)
			for _, m := range l.msgs {
				delete(t.held, m.ID)
				if m.idempotent {
					s.dedup.Put(m.ID, struct{}{})
				}
			}
			s.held -= len(l.msgs)
			s.ackedLeases.Put(l.id, t.name)
			s.metrics.acked.Add(float64(len(l.msgs)))
			return nil
		}
	}
	if topic, ok := s.ackedLeases.Get(ref.LeaseID); ok && topic == ref.Topic {
		return nil
	}
	return fmt.Errorf("ack lease %s on %q: %w", ref.LeaseID, ref.Topic, ports.ErrLeaseExpired)
}

func (s *queueState) release(ref ports.LeaseRef) error {
	if t := s.topics[ref.Topic]; t != nil {
		if l := t.leases[ref.LeaseID]; l != nil {
			if err := domain.CheckOwner(ref, l.consumer); err != nil {
				return fmt.Errorf("release: %w", err)
			}
			s.dropLease(l)
			for _, m := range l.msgs {
				if ref.Reason != "" {
					m.lastError = ref.Reason
				}
			}
			s.requeue(l)
			s.metrics.released.Add(float64(len(l.msgs)))
			return nil
		}
	}
	return fmt.Errorf("release lease %s on %q: %w", ref.LeaseID, ref.Topic, ports.ErrLeaseExpired)
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

// queueMetrics are the queue's Prometheus collectors.
type queueMetrics struct {
	published, duplicates, acked, released, expired, deadLettered prometheus.Counter
	ready, leased                                                 prometheus.Gauge
}

func newQueueMetrics(reg prometheus.Registerer) queueMetrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "memory_queue", Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "memory_queue", Name: name, Help: help})
	}
	m := queueMetrics{
		published:  counter("messages_published_total", "Messages accepted by Publish."),
		duplicates: counter("messages_duplicate_total", "Published messages dropped as duplicates of an idempotency key."),
		acked:      counter("messages_acked_total", "Messages deleted by Ack."),
		released:   counter("messages_released_total", "Messages returned to ready by Release."),
		expired:    counter("leases_expired_total", "Leases that expired before Ack or Release."),
		deadLettered: counter("messages_dead_lettered_total",
			"Messages moved to the dead letters at the delivery limit."),
		ready:  gauge("ready_messages", "Messages ready to lease."),
		leased: gauge("leased_messages", "Messages under a live lease."),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.duplicates, m.acked, m.released, m.expired, m.deadLettered, m.ready, m.leased)
	}
	return m
}

// QueueParams are the fx inputs of QueueModule; all are optional.
type QueueParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Options    QueueOptions          `optional:"true"`
	Logger     *slog.Logger          `optional:"true"`
	Registerer prometheus.Registerer `optional:"true"`
}

func newQueueFx(p QueueParams) (*Queue, error) {
	opts := p.Options
	if opts.Logger == nil {
		opts.Logger = p.Logger
	}
	if opts.Registerer == nil {
		opts.Registerer = p.Registerer
	}
	q, err := NewQueueChecked(opts)
	if err != nil {
		return nil, err
	}
	p.Lifecycle.Append(fx.Hook{OnStart: q.Start, OnStop: func(context.Context) error { q.Close(); return nil }})
	return q, nil
}

// QueueModule provides the in-memory queue as ports.Queue, ports.Publisher and
// ports.Consumer (QUEUE_BACKEND=memory), closed when the app stops.
var QueueModule = fx.Module("memory.queue",
	fx.Provide(fx.Annotate(newQueueFx,
		fx.As(new(ports.Queue)), fx.As(new(ports.Publisher)), fx.As(new(ports.Consumer)))),
)
