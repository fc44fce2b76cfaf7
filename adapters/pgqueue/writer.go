package pgqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/adapters/internal/actor"
	"github.com/gpufleet/telemetry/internal/ratelog"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

var (
	_ ports.Publisher = (*Writer)(nil)
	_ ports.Checker   = (*Writer)(nil)
)

// Writer is the queue's write side: it group-commits publishes into
// queue_messages. One goroutine (run) gathers concurrent publishes into
// batches of up to MaxBatch messages and hands each to one of Flushers
// goroutines, which writes it in one statement and answers every publisher
// after COMMIT. Buffer room is reserved atomically at Publish and released
// when the publish's batch finishes, so a full buffer refuses work at once
// instead of queueing it.
type Writer struct {
	pool    *pgxpool.Pool
	cfg     WriterConfig
	logger  *slog.Logger
	metrics *writerMetrics
	insert  insertFunc       // how a flusher writes a batch; set before run starts
	failLog *ratelog.Limiter // "flush failed" lines; every failure is counted in rejected

	buffered atomic.Int64 // messages reserved and not yet finished; any goroutine
	bytes    atomic.Int64 // their payload bytes (rowBytesOf); any goroutine
	closed   atomic.Bool  // set by Close; read by Publish
	flushes  atomic.Int64 // flush statements attempted; read by tests
	gathered atomic.Int64 // messages run holds, not yet handed to a flusher; written by run, read by tests

	requests chan *publishRequest   // Publish → run; unbuffered
	batches  chan []*publishRequest // run → flushers; unbuffered: a send succeeds only when a flusher is idle
	life     *startstop.Group       // run and the flushers; Quit: run stops accepting, flushes what it holds, exits
	quit     <-chan struct{}        // life.Quit()
	ctx      context.Context        // life.Context(): parent of every flush; cancelled when Close gives up waiting
}

// publishRequest is one Publish call on its way through run and a flusher.
type publishRequest struct {
	rows  []row
	bytes int64             // rowBytesOf(rows): what it reserved of BufferBytes
	reply chan publishReply // 1-buffered: the flusher never blocks on a publisher that gave up
}

type publishReply struct {
	result ports.PublishResult
	err    error
}

// insertFunc writes rows in one transaction and returns the (topic, id) of
// the rows it inserted; the others were duplicates.
type insertFunc func(ctx context.Context, pool *pgxpool.Pool, rows []row) (map[msgKey]struct{}, error)

type msgKey struct {
	topic string
	id    uuid.UUID
}

// NewWriter builds a Writer over pool; it starts nothing. Start runs it
// (Publish before Start fails with ports.ErrClosed), Close stops it. A nil
// logger means slog.Default(); a nil registerer leaves the metrics
// unregistered.
func NewWriter(pool *pgxpool.Pool, cfg WriterConfig, logger *slog.Logger, reg prometheus.Registerer) (*Writer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, fmt.Errorf("new writer: nil pool")
	}
	if logger == nil {
		logger = slog.Default()
	}
	w := &Writer{
		pool:     pool,
		cfg:      cfg,
		logger:   logger.With("component", "pgqueue.writer"),
		insert:   insertUnnest,
		failLog:  ratelog.New(ratelog.Interval),
		requests: make(chan *publishRequest),
		batches:  make(chan []*publishRequest),
		life:     startstop.NewGroup(),
	}
	w.quit, w.ctx = w.life.Quit(), w.life.Context()
	if w.metrics, err = newWriterMetrics(reg, w.Utilization); err != nil {
		return nil, fmt.Errorf("new writer: %w", err)
	}
	return w, nil
}

// Start runs the batching goroutine and the flushers. A writer starts once:
// Start after Start or Close fails with ports.ErrClosed.
func (w *Writer) Start(context.Context) error {
	goroutines := []func(){w.run}
	for range w.cfg.Flushers {
		goroutines = append(goroutines, w.flusher)
	}
	if !w.life.Start(goroutines...) {
		return fmt.Errorf("start writer: %w", ports.ErrClosed)
	}
	return nil
}

// Publish validates msgs, waits until they are committed together with
// whatever other publishes share their flush, and reports how many were new.
// See ports.Publisher for the errors. A publish is atomic: its messages are
// written by one transaction. When ctx ends first the publish may still
// commit; retrying with the same idempotency keys is safe.
func (w *Writer) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	if err := ctx.Err(); err != nil {
		return ports.PublishResult{}, fmt.Errorf("publish: %w", err)
	}
	if w.closed.Load() || !w.life.Started() {
		w.metrics.rejected.WithLabelValues(reasonClosed).Inc()
		return ports.PublishResult{}, fmt.Errorf("publish: writer not started or %w", ports.ErrClosed)
	}
	rows, err := prepareRows(topic, msgs)
	if err != nil {
		w.metrics.rejected.WithLabelValues(reasonInvalid).Inc()
		return ports.PublishResult{}, err // says "publish to <topic>" already
	}
	n, size := int64(len(rows)), rowBytesOf(rows)
	switch {
	case n > int64(w.cfg.BufferSize):
		w.metrics.rejected.WithLabelValues(reasonInvalid).Inc()
		return ports.PublishResult{}, fmt.Errorf("publish: %w: %d messages exceed the writer's buffer of %d",
			ports.ErrInvalidArgument, n, w.cfg.BufferSize)
	case size > w.cfg.BufferBytes:
		w.metrics.rejected.WithLabelValues(reasonInvalid).Inc()
		return ports.PublishResult{}, fmt.Errorf("publish: %w: %d bytes exceed the writer's buffer of %d bytes",
			ports.ErrInvalidArgument, size, w.cfg.BufferBytes)
	}
	if !w.reserve(n, size) {
		w.metrics.rejected.WithLabelValues(reasonBackpressure).Inc()
		return ports.PublishResult{}, fmt.Errorf("publish %d messages: %w", n, ports.ErrBackpressure)
	}
	req := &publishRequest{rows: rows, bytes: size, reply: make(chan publishReply, 1)}
	switch err := actor.Send(ctx, w.requests, w.quit, req); {
	case errors.Is(err, actor.ErrStopped):
		w.unreserve(req)
		w.metrics.rejected.WithLabelValues(reasonClosed).Inc()
		return ports.PublishResult{}, fmt.Errorf("publish: writer %w", ports.ErrClosed)
	case err != nil:
		w.unreserve(req)
		return ports.PublishResult{}, fmt.Errorf("publish: %w", err)
	}
	// run answers every request it took, even while closing: only ctx ends
	// the wait.
	rep, err := actor.Await(ctx, req.reply, nil)
	switch {
	case err != nil:
		return ports.PublishResult{}, fmt.Errorf("publish: %w", err)
	case rep.err != nil:
		return rep.result, fmt.Errorf("publish: %w", rep.err)
	}
	return rep.result, nil
}

// reserve takes room for n messages of size bytes, all or nothing.
func (w *Writer) reserve(n, size int64) bool {
	if !reserveAtomic(&w.buffered, n, int64(w.cfg.BufferSize)) {
		return false
	}
	if !reserveAtomic(&w.bytes, size, w.cfg.BufferBytes) {
		w.buffered.Add(-n)
		return false
	}
	return true
}

// unreserve gives back what r reserved.
func (w *Writer) unreserve(r *publishRequest) {
	w.buffered.Add(-int64(len(r.rows)))
	w.bytes.Add(-r.bytes)
}

// reserveAtomic adds n to v unless that would pass capacity.
func reserveAtomic(v *atomic.Int64, n, capacity int64) bool {
	for {
		cur := v.Load()
		if cur+n > capacity {
			return false
		}
		if v.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// rowBytesOf is what rows count for in BufferBytes: their payloads plus a
// fixed cost per row for its id, topic and bookkeeping.
func rowBytesOf(rows []row) int64 {
	var n int64
	for _, r := range rows {
		n += int64(len(r.payload) + writerRowBytes)
	}
	return n
}

// writerRowBytes approximates a buffered row's memory beyond its payload.
const writerRowBytes = 96

// Utilization is the share of the buffer held by publishes not yet
// committed, 0 to 1: the larger of the message and byte ratios, so a buffer
// filled by a few large messages reads as full (the autoscaling signal).
func (w *Writer) Utilization() float64 {
	return max(float64(w.buffered.Load())/float64(w.cfg.BufferSize),
		float64(w.bytes.Load())/float64(w.cfg.BufferBytes))
}

// Check reports whether PostgreSQL answers.
func (w *Writer) Check(ctx context.Context) error {
	if err := w.pool.Ping(ctx); err != nil {
		return &ports.NotReadyError{Reason: "database unreachable", Err: fmt.Errorf("writer check: %w", translate(err))}
	}
	return nil
}

// Close stops accepting publishes (they fail with ports.ErrClosed), commits
// what is buffered, and waits for every goroutine. When ctx ends first, the
// flushes in flight are cancelled (their publishers get ports.ErrUnavailable)
// and Close still waits for the goroutines before returning ctx's error.
func (w *Writer) Close(ctx context.Context) error {
	w.closed.Store(true)
	if !w.life.BeginStop() { // never started: nothing runs
		return nil
	}
	if err := w.life.Wait(ctx); err != nil {
		return fmt.Errorf("close writer: %w", err)
	}
	return nil
}

// run owns the pending requests: it gathers them into batches and hands each
// to an idle flusher. It returns after everything it accepted is handed over.
func (w *Writer) run() {
	defer close(w.batches)
	var (
		pending     []*publishRequest // owned by run, in arrival order
		pendingMsgs int               // owned by run
		due         bool              // the oldest pending request has waited FlushInterval
		timer       = time.NewTimer(time.Hour)
		timerC      <-chan time.Time
		requests    = w.requests
		quit        = w.quit
	)
	timer.Stop()
	defer timer.Stop()
	add := func(r *publishRequest) {
		if len(pending) == 0 && w.cfg.FlushInterval > 0 {
			due = false
			timer.Reset(w.cfg.FlushInterval)
			timerC = timer.C
		}
		pending = append(pending, r)
		pendingMsgs += len(r.rows)
		w.gathered.Store(int64(pendingMsgs))
	}
	for {
		// Take what is already waiting before deciding to flush, so a batch
		// holds everything that arrived while the flushers were busy.
	gather:
		for requests != nil && pendingMsgs < w.cfg.MaxBatch {
			select {
			case r := <-requests:
				add(r)
			default:
				break gather
			}
		}
		if requests == nil && len(pending) == 0 {
			return
		}
		var (
			out  chan<- []*publishRequest // nil (disabled) until a batch is ready
			next []*publishRequest
		)
		if len(pending) > 0 && (requests == nil || due || w.cfg.FlushInterval == 0 || pendingMsgs >= w.cfg.MaxBatch) {
			n, msgs := 1, len(pending[0].rows)
			for n < len(pending) && msgs+len(pending[n].rows) <= w.cfg.MaxBatch {
				msgs += len(pending[n].rows)
				n++
			}
			next, out = pending[:n:n], w.batches
		}
		select {
		case r := <-requests:
			add(r)
		case out <- next:
			for _, r := range next {
				pendingMsgs -= len(r.rows)
			}
			w.gathered.Store(int64(pendingMsgs))
			pending = pending[len(next):]
			if len(pending) == 0 {
				pending = nil
				timer.Stop()
				timerC, due = nil, false
			}
		case <-timerC:
			timerC, due = nil, true
		case <-quit:
			requests, quit = nil, nil
		}
	}
}

// flusher writes the batches run hands it, one at a time.
func (w *Writer) flusher() {
	for batch := range w.batches {
		w.flush(batch)
	}
}

// flush writes one batch and answers its publishers. When PostgreSQL refuses
// a value (a payload jsonb rejects despite validation), the batch is retried
// one publish at a time so only the offending publish fails.
func (w *Writer) flush(batch []*publishRequest) {
	err := w.write(batch)
	if err != nil && len(batch) > 1 && errors.Is(translate(err), ports.ErrInvalidArgument) {
		for _, r := range batch {
			if err := w.write([]*publishRequest{r}); err != nil {
				w.fail([]*publishRequest{r}, err)
			}
		}
		return
	}
	if err != nil {
		w.fail(batch, err)
	}
}

// write runs one flush statement and, when it commits, answers the batch.
func (w *Writer) write(batch []*publishRequest) error {
	var rows []row
	if len(batch) == 1 {
		rows = batch[0].rows
	} else {
		n := 0
		for _, r := range batch {
			n += len(r.rows)
		}
		rows = make([]row, 0, n)
		for _, r := range batch {
			rows = append(rows, r.rows...)
		}
	}
	w.flushes.Add(1)
	failpointBeforeCommit()
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.FlushTimeout)
	start := time.Now()
	inserted, err := w.insert(ctx, w.pool, rows)
	cancel()
	w.metrics.flushTime.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	w.metrics.flushSize.Observe(float64(len(rows)))
	failpointAfterCommit()
	// The first occurrence of an id in batch order is the one inserted;
	// later ones, and ids already queued, are duplicates.
	var accepted, duplicates int
	results := make([]ports.PublishResult, len(batch))
	for i, r := range batch {
		res := &results[i]
		for _, m := range r.rows {
			k := msgKey{m.topic, m.id}
			if _, ok := inserted[k]; ok {
				delete(inserted, k)
				res.Accepted++
			} else {
				res.Duplicates++
			}
		}
		accepted += res.Accepted
		duplicates += res.Duplicates
	}
	// Counted before anyone is answered: a publisher that reads the
	// metrics after its answer sees its messages in them.
	w.metrics.published.Add(float64(accepted))
	w.metrics.duplicates.Add(float64(duplicates))
	for i, r := range batch {
		w.unreserve(r)
		r.reply <- publishReply{result: results[i]}
	}
	return nil
}

// fail answers every publisher of batch with err and frees their room.
// Nothing of the batch is committed. It is logged (at most once per
// ratelog.Interval: a database that is down fails every flush) and counted
// before anyone is answered.
func (w *Writer) fail(batch []*publishRequest, err error) {
	err = translate(err)
	n := 0
	for _, r := range batch {
		n += len(r.rows)
	}
	reason := reasonUnavailable
	if errors.Is(err, ports.ErrInvalidArgument) {
		reason = reasonInvalid
	}
	w.metrics.rejected.WithLabelValues(reason).Add(float64(len(batch)))
	w.failLog.Warn(w.logger, time.Now(), "flush failed", "publishes", len(batch), "messages", n, "err", err)
	for _, r := range batch {
		w.unreserve(r)
		r.reply <- publishReply{err: fmt.Errorf("flush %d messages: %w", len(r.rows), err)}
	}
}

// insertUnnest writes rows with insertSQL: one statement, one round trip.
func insertUnnest(ctx context.Context, pool *pgxpool.Pool, rows []row) (map[msgKey]struct{}, error) {
	topics := make([]string, len(rows))
	// pgtype.UUID, not uuid.UUID: pgx encodes a uuid.UUID through its
	// driver.Valuer (to a string, a failed binary encode, a re-parse: about
	// 5µs per id, a seventh of the writer's CPU in make bench's profile).
	ids := make([]pgtype.UUID, len(rows))
	payloads := make([][]byte, len(rows))
	parts := make([]int16, len(rows))
	for i, r := range rows {
		topics[i], ids[i], payloads[i], parts[i] = r.topic, pgtype.UUID{Bytes: r.id, Valid: true}, r.payload, r.partition
	}
	res, err := pool.Query(ctx, insertSQL, topics, ids, payloads, parts)
	if err != nil {
		return nil, err
	}
	return collectInserted(res, len(rows))
}

// insertCopy writes rows by COPY into a per-connection staging table and one
// INSERT … SELECT, in one transaction (several round trips). Kept only for
// BenchmarkInsertMethod.
func insertCopy(ctx context.Context, pool *pgxpool.Pool, rows []row) (map[msgKey]struct{}, error) {
	var inserted map[msgKey]struct{}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, createStagingSQL); err != nil {
			return err
		}
		src := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{int32(i), r.topic, r.id, r.payload, r.partition}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"queue_staging"},
			[]string{"ord", "topic", "msg_uuid", "payload", "partition_key"}, src); err != nil {
			return err
		}
		res, err := tx.Query(ctx, copyInsertSQL)
		if err != nil {
			return err
		}
		inserted, err = collectInserted(res, len(rows))
		return err
	})
	return inserted, err
}

func collectInserted(res pgx.Rows, n int) (map[msgKey]struct{}, error) {
	defer res.Close()
	inserted := make(map[msgKey]struct{}, n)
	var k msgKey
	for res.Next() {
		if err := res.Scan(&k.topic, &k.id); err != nil {
			return nil, err
		}
		inserted[k] = struct{}{}
	}
	return inserted, res.Err()
}
