// Topics: one stream and consumer per topic, set up on first use.

package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gpufleet/telemetry/adapters/internal/actor"
)

// topic returns the handle of a topic, setting up its stream and consumer on
// first use. Concurrent first uses share one set-up: the streamer publishes
// each message with its own call, so a cold start would otherwise send the
// server one stream and consumer update per message in the window.
func (q *Queue) topic(ctx context.Context, name string) (*topic, error) {
	found, err := call(ctx, q, "topic", func(s *state) (topicLookup, error) { return s.lookupTopic(name), nil })
	if err != nil || found.t != nil {
		return found.t, err
	}
	select {
	case <-found.setup.done:
		return found.setup.t, found.setup.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-q.done:
		return nil, errQueueClosed
	}
}

// topicLookup is a topic's handle, or else the set-up to wait for.
type topicLookup struct {
	t     *topic
	setup *setup
}

// setup is a topic's set-up in flight. run writes t and err, then closes
// done; the callers waiting read them after done.
type setup struct {
	done chan struct{}
	t    *topic
	err  error
}

// lookupTopic returns name's handle, or the set-up in flight, starting one
// when there is none.
func (s *state) lookupTopic(name string) topicLookup {
	if t := s.topics[name]; t != nil {
		return topicLookup{t: t}
	}
	if su := s.setups[name]; su != nil {
		return topicLookup{setup: su}
	}
	su := &setup{done: make(chan struct{})}
	s.setups[name] = su
	q := s.q
	q.life.Go(func() {
		// The set-up serves every caller waiting for it, so no one
		// caller's context bounds it; Close does.
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		go func() {
			select {
			case <-q.life.Quit():
				cancel()
			case <-ctx.Done():
			}
		}()
		t, err := q.setUp(ctx, name)
		q.send(func(s *state) { s.finishSetUp(name, su, t, translate(err)) })
	})
	return topicLookup{setup: su}
}

// finishSetUp records a set-up's outcome and wakes its callers.
func (s *state) finishSetUp(name string, su *setup, t *topic, err error) {
	delete(s.setups, name)
	if err == nil {
		s.topics[name] = t
	}
	su.t, su.err = t, err
	close(su.done)
}

// setUp creates or updates the topic's stream and consumer. Concurrent
// callers may race to create the same stream: a loser retries as an update.
func (q *Queue) setUp(ctx context.Context, name string) (*topic, error) {
	stream := q.cfg.streamName(name)
	cfg := jetstream.StreamConfig{
		Name:        stream,
		Description: "telemetry queue topic " + name,
		Subjects:    []string{name + ".*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    q.cfg.Replicas,
		Duplicates:  q.cfg.DuplicateWindow,
	}
	_, err := q.js.CreateOrUpdateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		_, err = q.js.CreateOrUpdateStream(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	c, err := q.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       consumerName,
		Description:   "collectors of topic " + name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.cfg.AckWait,
		MaxAckPending: maxAckPending,
		// Unlimited: the delivery limit is this client's (see
		// setAsideExhausted). A server-side MaxDeliver would leave the
		// message unacked in the work-queue stream for good, reachable only
		// through an advisory a subscriber could miss.
		MaxDeliver: -1,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s of stream %s: %w", consumerName, stream, err)
	}
	dlq := jetstream.StreamConfig{
		Name:        q.cfg.deadLetterStream(name),
		Description: "dead letters of telemetry queue topic " + name,
		Subjects:    []string{deadLetterSubject(name)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    q.cfg.Replicas,
		Duplicates:  q.cfg.DuplicateWindow,
		MaxMsgs:     deadLetterMaxMsgs,
		Discard:     jetstream.DiscardOld,
	}
	if _, err := q.js.CreateOrUpdateStream(ctx, dlq); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, fmt.Errorf("dead-letter stream %s: %w", dlq.Name, err)
	}
	ackWait := q.cfg.AckWait
	if info := c.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		// Another client may have set the shared consumer's AckWait since.
		ackWait = min(ackWait, info.Config.AckWait)
	}
	q.log.Debug("topic ready", "topic", name, "stream", stream, "ack_wait", ackWait)
	return &topic{name: name, stream: stream, consumer: c, ackWait: ackWait}, nil
}

// forgetTopic drops t's handle, so the next call sets the topic up again.
func (q *Queue) forgetTopic(t *topic) {
	q.send(func(s *state) {
		if s.topics[t.name] == t {
			delete(s.topics, t.name)
		}
	})
}

// send runs fn on run without waiting for it; it is dropped once run has
// returned.
func (q *Queue) send(fn func(*state)) {
	_ = actor.Send(context.Background(), q.ops, q.done, fn) // fails only once run has returned
}

// signalLoop sends the Naks and InProgress updates run decides on, so run
// never writes to the connection itself. It returns when run closes signals.
func (q *Queue) signalLoop() {
	for sg := range q.signals {
		failed := 0
		for _, m := range sg.msgs {
			var err error
			if sg.kind == signalNak {
				err = m.Nak()
			} else {
				err = m.InProgress()
			}
			// A message acked meanwhile needs nothing more.
			if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
				failed++
			}
		}
		if failed > 0 {
			q.log.Debug("lease signal not sent", "kind", sg.kind, "failed", failed, "messages", len(sg.msgs))
		}
		if sg.sent != nil {
			close(sg.sent)
		}
	}
}

// topic is a topic set up on the server. Immutable.
type topic struct {
	name     string
	stream   string
	consumer jetstream.Consumer // safe for concurrent use
	ackWait  time.Duration      // the consumer's AckWait
}
