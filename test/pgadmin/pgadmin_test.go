package pgadmin_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/test/pgadmin"
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
