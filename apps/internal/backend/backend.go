// Package backend chooses the apps' adapters from configuration, in one
// place: QUEUE_BACKEND picks how the streamer and collector reach the queue,
// STORE_BACKEND where telemetry lives, DATABASE_URL which PostgreSQL. Each
// function returns an fx option (fx.Error for an unknown value) and adds the
// matching readiness check.
package backend

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/migrations"
)

// Queue backends.
const (
	QueuePostgres = "postgres" // our queue: mqwriter + mqreader over HTTP
	QueueNATS     = "nats"     // JetStream, directly
	QueueMemory   = "memory"   // in-process only (tests, single-process mode)
)

// QueueClient provides ports.Queue/Publisher/Consumer to the streamer and
// collector. writer and readers say which side the app uses, so its
// readiness checks only what it needs.
func QueueClient(env *platform.Env, writer, readers bool) fx.Option {
	switch kind := env.OneOf("QUEUE_BACKEND", QueuePostgres, QueuePostgres, QueueNATS, QueueMemory); kind {
	case QueuePostgres:
		cfg := mqhttp.ClientConfig{}
		noAuth := env.OneOf("MQ_AUTH", AuthToken, AuthToken, AuthNone) == AuthNone
		var missing []string
		if writer {
			cfg.PublishToken = env.Secret("MQ_PUBLISH_TOKEN", env.String("MQ_PUBLISH_TOKEN", ""),
				"MQ_PUBLISH_TOKEN_FILE", env.String("MQ_PUBLISH_TOKEN_FILE", ""))
			if cfg.PublishToken == "" {
				missing = append(missing, "MQ_PUBLISH_TOKEN[_FILE]")
			}
			cfg.WriterURL = env.String("MQ_WRITER_URL", "http://127.0.0.1:8081")
			// The streamer's publish loop is the one retry loop of its path
			// (it retries for STREAMER_RETRY_TIMEOUT_MS over any backend):
			// the client makes one attempt inside it.
			cfg.PublishOnce = true
			transport, window := StreamerTransport(env)
			cfg.Stream, cfg.StreamWindow = transport == TransportStream, window
		}
		if readers {
			cfg.ReaderURLs = env.List("MQ_READER_URLS", []string{"http://127.0.0.1:8082"})
			cfg.ConsumeToken = env.Secret("MQ_CONSUME_TOKEN", env.String("MQ_CONSUME_TOKEN", ""),
				"MQ_CONSUME_TOKEN_FILE", env.String("MQ_CONSUME_TOKEN_FILE", ""))
			if cfg.ConsumeToken == "" {
				missing = append(missing, "MQ_CONSUME_TOKEN[_FILE]")
			}
		}
		return fx.Options(
			fx.Invoke(func(l *slog.Logger) {
				if len(missing) > 0 && !noAuth {
					l.Warn("no queue token configured: the queue will refuse this app's calls with 401 unless it runs with MQ_AUTH=none",
						"set", strings.Join(missing, ", "))
				}
			}),
			fx.Provide(func(reg prometheus.Registerer) mqhttp.ClientConfig {
				cfg.Metrics = reg // mqhttp_client_retries_total
				return cfg
			}),
			mqhttp.Module,
			fx.Provide(platform.AsCheck(func(c *mqhttp.Client) platform.Check { return platform.CheckOf("queue", c) })),
		)
	case QueueNATS:
		return natsQueue(env, writer)
	case QueueMemory:
		return memoryQueue(env)
	default:
		return fx.Error(fmt.Errorf("QUEUE_BACKEND=%q: want postgres, nats or memory", kind))
	}
}

// MaxDeliveries reads MQ_MAX_DELIVERIES, the queue's delivery limit (every
// backend's; domain.DefaultMaxDeliveries when unset).
func MaxDeliveries(env *platform.Env) int {
	return env.Int("MQ_MAX_DELIVERIES", domain.DefaultMaxDeliveries, 1, domain.MaxMaxDeliveries)
}

// memoryQueue provides the memory queue with MQ_MAX_DELIVERIES.
func memoryQueue(env *platform.Env) fx.Option {
	return fx.Options(fx.Supply(memory.QueueOptions{MaxDeliveries: MaxDeliveries(env)}), memory.QueueModule)
}

// Default retentions (TELEMETRY_RETENTION, TELEMETRY_ROLLUP_RETENTION).
const (
	DefaultRetention       = 7 * 24 * time.Hour
	DefaultRollupRetention = 90 * 24 * time.Hour
)

// retentions reads TELEMETRY_RETENTION (raw samples) and
// TELEMETRY_ROLLUP_RETENTION (1-minute rollups).
func retentions(env *platform.Env) (raw, rollup time.Duration) {
	const year = 366 * 24 * time.Hour
	raw = env.Duration("TELEMETRY_RETENTION", DefaultRetention, time.Hour, 10*year)
	rollup = env.Duration("TELEMETRY_ROLLUP_RETENTION", DefaultRollupRetention, time.Hour, 10*year)
	return raw, rollup
}

// Store provides ports.TelemetryStore/Writer/Reader/Maintainer with the
// retentions of the environment; with PostgreSQL, on the app's Profile.
func Store(env *platform.Env, p Profile) fx.Option {
	switch kind := env.OneOf("STORE_BACKEND", "postgres", "postgres", "memory"); kind {
	case "postgres":
		return Database(env, p)
	case "memory":
		raw, rollup := retentions(env)
		return fx.Options(fx.Supply(&memory.Options{Retention: raw, RollupRetention: rollup}), memory.StoreModule)
	default:
		return fx.Error(fmt.Errorf("STORE_BACKEND=%q: want postgres or memory", kind))
	}
}

// Database provides the PostgreSQL pool and telemetry store (see Profile
// for the settings it reads), checks the database and its schema version in
// /readyz, and, with MIGRATE_ON_START=true, applies migrations in the
// background. The pool connects lazily: the app starts and serves /healthz
// while PostgreSQL is down, and becomes ready on its own when it returns.
func Database(env *platform.Env, p Profile) fx.Option {
	return database(env, p, postgres.Module)
}

// Pool is Database without the telemetry store, for a PostgreSQL queue
// beside a memory store.
func Pool(env *platform.Env, p Profile) fx.Option {
	return database(env, p, fx.Provide(postgres.NewPool))
}

func database(env *platform.Env, p Profile, provide fx.Option) fx.Option {
	cfg := p.config(env)
	cfg.Retention, cfg.RollupRetention = retentions(env)
	migrate := env.Bool("MIGRATE_ON_START", false)
	return fx.Options(
		fx.Supply(cfg),
		provide,
		fx.Provide(platform.AsCheck(func(pool *pgxpool.Pool) platform.Check {
			return platform.Check{Name: "database", Fn: func(ctx context.Context) error { return postgres.CheckSchema(ctx, pool) }}
		})),
		fx.Invoke(func(lc fx.Lifecycle, pool *pgxpool.Pool, logger *slog.Logger) {
			if !migrate {
				return
			}
			m := &migrator{pool: pool, logger: logger}
			start, stop := startstop.Hooks("migrator", m.run)
			lc.Append(fx.Hook{OnStart: start, OnStop: stop})
		}),
	)
}

// migrator applies the migrations in the background (MIGRATE_ON_START),
// retrying until it succeeds or the app stops: a database that is down or
// a migration that waits for the lock never holds up fx's start (which
// would end in CrashLoopBackOff), and the app is not ready until the schema
// is current (the database check).
type migrator struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
}

// run is the migrator's loop, on a startstop.Loop: ctx ends at the app's stop.
func (m *migrator) run(ctx context.Context) {
	_, err := retry.Do(ctx, retry.Policy{Initial: 500 * time.Millisecond, Max: 10 * time.Second,
		Notify: func(err error, wait time.Duration) {
			m.logger.Warn("migrate on start: retrying", "err", err, "in", wait)
		}}, func() (struct{}, error) { return struct{}{}, postgres.Migrate(ctx, m.pool) })
	if err != nil {
		m.logger.Error("migrate on start: gave up", "err", err)
		return
	}
	m.logger.Info("migrate on start: schema current", "version", migrations.Latest())
}

// Hostname is the default consumer id.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "collector"
	}
	return h
}

// InProcess provides the store and the whole queue inside one process (the
// single-process app): the PostgreSQL queue's writer and reader with no HTTP
// between them, the memory queue, or NATS; and the store of Store.
func InProcess(env *platform.Env, p Profile, writer pgqueue.WriterConfig, reader pgqueue.ReaderConfig) fx.Option {
	store := Store(env, p)
	if reader.MaxDeliveries == 0 {
		reader.MaxDeliveries = MaxDeliveries(env)
	}
	switch kind := env.OneOf("QUEUE_BACKEND", QueuePostgres, QueuePostgres, QueueNATS, QueueMemory); kind {
	case QueuePostgres:
		if env.String("STORE_BACKEND", "postgres") != "postgres" {
			store = fx.Options(store, Pool(env, p)) // the queue still needs the database
		}
		return fx.Options(store, fx.Supply(writer, reader), pgqueue.Module,
			fx.Provide(platform.AsCheck(func(q *pgqueue.Queue) platform.Check { return platform.CheckOf("queue", q) })))
	case QueueNATS:
		return fx.Options(store, natsQueue(env, true))
	case QueueMemory:
		return fx.Options(store, memoryQueue(env))
	default:
		return fx.Error(fmt.Errorf("QUEUE_BACKEND=%q: want postgres, nats or memory", kind))
	}
}
