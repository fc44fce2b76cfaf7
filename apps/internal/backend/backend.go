// Package backend chooses the apps' adapters from configuration, in one
// place: QUEUE_BACKEND picks how the streamer and collector reach the queue,
// STORE_BACKEND where telemetry lives, DATABASE_URL which PostgreSQL. Each
// function returns an fx option (fx.Error for an unknown value) and adds the
// matching readiness check.
package backend

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/apps/internal/platform"
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
		if writer {
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
		}
		return fx.Options(
			fx.Provide(func(reg prometheus.Registerer) mqhttp.ClientConfig {
				cfg.Metrics = reg // mqhttp_client_retries_total
				return cfg
			}),
			mqhttp.Module,
			fx.Provide(platform.AsCheck(func(c *mqhttp.Client) platform.Check { return platform.CheckOf("queue", c) })),
		)
	case QueueNATS:
		return natsQueue(env)
	case QueueMemory:
		return memory.QueueModule
	default:
		return fx.Error(fmt.Errorf("QUEUE_BACKEND=%q: want postgres, nats or memory", kind))
	}
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
// retentions of the environment.
func Store(env *platform.Env) fx.Option {
	switch kind := env.OneOf("STORE_BACKEND", "postgres", "postgres", "memory"); kind {
	case "postgres":
		return Database(env)
	case "memory":
		raw, rollup := retentions(env)
		return fx.Options(fx.Supply(&memory.Options{Retention: raw, RollupRetention: rollup}), memory.StoreModule)
	default:
		return fx.Error(fmt.Errorf("STORE_BACKEND=%q: want postgres or memory", kind))
	}
}

// Database provides the PostgreSQL pool and telemetry store (from
// DATABASE_URL and DB_MAX_CONNS), applies migrations at start unless
// MIGRATE_ON_START=false, and checks the database in /readyz.
func Database(env *platform.Env) fx.Option {
	return database(env, postgres.Module)
}

// Pool is Database without the telemetry store, for a PostgreSQL queue
// beside a memory store.
func Pool(env *platform.Env) fx.Option {
	return database(env, fx.Provide(postgres.NewPool))
}

func database(env *platform.Env, provide fx.Option) fx.Option {
	cfg := postgres.Config{
		DatabaseURL: env.Require("DATABASE_URL"),
		MaxConns:    int32(env.Int("DB_MAX_CONNS", 16, 1, 1000)),
	}
	cfg.Retention, cfg.RollupRetention = retentions(env)
	migrate := env.Bool("MIGRATE_ON_START", true)
	return fx.Options(
		fx.Supply(cfg),
		provide,
		fx.Provide(platform.AsCheck(func(pool *pgxpool.Pool) platform.Check {
			return platform.Check{Name: "database", Fn: pool.Ping}
		})),
		fx.Invoke(func(lc fx.Lifecycle, pool *pgxpool.Pool) {
			if !migrate {
				return
			}
			lc.Append(fx.StartHook(func(ctx context.Context) error { return migrateUp(ctx, pool) }))
		}),
	)
}

func migrateUp(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := migrations.Up(ctx, conn.Conn()); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
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
func InProcess(env *platform.Env, writer pgqueue.WriterConfig, reader pgqueue.ReaderConfig) fx.Option {
	store := Store(env)
	switch kind := env.OneOf("QUEUE_BACKEND", QueuePostgres, QueuePostgres, QueueNATS, QueueMemory); kind {
	case QueuePostgres:
		if env.String("STORE_BACKEND", "postgres") != "postgres" {
			store = fx.Options(store, Pool(env)) // the queue still needs the database
		}
		return fx.Options(store, fx.Supply(writer, reader), pgqueue.Module,
			fx.Provide(platform.AsCheck(func(q *pgqueue.Queue) platform.Check { return platform.CheckOf("queue", q) })))
	case QueueNATS:
		return fx.Options(store, natsQueue(env))
	case QueueMemory:
		return fx.Options(store, memory.QueueModule)
	default:
		return fx.Error(fmt.Errorf("QUEUE_BACKEND=%q: want postgres, nats or memory", kind))
	}
}
