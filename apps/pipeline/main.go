// Command pipeline runs every component in one process: the queue (writer
// and reader, no HTTP between them), the collector, the streamer and the API
// (HTTP_ADDR, default :8080). The queue protocol, for outside publishers and
// consumers, has a listener of its own, never the API port: QUEUE_HTTP_ADDR,
// default 127.0.0.1:8087 (loopback), with bearer tokens of both scopes
// (MQ_PUBLISH_TOKENS[_FILE], MQ_CONSUME_TOKENS[_FILE]; MQ_AUTH=none turns
// them off, QUEUE_HTTP_ADDR=off the listener). With QUEUE_BACKEND=memory and
// STORE_BACKEND=memory it needs no database at all: a demo in one binary.
// The same fx modules as the separate apps, composed differently.
package main

import (
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/apps/internal/source"
	"github.com/gpufleet/telemetry/apps/internal/workers"
	_ "github.com/gpufleet/telemetry/docs" // registers the generated OpenAPI spec
	"github.com/gpufleet/telemetry/domain"
)

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
		source.Module(env),
		workers.Streamer(env),
		fx.Supply(httpapi.Options{}),
		httpapi.Module,
		fx.Provide(platform.AsRoutes(func(api *httpapi.Server) platform.Routes { return platform.RoutesFunc(api.Mount) })),
		backend.QueueProtocol(env),
	)
}
