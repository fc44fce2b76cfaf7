package backend

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// Queue protocol sides, for QueueServer.
const (
	WriteSide = "write" // mqwriter: POST /v1/publish over the app's ports.Publisher
	ReadSide  = "read"  // mqreader: lease, ack, release over the app's ports.Consumer
)

// QueueServer mounts the queue protocol's side on the app's router, with
// MAX_BODY_BYTES and QUEUE_TOPICS (only those topics are served; a request
// for another is a 404).
func QueueServer(env *platform.Env, side string) fx.Option {
	maxBody := int64(env.Int("MAX_BODY_BYTES", mqhttp.DefaultMaxBodyBytes, 1024, 1<<30))
	topics := env.List("QUEUE_TOPICS", []string{domain.TelemetryTopic})
	opts := func(logger *slog.Logger, reg prometheus.Registerer) mqhttp.ServerOptions {
		return mqhttp.ServerOptions{Logger: logger, Registerer: reg, MaxBodyBytes: maxBody, Topics: topics}
	}
	if side == WriteSide {
		return fx.Options(
			fx.Provide(func(pub ports.Publisher, logger *slog.Logger, reg prometheus.Registerer) *mqhttp.Server {
				return mqhttp.NewServer(pub, nil, opts(logger, reg))
			}),
			fx.Provide(platform.AsRoutes(func(s *mqhttp.Server) *mqhttp.Server { return s })),
			// Publish streams never go idle: end them before the graceful
			// shutdown waits for idle connections.
			fx.Provide(platform.AsDrainer(func(s *mqhttp.Server) platform.Drainer {
				return platform.Drainer{Name: "publish streams", Fn: s.DrainStreams}
			})),
		)
	}
	return fx.Provide(platform.AsRoutes(func(cons ports.Consumer, logger *slog.Logger, reg prometheus.Registerer) *mqhttp.Server {
		return mqhttp.NewServer(nil, cons, opts(logger, reg))
	}))
}
