package pgadmin_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/test/pgadmin"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable": "postgres://u:p@127.0.0.1:5432/bench?sslmode=disable",
		"host=h user=u": "host=h user=u dbname=bench",
	} {
		got, err := pgadmin.WithDatabase(in, "bench")
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err := pgadmin.WithDatabase("postgres://[bad", "bench")
	require.Error(t, err)
}

func TestRedact(t *testing.T) {
	t.Parallel()
	require.Equal(t, "postgres://u:xxxxx@h/db", pgadmin.Redact("postgres://u:secret@h/db"))
	require.Equal(t, "(key=value connection string)", pgadmin.Redact("host=h password=secret"))
}

// TestCreateMigrateDrop runs the database chores against the test server:
// CreateDatabase refuses an existing name, EnsureDatabase accepts it, Migrate
// answers a connection string to the migrated database.
func TestCreateMigrateDrop(t *testing.T) {
	t.Parallel()
	admin := pgtest.ServerURL(t)
	ctx := t.Context()
	name := "pgadmin_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	t.Cleanup(func() { require.NoError(t, pgadmin.DropDatabase(context.WithoutCancel(ctx), admin, name)) })

	require.NoError(t, pgadmin.EnsureDatabase(ctx, admin, name), "missing database")
	require.NoError(t, pgadmin.EnsureDatabase(ctx, admin, name), "existing database")
	require.ErrorContains(t, pgadmin.CreateDatabase(ctx, admin, name), "create database "+name)

	dsn, err := pgadmin.Migrate(ctx, admin, name)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var db string
	require.NoError(t, conn.QueryRow(ctx, "SELECT current_database()").Scan(&db))
	require.Equal(t, name, db)
	var tables int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'gpus'").Scan(&tables))
	require.Equal(t, 1, tables, "migrated")

	require.NoError(t, pgadmin.DropDatabase(ctx, admin, name))
	require.NoError(t, pgadmin.CreateDatabase(ctx, admin, name), "after the drop")
}

// TestCopyAndRename copies a migrated database with CreateDatabaseFrom and
// renames a database, refusing a name that is taken.
func TestCopyAndRename(t *testing.T) {
	t.Parallel()
	admin := pgtest.ServerURL(t)
	ctx := t.Context()
	fresh := func() string { return "pgadmin_" + strings.ReplaceAll(uuid.NewString(), "-", "") }
	src, copied, renamed := fresh(), fresh(), fresh()
	t.Cleanup(func() {
		for _, n := range []string{src, copied, renamed} {
			require.NoError(t, pgadmin.DropDatabase(context.WithoutCancel(ctx), admin, n))
		}
	})
	require.NoError(t, pgadmin.CreateDatabase(ctx, admin, src))
	_, err := pgadmin.Migrate(ctx, admin, src)
	require.NoError(t, err)

	require.NoError(t, pgadmin.CreateDatabaseFrom(ctx, admin, copied, src))
	dsn, err := pgadmin.WithDatabase(admin, copied)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	var tables int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'gpus'").Scan(&tables))
	require.NoError(t, conn.Close(ctx))
	require.Equal(t, 1, tables, "the copy holds the template's schema")

	require.ErrorContains(t, pgadmin.RenameDatabase(ctx, admin, copied, src), "already exists")
	require.NoError(t, pgadmin.RenameDatabase(ctx, admin, copied, renamed))
	for name, want := range map[string]bool{src: true, copied: false, renamed: true} {
		ok, err := pgadmin.DatabaseExists(ctx, admin, name)
		require.NoError(t, err)
		require.Equal(t, want, ok, name)
	}
}
