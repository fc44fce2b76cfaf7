package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/domain"
)

// The database floor: per message, the least PostgreSQL work the design
// needs — the queue row committed (mqwriter), the telemetry row committed
// (collector), the queue row deleted (mqreader on ack) — each its own
// transaction as in the pipeline, batched, with no service in between. Two
// ways of batching are measured; the faster one is the floor.
const (
	// floorInsertQueueSQL is pgqueue's group-commit statement, returning
	// the ids the delete needs. ON CONFLICT probes
	// queue_messages_topic_msg_uuid_key.
	floorInsertQueueSQL = `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::jsonb[], $4::smallint[])
ON CONFLICT (topic, msg_uuid) DO NOTHING
RETURNING id`

	// floorDeleteByIDSQL is pgqueue's batched delete on ack: primary key.
	floorDeleteByIDSQL = `DELETE FROM queue_messages WHERE id = ANY($1::bigint[])`

	// floorDeleteByUUIDSQL deletes a COPYed batch, whose ids the harness
	// never saw, through queue_messages_topic_msg_uuid_key.
	floorDeleteByUUIDSQL = `DELETE FROM queue_messages WHERE topic = $1 AND msg_uuid = ANY($2::uuid[])`

	// floorInsertTelemetrySQL is the store's samples insert without the
	// series registration and registry upkeep (series ids are made up: the
	// samples table has no foreign key). ON CONFLICT probes the day
	// partition's primary key (series_id, ts).
	floorInsertTelemetrySQL = `INSERT INTO telemetry_samples (series_id, ts, value)
SELECT * FROM unnest($1::int4[], $2::timestamptz[], $3::float8[])
ON CONFLICT DO NOTHING`

	// floorEnsurePartitionSQL creates today's samples partition if missing
	// (the store does it on demand, the maintenance job ahead of time).
	floorEnsurePartitionSQL = `SELECT telemetry_ensure_partition('telemetry_samples', $1)`
)

// Floor methods.
const (
	floorUnnest = "unnest" // INSERT … SELECT unnest(arrays) ON CONFLICT, DELETE by id
	floorCopy   = "copy"   // COPY (no conflict check), DELETE by (topic, msg_uuid)
)

var (
	queueColumns     = []string{"topic", "msg_uuid", "payload", "partition_key"}
	telemetryColumns = []string{"series_id", "ts", "value"}
)

// floorConfig tunes one floor measurement.
type floorConfig struct {
	method   string
	workers  int // concurrent connections, each running batches back to back
	batch    int // messages per batch
	warmup   time.Duration
	duration time.Duration
}

// floorResult is one floor measurement.
type floorResult struct {
	Method        string  `json:"method"`
	Workers       int     `json:"workers"`
	Batch         int     `json:"batch"`
	Messages      int64   `json:"messages"`
	Seconds       float64 `json:"seconds"`
	MsgsPerSecond float64 `json:"msgs_per_second"`
	PGCPUPer1k    float64 `json:"postgres_cpu_seconds_per_1k,omitempty"`
	// ClientCPUPer1k is the harness's own CPU (building batches, pgx
	// encoding): the floor's share of what the apps do in the pipeline.
	ClientCPUPer1k float64 `json:"client_cpu_seconds_per_1k"`
}

// batchSource hands out batches of the shipped dump's points, each with a
// fresh message UUID and the current time, shaped as the pipeline's
// messages (the streamer's JSON payload, the GPU's partition).
type batchSource struct {
	points   []domain.Point
	payloads [][]byte // the JSON of points[i] minus the timestamp, reused
	next     atomic.Uint64
}

func newBatchSource(points []domain.Point) (*batchSource, error) {
	if len(points) == 0 {
		return nil, errors.New("no points to benchmark with")
	}
	s := &batchSource{points: points, payloads: make([][]byte, len(points))}
	for i, p := range points {
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encode point: %w", err)
		}
		s.payloads[i] = b
	}
	return s, nil
}

// floorBatch is one batch in column form.
type floorBatch struct {
	topics   []string
	ids      []pgtype.UUID // not uuid.UUID: pgx encodes that through a string, about 5µs each
	payloads [][]byte
	parts    []int16
	points   []domain.Point
}

func (s *batchSource) batch(n int) floorBatch {
	first := s.next.Add(uint64(n)) - uint64(n)
	b := floorBatch{topics: make([]string, n), ids: make([]pgtype.UUID, n), payloads: make([][]byte, n),
		parts: make([]int16, n), points: make([]domain.Point, n)}
	now := time.Now().UTC()
	for i := range n {
		k := int((first + uint64(i)) % uint64(len(s.points)))
		p := s.points[k]
		p.Timestamp = now
		b.topics[i], b.ids[i], b.payloads[i] = domain.TelemetryTopic, pgtype.UUID{Bytes: uuid.New(), Valid: true}, s.payloads[k]
		b.parts[i], b.points[i] = int16(domain.PartitionOf(p.GPUUUID)), p
	}
	return b
}

// telemetryArgs are floorInsertTelemetrySQL's arrays (or COPY's rows): a
// made-up series id per (GPU, metric), the batch's instant plus i µs so the
// samples of one batch are distinct.
func (b floorBatch) telemetryArgs() []any {
	n := len(b.points)
	ids, ts, value := make([]int32, n), make([]time.Time, n), make([]*float64, n)
	for i, p := range b.points {
		h := fnv.New32a()
		h.Write([]byte(p.GPUUUID + "/" + p.MetricName))
		ids[i], ts[i], value[i] = int32(h.Sum32()&0x7fffffff), p.Timestamp.Add(time.Duration(i)*time.Microsecond), p.Value
	}
	return []any{ids, ts, value}
}

// process runs one batch through the three steps, each committed on its
// own, with method's statements.
func (b floorBatch) process(ctx context.Context, conn *pgxpool.Conn, method string) error {
	if len(b.points) > 0 {
		if _, err := conn.Exec(ctx, floorEnsurePartitionSQL, b.points[0].Timestamp); err != nil {
			return fmt.Errorf("ensure partition: %w", err)
		}
	}
	switch method {
	case floorUnnest:
		rows, err := conn.Query(ctx, floorInsertQueueSQL, b.topics, b.ids, b.payloads, b.parts)
		if err != nil {
			return fmt.Errorf("insert queue: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("insert queue: %w", err)
		}
		if _, err := conn.Exec(ctx, floorInsertTelemetrySQL, b.telemetryArgs()...); err != nil {
			return fmt.Errorf("insert telemetry: %w", err)
		}
		if _, err := conn.Exec(ctx, floorDeleteByIDSQL, ids); err != nil {
			return fmt.Errorf("delete queue: %w", err)
		}
	case floorCopy:
		src := pgx.CopyFromSlice(len(b.ids), func(i int) ([]any, error) {
			return []any{b.topics[i], b.ids[i], b.payloads[i], b.parts[i]}, nil
		})
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"queue_messages"}, queueColumns, src); err != nil {
			return fmt.Errorf("copy queue: %w", err)
		}
		cols := b.telemetryArgs()
		src = pgx.CopyFromSlice(len(b.ids), func(i int) ([]any, error) {
			row := make([]any, len(cols))
			for c := range cols {
				row[c] = column(cols[c], i)
			}
			return row, nil
		})
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"telemetry_samples"}, telemetryColumns, src); err != nil {
			return fmt.Errorf("copy telemetry: %w", err)
		}
		if _, err := conn.Exec(ctx, floorDeleteByUUIDSQL, domain.TelemetryTopic, b.ids); err != nil {
			return fmt.Errorf("delete queue: %w", err)
		}
	default:
		return fmt.Errorf("unknown floor method %q", method)
	}
	return nil
}

// column is element i of one of telemetryArgs's typed slices.
func column(col any, i int) any {
	switch c := col.(type) {
	case []pgtype.UUID:
		return c[i]
	case []string:
		return c[i]
	case []int32:
		return c[i]
	case []time.Time:
		return c[i]
	case []*float64:
		return c[i]
	default:
		panic(fmt.Sprintf("column of type %T", col))
	}
}

// measureFloor runs cfg.workers loops of batches on pool for the warm-up
// and then the measured duration, and counts the messages whose three steps
// all committed inside the measured window. dbName names the database whose
// backends' CPU is read (empty: not read).
func measureFloor(ctx context.Context, pool *pgxpool.Pool, dbName string, src *batchSource, cfg floorConfig) (floorResult, error) {
	res := floorResult{Method: cfg.method, Workers: cfg.workers, Batch: cfg.batch}
	var (
		counting atomic.Bool  // set for the measured window
		stopping atomic.Bool  // set at the end: each worker finishes its batch and returns
		done     atomic.Int64 // messages completed while counting
		wg       sync.WaitGroup
		errs     = make(chan error, cfg.workers) // one per worker at most
	)
	// ctx ends only on a failure (or the caller's end): a batch is never cut
	// short by the end of the window, so the database holds whole batches.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range cfg.workers {
		wg.Go(func() {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				errs <- fmt.Errorf("acquire: %w", err)
				cancel()
				return
			}
			defer conn.Release()
			for !stopping.Load() && ctx.Err() == nil {
				b := src.batch(cfg.batch)
				if err := b.process(ctx, conn, cfg.method); err != nil {
					if ctx.Err() == nil {
						errs <- err
						cancel()
					}
					return
				}
				// A batch counts when it completes inside the window.
				if counting.Load() {
					done.Add(int64(cfg.batch))
				}
			}
		})
	}
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	local, _ := pgLocal(ctx, pool)
	var before pgCPU
	err := wait(cfg.warmup)
	if err == nil {
		if local {
			before, _ = readPGCPU(ctx, pool, dbName)
		}
		self0, _, _ := procCPU(os.Getpid())
		start := time.Now()
		counting.Store(true)
		err = wait(cfg.duration)
		counting.Store(false)
		res.Seconds = time.Since(start).Seconds()
		self1, _, _ := procCPU(os.Getpid())
		res.ClientCPUPer1k = self1 - self0
		if local && err == nil {
			if after, rerr := readPGCPU(ctx, pool, dbName); rerr == nil {
				// The harness's own connections are this database's
				// backends; the shared background processes are left out,
				// as in the pipeline's figure.
				res.PGCPUPer1k = cpuDelta(before.backends, after.backends)
			}
		}
	}
	stopping.Store(true)
	wg.Wait()
	close(errs)
	if e, ok := <-errs; ok {
		return res, fmt.Errorf("floor %s: %w", cfg.method, e)
	}
	if err != nil {
		return res, fmt.Errorf("floor %s: %w", cfg.method, err)
	}
	res.Messages = done.Load()
	res.MsgsPerSecond = float64(res.Messages) / res.Seconds
	if res.Messages > 0 {
		res.PGCPUPer1k = res.PGCPUPer1k / float64(res.Messages) * 1000
		res.ClientCPUPer1k = res.ClientCPUPer1k / float64(res.Messages) * 1000
	}
	return res, nil
}
