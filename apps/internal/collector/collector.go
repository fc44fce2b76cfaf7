// Package collector is the collector app's loop: lease a batch from the
// queue, decode it, persist it idempotently, and ack only after the whole
// batch is stored. A message that can never be stored (a poison message)
// goes to the dead-letter table with its reason and is acked with the rest,
// so it cannot stall its partition: one that does not decode to a valid
// point (domain's field bounds included), or a record the store refuses for
// its data (ports.ErrInvalidArgument: SQLSTATE 22, 23, 54 and class-42
// value errors, see adapters/internal/pgdb), which is isolated by bisecting
// the batch while the rest of it is stored. Only a failure about the
// database (ports.ErrUnavailable: connection, 08, 40, 53, 57, …) releases
// the lease, with the error as the release reason, and the worker then
// waits for the store to answer its check before leasing again (an outage
// must not spend deliveries); the queue's delivery limit
// (MQ_MAX_DELIVERIES) dead-letters a message that keeps failing so while
// the database answers.
package collector

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx"
	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

// Config tunes the loop.
type Config struct {
	Topic         string
	ConsumerID    string
	LeaseMax      int
	LeaseDuration time.Duration
	// LeaseWait is how long a lease waits for messages when none is ready
	// (a long poll, ports.LeaseRequest.Wait): the queue answers as soon as
	// messages are ready, so an idle collector picks up the next message
	// within a commit, not a poll interval. Zero turns the long poll off:
	// an empty lease answers at once and the worker pauses PollInterval.
	// At most domain.MaxLeaseWait.
	LeaseWait time.Duration
	// PollInterval is the pause after an empty lease when LeaseWait is zero
	// (idle backoff only: a non-empty lease is followed at once by the
	// next), and the base of the backoff after failures. Zero means
	// DefaultPollInterval: an idle collector never spins.
	PollInterval time.Duration
	// Workers is the number of concurrent lease → persist → ack loops.
	Workers int
	// BatchTimeout bounds persisting and acking one batch, also during
	// shutdown (a stopping collector finishes the batch it holds).
	BatchTimeout time.Duration
}

// DefaultPollInterval is Config.PollInterval when it is not set.
const DefaultPollInterval = 100 * time.Millisecond

// DefaultLeaseWait is the long poll the collector app asks for unless
// COLLECTOR_LEASE_WAIT_MS says otherwise: long enough that an idle worker
// asks once a second, short enough that a stopping collector is not held.
const DefaultLeaseWait = time.Second

type metrics struct {
	leased, persisted, duplicates, expired, deadLettered, acked, released, ackRejected, storeWaits prometheus.Counter
	errors                                                                                         *prometheus.CounterVec
	batchSeconds                                                                                   prometheus.Histogram
	sampleAge                                                                                      prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := promx.Counter
	m := &metrics{
		leased:       c("collector_messages_leased_total", "Messages received in leases."),
		persisted:    c("collector_records_persisted_total", "Telemetry rows inserted."),
		duplicates:   c("collector_records_duplicate_total", "Redelivered messages whose row was already stored."),
		expired:      c("collector_records_expired_total", "Samples older than the raw retention, dropped (acked, not stored)."),
		deadLettered: c("collector_messages_dead_lettered_total", "Poison messages written to the dead-letter table."),
		acked:        c("collector_messages_acked_total", "Messages acknowledged (deleted from the queue)."),
		released:     c("collector_leases_released_total", "Leases released after a transient failure."),
		ackRejected:  c("collector_acks_rejected_total", "Acks refused because the lease had expired (the rows are stored; the redelivery will be a duplicate)."),
		storeWaits:   c("collector_store_checks_failed_total", "Store checks that failed while a worker waited for the store before leasing again."),
		errors:       promx.CounterVec("collector_errors_total", "Failures by stage (lease, persist, ack, release).", "stage"),
		batchSeconds: promx.Histogram("collector_batch_duration_seconds", "Time to persist and ack one leased batch.",
			prometheus.ExponentialBuckets(0.001, 2, 14)),
		// 1 ms to ~2 min in steps of 1.5× (make bench reads its quantiles);
		// older samples (a backlog drained after an outage) land in +Inf.
		sampleAge: promx.Histogram("collector_sample_age_seconds",
			"Time from a sample's timestamp (the streamer stamps it when it sends it; a scrape, when it scraped) to its commit, per stored sample: the end-to-end lag.",
			prometheus.ExponentialBuckets(0.001, 1.5, 30)),
	}
	// Every stage exported from the start (at 0), so dashboards and alerts
	// see the series before the first failure.
	promx.Zero(m.errors, "lease", "persist", "ack", "release")
	if reg != nil {
		reg.MustRegister(m.leased, m.persisted, m.duplicates, m.expired, m.deadLettered, m.acked, m.released, m.ackRejected, m.storeWaits, m.errors, m.batchSeconds, m.sampleAge)
	}
	return m
}

// Collector runs the loop.
type Collector struct {
	q     ports.Consumer
	store ports.TelemetryWriter
	cfg   Config
	log   *slog.Logger
	m     *metrics
	loop  *startstop.Loop // set by Start, stopped by Stop (fx runs them in order)
}

// New returns a collector; Start runs it.
func New(q ports.Consumer, store ports.TelemetryWriter, cfg Config, logger *slog.Logger, reg prometheus.Registerer) *Collector {
	logger = cmp.Or(logger, slog.Default())
	cfg.Topic = cmp.Or(cfg.Topic, domain.TelemetryTopic)
	cfg.Workers = max(cfg.Workers, 1)
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 30 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	cfg.LeaseWait = min(max(cfg.LeaseWait, 0), domain.MaxLeaseWait)
	return &Collector{q: q, store: store, cfg: cfg, log: logger, m: newMetrics(reg)}
}

// Start runs the workers in the background until Stop.
func (c *Collector) Start() { c.loop = startstop.Go(c.Run) }

// Stop stops leasing, lets each worker finish the batch it holds, and waits
// (bounded by ctx).
func (c *Collector) Stop(ctx context.Context) error {
	if err := c.loop.Stop(ctx); err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	return nil
}

// Run runs Workers loops until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	c.log.Info("collecting", "consumer_id", c.cfg.ConsumerID, "topic", c.cfg.Topic, "workers", c.cfg.Workers, "lease_max", c.cfg.LeaseMax)
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.work(ctx)
		}()
	}
	wg.Wait()
}

// work is one worker's loop. It is not a retry loop: the queue client has
// already retried the lease (mqhttp), and a failed batch is released for
// redelivery; the growing pause after failures, with the module's backoff
// (internal/retry), only keeps a worker from hammering a backend that is
// down. An empty lease pauses PollInterval, unless the lease waited for
// messages itself (LeaseWait): then the next lease follows at once.
func (c *Collector) work(ctx context.Context) {
	failures := retry.NewBackOff(max(2*c.cfg.PollInterval, 100*time.Millisecond), 5*time.Second)
	for ctx.Err() == nil {
		n, err := c.ProcessOnce(ctx)
		var pause time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("batch failed", "err", err)
			pause = failures.NextBackOff()
		case n == 0 && c.cfg.LeaseWait > 0:
			failures.Reset()
			continue // the lease waited for messages already
		case n == 0:
			failures.Reset()
			pause = c.cfg.PollInterval
		default:
			failures.Reset()
			continue // a non-empty lease: the next one at once
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
		if errors.Is(err, errPersist) && errors.Is(err, ports.ErrUnavailable) {
			c.awaitStore(ctx, failures)
		}
	}
}

// errPersist marks a batch that failed in the store (not in the queue).
var errPersist = errors.New("persist")

// awaitStore holds a worker whose batch failed for a reason about the
// database until the store answers its check again (when it has one,
// ports.Checker: both stores do). Leasing meanwhile would store nothing and
// only spend the messages' deliveries: the queue dead-letters a message
// after MQ_MAX_DELIVERIES of them, and a database outage must not turn good
// telemetry into dead letters. A message that fails while the database
// answers (a statement timeout it causes every time) still reaches the
// limit.
func (c *Collector) awaitStore(ctx context.Context, pauses *backoff.ExponentialBackOff) {
	checker, ok := c.store.(ports.Checker)
	if !ok {
		return
	}
	logged := false
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := checker.Check(cctx)
		cancel()
		if err == nil {
			if logged {
				c.log.Info("store reachable again; leasing")
			}
			return
		}
		if !logged {
			c.log.Warn("store unavailable; not leasing until it answers", "err", err)
			logged = true
		}
		c.m.storeWaits.Inc()
		select {
		case <-time.After(pauses.NextBackOff()):
		case <-ctx.Done():
		}
	}
}

// ProcessOnce leases one batch and handles it; it returns how many messages
// the lease held.
func (c *Collector) ProcessOnce(ctx context.Context) (int, error) {
	lease, err := c.q.Lease(ctx, ports.LeaseRequest{Topic: c.cfg.Topic, ConsumerID: c.cfg.ConsumerID,
		Max: c.cfg.LeaseMax, LeaseDuration: c.cfg.LeaseDuration, Wait: c.cfg.LeaseWait})
	if err != nil {
		c.m.errors.WithLabelValues("lease").Inc()
		return 0, fmt.Errorf("lease: %w", err)
	}
	if len(lease.Messages) == 0 {
		return 0, nil
	}
	start := time.Now()
	c.m.leased.Add(float64(len(lease.Messages)))
	// The batch finishes even when the collector is stopping: acking what was
	// stored avoids needless redelivery.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.BatchTimeout)
	defer cancel()
	if lease.Topic == "" {
		// A backend that does not echo the topic: the ack, the release and
		// the dead letters all need it.
		lease.Topic = c.cfg.Topic
	}
	ref := ports.LeaseRef{Topic: lease.Topic, ConsumerID: c.cfg.ConsumerID, LeaseID: lease.ID}
	if err := c.persist(bctx, lease); err != nil {
		c.m.errors.WithLabelValues("persist").Inc()
		ref.Reason = domain.TruncateReason("collector: " + err.Error())
		c.release(bctx, ref)
		return len(lease.Messages), fmt.Errorf("%w lease %s: %w", errPersist, lease.ID, err)
	}
	if err := c.q.Ack(bctx, ref); err != nil {
		if errors.Is(err, ports.ErrLeaseExpired) {
			c.m.ackRejected.Inc()
			c.log.Warn("ack rejected: lease expired before the batch was stored; it will be redelivered and deduplicated", "lease_id", lease.ID, "messages", len(lease.Messages))
			return len(lease.Messages), nil
		}
		c.m.errors.WithLabelValues("ack").Inc()
		return len(lease.Messages), fmt.Errorf("ack lease %s: %w", lease.ID, err)
	}
	c.m.acked.Add(float64(len(lease.Messages)))
	c.m.batchSeconds.Observe(time.Since(start).Seconds())
	return len(lease.Messages), nil
}

func (c *Collector) release(ctx context.Context, ref ports.LeaseRef) {
	if err := c.q.Release(ctx, ref); err != nil {
		c.m.errors.WithLabelValues("release").Inc()
		c.log.Warn("release failed; the lease will expire instead", "lease_id", ref.LeaseID, "err", err)
		return
	}
	c.m.released.Inc()
}

// persist stores every message of the lease: good ones as telemetry, poison
// ones as dead letters. It returns an error only for a transient failure,
// after which nothing must be acked.
func (c *Collector) persist(ctx context.Context, lease domain.Lease) error {
	records := make([]domain.Record, 0, len(lease.Messages))
	var dead []domain.DeadLetter
	for _, msg := range lease.Messages {
		p, err := Decode(msg.Payload)
		if err != nil {
			dead = append(dead, domain.DeadLetter{MsgUUID: msg.ID, Topic: lease.Topic, Payload: msg.Payload,
				Reason: err.Error(), Deliveries: msg.Deliveries})
			continue
		}
		records = append(records, domain.Record{Point: p, MsgUUID: msg.ID})
	}
	messages := make(map[uuid.UUID]domain.Message, len(lease.Messages))
	for _, m := range lease.Messages {
		messages[m.ID] = m
	}
	res, err := c.writeIsolating(ctx, records, func(r domain.Record, err error) {
		m := messages[r.MsgUUID]
		dead = append(dead, domain.DeadLetter{MsgUUID: r.MsgUUID, Topic: lease.Topic, Payload: m.Payload,
			Reason: "store rejected record: " + err.Error(), Deliveries: m.Deliveries})
	})
	// Count what landed even when a later step fails: the redelivery will
	// find these rows as duplicates, so they would never be counted again.
	c.m.persisted.Add(float64(res.Inserted))
	c.m.duplicates.Add(float64(res.Duplicates))
	c.m.expired.Add(float64(res.Expired))
	if err != nil {
		return err
	}
	committed := time.Now()
	for _, r := range records {
		c.m.sampleAge.Observe(committed.Sub(r.Point.Timestamp).Seconds())
	}
	if len(dead) > 0 {
		err := c.store.WriteDeadLetters(ctx, dead)
		if errors.Is(err, ports.ErrInvalidArgument) {
			// The store cannot hold some payload as text (a NUL byte or
			// invalid UTF-8 from a queue that carries raw bytes): keep an
			// escaped copy rather than stall the partition on it forever.
			err = c.store.WriteDeadLetters(ctx, escapePayloads(dead))
		}
		if err != nil {
			return fmt.Errorf("dead-letter %d messages: %w", len(dead), err)
		}
		for _, d := range dead {
			c.log.Warn("poison message dead-lettered", "msg_uuid", d.MsgUUID, "reason", d.Reason)
		}
		c.m.deadLettered.Add(float64(len(dead)))
	}
	return nil
}

// escapePayloads returns letters whose payloads are valid UTF-8 without NUL
// bytes, quoting (Go syntax) those that are not and saying so in the reason.
func escapePayloads(letters []domain.DeadLetter) []domain.DeadLetter {
	out := make([]domain.DeadLetter, len(letters))
	for i, l := range letters {
		if !utf8.Valid(l.Payload) || bytes.IndexByte(l.Payload, 0) >= 0 {
			l.Payload = []byte(strconv.QuoteToASCII(string(l.Payload)))
			l.Reason += " (payload stored Go-quoted: it is not storable text)"
		}
		out[i] = l
	}
	return out
}

// writeIsolating stores records; when the store refuses the batch for its
// data (ports.ErrInvalidArgument) it bisects it, storing every half it
// accepts, down to the single records it refuses, which it hands to bad. k
// bad records among n cost about 1 + 2·k·log2(n) writes instead of n. Any
// other error stops it: the result counts what was stored before it, and
// the caller releases the lease (the redelivery finds those rows as
// duplicates).
func (c *Collector) writeIsolating(ctx context.Context, records []domain.Record, bad func(domain.Record, error)) (ports.WriteResult, error) {
	if len(records) == 0 {
		return ports.WriteResult{}, nil
	}
	res, err := c.store.WriteBatch(ctx, records)
	if !errors.Is(err, ports.ErrInvalidArgument) {
		return res, err
	}
	if len(records) == 1 {
		bad(records[0], err)
		return ports.WriteResult{}, nil
	}
	mid := len(records) / 2
	left, err := c.writeIsolating(ctx, records[:mid], bad)
	if err != nil {
		return left, err
	}
	right, err := c.writeIsolating(ctx, records[mid:], bad)
	return ports.WriteResult{
		Inserted:   left.Inserted + right.Inserted,
		Duplicates: left.Duplicates + right.Duplicates,
		Expired:    left.Expired + right.Expired,
	}, err
}

// Decode parses a queue payload into a valid point, or says why it never
// will be one.
func Decode(payload []byte) (domain.Point, error) {
	var p domain.Point
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&p); err != nil {
		return domain.Point{}, fmt.Errorf("decode payload: %w", err)
	}
	// dec.More is not enough: it reports false before a stray '}' or ']'.
	if rest := bytes.TrimSpace(payload[dec.InputOffset():]); len(rest) > 0 {
		return domain.Point{}, errors.New("decode payload: trailing data after the JSON object")
	}
	p.Timestamp = p.Timestamp.UTC()
	if err := p.Validate(); err != nil {
		return domain.Point{}, err
	}
	return p, nil
}
