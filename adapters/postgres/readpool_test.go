package postgres_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// TestReadPoolServesReads: with Options.ReadPool the API's queries go there
// (here a second, empty database stands in for a replica that has not yet
// replayed the write) while writes go to the primary pool.
func TestReadPoolServesReads(t *testing.T) {
	t.Parallel()
	primary, replica := pgtest.NewPool(t), pgtest.NewPool(t)
	s := postgres.NewTelemetryStoreWith(primary, nil, postgres.Options{ReadPool: replica})
	_, err := s.WriteBatch(t.Context(), []domain.Record{record("GPU-01", base)})
	require.NoError(t, err)
	require.Equal(t, 1, count(t, primary, "telemetry_samples"))

	gpus, err := s.ListGPUs(t.Context())
	require.NoError(t, err)
	require.Empty(t, gpus, "read from the read pool")
	_, err = s.QueryTelemetry(t.Context(), ports.TelemetryQuery{GPUUUID: "GPU-01", Limit: 10})
	require.ErrorIs(t, err, ports.ErrNotFound, "the replica does not know the GPU yet")

	direct := postgres.NewTelemetryStoreWith(primary, nil, postgres.Options{})
	gpus, err = direct.ListGPUs(t.Context())
	require.NoError(t, err)
	require.Len(t, gpus, 1, "no read pool: reads from the primary")
}
