// The queue's Prometheus collectors and its fx module.

package memory

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/internal/promx"
	"github.com/gpufleet/telemetry/ports"
)

// queueMetrics are the queue's Prometheus collectors.
type queueMetrics struct {
	published, duplicates, acked, released, expired, deadLettered prometheus.Counter
	ready, leased                                                 prometheus.Gauge
}

func newQueueMetrics(reg prometheus.Registerer) queueMetrics {
	counter := func(name, help string) prometheus.Counter { return promx.Counter("memory_queue_"+name, help) }
	gauge := func(name, help string) prometheus.Gauge { return promx.Gauge("memory_queue_"+name, help) }
	m := queueMetrics{
		published:  counter("messages_published_total", "Messages accepted by Publish."),
		duplicates: counter("messages_duplicate_total", "Published messages dropped as duplicates of an idempotency key."),
		acked:      counter("messages_acked_total", "Messages deleted by Ack."),
		released:   counter("messages_released_total", "Messages returned to ready by Release."),
		expired:    counter("leases_expired_total", "Leases that expired before Ack or Release."),
		deadLettered: counter("messages_dead_lettered_total",
			"Messages moved to the dead letters at the delivery limit."),
		ready:  gauge("ready_messages", "Messages ready to lease."),
		leased: gauge("leased_messages", "Messages under a live lease."),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.duplicates, m.acked, m.released, m.expired, m.deadLettered, m.ready, m.leased)
	}
	return m
}

// QueueParams are the fx inputs of QueueModule; all are optional.
type QueueParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Options    QueueOptions          `optional:"true"`
	Logger     *slog.Logger          `optional:"true"`
	Registerer prometheus.Registerer `optional:"true"`
}

func newQueueFx(p QueueParams) (*Queue, error) {
	opts := p.Options
	if opts.Logger == nil {
		opts.Logger = p.Logger
	}
	if opts.Registerer == nil {
		opts.Registerer = p.Registerer
	}
	q, err := NewQueueChecked(opts)
	if err != nil {
		return nil, err
	}
	p.Lifecycle.Append(fx.Hook{OnStart: q.Start, OnStop: func(context.Context) error { q.Close(); return nil }})
	return q, nil
}

// QueueModule provides the in-memory queue as ports.Queue, ports.Publisher and
// ports.Consumer (QUEUE_BACKEND=memory), closed when the app stops.
var QueueModule = fx.Module("memory.queue",
	fx.Provide(fx.Annotate(newQueueFx,
		fx.As(new(ports.Queue)), fx.As(new(ports.Publisher)), fx.As(new(ports.Consumer)))),
)
