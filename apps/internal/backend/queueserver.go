package backend

import (
	"context"
	"log/slog"
	"slices"
	"time"

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
// MAX_BODY_BYTES, QUEUE_TOPICS (only those topics are served; a request
// for another is a 404), the bearer tokens of the side's scope
// (serverTokens: MQ_PUBLISH_TOKENS[_FILE] for the write side,
// MQ_CONSUME_TOKENS[_FILE] for the read side, unless MQ_AUTH=none) and the
// admission limits: MQ_MAX_INFLIGHT_BYTES, and where publishes are served
// MQ_MAX_CONCURRENT_PUBLISHES and MQ_MAX_PAYLOAD_BYTES.
func QueueServer(env *platform.Env, side string) fx.Option {
	scope := mqhttp.ScopeConsume
	if side == WriteSide {
		scope = mqhttp.ScopePublish
	}
	opts, auth := queueServerOptions(env, scope)
	if side == WriteSide {
		return fx.Options(auth,
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
	return fx.Options(auth, fx.Provide(platform.AsRoutes(func(cons ports.Consumer, logger *slog.Logger, reg prometheus.Registerer) *mqhttp.Server {
		return mqhttp.NewServer(nil, cons, opts(logger, reg))
	})))
}

// queueServerOptions reads the server's configuration; serves are the
// scopes whose tokens are required. The option starts the token reload or
// logs the MQ_AUTH=none warning.
func queueServerOptions(env *platform.Env, serves ...mqhttp.Scope) (func(*slog.Logger, prometheus.Registerer) mqhttp.ServerOptions, fx.Option) {
	maxBody := int64(env.Int("MAX_BODY_BYTES", mqhttp.DefaultMaxBodyBytes, 1024, 1<<30))
	topics := env.List("QUEUE_TOPICS", []string{domain.TelemetryTopic})
	inflight := int64(env.Int("MQ_MAX_INFLIGHT_BYTES", mqhttp.DefaultMaxInflightBytes, 1024, 1<<34))
	var publishes, payload int
	if slices.Contains(serves, mqhttp.ScopePublish) {
		publishes = env.Int("MQ_MAX_CONCURRENT_PUBLISHES", mqhttp.DefaultMaxConcurrentPublishes, 1, 1_000_000)
		payload = env.Int("MQ_MAX_PAYLOAD_BYTES", mqhttp.DefaultMaxPayloadBytes, 1, domain.MaxPayloadBytes)
	}
	auth, opt := serverTokens(env, serves...)
	return func(logger *slog.Logger, reg prometheus.Registerer) mqhttp.ServerOptions {
		return mqhttp.ServerOptions{Logger: logger, Registerer: reg, MaxBodyBytes: maxBody, Topics: topics, Auth: auth,
			MaxInflightBytes: inflight, MaxConcurrentPublishes: publishes, MaxPayloadBytes: int64(payload)}
	}, opt
}

// QueueListener is the single-process app's own HTTP server for the queue
// protocol, apart from its public API port.
type QueueListener struct {
	*platform.Server
}

// queueListenerParams are QueueListener's dependencies.
type queueListenerParams struct {
	fx.In
	Queue    ports.Queue
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Checks   []platform.Check `group:"checks"`
}

// QueueListenerOff is the QUEUE_HTTP_ADDR value that serves no queue
// protocol at all.
const QueueListenerOff = "off"

// QueueProtocol serves both sides of the queue protocol over the app's
// ports.Queue on a listener of its own (QUEUE_HTTP_ADDR, default
// 127.0.0.1:8087, loopback: the protocol is for local publishers and
// consumers, never the public API port), with the tokens of both scopes
// (MQ_PUBLISH_TOKENS[_FILE] and MQ_CONSUME_TOKENS[_FILE], unless
// MQ_AUTH=none). QUEUE_HTTP_ADDR=off serves none, and needs no token. The
// listener also answers /healthz, /readyz and /metrics, open.
func QueueProtocol(env *platform.Env) fx.Option {
	addr := env.String("QUEUE_HTTP_ADDR", "127.0.0.1:8087")
	if addr == QueueListenerOff {
		return fx.Options()
	}
	opts, auth := queueServerOptions(env, mqhttp.ScopePublish, mqhttp.ScopeConsume)
	return fx.Options(auth,
		fx.Provide(func(p queueListenerParams) *QueueListener {
			mq := mqhttp.NewServer(p.Queue, p.Queue, opts(p.Logger, p.Registry))
			return &QueueListener{platform.NewServer(platform.ServerParams{
				Config:   platform.ServerConfig{Addr: addr, ShutdownTimeout: 10 * time.Second},
				Logger:   p.Logger.With("listener", "queue"),
				Registry: p.Registry,
				Routes:   []platform.Routes{mq},
				Checks:   p.Checks,
			})}
		}),
		fx.Invoke(func(lc fx.Lifecycle, l *QueueListener) {
			lc.Append(fx.Hook{OnStart: func(context.Context) error { return l.Start() }, OnStop: l.Stop})
		}),
	)
}
