package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/migrations"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func TestExecRunsAScriptAtomically(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := connect(t, pgtest.NewDatabase(t))

	require.NoError(t, migrations.Exec(ctx, conn, `CREATE TABLE exec_a (id int);
INSERT INTO exec_a VALUES (1), (2);`))
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM exec_a`).Scan(&n))
	require.Equal(t, 2, n, "every statement of the script ran")

	err := migrations.Exec(ctx, conn, `INSERT INTO exec_a VALUES (3);
SELECT * FROM no_such_table;`)
	require.ErrorContains(t, err, "no_such_table")
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM exec_a`).Scan(&n))
	require.Equal(t, 2, n, "a failing script leaves nothing behind")
}
