package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/contract/storetest"
)

func newStore(t testing.TB) ports.TelemetryStore {
	s := memory.NewTelemetryStore()
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(s.Close)
	return s
}

func newStoreWith(t testing.TB, o storetest.Options) ports.TelemetryStore {
	s := memory.NewTelemetryStoreWith(memory.Options{Retention: o.Retention, RollupRetention: o.RollupRetention, Now: o.Now})
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(s.Close)
	return s
}

func TestStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, newStoreWith)
}

func TestStoreClosed(t *testing.T) {
	t.Parallel()
	s := memory.NewTelemetryStore()
	require.NoError(t, s.Start(t.Context()))
	require.NoError(t, s.Check(context.Background()))
	s.Close()
	s.Close() // idempotent
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"check", func() error { return s.Check(ctx) }},
		{"list", func() error { _, err := s.ListGPUs(ctx); return err }},
		{"write", func() error {
			r := domain.Record{MsgUUID: uuid.New(), Point: domain.Point{GPUUUID: "GPU-x", MetricName: "m", Timestamp: time.Now()}}
			_, err := s.WriteBatch(ctx, []domain.Record{r})
			return err
		}},
		{"dead letter write", func() error {
			return s.WriteDeadLetters(ctx, []domain.DeadLetter{{MsgUUID: uuid.New()}})
		}},
		{"query", func() error {
			_, err := s.QueryTelemetry(ctx, ports.TelemetryQuery{GPUUUID: "GPU-x", Limit: 1})
			return err
		}},
		{"dead letters", func() error { _, err := s.DeadLetters(ctx); return err }},
		{"list dead letters", func() error { _, err := s.ListDeadLetters(ctx, ports.DeadLetterQuery{Limit: 1}); return err }},
		{"pipeline stats", func() error { _, err := s.PipelineStats(ctx); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.call()
			require.ErrorIs(t, err, ports.ErrClosed)
		})
	}
}

func TestStoreCancelledContext(t *testing.T) {
	t.Parallel()
	s := memory.NewTelemetryStore()
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(s.Close)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.ListGPUs(ctx)
	require.ErrorIs(t, err, context.Canceled)
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, newStore)
}

func TestStoreModule(t *testing.T) {
	t.Parallel()
	require.NoError(t, fx.ValidateApp(memory.StoreModule,
		fx.Invoke(func(ports.TelemetryStore, ports.TelemetryWriter, ports.TelemetryReader) {})))
	var (
		writer ports.TelemetryWriter
		reader ports.TelemetryReader
	)
	app := fxtest.New(t, memory.StoreModule, fx.Populate(&writer, &reader))
	app.RequireStart()
	r := domain.Record{MsgUUID: uuid.New(), Point: domain.Point{GPUUUID: "GPU-x", MetricName: "m", Timestamp: time.Now()}}
	_, err := writer.WriteBatch(context.Background(), []domain.Record{r})
	require.NoError(t, err)
	gpus, err := reader.ListGPUs(context.Background())
	require.NoError(t, err)
	require.Len(t, gpus, 1, "writer and reader are the same store")
	app.RequireStop()
	_, err = reader.ListGPUs(context.Background())
	require.ErrorIs(t, err, ports.ErrClosed, "the store is closed on stop")
}
