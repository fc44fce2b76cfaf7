// Command streamer reads a DCGM exporter CSV in a loop, stamping each row with
// the time it is emitted (UTC now), or with STREAMER_SOURCE=scrape scrapes
// live dcgm-exporter endpoints (listed, from a file, or discovered in
// Kubernetes), and publishes every point to the queue as one message with an
// idempotency key.
package main

import (
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/apps/internal/source"
	"github.com/gpufleet/telemetry/apps/internal/workers"
)

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	return fx.Options(
		platform.Module(platform.LoadCommon(env, "streamer", ":8084")),
		backend.QueueClient(env, true, false),
		source.Module(env),
		workers.Streamer(env),
	)
}
