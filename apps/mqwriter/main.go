// Command mqwriter is the queue's write side: it accepts POST /v1/publish,
// assigns each message its msg_uuid, and group-commits the messages to
// PostgreSQL, answering only after COMMIT. When its buffer is full it answers
// 429 with Retry-After; mqwriter_buffer_utilization_ratio feeds the HPA.
// A publish needs Authorization: Bearer with one of the publish tokens of
// MQ_PUBLISH_TOKENS or MQ_PUBLISH_TOKENS_FILE; without any mqwriter refuses
// to start, unless MQ_AUTH=none.
package main

import (
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	common := platform.LoadCommon(env, "mqwriter", ":8081")
	cfg := pgqueue.WriterConfig{
		BufferSize:    env.Int("WRITER_BUFFER_SIZE", 10000, 1, 10_000_000),
		BufferBytes:   int64(env.Int("WRITER_BUFFER_BYTES", 64<<20, 1<<20, 1<<36)),
		MaxBatch:      env.Int("WRITER_MAX_BATCH", 1000, 1, 100_000),
		FlushInterval: env.Millis("WRITER_FLUSH_INTERVAL_MS", 0, 0, 10_000),
		Flushers:      env.Int("WRITER_FLUSHERS", 2, 1, 64),
	}
	return fx.Options(
		platform.Module(common),
		backend.Database(env, backend.WriterProfile),
		fx.Supply(cfg),
		pgqueue.Module,
		backend.QueueServer(env, backend.WriteSide),
		fx.Provide(platform.AsCheck(func(w *pgqueue.Writer) platform.Check { return platform.CheckOf("writer", w) })),
	)
}
