package pgqueue

import (
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/ports"
)

// Module provides the queue to an fx app: *Writer as ports.Publisher,
// *Reader as ports.Consumer, and *Queue (the two composed) as ports.Queue.
// fx builds only what the app asks for, so mqwriter needs a WriterConfig,
// mqreader a ReaderConfig, and the single-process mode both. It needs a
// *pgxpool.Pool, a *slog.Logger and a prometheus.Registerer in the graph. The
// Writer is closed and the Reader drained on stop.
var Module = fx.Module("pgqueue",
	fx.Provide(
		fx.Annotate(provideWriter, fx.As(fx.Self()), fx.As(new(ports.Publisher))),
		fx.Annotate(provideReader, fx.As(fx.Self()), fx.As(new(ports.Consumer))),
		fx.Annotate(NewQueueOf, fx.As(fx.Self()), fx.As(new(ports.Queue))),
	),
)

func provideWriter(lc fx.Lifecycle, pool *pgxpool.Pool, cfg WriterConfig, logger *slog.Logger, reg prometheus.Registerer) (*Writer, error) {
	w, err := NewWriter(pool, cfg, logger, reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{OnStart: w.Start, OnStop: w.Close})
	return w, nil
}

func provideReader(lc fx.Lifecycle, pool *pgxpool.Pool, cfg ReaderConfig, logger *slog.Logger, reg prometheus.Registerer) (*Reader, error) {
	r, err := NewReader(pool, cfg, logger, reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{OnStart: r.Start, OnStop: r.Drain})
	return r, nil
}
