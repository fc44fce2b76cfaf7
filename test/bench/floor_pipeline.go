package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// The floor proper: the pipeline's own adapters, wired in this process
// (pgqueue.Writer → queue_messages → pgqueue.Reader → postgres store), so
// every statement the pipeline runs per message runs here, taken from the
// adapters themselves, at ideal batching: each publish is a full
// WRITER_MAX_BATCH (-floor-batch, one INSERT), each lease asks for
// LEASE_MAX (-floor-lease), refills and deletes are the reader's defaults,
// the store's registry upkeep its defaults. What it leaves out is only what
// is not PostgreSQL's: HTTP, the streamer's CSV reading, process
// boundaries.
const (
	// floorWindow bounds the messages published and not yet acked: what
	// the pipeline holds in flight at its defaults, the writer's buffer
	// (WRITER_BUFFER_SIZE) plus the reader's (READER_BUFFER_SIZE), so the
	// floor is bound by throughput, not by latency (a window of a few
	// publishes made it a third of this under load), while the queue does
	// not grow for as long as the run lasts.
	floorWindow = 20_000
	// floorIdlePause is a consumer's pause after an empty lease (the
	// collector's is POLL_INTERVAL_MS, 100 ms: the floor is ideal).
	floorIdlePause = 2 * time.Millisecond
	// floorLeaseDuration is each lease's duration (LEASE_SECONDS' default).
	floorLeaseDuration = 30 * time.Second
)

// pipelineLoad runs workers publishers and workers consumers.
type pipelineLoad struct {
	pool   *pgxpool.Pool
	src    *batchSource
	cfg    floorConfig
	writer *pgqueue.Writer
	reader *pgqueue.Reader
	store  *postgres.TelemetryStore

	credits   chan struct{} // one per publish that may be in flight; publishers take, consumers give back
	published atomic.Int64  // messages the writer accepted
	acked     atomic.Int64  // messages stored and acked
	stored    atomic.Int64  // samples the store inserted
	granted   atomic.Int64  // credits given back
}

// floorCounts are the pipeline floor's books at the end: every message the
// writer accepted is stored once, or still queued.
type floorCounts struct {
	Published int64  `json:"published"`
	Acked     int64  `json:"acked"`
	Inserted  int64  `json:"inserted"`
	Stored    int64  `json:"stored_rows"`
	Queued    int64  `json:"queued_rows"`
	OK        bool   `json:"ok"`
	Problem   string `json:"problem,omitempty"`
}

func newPipelineLoad(pool *pgxpool.Pool, src *batchSource, cfg floorConfig) (*pipelineLoad, error) {
	all := domain.PartitionRange{First: 0, Last: domain.NumPartitions - 1}
	// The buffer holds every publish in flight (one per publisher).
	wcfg := pgqueue.WriterConfig{MaxBatch: cfg.batch, BufferSize: max(pgqueue.DefaultWriterConfig().BufferSize, cfg.workers*cfg.batch)}
	w, err := pgqueue.NewWriter(pool, wcfg, quietLogger, nil)
	if err != nil {
		return nil, fmt.Errorf("floor writer: %w", err)
	}
	r, err := pgqueue.NewReader(pool, pgqueue.ReaderConfig{Range: &all}, quietLogger, nil)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("floor reader: %w", err), w.Close(context.Background()))
	}
	l := &pipelineLoad{pool: pool, src: src, cfg: cfg, writer: w, reader: r,
		store:   postgres.NewTelemetryStore(pool, quietLogger),
		credits: make(chan struct{}, max(cfg.workers, floorWindow/cfg.batch))}
	for range cap(l.credits) {
		l.credits <- struct{}{}
	}
	return l, nil
}

func (l *pipelineLoad) start(ctx context.Context, g *errgroup.Group, stop <-chan struct{}, done func(int)) error {
	if err := errors.Join(l.writer.Start(ctx), l.reader.Start(ctx)); err != nil {
		return fmt.Errorf("start floor queue: %w", err)
	}
	for i := range l.cfg.workers {
		g.Go(func() error { return l.publish(ctx, stop) })
		g.Go(func() error { return l.consume(ctx, stop, fmt.Sprintf("floor-%d", i+1), done) })
	}
	return nil
}

// publish publishes full batches while the window allows.
func (l *pipelineLoad) publish(ctx context.Context, stop <-chan struct{}) error {
	for {
		select {
		case <-l.credits:
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		}
		b, err := l.src.batch(l.cfg.batch)
		if err != nil {
			return err
		}
		res, err := l.writer.Publish(ctx, domain.TelemetryTopic, b.messages())
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if res.Accepted != l.cfg.batch {
			return fmt.Errorf("publish of %d: %d accepted, %d duplicates", l.cfg.batch, res.Accepted, res.Duplicates)
		}
		l.published.Add(int64(res.Accepted))
	}
}

// consume is a collector worker: lease, decode, store, ack.
func (l *pipelineLoad) consume(ctx context.Context, stop <-chan struct{}, consumer string, done func(int)) error {
	for !closed(stop) {
		lease, err := l.reader.Lease(ctx, ports.LeaseRequest{Topic: domain.TelemetryTopic, ConsumerID: consumer,
			Max: l.cfg.lease, LeaseDuration: floorLeaseDuration})
		if err != nil {
			return fmt.Errorf("lease: %w", err)
		}
		if len(lease.Messages) == 0 {
			select {
			case <-time.After(floorIdlePause):
			case <-stop:
			case <-ctx.Done():
			}
			continue
		}
		records := make([]domain.Record, len(lease.Messages))
		for i, m := range lease.Messages {
			if err := json.Unmarshal(m.Payload, &records[i].Point); err != nil {
				return fmt.Errorf("decode message %s: %w", m.ID, err)
			}
			if err := records[i].Point.Validate(); err != nil {
				return fmt.Errorf("message %s: %w", m.ID, err)
			}
			records[i].MsgUUID = m.ID
		}
		// The batch finishes even when the window ends (as a stopping
		// collector's does).
		bctx := context.WithoutCancel(ctx)
		res, err := l.store.WriteBatch(bctx, records)
		if err != nil {
			return fmt.Errorf("write batch: %w", err)
		}
		l.stored.Add(int64(res.Inserted))
		if err := l.reader.Ack(bctx, ports.LeaseRef{Topic: lease.Topic, ConsumerID: consumer, LeaseID: lease.ID}); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		done(len(lease.Messages))
		l.giveBack(len(lease.Messages))
	}
	return nil
}

// giveBack returns a credit per batch's worth of acked messages.
func (l *pipelineLoad) giveBack(n int) {
	due := l.acked.Add(int64(n)) / int64(l.cfg.batch)
	for {
		g := l.granted.Load()
		if g >= due {
			return
		}
		if l.granted.CompareAndSwap(g, g+1) {
			// Never blocks: a credit comes back only after its publish
			// took it, so the channel has room.
			l.credits <- struct{}{}
		}
	}
}

// finish stops the reader and the writer and checks the books: the samples
// table holds exactly the messages acked, the queue exactly the ones
// published and not acked.
func (l *pipelineLoad) finish(ctx context.Context) (*floorCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := errors.Join(l.reader.Close(ctx), l.writer.Close(ctx)); err != nil {
		return nil, fmt.Errorf("stop floor queue: %w", err)
	}
	c := &floorCounts{Published: l.published.Load(), Acked: l.acked.Load(), Inserted: l.stored.Load()}
	if err := l.pool.QueryRow(ctx, sqlCountTelemetry).Scan(&c.Stored); err != nil {
		return c, fmt.Errorf("count samples: %w", err)
	}
	if err := l.pool.QueryRow(ctx, sqlCountQueue).Scan(&c.Queued); err != nil {
		return c, fmt.Errorf("count queue: %w", err)
	}
	switch {
	case c.Stored != c.Acked || c.Inserted != c.Acked:
		c.Problem = fmt.Sprintf("%d messages acked, %d samples inserted, %d rows stored", c.Acked, c.Inserted, c.Stored)
	case c.Queued != c.Published-c.Acked:
		c.Problem = fmt.Sprintf("%d published − %d acked, but %d rows queued", c.Published, c.Acked, c.Queued)
	}
	c.OK = c.Problem == ""
	if !c.OK {
		return c, fmt.Errorf("floor counts: %s", c.Problem)
	}
	return c, nil
}
