// Publishing: validation and JetStream publishes with an async window.

package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// Publish validates msgs, then sends them to the topic's stream and waits for
// every PubAck. On an error some messages may be stored: a retry with the
// same idempotency keys is safe within the dedup window.
func (q *Queue) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	if err := ctx.Err(); err != nil {
		return ports.PublishResult{}, fmt.Errorf("publish: %w", err)
	}
	if err := validatePublish(topic, msgs, q.nc.MaxPayload()); err != nil {
		return ports.PublishResult{}, fmt.Errorf("publish to %q: %w", topic, err)
	}
	t, err := q.topic(ctx, topic)
	if err != nil {
		return ports.PublishResult{}, fmt.Errorf("publish to %q: %w", topic, err)
	}
	res, err := q.publish(ctx, t, msgs)
	q.metrics.published.Add(float64(res.Accepted))
	q.metrics.duplicates.Add(float64(res.Duplicates))
	if err != nil {
		if missingStream(err) {
			q.forgetTopic(t)
		}
		return res, fmt.Errorf("publish to %q: %w", topic, translate(err))
	}
	return res, nil
}

// publish sends msgs asynchronously, at most publishWindow awaiting their
// PubAck at once, and waits for every PubAck. It returns the first error.
func (q *Queue) publish(ctx context.Context, t *topic, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	var (
		res      ports.PublishResult
		firstErr error
		pending  = make([]jetstream.PubAckFuture, 0, min(len(msgs), publishWindow))
		nms      = make([]*natsgo.Msg, len(msgs))
	)
	for i, m := range msgs {
		nms[i] = t.natsMsg(m)
	}
	// await takes the oldest PubAck; only the caller's context stops it (the
	// client fails a PubAck that takes longer than ioTimeout).
	await := func() error {
		f := pending[0]
		pending = pending[1:]
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				res.Duplicates++
			} else {
				res.Accepted++
			}
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	for i := 0; i < len(msgs) && firstErr == nil; {
		if len(pending) == publishWindow {
			if err := await(); err != nil {
				return res, err
			}
			continue
		}
		f, err := q.js.PublishMsgAsync(nms[i])
		switch {
		case err == nil:
			pending = append(pending, f)
			i++
		case errors.Is(err, jetstream.ErrTooManyStalledMsgs) && len(pending) > 0:
			// Other publishers fill the connection's window: wait for one
			// of ours, then retry.
			if err := await(); err != nil {
				return res, err
			}
		case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(time.Millisecond): // back off; nothing of ours to wait for
			}
		default:
			firstErr = err
		}
	}
	for len(pending) > 0 {
		if err := await(); err != nil {
			return res, err
		}
	}
	return res, firstErr
}

// natsMsg is m as published to t: on its partition's subject, with its
// message id for dedup and the stream expected to store it.
func (t *topic) natsMsg(m ports.OutgoingMessage) *natsgo.Msg {
	id := domain.MessageID(t.name, m.IdempotencyKey)
	return &natsgo.Msg{
		Subject: t.name + "." + strconv.Itoa(domain.PartitionOf(domain.PartitionKey(m, id))),
		Data:    m.Payload,
		Header: natsgo.Header{
			jetstream.MsgIDHeader:          []string{id.String()},
			jetstream.ExpectedStreamHeader: []string{t.stream},
		},
	}
}

// validatePublish checks a publish against the queue's rules (domain), and
// that every payload fits the server's max_payload.
func validatePublish(topic string, msgs []ports.OutgoingMessage, maxPayload int64) error {
	if err := domain.ValidatePublish(topic, msgs); err != nil {
		return err
	}
	for i, m := range msgs {
		// 512 bytes leave room for the headers.
		if maxPayload > 0 && int64(len(m.Payload)) > maxPayload-512 {
			return fmt.Errorf("messages[%d]: payload of %d bytes exceeds the server's max payload %d: %w",
				i, len(m.Payload), maxPayload, ports.ErrInvalidArgument)
		}
	}
	return nil
}
