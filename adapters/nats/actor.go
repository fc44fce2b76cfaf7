package nats

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gpufleet/telemetry/adapters/internal/actor"
	"github.com/gpufleet/telemetry/adapters/internal/leasebook"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// signalKind says what signalLoop sends for each message of a signal.
type signalKind int

const (
	signalNak      signalKind = iota // redeliver now
	signalProgress                   // restart the server's AckWait
)

func (k signalKind) String() string {
	if k == signalNak {
		return "nak"
	}
	return "in_progress"
}

// signal is a batch of Naks or InProgress updates for signalLoop.
type signal struct {
	kind signalKind
	msgs []jetstream.Msg
	sent chan struct{} // closed once sent, when someone waits for it; else nil
}

// lease is a lease this client handed out. Owned by run, except msgs,
// which is never modified and is read by the ack goroutine.
type lease struct {
	id         uuid.UUID
	topic      string
	consumer   string
	msgs       []jetstream.Msg
	expiresAt  time.Time
	progressAt time.Time                // when the next InProgress is due; zero when the lease ends first
	every      time.Duration            // InProgress period: the consumer's AckWait/2
	acking     bool                     // an ack is in flight; the lease is not in state.due meanwhile
	waiters    []chan error             // callers waiting for the ack in flight; each 1-buffered
	due        *leasebook.Entry[*lease] // in state.due while live and not acking; nil before register
}

// setProgress schedules the next InProgress at t, or none when the lease
// ends first.
func (l *lease) setProgress(t time.Time) {
	if t.Before(l.expiresAt) {
		l.progressAt = t
	} else {
		l.progressAt = time.Time{}
	}
}

// next is when run must next look at the lease.
func (l *lease) next() time.Time {
	if !l.progressAt.IsZero() {
		return l.progressAt
	}
	return l.expiresAt
}

// state is everything run owns.
type state struct {
	q       *Queue                               // read-only fields only: cfg, log, metrics, wg, ops, done
	topics  map[string]*topic                    // topics set up on the server
	setups  map[string]*setup                    // topic set-ups in flight
	leases  map[uuid.UUID]*lease                 // live leases, and those with an ack in flight
	due     leasebook.Heap[*lease]               // live leases by next()
	acked   *leasebook.Recent[uuid.UUID, string] // recently acked lease id → topic
	reasons *leasebook.Recent[uint64, string]    // stream sequence → last release reason
	outbox  []signal                             // signals waiting for signalLoop
	acking  int                                  // acks in flight
	closing bool                                 // Close was called: refuse requests, finish acks, then stop
}

// call runs fn on run and waits for its answer, the caller's context or the
// queue's end. After Close, fn is not run and call fails with ports.ErrClosed.
func call[T any](ctx context.Context, q *Queue, op string, fn func(*state) (T, error)) (T, error) {
	if !q.life.Started() {
		var zero T
		return zero, fmt.Errorf("%s: nats queue not started: %w", op, ports.ErrClosed)
	}
	return actor.Do(ctx, q.ops, q.done, op, errQueueClosed, func(s *state) (T, error) {
		if s.closing {
			var zero T
			return zero, fmt.Errorf("%s: %w", op, errQueueClosed)
		}
		return fn(s)
	})
}

var errQueueClosed = fmt.Errorf("nats queue: %w", ports.ErrClosed)

// run is the owner goroutine: it applies requests one at a time, expires
// leases and keeps long ones alive on its timer, and feeds signalLoop. After
// Close it Naks the live leases, lets the acks in flight finish, hands
// signalLoop the last signals, and returns.
func (q *Queue) run(s *state) {
	defer close(q.done)
	alarm := leasebook.NewAlarm() // the earliest next() of a live lease. Owned by run.
	stop := q.life.Quit()
	for {
		if s.closing && s.acking == 0 && len(s.outbox) == 0 {
			alarm.Stop()
			close(q.signals)
			return
		}
		// signalLoop is offered the oldest signal only when there is one.
		var signals chan<- signal
		var next signal
		if len(s.outbox) > 0 {
			signals, next = q.signals, s.outbox[0]
		}
		select {
		case <-stop:
			stop = nil
			s.closing = true
			s.abandonAll()
		case op := <-q.ops:
			op(s)
		case signals <- next:
			s.outbox[0] = signal{}
			s.outbox = s.outbox[1:]
		case <-alarm.C:
			alarm.Fired()
		}
		s.tick(time.Now())
		alarm.Set(s.due.Next())
	}
}

// tick expires the leases due at now and sends InProgress for those that
// need one.
func (s *state) tick(now time.Time) {
	for e := s.due.Peek(); e != nil; e = s.due.Peek() {
		l := e.Value
		if now.Before(l.next()) {
			return
		}
		if !now.Before(l.expiresAt) {
			s.expire(l)
			continue
		}
		s.outbox = append(s.outbox, signal{kind: signalProgress, msgs: l.msgs})
		l.setProgress(now.Add(l.every))
		s.due.Fix(l.due, l.next())
	}
}

// register makes l live.
func (s *state) register(l *lease) {
	s.leases[l.id] = l
	l.due = s.due.Push(l, l.next())
}

// expire ends a live lease that reached its expiry and Naks its messages.
func (s *state) expire(l *lease) {
	s.end(l, nil)
	s.q.metrics.expired.Inc()
	s.q.log.Debug("lease expired", "topic", l.topic, "lease_id", l.id, "consumer_id", l.consumer,
		"messages", len(l.msgs))
}

// end forgets a lease that is not acking and queues a Nak of its messages;
// sent, when not nil, is closed once the Naks are sent.
func (s *state) end(l *lease, sent chan struct{}) {
	if l.due != nil {
		s.due.Remove(l.due)
	}
	delete(s.leases, l.id)
	s.outbox = append(s.outbox, signal{kind: signalNak, msgs: l.msgs, sent: sent})
}

// abandonAll ends every live lease on Close; leases with an ack in flight end
// when it does.
func (s *state) abandonAll() {
	for _, l := range s.leases {
		if !l.acking {
			s.end(l, nil)
		}
	}
}

// lookup finds a live lease of ref, expiring it first when its time is up.
func (s *state) lookup(ref ports.LeaseRef, now time.Time) *lease {
	l := s.leases[ref.LeaseID]
	if l == nil || l.topic != ref.Topic {
		return nil
	}
	if !l.acking && !now.Before(l.expiresAt) {
		s.expire(l)
		return nil
	}
	return l
}

// beginAck starts acking a live lease, or joins the ack in flight, and
// returns the channel its outcome arrives on. An acked lease yields a nil
// channel and no error.
func (s *state) beginAck(ref ports.LeaseRef, now time.Time) (<-chan error, error) {
	if topic, ok := s.acked.Get(ref.LeaseID); ok && topic == ref.Topic {
		return nil, nil
	}
	l := s.lookup(ref, now)
	if l == nil {
		return nil, fmt.Errorf("ack lease %s on %q: %w", ref.LeaseID, ref.Topic, ports.ErrLeaseExpired)
	}
	if err := domain.CheckOwner(ref, l.consumer); err != nil {
		return nil, fmt.Errorf("ack: %w", err)
	}
	w := make(chan error, 1)
	l.waiters = append(l.waiters, w)
	if l.acking {
		return w, nil
	}
	s.due.Remove(l.due)
	l.acking = true
	s.acking++
	q, msgs := s.q, l.msgs
	q.life.Go(func() {
		err := q.ackAll(msgs)
		// Not q.send: run waits for every ack in flight before it returns.
		q.ops <- func(s *state) { s.finishAck(l, err, time.Now()) }
	})
	return w, nil
}

// finishAck records an ack's outcome. A failed ack leaves the lease live, so
// it can be retried, unless it expired meanwhile or the queue is closing.
func (s *state) finishAck(l *lease, err error, now time.Time) {
	s.acking--
	l.acking = false
	switch {
	case err == nil:
		delete(s.leases, l.id)
		s.acked.Put(l.id, l.topic)
		s.q.metrics.acked.Add(float64(len(l.msgs)))
	case s.closing:
		s.end(l, nil)
	case !now.Before(l.expiresAt):
		s.expire(l)
	default:
		s.due.Requeue(l.due, l.next())
	}
	for _, w := range l.waiters {
		w <- err
	}
	l.waiters = nil
}

// release ends a live lease and queues the Nak of its messages; the returned
// channel is closed once they are sent.
func (s *state) release(ref ports.LeaseRef, now time.Time) (<-chan struct{}, error) {
	l := s.lookup(ref, now)
	if l == nil || l.acking {
		return nil, fmt.Errorf("release lease %s on %q: %w", ref.LeaseID, ref.Topic, ports.ErrLeaseExpired)
	}
	if err := domain.CheckOwner(ref, l.consumer); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if ref.Reason != "" {
		for _, m := range l.msgs {
			if md, err := m.Metadata(); err == nil {
				s.reasons.Put(md.Sequence.Stream, ref.Reason)
			}
		}
	}
	sent := make(chan struct{})
	s.end(l, sent)
	s.q.metrics.released.Add(float64(len(l.msgs)))
	return sent, nil
}
