// Command streamer reads a DCGM exporter CSV in a loop, stamps each row with
// the time it is emitted (UTC now), and publishes it to the queue as one
// message with an idempotency key.
package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/apps/internal/streamer"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// DefaultCSV is the shipped DCGM dump, relative to the repository root.
const DefaultCSV = "deployments/data/dcgm_metrics_20250718_134233.csv"

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	common := platform.LoadCommon(env, "streamer", ":8084")
	cfg := streamer.Config{
		Topic:     env.String("TOPIC", domain.TelemetryTopic),
		Interval:  env.Millis("STREAMER_INTERVAL_MS", 0, 0, 3_600_000),
		Senders:   env.Int("STREAMER_SENDERS", 32, 1, 1024),
		Batch:     env.Int("STREAMER_BATCH", 1, 1, 10_000), // 1: one message per publish, as the user asked; >1 is an opt-in for load tests
		QueueSize: env.Int("STREAMER_QUEUE_SIZE", 1024, 1, 1_000_000),
		MaxRows:   env.Int("STREAMER_MAX_ROWS", 0, 0, 1<<31-1),
		RetryFor:  env.Millis("STREAMER_RETRY_TIMEOUT_MS", 60e9, 1, 86_400_000),
	}
	src := csv.Config{Path: env.String("STREAMER_CSV_PATH", DefaultCSV), Once: env.Bool("STREAMER_ONCE", false)}
	return fx.Options(
		platform.Module(common),
		backend.QueueClient(env, true, false),
		fx.Supply(cfg, src),
		csv.Module,
		fx.Provide(func(src ports.Source, pub ports.Publisher, cfg streamer.Config, logger *slog.Logger, reg prometheus.Registerer) *streamer.Streamer {
			return streamer.New(src, pub, cfg, logger, reg)
		}),
		fx.Invoke(func(lc fx.Lifecycle, s *streamer.Streamer) {
			lc.Append(fx.Hook{
				OnStart: func(context.Context) error { s.Start(); return nil },
				OnStop:  s.Stop,
			})
		}),
	)
}
