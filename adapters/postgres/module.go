package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/internal/pgdb"
	"github.com/gpufleet/telemetry/ports"
)

// Config is what the app supplies to Module.
type Config struct {
	// DatabaseURL is a PostgreSQL connection string (URL or key=value); a
	// multi-host one with target_session_attrs=read-write follows a
	// failover by itself.
	DatabaseURL string
	// ReadURL, when set, is where the store's read-only queries go (a
	// replica); empty reads from DatabaseURL.
	ReadURL string
	// MaxConns caps the pool (and the read pool); zero keeps the default.
	MaxConns int32
	// ApplicationName shows in pg_stat_activity.
	ApplicationName string
	// Timeouts are the app's server-side limits (connection parameters).
	Timeouts Timeouts
	// Retention and RollupRetention are the store's (Options); zero keeps
	// data forever.
	Retention, RollupRetention time.Duration
}

// Timeouts are a session's statement_timeout, lock_timeout and
// idle_in_transaction_session_timeout (see pgdb.Timeouts).
type Timeouts = pgdb.Timeouts

// ReadPool is the pool of Config.ReadURL, or the primary pool when it is
// empty (a distinct type, so fx can tell the two apart).
type ReadPool struct{ *pgxpool.Pool }

// Module provides the pool (from a Config in the graph, closed on stop) and
// the telemetry store as ports.TelemetryStore, ports.TelemetryWriter,
// ports.TelemetryReader and ports.TelemetryMaintainer. A *slog.Logger in the graph is used when present.
// Apps that only need the pool (a PostgreSQL queue with a memory store)
// provide NewPool alone.
var Module = fx.Module("postgres",
	fx.Provide(
		NewPool,
		NewReadPool,
		fx.Annotate(newStoreFx,
			fx.ParamTags(``, ``, ``, `optional:"true"`),
			fx.As(new(ports.TelemetryStore)),
			fx.As(new(ports.TelemetryWriter)),
			fx.As(new(ports.TelemetryReader)),
			fx.As(new(ports.TelemetryMaintainer)),
		),
	),
)

// NewPool builds the pool without connecting (pgdb.Open): the app starts
// while the database is down, /readyz says so, and the pool connects when
// it returns. It is closed when the app stops.
func NewPool(lc fx.Lifecycle, cfg Config) (*pgxpool.Pool, error) {
	return open(lc, cfg.DatabaseURL, cfg)
}

// NewReadPool opens Config.ReadURL the same way, or returns the primary
// pool when no read URL is set.
func NewReadPool(lc fx.Lifecycle, cfg Config, primary *pgxpool.Pool) (ReadPool, error) {
	if cfg.ReadURL == "" {
		return ReadPool{primary}, nil
	}
	p, err := open(lc, cfg.ReadURL, cfg)
	if err != nil {
		return ReadPool{}, fmt.Errorf("DATABASE_READ_URL: %w", err)
	}
	return ReadPool{p}, nil
}

func open(lc fx.Lifecycle, dsn string, cfg Config) (*pgxpool.Pool, error) {
	pool, err := pgdb.Open(dsn, PoolOptions{MaxConns: cfg.MaxConns, ApplicationName: cfg.ApplicationName, Timeouts: cfg.Timeouts})
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(pool.Close))
	return pool, nil
}

// newStoreFx is NewTelemetryStore with the Config's retentions and read pool.
func newStoreFx(pool *pgxpool.Pool, read ReadPool, cfg Config, logger *slog.Logger) *TelemetryStore {
	return NewTelemetryStoreWith(pool, logger, Options{Retention: cfg.Retention, RollupRetention: cfg.RollupRetention,
		RegistryResolution: DefaultRegistryResolution, SeriesResolution: DefaultSeriesResolution, ReadPool: read.Pool})
}

// CheckSchema is the apps' database readiness check (pgdb.CheckSchema): the
// server answers and its schema is the one this build knows.
func CheckSchema(ctx context.Context, pool *pgxpool.Pool) error { return pgdb.CheckSchema(ctx, pool) }

// ErrSchemaNewer and ErrSchemaBehind are the causes CheckSchema reports (see pgdb).
var (
	ErrSchemaNewer  = pgdb.ErrSchemaNewer
	ErrSchemaBehind = pgdb.ErrSchemaBehind
)
