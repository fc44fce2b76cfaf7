// Command pipeline runs every component in one process: the queue (writer
// and reader, no HTTP between them), the collector, the streamer and the API,
// behind one HTTP server (default :8080) that also serves the queue protocol
// for outside publishers and consumers. With QUEUE_BACKEND=memory and
// STORE_BACKEND=memory it needs no database at all: a demo in one binary.
// The same fx modules as the separate apps, composed differently.
package main

import (
	"log/slog"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/apps/internal/workers"
	_ "github.com/gpufleet/telemetry/docs" // registers the generated OpenAPI spec
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// DefaultCSV is the shipped DCGM dump, relative to the repository root.
const DefaultCSV = workers.DefaultCSV

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	common := platform.LoadCommon(env, "pipeline", ":8080")
	all := domain.PartitionRange{First: 0, Last: domain.NumPartitions - 1}
	writer := pgqueue.WriterConfig{FlushInterval: 0}
	reader := pgqueue.ReaderConfig{Range: &all}
	return fx.Options(
		platform.Module(common),
		backend.InProcess(env, backend.PipelineProfile, writer, reader),
		// Collector before streamer: the streamer stops first.
		workers.Collector(env),
		workers.Maintenance(env),
		workers.Streamer(env),
		fx.Supply(httpapi.Options{}),
		httpapi.Module,
		fx.Provide(
			platform.AsRoutes(func(q ports.Queue, api *httpapi.Server, l *slog.Logger, reg prometheus.Registerer) platform.Routes {
				mq := mqhttp.NewServer(q, q, mqhttp.ServerOptions{Logger: l, Registerer: reg})
				return platform.RoutesFunc(func(r *mux.Router) {
					mq.Register(r)
					api.Mount(r)
				})
			}),
		),
	)
}
