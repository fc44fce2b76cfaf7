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
// MAX_BODY_BYTES, QUEUE_TOPICS (only those topics are served; a request for
// another is a 404) and the admission limits: MQ_MAX_INFLIGHT_BYTES, and on
// the write side MQ_MAX_CONCURRENT_PUBLISHES and MQ_MAX_PAYLOAD_BYTES.
func QueueServer(env *platform.Env, side string) fx.Option {
	maxBody := int64(env.Int("MAX_BODY_BYTES", mqhttp.DefaultMaxBodyBytes, 1024, 1<<30))
	topics := env.List("QUEUE_TOPICS", []string{domain.TelemetryTopic})
	inflight := int64(env.Int("MQ_MAX_INFLIGHT_BYTES", mqhttp.DefaultMaxInflightBytes, 1024, 1<<34))
	var publishes, payload int
	if side == WriteSide {
		publishes = env.Int("MQ_MAX_CONCURRENT_PUBLISHES", mqhttp.DefaultMaxConcurrentPublishes, 1, 1_000_000)
		payload = env.Int("MQ_MAX_PAYLOAD_BYTES", mqhttp.DefaultMaxPayloadBytes, 1, domain.MaxPayloadBytes)
	}
	opts := func(logger *slog.Logger, reg prometheus.Registerer) mqhttp.ServerOptions {
		return mqhttp.ServerOptions{Logger: logger, Registerer: reg, MaxBodyBytes: maxBody, Topics: topics,
			MaxInflightBytes: inflight, MaxConcurrentPublishes: publishes, MaxPayloadBytes: int64(payload)}
	}
	if side == WriteSide {
		return fx.Provide(platform.AsRoutes(func(pub ports.Publisher, logger *slog.Logger, reg prometheus.Registerer) *mqhttp.Server {
			return mqhttp.NewServer(pub, nil, opts(logger, reg))
		}))
	}
	return fx.Provide(platform.AsRoutes(func(cons ports.Consumer, logger *slog.Logger, reg prometheus.Registerer) *mqhttp.Server {
		return mqhttp.NewServer(nil, cons, opts(logger, reg))
	}))
}
