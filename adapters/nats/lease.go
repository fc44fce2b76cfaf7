// Leases: fetches handed out under a lease, acks and releases.

package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// Lease fetches up to req.Max ready messages and holds them under a new
// lease. With nothing ready it returns a lease with id uuid.Nil and no
// messages: at once, or with a req.Wait when no message arrived within it.
func (q *Queue) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	if err := ctx.Err(); err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	}
	if err := req.Validate(MinLease); err != nil {
		return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, err)
	}
	t, err := q.topic(ctx, req.Topic)
	if err != nil {
		return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, err)
	}
	// The server's AckWait starts when it delivers, after this instant.
	fetched := time.Now()
	msgs, err := q.fetch(ctx, t, req)
	if err != nil {
		return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, err)
	}
	now := time.Now()
	out := domain.Lease{Topic: req.Topic, ConsumerID: req.ConsumerID, ExpiresAt: now.Add(req.LeaseDuration).UTC(),
		Messages: []domain.Message{}}
	if len(msgs) == 0 {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		q.abandon(msgs, nil)
		return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, err)
	}
	if msgs = q.setAsideExhausted(ctx, t, msgs); len(msgs) == 0 {
		return out, nil
	}
	l := &lease{
		id:        uuid.New(),
		topic:     req.Topic,
		consumer:  req.ConsumerID,
		msgs:      msgs,
		expiresAt: out.ExpiresAt,
		every:     t.ackWait / 2,
	}
	l.setProgress(fetched.Add(l.every))
	if err := q.register(l); err != nil {
		q.abandon(msgs, nil)
		return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, err)
	}
	out.ID = l.id
	out.Messages = make([]domain.Message, len(msgs))
	for i, m := range msgs {
		out.Messages[i] = toMessage(req.Topic, m)
	}
	return out, nil
}

// fetch takes up to req.Max messages. With a Wait it polls: a pull without
// waiting every waitPoll until one returns messages or the wait ends. (A
// pull held by the server, FetchMaxWait, lost the whole pipeline's messages
// in test/e2e's NATS run and awaits a closer look; see ADR 0014.)
func (q *Queue) fetch(ctx context.Context, t *topic, req ports.LeaseRequest) ([]jetstream.Msg, error) {
	deadline := time.Now().Add(req.Wait)
	for {
		pulled := time.Now()
		batch, err := t.consumer.FetchNoWait(req.Max)
		msgs, err := q.collect(ctx, t, pulled, batch, err)
		if err != nil || len(msgs) > 0 || !time.Now().Before(deadline) {
			return msgs, err
		}
		select {
		case <-time.After(min(waitPoll, time.Until(deadline))):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// waitPoll is the pause between pulls of a waiting lease.
const waitPoll = 20 * time.Millisecond

// fetchIdleCut is how long nats.go's no-wait fetch waits for the server's
// next message before it ends the batch without an error (jetstream's
// pullConsumer.fetch: the request's expiry, 0 for a no-wait pull, plus a
// second). It unsubscribes then, so whatever the server sends to that pull
// afterwards is dropped by the client while the server counts it delivered:
// those messages come back only after AckWait, with one more delivery
// counted. A process starved of CPU for a second (a loaded node, a throttled
// container) meets that cut; collect counts each batch that ended by it.
const fetchIdleCut = time.Second

// collect reads every message of the batch of a pull sent at pulled (err is
// the fetch's). When ctx ends first it gives back what it read and what is
// still coming. A batch idle for fetchIdleCut since its last message, or
// since pulled when none came, was cut by the client and is counted: the
// cut's clock starts inside the fetch, so measuring from collect's own start
// missed the stalls of a process slow to get here, the loaded ones.
func (q *Queue) collect(ctx context.Context, t *topic, pulled time.Time, batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, q.fetchError(t, err)
	}
	var msgs []jetstream.Msg
	last := pulled
	for more := true; more; {
		select {
		case m, ok := <-batch.Messages():
			if ok {
				msgs = append(msgs, m)
				last = time.Now()
			}
			more = ok
		case <-ctx.Done():
			q.abandon(msgs, batch)
			return nil, ctx.Err()
		}
	}
	if idle := time.Since(last); idle >= fetchIdleCut {
		q.metrics.fetchStalls.Inc()
		q.log.Warn("a pull waited too long for the server and was cut short; messages sent to it after the cut are redelivered after AckWait",
			"topic", t.name, "messages", len(msgs), "idle", idle.Round(time.Millisecond), "ack_wait", t.ackWait)
	}
	if err := batch.Error(); err != nil && !maxAckPendingReached(err) {
		if len(msgs) == 0 {
			return nil, q.fetchError(t, err)
		}
		q.log.Debug("fetch ended early", "topic", t.name, "messages", len(msgs), "err", err)
	}
	return msgs, nil
}

// fetchError translates a fetch error, forgetting the topic's handle when
// its stream or consumer is gone.
func (q *Queue) fetchError(t *topic, err error) error {
	if missingStream(err) {
		q.forgetTopic(t)
	}
	return translate(err)
}

// Ack acks every message of a live lease with one round trip (see ackAll) and
// returns once the server confirmed them all. An already acked lease succeeds; an expired, released
// or unknown one fails with ports.ErrLeaseExpired. When the server cannot be
// reached the lease stays live until it expires, so Ack may be retried.
func (q *Queue) Ack(ctx context.Context, ref ports.LeaseRef) error {
	if err := domain.CheckSettle(ctx, "ack", ref); err != nil {
		return err
	}
	wait, err := call(ctx, q, "ack", func(s *state) (<-chan error, error) { return s.beginAck(ref, time.Now()) })
	if err != nil || wait == nil {
		return err
	}
	select {
	case err := <-wait:
		if err != nil {
			return fmt.Errorf("ack lease %s on %q: %w", ref.LeaseID, ref.Topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ack: %w", ctx.Err())
	case <-q.done:
		return fmt.Errorf("ack: nats queue: %w", ports.ErrClosed)
	}
}

// ackAll acks msgs (all fetched from one consumer) with one round trip: a
// plain ack of each but the last, published without waiting, then a double
// ack of the last, whose reply means the server has processed them all. That
// holds because nats-server handles one consumer's acks in the order they
// arrive: the consumer's ack subscription (consumer.pushAck, nats-server
// v2.15.2 server/consumer.go) is called inline by the connection's read loop
// and appends each ack to one FIFO queue (o.ackMsgs), which a single goroutine
// (consumer.processInboundAcks) pops in order through consumer.processAck; a
// double ack is answered only after its own processAckMsg returned, which for
// a work-queue stream on one server has already removed the message from the
// stream (stream.ackMsg → fileStore.RemoveMsg, a tombstone fsynced under
// SyncAlways). So every plain ack sent on the same connection before the
// double ack has been applied, and is as durable as the double ack, before
// the reply arrives.
//
// Same connection is the condition: a plain ack buffered when the connection
// dropped is lost, while the double ack may go out on the reconnected one.
// When the client reconnected during an attempt, the whole attempt is sent
// again (acking an acked message is harmless: the server answers and removes
// nothing). The acks are written directly rather than through jetstream.Msg's
// Ack methods, which refuse to send a message's ack twice (ErrMsgAlreadyAckd
// after a plain ack that was only buffered).
//
// AckAll (AckPolicy) is not used: on a consumer shared by several live
// leases it would also ack messages other leases hold (the server drops
// every pending sequence below the acked one, consumer.processAckMsg) and
// still writes a tombstone per message.
func (q *Queue) ackAll(msgs []jetstream.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	for {
		reconnects := q.nc.Stats().Reconnects
		err := q.ackOnce(ctx, msgs)
		switch {
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			return fmt.Errorf("ack %d messages: %w: %w", len(msgs), ports.ErrUnavailable, err)
		case err != nil:
			return fmt.Errorf("ack %d messages: %w", len(msgs), translate(err))
		case q.nc.Stats().Reconnects == reconnects:
			return nil
		}
		q.log.Debug("reconnected while acking; acking the lease again", "messages", len(msgs))
	}
}

// ackOnce publishes a plain ack of every message of msgs but the last, then
// double-acks the last and waits for the server's answer.
func (q *Queue) ackOnce(ctx context.Context, msgs []jetstream.Msg) error {
	body := []byte(ackPayload)
	last := len(msgs) - 1
	for _, m := range msgs[:last] {
		if err := q.nc.Publish(m.Reply(), body); err != nil {
			return fmt.Errorf("plain ack: %w", err)
		}
	}
	if _, err := q.nc.RequestWithContext(ctx, msgs[last].Reply(), body); err != nil {
		return fmt.Errorf("double ack: %w", err)
	}
	return nil
}

// Release Naks every message of a live lease, which makes them ready at once,
// and ends the lease. An expired, acked or unknown lease fails with
// ports.ErrLeaseExpired.
func (q *Queue) Release(ctx context.Context, ref ports.LeaseRef) error {
	if err := domain.CheckSettle(ctx, "release", ref); err != nil {
		return err
	}
	sent, err := call(ctx, q, "release", func(s *state) (<-chan struct{}, error) { return s.release(ref, time.Now()) })
	if err != nil {
		return err
	}
	// The lease has ended whatever happens next; waiting for the Naks to
	// reach the server only makes the redelivery prompt.
	select {
	case <-sent:
	case <-ctx.Done():
		return nil
	case <-q.done:
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	if err := q.nc.FlushWithContext(fctx); err != nil {
		q.log.Debug("flush after release", "lease_id", ref.LeaseID, "err", err)
	}
	return nil
}

// register hands a new lease to run.
func (q *Queue) register(l *lease) error {
	// Not cancellable: a lease run has registered must be returned to the
	// caller, and run answers at once.
	_, err := call(context.Background(), q, "lease", func(s *state) (struct{}, error) {
		s.register(l)
		return struct{}{}, nil
	})
	return err
}

// abandon Naks messages fetched for a lease that will not be handed out, and
// those batch (when not nil) still delivers.
func (q *Queue) abandon(msgs []jetstream.Msg, batch jetstream.MessageBatch) {
	for _, m := range msgs {
		_ = m.Nak() // best effort: AckWait redelivers them anyway
	}
	if batch == nil {
		return
	}
	// The rest of the batch arrives within a second; run starts the
	// goroutine that Naks it, so Close waits for it.
	q.send(func(s *state) {
		q.life.Go(func() {
			for m := range batch.Messages() {
				_ = m.Nak()
			}
		})
	})
}

// toMessage converts a fetched message. A message published by another
// client without a UUID message id gets one derived from its stream sequence,
// stable across redeliveries.
func toMessage(topic string, m jetstream.Msg) domain.Message {
	out := domain.Message{Topic: topic, Payload: m.Data(), Deliveries: 1}
	md, err := m.Metadata()
	if err == nil {
		out.CreatedAt = md.Timestamp.UTC()
		out.Deliveries = int(md.NumDelivered)
	}
	id, err := uuid.Parse(m.Headers().Get(jetstream.MsgIDHeader))
	if err != nil && md != nil {
		id = domain.MessageID(topic, "nats-stream-seq-"+strconv.FormatUint(md.Sequence.Stream, 10))
	}
	out.ID = id
	subject := m.Subject()
	p, err := strconv.Atoi(subject[strings.LastIndexByte(subject, '.')+1:])
	if err != nil || p < 0 || p >= domain.NumPartitions {
		p = domain.PartitionOf(id.String())
	}
	out.Partition = p
	return out
}
