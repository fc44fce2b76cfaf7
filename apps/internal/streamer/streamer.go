// Package streamer is the streamer app's loop: it reads telemetry points from
// a source and publishes each as one message to the queue.
//
// Pipelined (Config.Window > 0, the default over the streaming transport):
// one goroutine reads a point only when the in-flight window has room, so
// the source stamps it at the moment it is sent, and publishes it at once
// on its own goroutine: it never waits for one message's acknowledgement
// before sending the next, within the window. A full window slows the
// reading (backpressure), nothing queues in between.
//
// Batched (Window 0, STREAMER_TRANSPORT=request): one goroutine reads
// (stamping each point with the time it is read) and feeds a bounded
// channel; a pool of senders publishes, so reading never waits on the
// network. A sender publishes what is already waiting in the channel
// together, up to Batch messages per request.
//
// Every emission carries an idempotency key (this run's id and a sequence
// number), so a retried publish never duplicates and a restarted streamer
// never collides with its earlier run.
package streamer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx"
	"github.com/gpufleet/telemetry/internal/ratelog"
	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

// Config tunes the loop.
type Config struct {
	Topic string
	// Interval is the pause between emissions; 0 streams as fast as the
	// queue accepts.
	Interval time.Duration
	// Rate, when above 0, holds the stream to that many messages per second
	// on average (sub-millisecond gaps, sent in small bursts when timers are
	// coarser than the gap); with Interval too, the slower of the two wins.
	Rate int
	// ScrapeInterval paces a replay like an exporter scraped every
	// interval: a pass over the source (every GPU and metric once) starts at
	// most once per ScrapeInterval, so each GPU's samples come once per
	// interval. 0 replays at full speed (make bench). It does not apply to a
	// live source (one with its own schedule, selfScheduled: the scraper),
	// whose points already come once per scrape, stamped when scraped.
	ScrapeInterval time.Duration
	// Window, when above 0, pipelines the stream: at most Window messages
	// published and not yet acknowledged, each on its own, and a point is
	// read from the source only when the window has room (so it is stamped
	// when it is sent). Senders, Batch and QueueSize then do not apply.
	Window int
	// Senders is the number of concurrent publishers.
	Senders int
	// Batch caps the messages of one publish: a sender takes the emissions
	// already queued, never waiting for more. 0 or 1 publishes each alone.
	Batch int
	// QueueSize bounds the channel between the reader and the senders.
	QueueSize int
	// MaxRows stops after that many emissions (0: stream forever).
	MaxRows int
	// RetryFor is how long a sender keeps retrying one message through a
	// queue outage or backpressure before dropping it (counted and logged).
	RetryFor time.Duration
}

type metrics struct {
	read, published, duplicates, dropped prometheus.Counter
	retried                              *prometheus.CounterVec // by reason: retryReasons
	publishSeconds                       prometheus.Histogram
}

// retryReasons are the reason labels of streamer_publish_retries_total.
var retryReasons = []string{"backpressure", "unavailable", "other"}

// retryReason is the reason label of a publish error.
func retryReason(err error) string {
	switch {
	case errors.Is(err, ports.ErrBackpressure):
		return "backpressure"
	case errors.Is(err, ports.ErrUnavailable):
		return "unavailable"
	default:
		return "other"
	}
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		read:       promx.Counter("streamer_rows_read_total", "Rows taken from the source."),
		published:  promx.Counter("streamer_messages_published_total", "Messages the queue acknowledged."),
		duplicates: promx.Counter("streamer_messages_duplicate_total", "Publishes the queue reported as duplicates (a retry of an already stored message)."),
		retried:    promx.CounterVec("streamer_publish_retries_total", "Publish attempts retried, by reason (backpressure, unavailable, other).", "reason"),
		dropped:    promx.Counter("streamer_messages_dropped_total", "Messages given up on after RetryFor or rejected as invalid."),
		// 0.5 ms to ~30 s: make bench reads its quantiles.
		publishSeconds: promx.Histogram("streamer_publish_duration_seconds",
			"Time from reading a message (pipelined: sending it) to its acknowledgement, retries included.",
			prometheus.ExponentialBuckets(0.0005, 1.5, 28)),
	}
	promx.Zero(m.retried, retryReasons...) // exported at zero, so rate() sees the first retry
	if reg != nil {
		reg.MustRegister(m.read, m.published, m.duplicates, m.retried, m.dropped, m.publishSeconds)
	}
	return m
}

// Streamer runs the loop.
type Streamer struct {
	src   ports.Source
	pub   ports.Publisher
	cfg   Config
	log   *slog.Logger
	m     *metrics
	runID string
	loop  *startstop.Loop // set by Start, stopped by Stop (fx runs them in order)

	// A queue that is down fails every message in flight, each retried
	// and, after RetryFor, dropped: these keep that to a line per
	// ratelog.Interval each; the metrics count every one.
	retryLog, dropLog *ratelog.Limiter
}

// selfScheduled is a live source that keeps its own schedule: the scraper
// scrapes every target once per Interval and hands out each round stamped
// with its scrape time. Pacing it again as a replay would hold every round
// behind the last until ScrapeInterval passed (the scraper then skips the
// rounds it could not hand out) and restamp its points with the time they
// left.
type selfScheduled interface{ Interval() time.Duration }

// New returns a streamer; Start runs it.
func New(src ports.Source, pub ports.Publisher, cfg Config, logger *slog.Logger, reg prometheus.Registerer) *Streamer {
	logger = cmp.Or(logger, slog.Default())
	if live, ok := src.(selfScheduled); ok && cfg.ScrapeInterval > 0 {
		logger.Info("scrape_interval applies to a replay only: this source keeps its own schedule",
			"scrape_interval", cfg.ScrapeInterval.String(), "source_interval", live.Interval().String())
		cfg.ScrapeInterval = 0
	}
	cfg.Topic = cmp.Or(cfg.Topic, domain.TelemetryTopic)
	cfg.Senders, cfg.QueueSize, cfg.Batch = max(cfg.Senders, 1), max(cfg.QueueSize, 1), max(cfg.Batch, 1)
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = time.Minute
	}
	return &Streamer{src: src, pub: pub, cfg: cfg, log: logger, m: newMetrics(reg), runID: uuid.NewString(),
		retryLog: ratelog.New(ratelog.Interval), dropLog: ratelog.New(ratelog.Interval)}
}

// RunID identifies this run in every idempotency key.
func (s *Streamer) RunID() string { return s.runID }

// Start runs the loop in the background until Stop or MaxRows.
func (s *Streamer) Start() {
	s.loop = startstop.Go(func(ctx context.Context) {
		if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("streamer stopped", "err", err)
		}
	})
}

// Stop cancels the loop and waits for it (bounded by ctx).
func (s *Streamer) Stop(ctx context.Context) error {
	if err := s.loop.Stop(ctx); err != nil {
		return fmt.Errorf("streamer: %w", err)
	}
	return nil
}

// Done is closed when a started loop has returned (nil before Start).
func (s *Streamer) Done() <-chan struct{} { return s.loop.Done() }

type emission struct {
	msg   ports.OutgoingMessage
	taken time.Time
}

// Run streams until ctx ends, the source ends, or MaxRows are emitted, then
// waits for the messages in flight.
func (s *Streamer) Run(ctx context.Context) error {
	if s.cfg.Window > 0 {
		return s.runPipelined(ctx)
	}
	s.log.Info("streaming", "run_id", s.runID, "topic", s.cfg.Topic, "senders", s.cfg.Senders, "batch", s.cfg.Batch,
		"interval", s.cfg.Interval.String(), "scrape_interval", s.cfg.ScrapeInterval.String())
	work := make(chan emission, s.cfg.QueueSize) // bounded: the reader blocks only when every sender is busy
	var wg sync.WaitGroup
	for range s.cfg.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]emission, 0, s.cfg.Batch) // owned by this sender
			for e := range work {
				batch = append(batch[:0], e)
				batch = takeQueued(work, batch, s.cfg.Batch)
				s.sendBatch(ctx, batch)
			}
		}()
	}
	err := s.read(ctx, nil, func(e emission) error {
		select {
		case work <- e:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(work)
	wg.Wait()
	s.log.Info("streaming stopped", "run_id", s.runID, "err", err)
	return err
}

// runPipelined is Run with a window: a token per message in flight, taken
// before its point is read and given back when it is acknowledged (or
// dropped).
func (s *Streamer) runPipelined(ctx context.Context) error {
	s.log.Info("streaming", "run_id", s.runID, "topic", s.cfg.Topic, "window", s.cfg.Window,
		"interval", s.cfg.Interval.String(), "scrape_interval", s.cfg.ScrapeInterval.String())
	window := make(chan struct{}, s.cfg.Window) // a counting semaphore: its capacity is the window
	var wg sync.WaitGroup
	room := func(ctx context.Context) error {
		select {
		case window <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	err := s.read(ctx, room, func(e emission) error {
		wg.Go(func() {
			defer func() { <-window }()
			s.send(ctx, e)
		})
		return nil
	})
	wg.Wait()
	s.log.Info("streaming stopped", "run_id", s.runID, "err", err)
	return err
}

// read takes points from the source and hands each to emit. room, when set,
// is awaited before each point is read.
func (s *Streamer) read(ctx context.Context, room func(context.Context) error, emit func(emission) error) error {
	var tick <-chan time.Time
	if s.cfg.Interval > 0 {
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	pace := newScrapePacer(s.cfg.ScrapeInterval)
	rate := newRatePacer(s.cfg.Rate)
	for seq := 1; s.cfg.MaxRows == 0 || seq <= s.cfg.MaxRows; seq++ {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := rate.wait(ctx); err != nil {
			return err
		}
		if room != nil {
			if err := room(ctx); err != nil {
				return err
			}
		}
		p, err := s.src.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read source: %w", err)
		}
		waited, err := pace.wait(ctx, p)
		if err != nil {
			return err
		}
		if waited {
			p.Timestamp = time.Now().UTC() // stamped when it is emitted, not before the pause
		}
		payload, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("encode point: %w", err)
		}
		s.m.read.Inc()
		e := emission{msg: ports.OutgoingMessage{Payload: payload, Key: p.GPUUUID, IdempotencyKey: s.runID + "/" + strconv.Itoa(seq)}, taken: time.Now()}
		if err := emit(e); err != nil {
			return err
		}
	}
	return nil
}

// scrapePacer holds a new pass over the source until the previous one
// started an interval ago. A pass ends when a (GPU, metric) pair repeats.
// Owned by the reader goroutine.
type scrapePacer struct {
	interval time.Duration
	seen     map[[2]string]struct{}
	start    time.Time
}

func newScrapePacer(interval time.Duration) *scrapePacer {
	return &scrapePacer{interval: interval, seen: map[[2]string]struct{}{}}
}

// wait returns once p may be emitted, and whether it had to wait.
func (sp *scrapePacer) wait(ctx context.Context, p domain.Point) (bool, error) {
	if sp.interval <= 0 {
		return false, nil
	}
	key := [2]string{p.GPUUUID, p.MetricName}
	if _, again := sp.seen[key]; !again {
		if len(sp.seen) == 0 {
			sp.start = time.Now()
		}
		sp.seen[key] = struct{}{}
		return false, nil
	}
	clear(sp.seen)
	sp.seen[key] = struct{}{}
	due := sp.start.Add(sp.interval)
	sp.start = due
	d := time.Until(due)
	if d <= 0 {
		sp.start = time.Now() // a pass slower than the interval: start the next one now
		return false, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// takeQueued appends to batch the emissions already waiting in work, up to
// limit in all, without waiting for more.
func takeQueued(work <-chan emission, batch []emission, limit int) []emission {
	for len(batch) < limit {
		select {
		case e, ok := <-work:
			if !ok {
				return batch
			}
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// sendBatch publishes batch in one request. When the queue refuses it as
// invalid, each message is sent alone, so only the offending one is dropped.
func (s *Streamer) sendBatch(ctx context.Context, batch []emission) {
	if len(batch) == 1 {
		s.send(ctx, batch[0])
		return
	}
	if err := s.publish(ctx, batch); errors.Is(err, ports.ErrInvalidArgument) && ctx.Err() == nil {
		for _, e := range batch {
			s.send(ctx, e)
		}
	}
}

// send publishes one message, retrying through backpressure and outages for
// up to RetryFor (see publish). The idempotency key makes every retry safe.
func (s *Streamer) send(ctx context.Context, e emission) {
	_ = s.publish(ctx, []emission{e})
}

// publish sends batch in one request, retrying with the module's retry
// policy (internal/retry) until RetryFor has passed: it never drops a
// message sooner. This is the one retry loop of the path: a queue client
// that retries by itself is built to make one attempt here (mqhttp's
// PublishOnce). It returns the error that ended the attempts for an invalid
// batch (the caller may split it), nil otherwise; drops are counted here,
// except those of an invalid batch of several messages, which the caller
// resends one by one.
func (s *Streamer) publish(ctx context.Context, batch []emission) error {
	msgs := make([]ports.OutgoingMessage, len(batch))
	for i, e := range batch {
		msgs[i] = e.msg
	}
	policy := retry.Policy{Initial: 50 * time.Millisecond, Max: 2 * time.Second, MaxElapsed: s.cfg.RetryFor,
		Notify: func(err error, wait time.Duration) {
			s.m.retried.WithLabelValues(retryReason(err)).Inc()
			if errors.Is(err, ports.ErrBackpressure) {
				// The queue's flow control at work, not a fault.
				s.log.Debug("publish retry", "idempotency_key", batch[0].msg.IdempotencyKey, "messages", len(batch), "err", err, "backoff", wait.String())
				return
			}
			s.retryLog.Warn(s.log, time.Now(), "publish failed; retrying", "err", err, "retry_for", s.cfg.RetryFor.String())
		}}
	res, err := retry.Do(ctx, policy, func() (ports.PublishResult, error) {
		res, err := s.pub.Publish(ctx, s.cfg.Topic, msgs)
		if errors.Is(err, ports.ErrInvalidArgument) {
			return res, retry.Permanent(err) // the same batch fails again
		}
		return res, err
	})
	switch {
	case err == nil:
		s.m.published.Add(float64(res.Accepted))
		s.m.duplicates.Add(float64(res.Duplicates))
		for _, e := range batch {
			s.m.publishSeconds.Observe(time.Since(e.taken).Seconds())
		}
		return nil
	case ctx.Err() != nil:
		return nil // stopping: the message was never acknowledged, so nothing is lost that was promised
	case errors.Is(err, ports.ErrInvalidArgument) && len(batch) > 1:
		return err
	default:
		s.m.dropped.Add(float64(len(batch)))
		s.dropLog.Warn(s.log, time.Now(), "message dropped", "idempotency_key", batch[0].msg.IdempotencyKey, "messages", len(batch), "err", err)
		return nil
	}
}
