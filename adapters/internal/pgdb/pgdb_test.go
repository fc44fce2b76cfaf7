package pgdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/internal/pgdb"
	"github.com/gpufleet/telemetry/ports"
)

func TestTimeoutsAsParameters(t *testing.T) {
	t.Parallel()
	require.Equal(t, map[string]string{"statement_timeout": "15000", "lock_timeout": "1000", "idle_in_transaction_session_timeout": "1"},
		pgdb.Timeouts{Statement: 15 * time.Second, Lock: time.Second, IdleInTransaction: time.Microsecond}.Params(),
		"milliseconds, and never 0 (off) for a positive duration")
	require.Empty(t, pgdb.Timeouts{}.Params(), "zero leaves the server's setting")
}

// TestOpenDoesNotConnect: a pool on an address nothing listens on opens
// (the app starts), and fails only when used, as unavailable.
func TestOpenDoesNotConnect(t *testing.T) {
	t.Parallel()
	pool, err := pgdb.Open("postgres://x@127.0.0.1:1/x?lock_timeout=250", pgdb.PoolOptions{MaxConns: 3, ApplicationName: "t",
		Timeouts: pgdb.Timeouts{Statement: time.Second, Lock: 2 * time.Second}})
	require.NoError(t, err)
	defer pool.Close()
	cfg := pool.Config()
	require.EqualValues(t, 3, cfg.MaxConns)
	params := cfg.ConnConfig.RuntimeParams
	require.Equal(t, "1000", params["statement_timeout"])
	require.Equal(t, "250", params["lock_timeout"], "the DSN's own setting wins")
	require.Equal(t, "t", params["application_name"])

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err = pgdb.CheckSchema(ctx, pool)
	var nr *ports.NotReadyError
	require.ErrorAs(t, err, &nr)
	require.Equal(t, "database unreachable", nr.Reason)
	require.ErrorIs(t, err, ports.ErrUnavailable)

	_, err = pgdb.Open("postgres://u:secret@[::1", pgdb.PoolOptions{})
	require.EqualError(t, err, "parse database url: invalid connection string", "never quotes the DSN")
}
