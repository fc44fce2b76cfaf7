// The delivery limit: messages past it moved to the topic's dead-letter stream.

package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gpufleet/telemetry/domain"
)

// setAsideExhausted moves the fetched messages the server delivers beyond
// the delivery limit (NumDelivered > MaxDeliveries: every earlier delivery
// ended without an ack) to the topic's dead-letter stream, and returns the
// others. A message that cannot be moved now is Nak'ed: it comes back, and
// the next fetch tries again.
func (q *Queue) setAsideExhausted(ctx context.Context, t *topic, msgs []jetstream.Msg) []jetstream.Msg {
	keep := msgs[:0]
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil || int(md.NumDelivered) <= q.cfg.MaxDeliveries {
			keep = append(keep, m)
			continue
		}
		if err := q.deadLetter(ctx, t, m, md); err != nil {
			q.log.Warn("moving a message to the dead-letter stream failed; it comes back", "topic", t.name,
				"stream_seq", md.Sequence.Stream, "err", err)
			_ = m.Nak()
		}
	}
	return keep
}

// deadLetter publishes m to t's dead-letter stream, with its message id,
// delivery count and reason (the last release reason this client was
// given, if any), then acks it off the topic's stream.
func (q *Queue) deadLetter(ctx context.Context, t *topic, m jetstream.Msg, md *jetstream.MsgMetadata) error {
	seq := md.Sequence.Stream
	last, err := call(ctx, q, "dead letter", func(s *state) (string, error) {
		r, _ := s.reasons.Get(seq)
		s.reasons.Delete(seq)
		return r, nil
	})
	if err != nil {
		return err
	}
	delivered := int(md.NumDelivered) - 1
	reason := domain.ExhaustedReason(delivered, last)
	msg := toMessage(t.name, m)
	dl := &natsgo.Msg{
		Subject: deadLetterSubject(t.name),
		Data:    m.Data(),
		Header: natsgo.Header{
			jetstream.MsgIDHeader: []string{msg.ID.String()},
			headerDeliveries:      []string{strconv.Itoa(delivered)},
			headerReason:          []string{oneLine(reason)},
		},
	}
	pctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	if _, err := q.js.PublishMsg(pctx, dl); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	if err := m.DoubleAck(pctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		return fmt.Errorf("ack dead-lettered message: %w", err)
	}
	q.metrics.dead.Inc()
	q.log.Warn("message dead-lettered at its delivery limit", "topic", t.name, "msg_uuid", msg.ID,
		"deliveries", delivered, "last_error", last)
	return nil
}

// oneLine makes s fit a header value: no CR or LF.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// DeadLetters returns up to limit of topic's dead letters, oldest first,
// from its dead-letter stream (ports.DeadLetterReader).
func (q *Queue) DeadLetters(ctx context.Context, topic string, limit int) ([]domain.DeadLetter, error) {
	out := []domain.DeadLetter{}
	stream, err := q.js.Stream(ctx, q.cfg.deadLetterStream(topic))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dead letters of %q: %w", topic, translate(err))
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead letters of %q: %w", topic, translate(err))
	}
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq && len(out) < limit; seq++ {
		raw, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dead letters of %q: %w", topic, translate(err))
		}
		id, _ := uuid.Parse(raw.Header.Get(jetstream.MsgIDHeader))
		n, _ := strconv.Atoi(raw.Header.Get(headerDeliveries))
		out = append(out, domain.DeadLetter{MsgUUID: id, Topic: topic, Payload: raw.Data,
			Reason: raw.Header.Get(headerReason), Deliveries: n, Source: domain.DeadLetterSourceQueue})
	}
	return out, nil
}
