// Command collector leases telemetry messages from the queue, persists them
// idempotently (INSERT … ON CONFLICT DO NOTHING on the sample's series and
// timestamp), dead-letters poison messages, and acks only after the whole
// batch is stored. It also runs the store's maintenance job (partitions,
// retention, rollups), one collector at a time.
package main

import (
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/apps/internal/workers"
)

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	return fx.Options(
		platform.Module(platform.LoadCommon(env, "collector", ":8083")),
		backend.Store(env, backend.CollectorProfile),
		backend.QueueClient(env, false, true),
		workers.Collector(env),
		workers.Maintenance(env),
	)
}
