package pgqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/adapters/internal/actor"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/ratelog"
	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

var (
	_ ports.Consumer         = (*Reader)(nil)
	_ ports.Checker          = (*Reader)(nil)
	_ ports.DeadLetterReader = (*Reader)(nil)
)

// closeLeaseWait is how long Close waits for outstanding leases; Drain
// waits up to DrainTimeout.
const closeLeaseWait = 0

// errNoRange is returned by a reader that owns no partitions.
var errNoRange = fmt.Errorf("%w: no partition range assigned to this reader", ports.ErrUnavailable)

// Reader is the queue's read side for one range of partitions. Its state is
// in memory only: each topic has one owner goroutine (see topic) holding the
// messages it loaded from PostgreSQL, its leases, and the acked ids waiting
// for their DELETE. Topics start on their first Lease. The topic map is
// copy-on-write: run replaces it, everyone else reads it with one atomic
// load.
type Reader struct {
	rows    rowStore
	cfg     ReaderConfig
	logger  *slog.Logger
	metrics *readerMetrics

	topics   atomic.Pointer[map[string]*topic] // replaced only by run; read by anyone
	draining atomic.Bool                       // set once by Drain; read by anyone
	// listening is true while the listener's subscription is live; written
	// by listenLoop, read by topics (they poll faster while it is down).
	listening atomic.Bool

	creates   chan createRequest // Lease → run; unbuffered
	life      *startstop.Group   // run, the stats loop and every topic; Quit: run stops, topics stop leasing and wind down
	quit      <-chan struct{}    // life.Quit(), closed by Drain
	ctx       context.Context    // life.Context(): parent of every PostgreSQL call; cancelled when Drain's context ends, or once all stopped
	runDone   chan struct{}      // closed when run has returned: the topic map is final
	abandoned atomic.Int64       // leases still outstanding when Drain gave up; written by topics
}

type createRequest struct {
	name  string
	reply chan createReply // 1-buffered
}

type createReply struct {
	t   *topic
	err error
}

// NewReader builds a Reader over pool; it starts nothing. Start runs it
// (Lease before Start fails with ports.ErrClosed); Drain or Close stops it. A
// nil logger means slog.Default(); a nil registerer leaves the metrics
// unregistered.
func NewReader(pool *pgxpool.Pool, cfg ReaderConfig, logger *slog.Logger, reg prometheus.Registerer) (*Reader, error) {
	if pool == nil {
		return nil, fmt.Errorf("new reader: nil pool")
	}
	return newReaderOn(pgRows{pool: pool}, cfg, logger, reg)
}

// newReaderOn starts a Reader over any rowStore.
func newReaderOn(rows rowStore, cfg ReaderConfig, logger *slog.Logger, reg prometheus.Registerer) (*Reader, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	r := &Reader{
		rows:    rows,
		cfg:     cfg,
		logger:  logger.With("component", "pgqueue.reader"),
		creates: make(chan createRequest),
		life:    startstop.NewGroup(),
		runDone: make(chan struct{}),
	}
	r.quit, r.ctx = r.life.Quit(), r.life.Context()
	if cfg.Range != nil {
		r.logger = r.logger.With("partitions", cfg.Range.String())
	}
	r.topics.Store(&map[string]*topic{})
	if r.metrics, err = newReaderMetrics(reg, r.utilization, r.buffered, r.listeningRatio, newTopicCollector(r)); err != nil {
		return nil, fmt.Errorf("new reader: %w", err)
	}
	return r, nil
}

// Start runs the goroutine that starts topic owners. A reader starts once:
// Start after Start, Drain or Close fails with ports.ErrClosed.
func (r *Reader) Start(context.Context) error {
	goroutines := []func(){r.run}
	if r.cfg.Range != nil && r.cfg.StatsInterval > 0 {
		goroutines = append(goroutines, func() { r.statsLoop(r.ctx) })
	}
	if l, ok := r.rows.(listener); ok && r.cfg.Range != nil {
		goroutines = append(goroutines, func() { r.listenLoop(l) })
	}
	if !r.life.Start(goroutines...) {
		return fmt.Errorf("start reader: %w", ports.ErrClosed)
	}
	return nil
}

// deafPause is how long a reader whose subscription heard nothing (errDeaf:
// a transaction-mode pooler in between) polls before it tries again.
const deafPause = time.Minute

// listenLoop keeps the reader subscribed to the writer's notifications of
// new rows (see listener) until Drain, resubscribing after a failure with
// backoff; while it is down, topics poll every RefillInterval (every
// FastRefillInterval while a lease waits), and once it is back every topic
// refills in full once, for the notifications it missed.
func (r *Reader) listenLoop(l listener) {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	r.life.Go(func() {
		select {
		case <-r.quit:
		case <-ctx.Done():
		}
		cancel()
	})
	pauses := retry.NewBackOff(100*time.Millisecond, 5*time.Second)
	fails := ratelog.New(ratelog.Interval) // a database that is down fails every attempt
	for ctx.Err() == nil {
		err := l.listen(ctx, func() {
			r.listening.Store(true)
			pauses.Reset()
			for name := range *r.topics.Load() {
				r.poke(name, 0)
			}
		}, r.poke)
		r.listening.Store(false)
		for name := range *r.topics.Load() {
			r.poke(name, noneAnnounced) // wake each owner: it polls from now on
		}
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errNoSpareConn):
			r.logger.Info("not listening for new rows; polling only", "reason", err)
			return
		}
		r.metrics.listenFails.Inc()
		pause := pauses.NextBackOff()
		if errors.Is(err, errDeaf) {
			pause = deafPause
			r.logger.Warn("not listening for new rows: the subscription hears nothing; polling, trying again later",
				"reason", err, "retry_in", pause)
		} else {
			fails.Warn(r.logger, time.Now(), "listening for new rows failed; polling faster until it is back", "err", err)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
	}
}

// poke tells topic's owner that rows from id from on were committed (0:
// some rows, ids unknown; noneAnnounced: none, only look again at when to
// refill).
func (r *Reader) poke(topic string, from int64) {
	if t := (*r.topics.Load())[topic]; t != nil {
		t.announce(from)
		select {
		case t.pokes <- struct{}{}:
		default: // a poke is pending already; run reads announced after it
		}
	}
}

// errNotStarted fails calls made before Start.
var errNotStarted = fmt.Errorf("reader not started: %w", ports.ErrClosed)

// Lease hands out up to req.Max ready messages of req.Topic, fairly across
// partitions and in order within each. See ports.Consumer. A topic is served
// from its first Lease on, so the very first call usually returns no
// messages while the topic's first refill runs.
func (r *Reader) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	start := time.Now()
	defer func() { r.metrics.leaseTime.Observe(time.Since(start).Seconds()) }()
	if err := ctx.Err(); err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	}
	if err := req.ValidateWithin(r.cfg.MinLease, r.cfg.Lease); err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	}
	if !r.life.Started() {
		return domain.Lease{}, fmt.Errorf("lease: %w", errNotStarted)
	}
	if r.cfg.Range == nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", errNoRange)
	}
	if r.draining.Load() {
		return domain.Lease{}, fmt.Errorf("lease: reader is draining: %w", ports.ErrClosed)
	}
	t, err := r.topicFor(ctx, req.Topic)
	if err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	}
	c := leaseCall{req: req, reply: make(chan leaseReply, 1)}
	if err := send(ctx, t, t.leases, c); err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	}
	rep, err := r.awaitLease(ctx, t, c)
	if err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	}
	if rep.err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w", rep.err)
	}
	return rep.lease, nil
}

// awaitLease waits for the owner's answer to c. A lease with a Wait may be
// parked by the owner: when the wait passes it is withdrawn and answered
// empty. When ctx ends first, a lease granted meanwhile is given back.
func (r *Reader) awaitLease(ctx context.Context, t *topic, c leaseCall) (leaseReply, error) {
	if c.req.Wait == 0 {
		rep, err := await(ctx, t, c.reply)
		if err != nil {
			r.giveBack(t, c.reply)
		}
		return rep, err
	}
	rep, ok, err := actor.AwaitParked(ctx, c.reply, t.done, c.req.Wait, func() {
		w := withdrawCall{reply: c.reply, done: make(chan struct{})}
		if actor.Send(context.Background(), t.withdraws, t.done, w) == nil {
			select { // run closes done at once after taking the call
			case <-w.done:
			case <-t.done:
			}
		}
	})
	switch {
	case err != nil:
		if ok {
			r.giveBack(t, replied(rep))
		}
		return leaseReply{}, ownerErr(err)
	case !ok:
		return leaseReply{lease: domain.Lease{Topic: t.name, ConsumerID: c.req.ConsumerID, Messages: []domain.Message{}}}, nil
	}
	return rep, nil
}

// replied is a reply channel already holding rep, for giveBack.
func replied(rep leaseReply) <-chan leaseReply {
	c := make(chan leaseReply, 1)
	c <- rep
	return c
}

// giveBack releases the lease a caller stopped waiting for. The call was
// already with the topic's owner, which answers every call it takes, so a
// lease may still be granted; left alone, nobody would ack it, and its
// messages would wait for the expiry (and a draining reader with them).
func (r *Reader) giveBack(t *topic, reply <-chan leaseReply) {
	rep, err := await(context.Background(), t, reply)
	if err != nil || rep.err != nil || len(rep.lease.Messages) == 0 {
		return
	}
	l := rep.lease
	ref := ports.LeaseRef{Topic: l.Topic, ConsumerID: l.ConsumerID, LeaseID: l.ID}
	if err := r.settle(context.Background(), ref, settleCall{release: true, undeliver: true}); err != nil {
		r.logger.Warn("release of an abandoned lease failed; its messages return at expiry", "lease", l.ID, "err", err)
	}
}

// Ack deletes the lease's messages and returns once the DELETE committed;
// acks arriving together share one DELETE. Acking an acked lease (still
// remembered: the last few thousand per topic) succeeds. An expired or
// unknown lease fails with ports.ErrLeaseExpired and deletes nothing, so a
// late ack can never delete messages redelivered to someone else. A
// ConsumerID other than the lease's fails with ports.ErrInvalidArgument. A
// failed DELETE leaves the lease live (until it expires) and returns
// ports.ErrUnavailable; the ack may be retried.
func (r *Reader) Ack(ctx context.Context, ref ports.LeaseRef) error {
	return r.settle(ctx, ref, settleCall{})
}

// Release returns the lease's messages to the front of their partitions'
// ready queues, in their order, for another Lease at once; a message at the
// delivery limit is moved to dead_letters instead (with ref.Reason, the
// consumer's last error, when given). An expired,
// unknown or acked lease fails with ports.ErrLeaseExpired; a ConsumerID
// other than the lease's with ports.ErrInvalidArgument.
func (r *Reader) Release(ctx context.Context, ref ports.LeaseRef) error {
	return r.settle(ctx, ref, settleCall{release: true})
}

// settle sends an Ack or Release (as c says) of ref to its topic's owner.
func (r *Reader) settle(ctx context.Context, ref ports.LeaseRef, c settleCall) error {
	op := "ack"
	if c.release {
		op = "release"
	}
	if err := domain.CheckSettle(ctx, op, ref); err != nil {
		return err
	}
	if r.cfg.Range == nil {
		return fmt.Errorf("%s: %w", op, errNoRange)
	}
	t := (*r.topics.Load())[ref.Topic]
	if t == nil {
		return fmt.Errorf("%s lease %s: %w", op, ref.LeaseID, ports.ErrLeaseExpired)
	}
	c.ref, c.reply = ref, make(chan error, 1)
	if err := send(ctx, t, t.settles, c); err != nil {
		return fmt.Errorf("%s lease %s: %w", op, ref.LeaseID, err)
	}
	err, waitErr := await(ctx, t, c.reply)
	if waitErr != nil {
		err = waitErr
	}
	if err != nil {
		return fmt.Errorf("%s lease %s: %w", op, ref.LeaseID, err)
	}
	return nil
}

// send hands c to topic t's owner.
func send[C any](ctx context.Context, t *topic, ch chan<- C, c C) error {
	return ownerErr(actor.Send(ctx, ch, t.done, c))
}

// await waits for topic t's answer on reply.
func await[R any](ctx context.Context, t *topic, reply <-chan R) (R, error) {
	v, err := actor.Await(ctx, reply, t.done)
	return v, ownerErr(err)
}

// ownerErr reports a topic owner that ended as the reader being closed.
func ownerErr(err error) error {
	if errors.Is(err, actor.ErrStopped) {
		return fmt.Errorf("reader %w", ports.ErrClosed)
	}
	return err
}

// topicFor returns the topic's owner, starting it on first use.
func (r *Reader) topicFor(ctx context.Context, name string) (*topic, error) {
	if t := (*r.topics.Load())[name]; t != nil {
		return t, nil
	}
	c := createRequest{name: name, reply: make(chan createReply, 1)}
	switch err := actor.Send(ctx, r.creates, r.quit, c); {
	case errors.Is(err, actor.ErrStopped):
		return nil, fmt.Errorf("reader is draining: %w", ports.ErrClosed)
	case err != nil:
		return nil, err
	}
	rep := <-c.reply // run answers every request it takes at once
	return rep.t, rep.err
}

// run owns topic creation. It stops when Drain closes quit, so the topic map
// is final from then on.
func (r *Reader) run() {
	defer close(r.runDone)
	for {
		select {
		case c := <-r.creates:
			c.reply <- r.create(c.name)
		case <-r.quit:
			return
		}
	}
}

func (r *Reader) create(name string) createReply {
	cur := *r.topics.Load()
	if t := cur[name]; t != nil {
		return createReply{t: t}
	}
	if len(cur) >= r.cfg.MaxTopics {
		return createReply{err: fmt.Errorf("%w: topic %q would exceed this reader's limit of %d topics",
			ports.ErrInvalidArgument, name, r.cfg.MaxTopics)}
	}
	t := newTopic(r, name)
	next := make(map[string]*topic, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[name] = t
	r.topics.Store(&next)
	r.life.Go(t.run)
	return createReply{t: t}
}

// Ready reports whether the reader serves leases: it owns a range and is
// not draining. The app's /readyz reports it.
func (r *Reader) Ready() bool { return r.cfg.Range != nil && !r.draining.Load() }

// Draining reports whether Drain or Close was called.
func (r *Reader) Draining() bool { return r.draining.Load() }

// Range returns the partitions this reader owns, or nil.
func (r *Reader) Range() *domain.PartitionRange { return r.cfg.Range }

// Check reports whether the reader can serve: PostgreSQL answers, a range is
// assigned, and it is not draining.
func (r *Reader) Check(ctx context.Context) error {
	switch {
	case r.cfg.Range == nil:
		return &ports.NotReadyError{Reason: "no partition range assigned", Err: errNoRange}
	case r.draining.Load():
		return &ports.NotReadyError{Reason: "draining", Err: ports.ErrClosed}
	}
	if err := r.rows.ping(ctx); err != nil {
		return &ports.NotReadyError{Reason: "database unreachable", Err: fmt.Errorf("reader check: %w", translate(err))}
	}
	return nil
}

// Drain stops the reader as a partition owner should on shutdown: Lease
// fails with ports.ErrClosed at once; acks and releases still work while it
// waits, up to DrainTimeout or until ctx ends, for every outstanding lease to
// be acked, released or expired; pending deletes are flushed; then every
// goroutine stops. Messages not acked stay in PostgreSQL for the partitions'
// next owner. It returns nil when nothing was left outstanding, else an
// error (ctx's, or one saying how many leases were abandoned). Calling it
// again waits for the first call's outcome.
func (r *Reader) Drain(ctx context.Context) error {
	return r.drain(ctx, r.cfg.DrainTimeout, true)
}

// Close stops the reader without waiting for outstanding leases (their
// messages stay in PostgreSQL and are redelivered by the next owner, which is
// not an error here); acks already in progress still commit.
func (r *Reader) Close(ctx context.Context) error {
	return r.drain(ctx, closeLeaseWait, false)
}

func (r *Reader) drain(ctx context.Context, wait time.Duration, reportAbandoned bool) error {
	r.draining.Store(true)
	if !r.life.BeginStop() { // never started: nothing runs
		close(r.runDone)
		return nil
	}
	giveUp := time.NewTimer(wait)
	defer giveUp.Stop()
	// Wait for the leases, then stop waiting for them but let the deletes
	// already requested commit, unless ctx ends: then abort those too.
	select {
	case <-r.life.Done():
	case <-giveUp.C:
	case <-ctx.Done():
	}
	r.abandon()
	err := r.life.Wait(ctx)
	if n := r.abandoned.Load(); n > 0 {
		r.logger.Info("stopped with leases outstanding; their messages stay queued", "leases", n)
		if reportAbandoned {
			err = errors.Join(err, fmt.Errorf("%d leases were still outstanding; their messages stay queued", n))
		}
	}
	if err != nil {
		return fmt.Errorf("drain reader: %w", err)
	}
	return nil
}

// abandon tells every topic to stop waiting for its leases, flush the
// deletes already requested, and exit.
func (r *Reader) abandon() {
	<-r.runDone // no topic is created after this
	for _, t := range *r.topics.Load() {
		t.abandonOnce.Do(func() { close(t.abandon) })
	}
}

// utilization is the fullest topic's share of its buffer: the larger of its
// count and byte ratios, so the autoscaler sees a buffer filled by a few
// large messages as full.
func (r *Reader) utilization() float64 {
	var most float64
	for _, t := range *r.topics.Load() {
		most = max(most,
			float64(t.held.Load())/float64(r.cfg.BufferSize),
			float64(t.heldBytes.Load())/float64(r.cfg.BufferBytes))
	}
	return most
}

// listeningRatio is mqreader_listening: 1 while subscribed, else 0.
func (r *Reader) listeningRatio() float64 {
	if r.listening.Load() {
		return 1
	}
	return 0
}

func (r *Reader) buffered() float64 {
	var sum int64
	for _, t := range *r.topics.Load() {
		sum += t.backlog.Load()
	}
	return float64(sum)
}

// DeadLetters returns up to limit of the messages of topic this queue moved
// to dead_letters at the delivery limit, oldest first
// (ports.DeadLetterReader). It reads the table: any reader sees them all.
func (r *Reader) DeadLetters(ctx context.Context, topic string, limit int) ([]domain.DeadLetter, error) {
	letters, err := r.rows.deadLetters(ctx, topic, limit)
	if err != nil {
		return nil, fmt.Errorf("read dead letters of %q: %w", topic, translate(err))
	}
	return letters, nil
}

// DeadLetterReader reads the queue's dead letters straight from the
// database behind pool, with no Reader (tests, tools).
type DeadLetterReader struct{ pool *pgxpool.Pool }

var _ ports.DeadLetterReader = DeadLetterReader{}

// NewDeadLetterReader returns a DeadLetterReader over pool.
func NewDeadLetterReader(pool *pgxpool.Pool) DeadLetterReader { return DeadLetterReader{pool: pool} }

// DeadLetters implements ports.DeadLetterReader (see Reader.DeadLetters).
func (d DeadLetterReader) DeadLetters(ctx context.Context, topic string, limit int) ([]domain.DeadLetter, error) {
	letters, err := pgRows{pool: d.pool}.deadLetters(ctx, topic, limit)
	if err != nil {
		return nil, fmt.Errorf("read dead letters of %q: %w", topic, translate(err))
	}
	return letters, nil
}
