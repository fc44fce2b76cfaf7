package maintenance_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/apps/internal/maintenance"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

var day0 = time.Date(2025, 7, 14, 0, 0, 0, 0, time.UTC)

func samples(days int) []domain.Record {
	var out []domain.Record
	for h := range days * 24 {
		v := float64(h)
		out = append(out, domain.Record{MsgUUID: uuid.New(), Point: domain.Point{GPUUUID: "GPU-1", MetricName: "DCGM_FI_DEV_GPU_TEMP",
			Timestamp: day0.Add(time.Duration(h) * time.Hour), Value: &v}})
	}
	return out
}

// TestRunOnceMetrics runs the job on both stores with an injected clock and
// checks what it reports in its metrics.
func TestRunOnceMetrics(t *testing.T) {
	t.Parallel()
	// The stores' clock stands at the end of the samples while they are
	// written, so none is refused as expired; maintenance then runs at now.
	written := func() time.Time { return day0.Add(4 * 24 * time.Hour) }
	stores := map[string]func(t *testing.T) ports.TelemetryStore{
		"memory": func(t *testing.T) ports.TelemetryStore {
			s := memory.NewTelemetryStoreWith(memory.Options{Retention: 4 * 24 * time.Hour, Now: written})
			require.NoError(t, s.Start(t.Context()))
			t.Cleanup(s.Close)
			return s
		},
		"postgres": func(t *testing.T) ports.TelemetryStore {
			return postgres.NewTelemetryStoreWith(pgtest.NewPool(t), nil, postgres.Options{Retention: 4 * 24 * time.Hour, Now: written})
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			res, err := s.WriteBatch(t.Context(), samples(4))
			require.NoError(t, err)
			require.Equal(t, 4*24, res.Inserted)
			now := day0.Add(5*24*time.Hour + 12*time.Hour) // day 0 ended more than 4 days ago
			reg := prometheus.NewRegistry()
			r := maintenance.New(s, maintenance.Config{Now: func() time.Time { return now }}, nil, reg)
			rep, err := r.RunOnce(t.Context())
			require.NoError(t, err)
			require.True(t, rep.Ran)
			require.Positive(t, rep.PartitionsDropped)
			dropped, err := testutil.GatherAndCount(reg, "telemetry_partitions_dropped_total")
			require.NoError(t, err)
			require.Equal(t, 1, dropped)
			m, err := reg.Gather()
			require.NoError(t, err)
			values := map[string]float64{}
			for _, f := range m {
				for _, metric := range f.Metric {
					if metric.Counter != nil && len(metric.Label) == 0 {
						values[f.GetName()] = metric.Counter.GetValue()
					}
					if metric.Gauge != nil {
						values[f.GetName()] = metric.Gauge.GetValue()
					}
					for _, l := range metric.Label {
						if l.GetValue() == "ok" {
							values["ok"] = metric.Counter.GetValue()
						}
					}
				}
			}
			require.Equal(t, 1.0, values["ok"])
			require.Equal(t, float64(rep.PartitionsDropped), values["telemetry_partitions_dropped_total"])
			require.LessOrEqual(t, values["telemetry_rollup_lag_seconds"], 180.0, "rolled up to within the settling delay")
			promxtest.RequireLintClean(t, reg)
		})
	}
}

// TestStartStop: the loop runs once at start and stops on demand; a zero
// interval disables it.
func TestStartStop(t *testing.T) {
	t.Parallel()
	s := memory.NewTelemetryStore()
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(s.Close)
	reg := prometheus.NewRegistry()
	r := maintenance.New(s, maintenance.Config{Interval: time.Hour}, nil, reg)
	r.Start()
	require.Eventually(t, func() bool {
		n, err := testutil.GatherAndCount(reg, "telemetry_maintenance_runs_total")
		return err == nil && n == 3 && counterOK(reg) == 1
	}, 10*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, r.Stop(ctx))

	off := maintenance.New(s, maintenance.Config{}, nil, nil)
	off.Start()
	require.NoError(t, off.Stop(ctx))
}

func counterOK(reg *prometheus.Registry) float64 {
	m, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, f := range m {
		if f.GetName() != "telemetry_maintenance_runs_total" {
			continue
		}
		for _, metric := range f.Metric {
			if metric.Label[0].GetValue() == "ok" {
				return metric.Counter.GetValue()
			}
		}
	}
	return 0
}
