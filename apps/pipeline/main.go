// Command pipeline runs every component in one process: the queue (writer
// and reader, no HTTP between them), the collector, the streamer and the API,
// behind one HTTP server (default :8080) that also serves the queue protocol
// for outside publishers and consumers. With QUEUE_BACKEND=memory and
// STORE_BACKEND=memory it needs no database at all: a demo in one binary.
// The same fx modules as the separate apps, composed differently.
package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/collector"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/apps/internal/streamer"
	_ "github.com/gpufleet/telemetry/docs" // registers the generated OpenAPI spec
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// DefaultCSV is the shipped DCGM dump, relative to the repository root.
const DefaultCSV = "deployments/data/dcgm_metrics_20250718_134233.csv"

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	common := platform.LoadCommon(env, "pipeline", ":8080")
	all := domain.PartitionRange{First: 0, Last: domain.NumPartitions - 1}
	writer := pgqueue.WriterConfig{FlushInterval: 0}
	reader := pgqueue.ReaderConfig{Range: &all}
	collect := collector.Config{
		Topic:         domain.TelemetryTopic,
		ConsumerID:    env.String("COLLECTOR_ID", backend.Hostname()),
		LeaseMax:      env.Int("LEASE_MAX", 2000, 1, 10000),
		LeaseDuration: env.Seconds("LEASE_SECONDS", 30e9, 1, 3600),
		PollInterval:  env.Millis("POLL_INTERVAL_MS", 100e6, 1, 60_000),
		Workers:       env.Int("COLLECTOR_WORKERS", 2, 1, 64),
	}
	stream := streamer.Config{
		Topic:    domain.TelemetryTopic,
		Interval: env.Millis("STREAMER_INTERVAL_MS", 0, 0, 3_600_000),
		Senders:  env.Int("STREAMER_SENDERS", 32, 1, 1024), QueueSize: 1024,
		Batch:   env.Int("STREAMER_BATCH", 1, 1, 10_000),
		MaxRows: env.Int("STREAMER_MAX_ROWS", 0, 0, 1<<31-1),
	}
	src := csv.Config{Path: env.String("STREAMER_CSV_PATH", DefaultCSV)}
	return fx.Options(
		platform.Module(common),
		backend.InProcess(env, writer, reader),
		fx.Supply(collect, stream, src, httpapi.Options{}),
		csv.Module,
		httpapi.Module,
		fx.Provide(
			func(q ports.Consumer, s ports.TelemetryWriter, cfg collector.Config, l *slog.Logger, reg prometheus.Registerer) *collector.Collector {
				return collector.New(q, s, cfg, l, reg)
			},
			func(src ports.Source, pub ports.Publisher, cfg streamer.Config, l *slog.Logger, reg prometheus.Registerer) *streamer.Streamer {
				return streamer.New(src, pub, cfg, l, reg)
			},
			platform.AsRoutes(func(q ports.Queue, api *httpapi.Server, l *slog.Logger, reg prometheus.Registerer) platform.Routes {
				mq := mqhttp.NewServer(q, q, mqhttp.ServerOptions{Logger: l, Registerer: reg})
				return platform.RoutesFunc(func(r *mux.Router) {
					mq.Register(r)
					r.PathPrefix("/api/").Handler(api)
					r.PathPrefix("/swagger").Handler(api)
					r.NotFoundHandler = api
					r.MethodNotAllowedHandler = http.HandlerFunc(api.ServeHTTP)
				})
			}),
		),
		fx.Invoke(func(lc fx.Lifecycle, c *collector.Collector, s *streamer.Streamer) {
			// Start the collector before the streamer; stop the streamer first.
			lc.Append(fx.Hook{OnStart: func(context.Context) error { c.Start(); return nil }, OnStop: c.Stop})
			lc.Append(fx.Hook{OnStart: func(context.Context) error { s.Start(); return nil }, OnStop: s.Stop})
		}),
	)
}
