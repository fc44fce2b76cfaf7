package backend

import (
	"errors"

	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

// natsQueue is replaced when the NATS adapter lands.
func natsQueue(env *platform.Env) fx.Option {
	_ = env.String("NATS_URL", "nats://127.0.0.1:4222")
	return fx.Error(errors.New("QUEUE_BACKEND=nats: the NATS adapter is not built into this binary yet"))
}
