package migrations_test

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/migrations"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// fsOf builds a migrations folder: version → up body (down drops nothing).
func fsOf(ups map[string]string) fstest.MapFS {
	out := fstest.MapFS{}
	for name, body := range ups {
		out[name+".up.sql"] = &fstest.MapFile{Data: []byte(body)}
		out[name+".down.sql"] = &fstest.MapFile{Data: []byte("SELECT 1;")}
	}
	return out
}

func TestLockWaitIsBounded(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewEmptyDatabase(t)
	holder := connect(t, dsn)
	// Another runner holds the lock (the same key the runner uses).
	_, err := holder.Exec(t.Context(), `SELECT pg_advisory_lock($1)`, migrations.LockKey)
	require.NoError(t, err)

	conn := connect(t, dsn)
	r := migrations.Runner{LockWait: 300 * time.Millisecond, Poll: 50 * time.Millisecond}
	_, err = r.Up(t.Context(), conn)
	require.ErrorIs(t, err, migrations.ErrLockWait, "a held lock ends the wait, not the runner")

	_, err = holder.Exec(t.Context(), `SELECT pg_advisory_unlock($1)`, migrations.LockKey)
	require.NoError(t, err)
	applied, err := r.Up(t.Context(), conn)
	require.NoError(t, err)
	require.Len(t, applied, len(must(migrations.All())))
	v, err := migrations.Current(t.Context(), conn)
	require.NoError(t, err)
	require.Equal(t, migrations.Latest(), v)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestLockTimeoutRetriesAndNeverQueuesWriters: a migration that needs a
// lock a long transaction holds gives up after lock_timeout (so writers
// queued behind it wait at most that long), is retried, records nothing
// when every try failed, and applies once the lock is free.
func TestLockTimeoutRetriesAndNeverQueuesWriters(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewEmptyDatabase(t)
	setup := connect(t, dsn)
	_, err := setup.Exec(t.Context(), `CREATE TABLE busy (id int)`)
	require.NoError(t, err)

	reader := connect(t, dsn)
	tx, err := reader.Begin(t.Context())
	require.NoError(t, err)
	_, err = tx.Exec(t.Context(), `SELECT * FROM busy`) // ACCESS SHARE until the tx ends
	require.NoError(t, err)

	fsys := fsOf(map[string]string{"0001_add": "ALTER TABLE busy ADD COLUMN note text;"})
	conn := connect(t, dsn)
	r := migrations.Runner{FS: fsys, LockTimeout: 100 * time.Millisecond, Attempts: 3, Poll: 20 * time.Millisecond}
	_, err = r.Up(t.Context(), conn)
	require.ErrorContains(t, err, "hit 3 times")
	v, err := migrations.Current(t.Context(), conn)
	require.NoError(t, err)
	require.Zero(t, v, "a migration that never got its lock is not recorded")

	// While it waited, a writer could still write (the ALTER gave up):
	writer := connect(t, dsn)
	_, err = writer.Exec(t.Context(), `INSERT INTO busy VALUES (1)`)
	require.NoError(t, err)

	require.NoError(t, tx.Rollback(t.Context()))
	applied, err := r.Up(t.Context(), conn)
	require.NoError(t, err)
	require.Equal(t, []int{1}, applied)
}

func TestNoTransactionMigration(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewEmptyDatabase(t)
	conn := connect(t, dsn)
	fsys := fsOf(map[string]string{
		"0001_table": "CREATE TABLE things (id int, at timestamptz);",
		"0002_index": migrations.NoTransaction + `
-- CREATE INDEX CONCURRENTLY fails inside a transaction block.
DROP INDEX CONCURRENTLY IF EXISTS things_at;
CREATE INDEX CONCURRENTLY IF NOT EXISTS things_at
    ON things (at);
`,
	})
	// The session's own timeouts survive the migration.
	_, err := conn.Exec(t.Context(), `SET statement_timeout = 1234`)
	require.NoError(t, err)
	applied, err := migrations.Runner{FS: fsys}.Up(t.Context(), conn)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, applied)
	var valid bool
	require.NoError(t, conn.QueryRow(t.Context(),
		`SELECT indisvalid FROM pg_index WHERE indexrelid = 'things_at'::regclass`).Scan(&valid))
	require.True(t, valid)
	var st string
	require.NoError(t, conn.QueryRow(t.Context(), `SHOW statement_timeout`).Scan(&st))
	require.Equal(t, "1234ms", st)
}

func TestStatementsAndMarker(t *testing.T) {
	t.Parallel()
	body := migrations.NoTransaction + "\n-- why\nCREATE INDEX CONCURRENTLY a\n  ON t (x);\n\nDROP INDEX b; \n-- trailing comment\n"
	require.True(t, migrations.IsNoTransaction(body))
	require.Equal(t, []string{"-- migrate:no-transaction\n-- why\nCREATE INDEX CONCURRENTLY a\n  ON t (x);", "DROP INDEX b;"},
		migrations.Statements(body))
	require.False(t, migrations.IsNoTransaction("CREATE TABLE x ();\n"+migrations.NoTransaction),
		"the marker counts only in the leading comments")
	require.False(t, migrations.IsNoTransaction("-- a plain migration\nCREATE TABLE x ();"))
}
