// Package pgdb is what every PostgreSQL adapter shares: opening a pool with
// the project's settings (per-app timeouts as connection parameters, a lazy
// first connection), the schema-version check behind /readyz, applying the
// embedded migrations, and the one translation of driver errors into the
// ports sentinels. The telemetry store (adapters/postgres) and the queue
// (adapters/pgqueue) both use it, so a SQLSTATE means the same thing on every
// path.
package pgdb

import (
	"context"
	"fmt"
	"strconv"
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
	// Timeouts are sent as connection parameters (the server applies them
	// to every statement of the session); zero leaves the server's setting.
	Timeouts Timeouts
}

// Timeouts are the server-side limits of one app's sessions. They travel as
// startup parameters (pgx RuntimeParams), so they hold from the first
// statement on, need no extra round trip, and survive a reconnect after a
// failover. A parameter the DSN sets itself wins.
type Timeouts struct {
	// Statement is statement_timeout: the longest one statement may run.
	Statement time.Duration
	// Lock is lock_timeout: the longest a statement waits for a lock, so a
	// statement queued behind DDL fails fast instead of queueing writers
	// behind itself.
	Lock time.Duration
	// IdleInTransaction is idle_in_transaction_session_timeout: a session
	// that holds a transaction open without working is ended, releasing
	// its locks and snapshot.
	IdleInTransaction time.Duration
}

// Params returns the timeouts as PostgreSQL parameters in milliseconds,
// omitting zero ones.
func (t Timeouts) Params() map[string]string {
	out := map[string]string{}
	for name, d := range map[string]time.Duration{
		"statement_timeout":                   t.Statement,
		"lock_timeout":                        t.Lock,
		"idle_in_transaction_session_timeout": t.IdleInTransaction,
	} {
		if d > 0 {
			out[name] = strconv.FormatInt(max(d.Milliseconds(), 1), 10)
		}
	}
	return out
}

// Open builds a pool on dsn with opts without connecting: the first
// connection is made by the first query (or Ping), so an app starts while
// the database is down and recovers on its own when it returns. Only a
// malformed DSN fails here.
func Open(dsn string, opts PoolOptions) (*pgxpool.Pool, error) {
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
	params := opts.Timeouts.Params()
	if opts.ApplicationName != "" {
		params["application_name"] = opts.ApplicationName
	}
	for k, v := range params {
		if _, set := cfg.ConnConfig.RuntimeParams[k]; !set {
			cfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	// pgxpool.NewWithConfig dials nothing (MinConns are dialled in the
	// background), so its context is not used for I/O here.
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", Translate(err))
	}
	return pool, nil
}

// Connect is Open followed by one ping, so a wrong DSN or an unreachable
// server fails at once with a clear error (translated: unreachable is
// ports.ErrUnavailable). Tools and tests use it; the apps use Open.
func Connect(ctx context.Context, dsn string, opts PoolOptions) (*pgxpool.Pool, error) {
	pool, err := Open(dsn, opts)
	if err != nil {
		return nil, err
	}
	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	pingCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		cc := pool.Config().ConnConfig
		pool.Close()
		return nil, fmt.Errorf("ping %s:%d: %w", cc.Host, cc.Port, Translate(err))
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
