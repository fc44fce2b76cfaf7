package backend

import (
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/nats"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

// natsQueue provides the JetStream queue (QUEUE_BACKEND=nats) from NATS_URL,
// NATS_ACK_WAIT_SECONDS and NATS_DUPLICATE_WINDOW_SECONDS. The streamer and
// collector talk to NATS directly; mqwriter and mqreader are not involved.
func natsQueue(env *platform.Env) fx.Option {
	d := nats.DefaultConfig()
	cfg := nats.Config{
		URL:             env.String("NATS_URL", "nats://127.0.0.1:4222"),
		AckWait:         env.Seconds("NATS_ACK_WAIT_SECONDS", d.AckWait, 1, 3600),
		DuplicateWindow: env.Seconds("NATS_DUPLICATE_WINDOW_SECONDS", d.DuplicateWindow, 1, 86400),
		MaxDeliveries:   MaxDeliveries(env),
	}
	return fx.Options(
		fx.Supply(cfg),
		nats.Module,
		fx.Provide(platform.AsCheck(func(q *nats.Queue) platform.Check { return platform.CheckOf("queue", q) })),
	)
}
