package postgres

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/ports"
)

// Config is what the app supplies to Module.
type Config struct {
	// DatabaseURL is a PostgreSQL connection string (URL or key=value).
	DatabaseURL string
	// MaxConns caps the pool; zero keeps the default.
	MaxConns int32
	// Retention and RollupRetention are the store's (Options); zero keeps
	// data forever.
	Retention, RollupRetention time.Duration
}

// Module provides the pool (from a Config in the graph, closed on stop) and
// the telemetry store as ports.TelemetryStore, ports.TelemetryWriter,
// ports.TelemetryReader and ports.TelemetryMaintainer. A *slog.Logger in the graph is used when present.
// Apps that only need the pool (a PostgreSQL queue with a memory store)
// provide NewPool alone.
var Module = fx.Module("postgres",
	fx.Provide(
		NewPool,
		fx.Annotate(newStoreFx,
			fx.ParamTags(``, ``, `optional:"true"`),
			fx.As(new(ports.TelemetryStore)),
			fx.As(new(ports.TelemetryWriter)),
			fx.As(new(ports.TelemetryReader)),
			fx.As(new(ports.TelemetryMaintainer)),
		),
	),
)

// NewPool connects with Connect (failing start-up when the database is
// unreachable) and closes the pool when the app stops.
func NewPool(lc fx.Lifecycle, cfg Config) (*pgxpool.Pool, error) {
	pool, err := Connect(context.Background(), cfg.DatabaseURL, PoolOptions{MaxConns: cfg.MaxConns})
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(pool.Close))
	return pool, nil
}

// newStoreFx is NewTelemetryStore with the Config's retentions.
func newStoreFx(pool *pgxpool.Pool, cfg Config, logger *slog.Logger) *TelemetryStore {
	return NewTelemetryStoreWith(pool, logger, Options{Retention: cfg.Retention, RollupRetention: cfg.RollupRetention,
		RegistryResolution: DefaultRegistryResolution, SeriesResolution: DefaultSeriesResolution})
}
