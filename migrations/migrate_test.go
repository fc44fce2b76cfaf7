package migrations_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/migrations"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func tables(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(),
		`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY 1`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

func TestUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewEmptyDatabase(t))
	require.NoError(t, err)
	defer conn.Close(ctx)

	all, err := migrations.All()
	require.NoError(t, err)
	require.NotEmpty(t, all)

	applied, err := migrations.Up(ctx, conn)
	require.NoError(t, err)
	require.Len(t, applied, len(all))
	require.Equal(t, []string{"dead_letters", "gpus", "queue_messages", "telemetry"}, tables(t, conn))

	again, err := migrations.Up(ctx, conn)
	require.NoError(t, err)
	require.Empty(t, again, "a second up applies nothing")

	reverted, err := migrations.Down(ctx, conn, 0)
	require.NoError(t, err)
	require.Len(t, reverted, len(all))
	require.Empty(t, tables(t, conn))

	applied, err = migrations.Up(ctx, conn)
	require.NoError(t, err)
	require.Len(t, applied, len(all))
	require.Equal(t, []string{"dead_letters", "gpus", "queue_messages", "telemetry"}, tables(t, conn))
}

func TestConcurrentUpAppliesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewEmptyDatabase(t)
	const n = 4
	results := make(chan int, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			applied, err := migrations.Up(ctx, conn)
			errs <- err
			results <- len(applied)
		}()
	}
	total := 0
	for range n {
		require.NoError(t, <-errs)
	}
	for range n {
		total += <-results
	}
	all, err := migrations.All()
	require.NoError(t, err)
	require.Equal(t, len(all), total, "each migration is applied by exactly one runner")
}
