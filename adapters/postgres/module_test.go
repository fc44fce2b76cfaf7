package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func TestModuleValidates(t *testing.T) {
	t.Parallel()
	require.NoError(t, fx.ValidateApp(
		fx.Supply(postgres.Config{DatabaseURL: "postgres://unused"}),
		postgres.Module,
		fx.Invoke(func(ports.TelemetryStore, ports.TelemetryWriter, ports.TelemetryReader) {}),
	))
}

func TestModuleStartStop(t *testing.T) {
	t.Parallel()
	var (
		writer ports.TelemetryWriter
		reader ports.TelemetryReader
		store  ports.TelemetryStore
		pool   *pgxpool.Pool
	)
	app := fxtest.New(t,
		fx.Supply(postgres.Config{DatabaseURL: pgtest.NewDatabase(t), MaxConns: 2}),
		postgres.Module,
		fx.Populate(&writer, &reader, &store, &pool),
	)
	app.RequireStart()
	require.EqualValues(t, 2, pool.Config().MaxConns)
	ctx := context.Background()
	res, err := writer.WriteBatch(ctx, []domain.Record{record("GPU-01", base)})
	require.NoError(t, err)
	require.Equal(t, 1, res.Inserted)
	gpus, err := reader.ListGPUs(ctx)
	require.NoError(t, err)
	require.Len(t, gpus, 1)
	require.NotNil(t, store)
	app.RequireStop()
	_, err = reader.ListGPUs(ctx)
	require.ErrorIs(t, err, ports.ErrUnavailable, "the pool is closed on stop")
}
