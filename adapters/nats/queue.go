package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/adapters/internal/leasebook"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// Queue is the JetStream ports.Queue. Streams and consumers live on the
// server; what is per client (the topics set up so far, the live leases and
// their timers) belongs to one goroutine, run, which the methods send
// requests. Network calls happen outside it: Publish, Lease and Ack talk to
// the server from the caller's goroutine or a helper, and the Naks and
// InProgress updates run decides on are sent by signalLoop.
//
// Ack and Release identify a lease by its id and topic and must name the
// consumer it was granted to (domain.CheckOwner).
type Queue struct {
	cfg     Config              // read-only after New
	log     *slog.Logger        // read-only
	metrics *metrics            // read-only; the collectors are safe for concurrent use
	nc      *natsgo.Conn        // read-only; safe for concurrent use
	js      jetstream.JetStream // read-only; safe for concurrent use

	ops     chan func(*state) // requests to run; unbuffered
	signals chan signal       // Naks and InProgress from run to signalLoop; unbuffered, closed by run
	stop    chan struct{}     // closed by Close
	done    chan struct{}     // closed when run returns

	started   atomic.Bool // set by the first Start or Close
	state     *state      // handed to run by Start; owned by run from then on
	closeOnce sync.Once
	wg        sync.WaitGroup // run, signalLoop and the I/O goroutines run starts
}

var (
	_ ports.Queue            = (*Queue)(nil)
	_ ports.Checker          = (*Queue)(nil)
	_ ports.DeadLetterReader = (*Queue)(nil)
)

// New connects to cfg.URL and starts the queue's owner goroutine; Close
// stops it. When the server cannot be reached yet, New still succeeds: the
// connection keeps retrying in the background, calls fail with
// ports.ErrUnavailable meanwhile, and Check says so. When it is reached, New
// checks within ctx that JetStream is enabled. A nil logger means
// slog.Default(); a nil reg registers no metrics.
func New(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Queue, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	log := logger.With("component", "nats.queue")
	opts := []natsgo.Option{
		natsgo.Name("gpufleet-telemetry-queue"),
		natsgo.RetryOnFailedConnect(true),
		natsgo.MaxReconnects(-1),
		// No buffering while reconnecting: a publish then fails at once
		// (ErrUnavailable) instead of being sent minutes later.
		natsgo.ReconnectBufSize(-1),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil { // nil: closed by Close
				log.Warn("nats disconnected", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(c *natsgo.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
	}
	if cfg.User != "" {
		opts = append(opts, natsgo.UserInfo(cfg.User, cfg.Password))
	}
	nc, err := natsgo.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(asyncMaxPending),
		jetstream.WithPublishAsyncTimeout(ioTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if nc.IsConnected() {
		if _, err := js.AccountInfo(ctx); errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
			errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			nc.Close()
			return nil, fmt.Errorf("nats server %s: %w", nc.ConnectedUrlRedacted(), err)
		} else if err != nil {
			log.Warn("jetstream account info", "err", err)
		}
	} else {
		log.Warn("nats server not reachable yet; retrying in the background", "url", cfg.URL)
	}
	m, err := newMetrics(reg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats queue metrics: %w", err)
	}
	q := &Queue{
		cfg:     cfg,
		log:     log,
		metrics: m,
		nc:      nc,
		js:      js,
		ops:     make(chan func(*state)),
		signals: make(chan signal),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	q.state = &state{
		q:       q,
		topics:  make(map[string]*topic),
		leases:  make(map[uuid.UUID]*lease),
		acked:   leasebook.NewRecent[uuid.UUID, string](ackedLeases),
		reasons: leasebook.NewRecent[uint64, string](releaseReasons),
	}
	return q, nil
}

// Start runs the goroutine that owns the leases and the one that sends
// their Naks and progress updates. A queue starts once: Start after Start or
// Close fails with ports.ErrClosed.
func (q *Queue) Start(context.Context) error {
	if !q.started.CompareAndSwap(false, true) {
		return fmt.Errorf("start: %w", errQueueClosed)
	}
	q.wg.Go(func() { q.run(q.state) })
	q.wg.Go(q.signalLoop)
	return nil
}

// Close stops the queue: live leases are Nak'ed (their messages are ready
// again at once), acks in flight finish, and the connection is flushed and
// closed. Later calls fail with ports.ErrClosed. Close is idempotent and
// returns nil: Naks that cannot reach the server only delay redelivery until
// the consumer's AckWait, so there is nothing for the caller to do about them.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		close(q.stop)
		if q.started.CompareAndSwap(false, true) { // never started: nothing runs
			close(q.done)
		}
		q.wg.Wait()
		if q.nc.IsConnected() {
			if err := q.nc.FlushTimeout(ioTimeout); err != nil {
				q.log.Warn("close: flush", "err", err)
			}
		}
		q.nc.Close()
	})
	return nil
}

// Check reports whether the server is reachable with JetStream enabled:
// ports.ErrClosed after Close, ports.ErrUnavailable otherwise.
func (q *Queue) Check(ctx context.Context) error {
	select {
	case <-q.stop:
		return fmt.Errorf("check: nats queue: %w", ports.ErrClosed)
	default:
	}
	if !q.nc.IsConnected() {
		return fmt.Errorf("check: nats %s: %w", q.nc.Status(), ports.ErrUnavailable)
	}
	if _, err := q.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("check: %w", translate(err))
	}
	return nil
}

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

// Lease fetches up to req.Max ready messages without waiting for more and
// holds them under a new lease. With nothing ready it returns a lease with id
// uuid.Nil and no messages.
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
	batch, err := t.consumer.FetchNoWait(req.Max)
	if err != nil {
		return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, q.fetchError(t, err))
	}
	var msgs []jetstream.Msg
	for more := true; more; {
		select {
		case m, ok := <-batch.Messages():
			if ok {
				msgs = append(msgs, m)
			}
			more = ok
		case <-ctx.Done():
			q.abandon(msgs, batch)
			return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, ctx.Err())
		}
	}
	if err := batch.Error(); err != nil && !maxAckPendingReached(err) {
		if len(msgs) == 0 {
			return domain.Lease{}, fmt.Errorf("lease from %q: %w", req.Topic, q.fetchError(t, err))
		}
		q.log.Debug("fetch ended early", "topic", req.Topic, "messages", len(msgs), "err", err)
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

// fetchError translates a fetch error, forgetting the topic's handle when
// its stream or consumer is gone.
func (q *Queue) fetchError(t *topic, err error) error {
	if missingStream(err) {
		q.forgetTopic(t)
	}
	return translate(err)
}

// Ack double-acks every message of a live lease and returns once the server
// confirmed them all. An already acked lease succeeds; an expired, released
// or unknown one fails with ports.ErrLeaseExpired. When the server cannot be
// reached the lease stays live until it expires, so Ack may be retried.
func (q *Queue) Ack(ctx context.Context, ref ports.LeaseRef) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	if err := ref.Validate(); err != nil {
		return fmt.Errorf("ack lease %s: %w", ref.LeaseID, err)
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

// ackAll double-acks msgs, ackParallelism at a time. A message this client
// already acked (by an earlier, failed attempt) counts as acked.
func (q *Queue) ackAll(msgs []jetstream.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(ackParallelism)
	for _, m := range msgs {
		g.Go(func() error {
			if err := m.DoubleAck(ctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
				return err
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("double ack: %w: %w", ports.ErrUnavailable, err)
		}
		return fmt.Errorf("double ack: %w", translate(err))
	}
	return nil
}

// Release Naks every message of a live lease, which makes them ready at once,
// and ends the lease. An expired, acked or unknown lease fails with
// ports.ErrLeaseExpired.
func (q *Queue) Release(ctx context.Context, ref ports.LeaseRef) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if err := ref.Validate(); err != nil {
		return fmt.Errorf("release lease %s: %w", ref.LeaseID, err)
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

// topic returns the handle of a topic, setting up its stream and consumer on
// first use.
func (q *Queue) topic(ctx context.Context, name string) (*topic, error) {
	t, err := call(ctx, q, "topic", func(s *state) (*topic, error) { return s.topics[name], nil })
	if err != nil || t != nil {
		return t, err
	}
	t, err = q.setUp(ctx, name)
	if err != nil {
		return nil, translate(err)
	}
	return call(ctx, q, "topic", func(s *state) (*topic, error) {
		if old := s.topics[name]; old != nil {
			return old, nil
		}
		s.topics[name] = t
		return t, nil
	})
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
		q.wg.Go(func() {
			for m := range batch.Messages() {
				_ = m.Nak()
			}
		})
	})
}

// send runs fn on run without waiting for it; it is dropped once run has
// returned.
func (q *Queue) send(fn func(*state)) {
	select {
	case q.ops <- fn:
	case <-q.done:
	}
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
