package postgres

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/adapters/internal/pgdb"
)

// DefaultConnectTimeout bounds dialling one connection (and Connect's first
// ping) when PoolOptions.ConnectTimeout is zero.
const DefaultConnectTimeout = pgdb.DefaultConnectTimeout

// PoolOptions tunes a pool; zero fields keep the defaults.
type PoolOptions = pgdb.PoolOptions

// Connect opens a pool on dsn with opts and pings the server once, so a
// wrong DSN or an unreachable server fails at once with a clear error
// (unreachable is ports.ErrUnavailable): for tools and tests. The apps use
// NewPool, which does not connect until the pool is used.
func Connect(ctx context.Context, dsn string, opts PoolOptions) (*pgxpool.Pool, error) {
	return pgdb.Connect(ctx, dsn, opts)
}

// Migrate applies every pending migration (see pgdb.Migrate).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error { return pgdb.Migrate(ctx, pool) }

// translate is pgdb.Translate, the project's one reading of driver errors.
func translate(err error) error { return pgdb.Translate(err) }
