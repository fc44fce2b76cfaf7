package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/migrations"
	"github.com/gpufleet/telemetry/test/pgadmin"
)

// NewDatabase's copy is at the latest migration, and the template it
// copies is this build's.
func TestNewDatabaseIsMigrated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	version, err := migrations.Current(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, migrations.Latest(), version)

	name, err := templateName()
	require.NoError(t, err)
	ok, err := pgadmin.DatabaseExists(ctx, ServerURL(t), name)
	require.NoError(t, err)
	require.True(t, ok, "template %s", name)
}

// Builders racing to make the same template all end with it, made once:
// the losers of the rename drop their builds.
func TestConcurrentTemplateBuilders(t *testing.T) {
	t.Parallel()
	server := ServerURL(t)
	ctx := t.Context()
	name := freshName(templatePrefix + "test_")
	t.Cleanup(func() { require.NoError(t, pgadmin.DropDatabase(context.Background(), server, name)) })

	const builders = 4
	errs := make(chan error, builders)
	for range builders {
		go func() {
			errs <- ensureTemplate(ctx, server, name)
		}()
	}
	for range builders {
		require.NoError(t, <-errs)
	}
	dsn, err := pgadmin.WithDatabase(server, name)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	version, err := migrations.Current(ctx, conn)
	require.NoError(t, conn.Close(ctx))
	require.NoError(t, err)
	require.Equal(t, migrations.Latest(), version)
}
