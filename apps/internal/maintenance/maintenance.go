// Package maintenance runs the telemetry store's lifecycle job on a timer:
// partitions created ahead, raw samples and rollups past their retention
// dropped, 1-minute rollups brought up to date (ports.TelemetryMaintainer).
//
// It runs inside the collector (and the single-process pipeline): the
// collector is the store's writer, already holds its connection budget and
// scales out, and the store serialises runners with an advisory lock, so
// however many collectors run, one does the work at a time and another takes
// over when it dies. A separate app would be one more deployment to keep
// alive for a job that takes seconds a minute; apigw is read-only by design.
package maintenance

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/internal/promx"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

// Config tunes the job.
type Config struct {
	// Interval between runs; 0 disables the job in this process.
	Interval time.Duration
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
}

type metrics struct {
	runs                       *prometheus.CounterVec
	created, dropped, rolledUp prometheus.Counter
	lag                        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: promx.CounterVec("telemetry_maintenance_runs_total",
			"Maintenance runs by result: ok, skipped (another runner held the lock), error.", "result"),
		created:  promx.Counter("telemetry_partitions_created_total", "Day partitions created ahead by maintenance."),
		dropped:  promx.Counter("telemetry_partitions_dropped_total", "Day partitions dropped past their retention."),
		rolledUp: promx.Counter("telemetry_rollup_rows_total", "1-minute rollup rows written (re-rolled rows count again)."),
		lag:      promx.Gauge("telemetry_rollup_lag_seconds", "Now minus the rollup watermark after this process's last run."),
	}
	promx.Zero(m.runs, "ok", "skipped", "error")
	if reg != nil {
		reg.MustRegister(m.runs, m.created, m.dropped, m.rolledUp, m.lag)
	}
	return m
}

// Runner runs the job every Interval until stopped.
type Runner struct {
	store ports.TelemetryMaintainer
	cfg   Config
	log   *slog.Logger
	m     *metrics

	run *startstop.Loop // set by Start; nil (a loop that never ran) with Interval 0
}

// New builds a Runner; it starts nothing.
func New(store ports.TelemetryMaintainer, cfg Config, logger *slog.Logger, reg prometheus.Registerer) *Runner {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Runner{store: store, cfg: cfg, log: logger.With("component", "maintenance"), m: newMetrics(reg)}
}

// RunOnce runs the job once and records its metrics.
func (r *Runner) RunOnce(ctx context.Context) (ports.MaintenanceReport, error) {
	now := r.cfg.Now()
	rep, err := r.store.Maintain(ctx, now)
	r.m.created.Add(float64(rep.PartitionsCreated))
	r.m.dropped.Add(float64(rep.PartitionsDropped))
	r.m.rolledUp.Add(float64(rep.RowsRolledUp))
	switch {
	case err != nil:
		r.m.runs.WithLabelValues("error").Inc()
		return rep, err
	case !rep.Ran:
		r.m.runs.WithLabelValues("skipped").Inc()
		return rep, nil
	}
	r.m.runs.WithLabelValues("ok").Inc()
	if !rep.RolledUpTo.IsZero() {
		r.m.lag.Set(now.Sub(rep.RolledUpTo).Seconds())
	}
	return rep, nil
}

// Start runs the job now and then every Interval in a goroutine of its own
// (with its own context: the OnStart context ends with start-up). With
// Interval 0 it does nothing.
func (r *Runner) Start() {
	if r.cfg.Interval > 0 {
		r.run = startstop.Go(r.loop)
	}
}

func (r *Runner) loop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		rep, err := r.RunOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log.Error("telemetry maintenance failed; retrying next interval", "err", err)
		case rep.Ran:
			r.log.Info("telemetry maintenance", "partitions_created", rep.PartitionsCreated, "partitions_dropped", rep.PartitionsDropped,
				"rollup_rows", rep.RowsRolledUp, "rolled_up_to", rep.RolledUpTo)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop cancels a run in progress (its committed chunks stay; the next run
// resumes) and waits for the loop, or for ctx.
func (r *Runner) Stop(ctx context.Context) error { return r.run.Stop(ctx) }
