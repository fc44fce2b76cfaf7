package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

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
	opts.DeadLetters = cmp.Or(opts.DeadLetters, DefaultDeadLetters)
	opts.MinLease = cmp.Or(opts.MinLease, DefaultMinLease)
	opts.Capacity = cmp.Or(opts.Capacity, DefaultCapacity)
	opts.AckedLeases = cmp.Or(opts.AckedLeases, DefaultAckedLeases)
	opts.DedupWindow = cmp.Or(opts.DedupWindow, DefaultDedupWindow)
	if opts.DeadLetters < 0 || opts.MinLease < 0 || opts.Capacity < 0 || opts.AckedLeases < 0 || opts.DedupWindow < 0 {
		return nil, fmt.Errorf("memory queue: dead letters %d, min lease %s, capacity %d, acked leases %d and dedup window %d must not be negative",
			opts.DeadLetters, opts.MinLease, opts.Capacity, opts.AckedLeases, opts.DedupWindow)
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
// lease with id uuid.Nil and no messages: at once, or with a req.Wait once
// that has passed, unless a publish, release or expiry makes messages ready
// first (the owner then answers the waiting leases in the order they came).
func (q *Queue) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	if err := ctx.Err(); err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	}
	if err := req.Validate(q.opts.MinLease); err != nil {
		return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, err)
	}
	var granted domain.Lease // written and read only by the owner goroutine
	w := &waiter{req: req, reply: make(chan domain.Lease, 1)}
	l, err := queueCall(ctx, q, "lease", func(s *queueState) (domain.Lease, error) {
		granted = s.lease(req)
		if len(granted.Messages) == 0 && req.Wait > 0 {
			s.park(w)
		}
		return granted, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			q.giveBack(&granted)
		}
		return domain.Lease{}, err
	}
	if len(l.Messages) == 0 && req.Wait > 0 {
		if l, err = q.awaitParked(ctx, w); err != nil {
			return domain.Lease{}, err
		}
	}
	// Payloads are immutable inside the queue; hand the caller its own copies.
	for i := range l.Messages {
		l.Messages[i].Payload = slices.Clone(l.Messages[i].Payload)
	}
	return l, nil
}

// awaitParked waits for a parked lease's answer, its wait or ctx. The wait
// ending empty answers the lease empty; ctx ending gives back a lease the
// owner granted meanwhile.
func (q *Queue) awaitParked(ctx context.Context, w *waiter) (domain.Lease, error) {
	l, ok, err := actor.AwaitParked(ctx, w.reply, q.svc.Done(), w.req.Wait, func() {
		_, _ = queueCall(context.Background(), q, "withdraw lease", func(s *queueState) (struct{}, error) {
			s.withdraw(w)
			return struct{}{}, nil
		})
	})
	switch {
	case errors.Is(err, actor.ErrStopped):
		return domain.Lease{}, fmt.Errorf("lease: %w", errQueueClosed)
	case err != nil:
		if ok {
			q.giveBack(&l)
		}
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	case !ok:
		return domain.Lease{Topic: w.req.Topic, ConsumerID: w.req.ConsumerID, Messages: []domain.Message{}}, nil
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
	return q.settle(ctx, "ack", ref, (*queueState).ack)
}

// Release returns a live lease's messages to the front of their partitions,
// in order. An expired, acked or unknown lease fails with ports.ErrLeaseExpired.
func (q *Queue) Release(ctx context.Context, ref ports.LeaseRef) error {
	return q.settle(ctx, "release", ref, (*queueState).release)
}

func (q *Queue) settle(ctx context.Context, op string, ref ports.LeaseRef, fn func(*queueState, ports.LeaseRef) error) error {
	if err := domain.CheckSettle(ctx, op, ref); err != nil {
		return err
	}
	_, err := queueCall(ctx, q, op, func(s *queueState) (struct{}, error) { return struct{}{}, fn(s, ref) })
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
