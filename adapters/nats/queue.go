package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/adapters/internal/leasebook"
	"github.com/gpufleet/telemetry/internal/startstop"
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
	done    chan struct{}     // closed when run returns, or by Close when it never started

	// life runs run, signalLoop and the I/O goroutines run starts; its Quit
	// is Close's signal to run.
	life  *startstop.Group
	state *state // handed to run by Start; owned by run from then on
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
		done:    make(chan struct{}),
		life:    startstop.NewGroup(),
	}
	q.state = &state{
		q:       q,
		topics:  make(map[string]*topic),
		setups:  make(map[string]*setup),
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
	if !q.life.Start(func() { q.run(q.state) }, q.signalLoop) {
		return fmt.Errorf("start: %w", errQueueClosed)
	}
	return nil
}

// Close stops the queue: live leases are Nak'ed (their messages are ready
// again at once), acks in flight finish, and the connection is flushed and
// closed. Later calls fail with ports.ErrClosed. Close is idempotent and
// returns nil: Naks that cannot reach the server only delay redelivery until
// the consumer's AckWait, so there is nothing for the caller to do about them.
func (q *Queue) Close() error {
	if !q.life.BeginStop() { // never started: nothing runs (reported once)
		close(q.done)
	}
	_ = q.life.Wait(context.Background()) // nil: the background never ends
	if q.nc.IsConnected() {
		if err := q.nc.FlushTimeout(ioTimeout); err != nil {
			q.log.Warn("close: flush", "err", err)
		}
	}
	q.nc.Close()
	return nil
}

// Check reports whether the server is reachable with JetStream enabled:
// ports.ErrClosed after Close, ports.ErrUnavailable otherwise.
func (q *Queue) Check(ctx context.Context) error {
	select {
	case <-q.life.Quit():
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
