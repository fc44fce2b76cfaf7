package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// Two floors, each a line of bench-results.json:
//
//   - The floor proper ("pipeline" method, floor.go's measurePipelineFloor):
//     the real queue and store adapters in this process, no HTTP, no other
//     process, so it runs exactly the statements the pipeline runs per
//     message and cannot drift from them: pgqueue's group-commit INSERT
//     (Writer.Publish of full batches), its refill SELECT and batched
//     DELETE on ack (Reader.Lease and Ack), and the store's WriteBatch
//     (series registration, samples insert, series and GPU registry
//     upkeep), at ideal batching.
//   - The physical limit ("copy" method, below): per message the least
//     PostgreSQL work there could be — the queue row COPYed in, the sample
//     COPYed in (made-up series ids, no registration, no conflict check),
//     the queue row deleted — each committed, batched.
const (
	// floorDeleteByUUIDSQL deletes a COPYed batch, whose ids the harness
	// never saw, through queue_messages_topic_msg_uuid_key.
	floorDeleteByUUIDSQL = `DELETE FROM queue_messages WHERE topic = $1 AND msg_uuid = ANY($2::uuid[])`

	// floorEnsurePartitionSQL creates today's samples partition if missing
	// (the store does it on demand, the maintenance job ahead of time).
	floorEnsurePartitionSQL = `SELECT telemetry_ensure_partition('telemetry_samples', $1)`
)

// Floor methods.
const (
	floorPipeline = "pipeline" // the floor: the pipeline's statements through its adapters
	floorCopy     = "copy"     // the physical limit: COPY (no conflict check), DELETE by (topic, msg_uuid)
)

var (
	queueColumns     = []string{"topic", "msg_uuid", "payload", "partition_key"}
	telemetryColumns = []string{"series_id", "ts", "value"}
)

// floorConfig tunes one floor measurement.
type floorConfig struct {
	method   string
	workers  int // concurrent loops: COPY connections, or publishers and as many consumers
	batch    int // messages per batch (per publish for the pipeline method)
	lease    int // messages per lease (pipeline method)
	warmup   time.Duration
	duration time.Duration
}

// floorResult is one floor measurement.
type floorResult struct {
	Method        string  `json:"method"`
	Workers       int     `json:"workers"`
	Batch         int     `json:"batch"`
	Lease         int     `json:"lease,omitempty"`
	Messages      int64   `json:"messages"`
	Seconds       float64 `json:"seconds"`
	MsgsPerSecond float64 `json:"msgs_per_second"`
	PGCPUPer1k    float64 `json:"postgres_cpu_seconds_per_1k,omitempty"`
	// ClientCPUPer1k is the harness's own CPU (building batches, pgx
	// encoding; for the pipeline method also the adapters' own work): the
	// floor's share of what the apps do in the pipeline.
	ClientCPUPer1k float64 `json:"client_cpu_seconds_per_1k"`
	// Counts (pipeline method) checks the run's books once it stopped.
	Counts *floorCounts `json:"counts,omitempty"`
}

// batchSource hands out the shipped dump's points shaped as the pipeline's
// messages (the streamer's JSON payload keyed by the GPU's UUID), each
// stamped with a distinct instant so no two samples share a natural key.
type batchSource struct {
	points []domain.Point
	next   atomic.Uint64
	clock  uniqueClock
}

func newBatchSource(points []domain.Point) (*batchSource, error) {
	if len(points) == 0 {
		return nil, errors.New("no points to benchmark with")
	}
	return &batchSource{points: points}, nil
}

// uniqueClock stamps instants in microseconds (PostgreSQL's resolution)
// that are never equal: the wall clock, or one µs after the last stamp when
// the clock has not moved on. Any goroutine.
type uniqueClock struct{ last atomic.Int64 }

func (c *uniqueClock) now() time.Time {
	for {
		last, now := c.last.Load(), time.Now().UnixMicro()
		if now <= last {
			now = last + 1
		}
		if c.last.CompareAndSwap(last, now) {
			return time.UnixMicro(now).UTC()
		}
	}
}

// floorBatch is one batch in column form.
type floorBatch struct {
	topics   []string
	ids      []pgtype.UUID // not uuid.UUID: pgx encodes that through a string, about 5µs each
	payloads [][]byte
	parts    []int16
	points   []domain.Point
	seq      uint64 // the first message's number
}

func (s *batchSource) batch(n int) (floorBatch, error) {
	first := s.next.Add(uint64(n)) - uint64(n)
	b := floorBatch{topics: make([]string, n), ids: make([]pgtype.UUID, n), payloads: make([][]byte, n),
		parts: make([]int16, n), points: make([]domain.Point, n), seq: first}
	for i := range n {
		p := s.points[int((first+uint64(i))%uint64(len(s.points)))]
		p.Timestamp = s.clock.now()
		payload, err := json.Marshal(p)
		if err != nil {
			return b, fmt.Errorf("encode point: %w", err)
		}
		b.topics[i], b.ids[i], b.payloads[i] = domain.TelemetryTopic, pgtype.UUID{Bytes: uuid.New(), Valid: true}, payload
		b.parts[i], b.points[i] = int16(domain.PartitionOf(p.GPUUUID)), p
	}
	return b, nil
}

// messages is the batch as a publish: the streamer's key and a unique
// idempotency key per message.
func (b floorBatch) messages() []ports.OutgoingMessage {
	out := make([]ports.OutgoingMessage, len(b.points))
	for i, p := range b.points {
		out[i] = ports.OutgoingMessage{Payload: b.payloads[i], Key: p.GPUUUID, IdempotencyKey: "floor/" + strconv.FormatUint(b.seq+uint64(i), 10)}
	}
	return out
}

// copyRows is the batch's samples as COPY rows: a made-up series id per
// (GPU, metric) (the samples table has no foreign key), the point's unique
// instant, its value.
func (b floorBatch) copyRows() [][]any {
	rows := make([][]any, len(b.points))
	for i, p := range b.points {
		h := fnv.New32a()
		h.Write([]byte(p.GPUUUID + "/" + p.MetricName))
		rows[i] = []any{int32(h.Sum32() & 0x7fffffff), p.Timestamp, p.Value}
	}
	return rows
}

// copyLimit runs one batch through the physical limit's three steps, each
// committed on its own.
func (b floorBatch) copyLimit(ctx context.Context, conn *pgxpool.Conn) error {
	if len(b.points) > 0 {
		if _, err := conn.Exec(ctx, floorEnsurePartitionSQL, b.points[0].Timestamp); err != nil {
			return fmt.Errorf("ensure partition: %w", err)
		}
	}
	src := pgx.CopyFromSlice(len(b.ids), func(i int) ([]any, error) {
		return []any{b.topics[i], b.ids[i], b.payloads[i], b.parts[i]}, nil
	})
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"queue_messages"}, queueColumns, src); err != nil {
		return fmt.Errorf("copy queue: %w", err)
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"telemetry_samples"}, telemetryColumns, pgx.CopyFromRows(b.copyRows())); err != nil {
		return fmt.Errorf("copy telemetry: %w", err)
	}
	if _, err := conn.Exec(ctx, floorDeleteByUUIDSQL, domain.TelemetryTopic, b.ids); err != nil {
		return fmt.Errorf("delete queue: %w", err)
	}
	return nil
}

// floorLoad is what a floor method runs: start launches its goroutines,
// which call done(n) as n messages complete (their last statement
// committed) and return once stop is closed or ctx ends; finish, called
// after they all returned, tears down and checks what it can.
type floorLoad interface {
	start(ctx context.Context, g *errgroup.Group, stop <-chan struct{}, done func(n int)) error
	finish(ctx context.Context) (*floorCounts, error)
}

// copyLoad is the physical limit: workers connections running batches back
// to back.
type copyLoad struct {
	pool *pgxpool.Pool
	src  *batchSource
	cfg  floorConfig
}

func (l *copyLoad) start(ctx context.Context, g *errgroup.Group, stop <-chan struct{}, done func(int)) error {
	for range l.cfg.workers {
		g.Go(func() error {
			conn, err := l.pool.Acquire(ctx)
			if err != nil {
				return fmt.Errorf("acquire: %w", err)
			}
			defer conn.Release()
			for !closed(stop) {
				b, err := l.src.batch(l.cfg.batch)
				if err != nil {
					return err
				}
				// ctx ends only on a failure: the end of the window never
				// cuts a batch short.
				if err := b.copyLimit(ctx, conn); err != nil {
					return err
				}
				done(l.cfg.batch)
			}
			return nil
		})
	}
	return nil
}

func (l *copyLoad) finish(context.Context) (*floorCounts, error) { return nil, nil }

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// newFloorLoad builds method's load on pool.
func newFloorLoad(pool *pgxpool.Pool, src *batchSource, cfg floorConfig) (floorLoad, error) {
	switch cfg.method {
	case floorCopy:
		return &copyLoad{pool: pool, src: src, cfg: cfg}, nil
	case floorPipeline:
		return newPipelineLoad(pool, src, cfg)
	default:
		return nil, fmt.Errorf("unknown floor method %q", cfg.method)
	}
}

// measureFloor runs cfg's load on pool for the warm-up and then the
// measured duration, and counts the messages completed inside the measured
// window. dbName names the database whose backends' CPU is read (empty: not
// read).
func measureFloor(ctx context.Context, pool *pgxpool.Pool, dbName string, src *batchSource, cfg floorConfig) (floorResult, error) {
	res := floorResult{Method: cfg.method, Workers: cfg.workers, Batch: cfg.batch}
	if cfg.method == floorPipeline {
		res.Lease = cfg.lease
	}
	load, err := newFloorLoad(pool, src, cfg)
	if err != nil {
		return res, err
	}
	var (
		counting atomic.Bool  // set for the measured window
		done     atomic.Int64 // messages completed while counting
		stop     = make(chan struct{})
	)
	// gctx ends only on a failure (or the caller's end).
	g, gctx := errgroup.WithContext(ctx)
	err = load.start(gctx, g, stop, func(n int) {
		if counting.Load() {
			done.Add(int64(n))
		}
	})
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-gctx.Done():
			return fmt.Errorf("floor stopped early: %w", context.Cause(gctx))
		}
	}
	local, _ := pgLocal(ctx, pool)
	var before pgCPU
	if err == nil {
		err = wait(cfg.warmup)
	}
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
	close(stop)
	err = errors.Join(err, g.Wait())
	counts, ferr := load.finish(context.WithoutCancel(ctx))
	res.Counts = counts
	if err = errors.Join(err, ferr); err != nil {
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
