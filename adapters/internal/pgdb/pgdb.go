// Package pgdb is what every PostgreSQL adapter shares: opening a pool with
// the project's settings, applying the embedded migrations, and the one
// translation of driver errors into the ports sentinels. The telemetry store
// (adapters/postgres) and the queue (adapters/pgqueue) both use it, so a
// SQLSTATE means the same thing on every path.
package pgdb

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/migrations"
)

// DefaultConnectTimeout bounds dialling one connection (and Connect's first
// ping) when PoolOptions.ConnectTimeout is zero.
const DefaultConnectTimeout = 5 * time.Second

// PoolOptions tunes a pool; zero fields keep the defaults.
type PoolOptions struct {
	// MaxConns caps the pool (pgx default: max(4, GOMAXPROCS)).
	MaxConns int32
	// MinConns keeps that many connections open (default 0).
	MinConns int32
	// ConnectTimeout bounds each dial (default DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// MaxConnLifetime recycles connections, so a failed-over server or a
	// changed DNS name is picked up (default 30m, with jitter).
	MaxConnLifetime time.Duration
	// MaxConnIdleTime closes idle connections (default 5m).
	MaxConnIdleTime time.Duration
	// ApplicationName shows in pg_stat_activity unless the DSN sets it.
	ApplicationName string
}

// Connect opens a pool on dsn with opts and pings the server once, so a
// wrong DSN or an unreachable server fails at start-up with a clear error
// (translated: unreachable is ports.ErrUnavailable).
func Connect(ctx context.Context, dsn string, opts PoolOptions) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the DSN, password included: do not wrap it.
		return nil, fmt.Errorf("parse database url: invalid connection string")
	}
	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	cfg.ConnConfig.ConnectTimeout = timeout
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.MinConns > 0 {
		cfg.MinConns = min(opts.MinConns, cfg.MaxConns)
	}
	cfg.MaxConnLifetime = 30 * time.Minute
	if opts.MaxConnLifetime > 0 {
		cfg.MaxConnLifetime = opts.MaxConnLifetime
	}
	cfg.MaxConnLifetimeJitter = cfg.MaxConnLifetime / 10
	cfg.MaxConnIdleTime = 5 * time.Minute
	if opts.MaxConnIdleTime > 0 {
		cfg.MaxConnIdleTime = opts.MaxConnIdleTime
	}
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set && opts.ApplicationName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = opts.ApplicationName
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", Translate(err))
	}
	pingCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, Translate(err))
	}
	return pool, nil
}

// Migrate applies every pending migration on one connection of pool (the
// runner holds an advisory lock on it, so concurrent starters are safe).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: acquire: %w", Translate(err))
	}
	defer conn.Release()
	if _, err := migrations.Up(ctx, conn.Conn()); err != nil {
		return fmt.Errorf("migrate: %w", Translate(err))
	}
	return nil
}
