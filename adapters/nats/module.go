package nats

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/ports"
)

// Module provides the JetStream queue to an fx app (QUEUE_BACKEND=nats) as
// *Queue, ports.Queue, ports.Publisher and ports.Consumer, from a Config the
// app supplies, and closes it when the app stops.
var Module = fx.Module("nats",
	fx.Provide(fx.Annotate(provideQueue,
		fx.As(fx.Self()), fx.As(new(ports.Queue)), fx.As(new(ports.Publisher)), fx.As(new(ports.Consumer)))),
)

// Params are the fx inputs of Module; the logger and registerer are optional.
type Params struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Config     Config
	Logger     *slog.Logger          `optional:"true"`
	Registerer prometheus.Registerer `optional:"true"`
}

// connectTimeout bounds New's JetStream check when fx builds the queue.
const connectTimeout = 10 * time.Second

func provideQueue(p Params) (*Queue, error) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	q, err := New(ctx, p.Config, p.Logger, p.Registerer)
	if err != nil {
		return nil, err
	}
	p.Lifecycle.Append(fx.Hook{OnStart: q.Start, OnStop: func(context.Context) error { return q.Close() }})
	return q, nil
}
