package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Counters read for the books of a run (besides metricPublished and
// metricPersisted).
const (
	metricWriterAccepted   = "mqwriter_messages_published_total"
	metricWriterDuplicates = "mqwriter_messages_duplicate_total"
	metricRedelivered      = "mqreader_messages_redelivered_total"
	metricCollectorDups    = "collector_records_duplicate_total"
	metricExpired          = "collector_records_expired_total"
	metricDeadLettered     = "collector_messages_dead_lettered_total"
	// Statement counts, for the batching figures.
	metricFlushRows    = "mqwriter_flush_batch_messages_sum"
	metricFlushes      = "mqwriter_flush_batch_messages_count"
	metricReaderLeased = "mqreader_messages_leased_total"
	metricReaderAcked  = "mqreader_messages_acked_total"
	metricRefills      = "mqreader_refill_duration_seconds_count"
	metricDeletes      = "mqreader_delete_duration_seconds_count"
	metricLeaseCalls   = "mqreader_lease_duration_seconds_count"
	metricBatches      = "collector_batch_duration_seconds_count"
)

// batching is how many messages each of the queue's and the store's
// statements carried on average over a whole run (warm-up and drain
// included): the evidence that refills and deletes are batched as large as
// the load allows.
type batching struct {
	PerInsert     float64 `json:"messages_per_queue_insert"`
	PerRefill     float64 `json:"messages_per_refill"` // leased / refills (empty refills included)
	PerDelete     float64 `json:"messages_per_delete"`
	PerLeaseCall  float64 `json:"messages_per_lease_call"` // empty leases included
	PerWriteBatch float64 `json:"messages_per_store_write"`
}

// per is a / b, 0 when b is.
func per(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// drainTimeout bounds how long a run's drain waits for the queue to empty.
const drainTimeout = 2 * time.Minute

// drainPoll is how often the drain looks at the queue and the collectors.
const drainPoll = 250 * time.Millisecond

// countCheck is a pipeline run's books after its drain: every message the
// queue accepted is stored exactly once. A message counts as handled when
// a collector inserted its sample, found it already stored (a redelivery,
// or two messages with one natural key: same series, same microsecond),
// dropped it as past the retention, or dead-lettered it.
type countCheck struct {
	// Accepted is the messages the queue accepted as new: mqwriter's
	// counter (postgres), or the streamers' acknowledged count read just
	// before they stopped (nats: a lower bound, AcceptedExact false).
	Accepted       int64  `json:"accepted"`
	AcceptedSource string `json:"accepted_source"`
	AcceptedExact  bool   `json:"accepted_exact"`
	// QueueDuplicates is the publishes the queue answered as duplicates
	// (a resend of a message it already had): not stored again.
	QueueDuplicates int64 `json:"queue_duplicates"`
	// Stored is telemetry_samples' rows; Persisted what the collectors say
	// they inserted: equal, or a collector miscounts.
	Stored           int64 `json:"stored_rows"`
	Persisted        int64 `json:"collector_persisted"`
	SampleDuplicates int64 `json:"collector_duplicates"`
	Expired          int64 `json:"collector_expired"`
	DeadLettered     int64 `json:"collector_dead_lettered"`
	Redelivered      int64 `json:"redelivered"`
	// Batching (postgres) is the run's statement sizes.
	Batching *batching `json:"batching,omitempty"`
	// QueueLeft is queue_messages' rows when the drain ended (-1: not
	// measured, nats).
	QueueLeft    int64   `json:"queue_left"`
	DrainSeconds float64 `json:"drain_seconds"`
	// Lost is accepted messages no collector handled; Duplicated is rows
	// stored beyond the messages accepted.
	Lost       int64  `json:"lost"`
	Duplicated int64  `json:"duplicated"`
	OK         bool   `json:"ok"`
	Problem    string `json:"problem,omitempty"`
}

// judge fills Lost, Duplicated, OK and Problem from the counts.
func (c *countCheck) judge() {
	handled := c.Persisted + c.SampleDuplicates + c.Expired + c.DeadLettered
	c.Lost = max(0, c.Accepted-handled)
	if c.AcceptedExact {
		c.Duplicated = max(0, c.Stored-c.Accepted)
	}
	var problems []string
	if c.QueueLeft > 0 {
		problems = append(problems, fmt.Sprintf("%d messages still queued after %.0fs of drain", c.QueueLeft, c.DrainSeconds))
	}
	if c.Lost > 0 {
		problems = append(problems, fmt.Sprintf("%d accepted messages lost (accepted %d, handled %d)", c.Lost, c.Accepted, handled))
	}
	if c.Duplicated > 0 {
		problems = append(problems, fmt.Sprintf("%d rows stored beyond the %d messages accepted", c.Duplicated, c.Accepted))
	}
	if c.Stored != c.Persisted {
		problems = append(problems, fmt.Sprintf("%d rows stored but the collectors counted %d inserted", c.Stored, c.Persisted))
	}
	if len(problems) > 0 {
		c.Problem = fmt.Sprint(problems)
	}
	c.OK = c.Problem == ""
}

// drain ends a run: it stops the streamers, waits until the queue is empty
// (postgres) or the collectors handled every message the streamers had
// acknowledged and went idle (nats), and reads the books. The queue and
// the collectors still run when it returns.
func (r *running) drain(ctx context.Context) (*countCheck, error) {
	c := &countCheck{QueueLeft: -1}
	postgres := baseBackend(r.cfg.Backend) == backendPostgres
	if !postgres {
		// natsd keeps no counter the harness can read: the streamers'
		// acknowledged count, before they stop, is a lower bound of what
		// JetStream accepted.
		s, err := r.sum(ctx, roleStreamer, metricPublished)
		if err != nil {
			return nil, err
		}
		c.Accepted, c.AcceptedSource = int64(s[metricPublished]), "streamer_messages_published_total before the streamers stopped (a lower bound)"
	}
	r.stopRole(roleStreamer)
	began := time.Now()
	deadline := began.Add(drainTimeout)
	last := int64(-1)
	for {
		done, err := r.drained(ctx, c, &last)
		if err != nil {
			return nil, err
		}
		if done || time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(drainPoll):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return r.books(ctx, c, began, deadline)
}

// books reads the counters and the table once the drain is over.
func (r *running) books(ctx context.Context, c *countCheck, began, deadline time.Time) (*countCheck, error) {
	postgres := baseBackend(r.cfg.Backend) == backendPostgres
	c.DrainSeconds = time.Since(began).Seconds()
	cs, err := r.sum(ctx, roleCollector, metricPersisted, metricCollectorDups, metricExpired, metricDeadLettered, metricBatches)
	if err != nil {
		return nil, err
	}
	c.Persisted, c.SampleDuplicates = int64(cs[metricPersisted]), int64(cs[metricCollectorDups])
	c.Expired, c.DeadLettered = int64(cs[metricExpired]), int64(cs[metricDeadLettered])
	if postgres {
		ws, err := r.sum(ctx, roleWriter, metricWriterAccepted, metricWriterDuplicates, metricFlushRows, metricFlushes)
		if err != nil {
			return nil, err
		}
		rs, err := r.sum(ctx, roleReader, metricRedelivered, metricReaderLeased, metricReaderAcked, metricRefills, metricDeletes, metricLeaseCalls)
		if err != nil {
			return nil, err
		}
		c.Batching = &batching{PerInsert: per(ws[metricFlushRows], ws[metricFlushes]), PerRefill: per(rs[metricReaderLeased], rs[metricRefills]),
			PerDelete: per(rs[metricReaderAcked], rs[metricDeletes]), PerLeaseCall: per(rs[metricReaderLeased], rs[metricLeaseCalls]),
			PerWriteBatch: per(cs[metricPersisted]+cs[metricCollectorDups], cs[metricBatches])}
		c.Accepted, c.QueueDuplicates, c.Redelivered = int64(ws[metricWriterAccepted]), int64(ws[metricWriterDuplicates]), int64(rs[metricRedelivered])
		c.AcceptedSource, c.AcceptedExact = "mqwriter_messages_published_total", true
	}
	if err := r.pgPool.QueryRow(ctx, sqlCountTelemetry).Scan(&c.Stored); err != nil {
		return nil, fmt.Errorf("count samples: %w", err)
	}
	if !postgres && c.Stored != c.Persisted && time.Now().Before(deadline) {
		// nats: a collector's batch beyond the streamers' lower bound
		// committed between the quiet poll and this read, and its count
		// follows the commit: read the books again.
		select {
		case <-time.After(drainPoll):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return r.books(ctx, c, began, deadline)
	}
	c.judge()
	return c, nil
}

// drained reports whether the drain is over: the queue is empty, the
// writer's count stable and the collectors handled all of it (postgres),
// or the collectors handled at least what was accepted,
// handled nothing more since the last poll (*last), and the table holds
// what they counted as inserted.
func (r *running) drained(ctx context.Context, c *countCheck, last *int64) (bool, error) {
	postgres := baseBackend(r.cfg.Backend) == backendPostgres
	if postgres {
		// A stopped streamer's last messages may still be in mqwriter's
		// group commit: an empty table proves nothing until the writer's
		// count (read first: it counts after the commit) is stable and the
		// collectors handled all of it.
		ws, err := r.sum(ctx, roleWriter, metricWriterAccepted)
		if err != nil {
			return false, err
		}
		accepted := int64(ws[metricWriterAccepted])
		if err := r.pgPool.QueryRow(ctx, sqlCountQueue).Scan(&c.QueueLeft); err != nil {
			return false, fmt.Errorf("count queue: %w", err)
		}
		stable := accepted == *last
		*last = accepted
		if c.QueueLeft > 0 || !stable {
			return false, nil
		}
		c.Accepted = accepted
	}
	cs, err := r.sum(ctx, roleCollector, metricPersisted, metricCollectorDups, metricExpired, metricDeadLettered)
	if err != nil {
		return false, err
	}
	handled := int64(cs[metricPersisted] + cs[metricCollectorDups] + cs[metricExpired] + cs[metricDeadLettered])
	if postgres {
		return handled >= c.Accepted, nil
	}
	idle := handled == *last
	*last = handled
	if handled < c.Accepted || !idle {
		return false, nil
	}
	// A batch in flight (stored, not yet counted, or counted, not yet
	// committed) can outlast a quiet poll at fsync always: the books are
	// read only once the table agrees with the collectors' count.
	var stored int64
	if err := r.pgPool.QueryRow(ctx, sqlCountTelemetry).Scan(&stored); err != nil {
		return false, fmt.Errorf("count samples: %w", err)
	}
	return stored == int64(cs[metricPersisted]), nil
}

// sum adds up the wanted counters over the running processes of role.
func (r *running) sum(ctx context.Context, role string, wanted ...string) (metricSums, error) {
	out := metricSums{}
	var errs []error
	for _, p := range r.procs {
		if r.roles[p.Name] != role {
			continue
		}
		m, err := scrape(ctx, p.URL(), wanted...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
			continue
		}
		for k, v := range m {
			out[k] += v
		}
	}
	return out, errors.Join(errs...)
}
