package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// sqlRollupsBySQL aggregates raw samples per series and minute the plain
// way (date_trunc, DISTINCT ON for the newest non-null value), to check the
// rollup job's rows against.
const sqlRollupsBySQL = `WITH agg AS (
    SELECT series_id, date_trunc('minute', ts) AS bucket, count(value) AS n, min(value) AS mn, max(value) AS mx, sum(value) AS sm
    FROM telemetry_samples WHERE ts < $1 GROUP BY 1, 2),
lastv AS (
    SELECT DISTINCT ON (series_id, date_trunc('minute', ts)) series_id, date_trunc('minute', ts) AS bucket, value
    FROM telemetry_samples WHERE ts < $1 AND value IS NOT NULL ORDER BY series_id, date_trunc('minute', ts), ts DESC)
SELECT a.series_id, a.bucket, a.n, a.mn, a.mx, a.sm, l.value
FROM agg a LEFT JOIN lastv l USING (series_id, bucket) ORDER BY 1, 2`

const sqlRollupRows = `SELECT series_id, bucket, count, min, max, sum, last FROM telemetry_rollups_1m WHERE bucket < $1 ORDER BY 1, 2`

func rows(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) []string {
	t.Helper()
	r, err := pool.Query(context.Background(), sql, args...)
	require.NoError(t, err)
	out, err := pgx.CollectRows(r, func(row pgx.CollectableRow) (string, error) {
		v, err := row.Values()
		for i := range v {
			if ts, ok := v[i].(time.Time); ok {
				v[i] = ts.UTC()
			}
			if f, ok := v[i].(float64); ok {
				v[i] = fmt.Sprintf("%.9g", f)
			}
		}
		return fmt.Sprint(v), err
	})
	require.NoError(t, err)
	return out
}

func randomSamples(n int, seed uint64) []domain.Record {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]domain.Record, 0, n)
	for i := range n {
		r := record(fmt.Sprintf("GPU-%02d", rng.IntN(5)), base.Add(time.Duration(i)*3*time.Second+time.Duration(rng.IntN(999))*time.Millisecond))
		r.MetricName = []string{"util", "temp", "power"}[rng.IntN(3)]
		if rng.IntN(15) == 0 {
			r.Value = nil
		} else {
			r.Value = ptr(float64(rng.IntN(10000)) / 7)
		}
		out = append(out, r)
	}
	return out
}

// TestRollupsEqualSQLAggregate checks every rollup row the job wrote against
// a plain SQL aggregate over the same raw rows, after a first run, after a
// run that resumes from a watermark set back (as if a killed run's last
// chunk never committed) with late samples in between, and after rows of a
// chunk were lost.
func TestRollupsEqualSQLAggregate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := postgres.NewTelemetryStoreWith(pool, nil, postgres.Options{})
	in := randomSamples(3000, 1) // 2.5 hours
	_, err := s.WriteBatch(ctx, in[:2000])
	require.NoError(t, err)
	now := base.Add(100 * time.Minute)
	rep, err := s.Maintain(ctx, now)
	require.NoError(t, err)
	require.True(t, rep.Ran)
	require.Positive(t, rep.RowsRolledUp)
	wm := now.Add(-2 * time.Minute).Truncate(time.Minute)
	require.True(t, wm.Equal(rep.RolledUpTo), "watermark %s", rep.RolledUpTo)
	require.Equal(t, rows(t, pool, sqlRollupsBySQL, wm), rows(t, pool, sqlRollupRows, wm))

	// A killed run: its last chunk (and watermark) never committed, and some
	// rows of an earlier chunk are gone. Late samples landed meanwhile.
	_, err = pool.Exec(ctx, `UPDATE telemetry_maintenance SET rolled_up_to = $1`, wm.Add(-40*time.Minute))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM telemetry_rollups_1m WHERE bucket >= $1`, wm.Add(-40*time.Minute))
	require.NoError(t, err)
	_, err = s.WriteBatch(ctx, in[2000:])
	require.NoError(t, err)
	now = base.Add(3 * time.Hour)
	_, err = s.Maintain(ctx, now)
	require.NoError(t, err)
	wm = now.Add(-2 * time.Minute).Truncate(time.Minute)
	require.Equal(t, rows(t, pool, sqlRollupsBySQL, wm), rows(t, pool, sqlRollupRows, wm))

	// Running again changes nothing.
	_, err = s.Maintain(ctx, now)
	require.NoError(t, err)
	require.Equal(t, rows(t, pool, sqlRollupsBySQL, wm), rows(t, pool, sqlRollupRows, wm))
}

// TestMaintainOneRunnerAtATime: while another session holds the maintenance
// lock, Maintain does nothing and says so; once it is released, it runs.
func TestMaintainOneRunnerAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := postgres.NewTelemetryStoreWith(pool, nil, postgres.Options{})
	holder, err := pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, postgres.MaintenanceLockKey)
	require.NoError(t, err)
	rep, err := s.Maintain(ctx, base)
	require.NoError(t, err)
	require.False(t, rep.Ran)
	_, err = holder.Exec(ctx, `SELECT pg_advisory_unlock($1)`, postgres.MaintenanceLockKey)
	require.NoError(t, err)
	holder.Release()
	rep, err = s.Maintain(ctx, base)
	require.NoError(t, err)
	require.True(t, rep.Ran)
	require.Equal(t, 6, rep.PartitionsCreated, "today and two days ahead, for samples and rollups")
	rep, err = s.Maintain(ctx, base)
	require.NoError(t, err)
	require.Zero(t, rep.PartitionsCreated)
}

// TestCoarseRegistry: with the default resolutions a steady stream does not
// rewrite the GPU's registry row per batch; last_seen lags by less than the
// resolution and catches up once a sample is that much newer.
func TestCoarseRegistry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := postgres.NewTelemetryStore(pool, nil)
	lastSeen := func() time.Time {
		var ts time.Time
		require.NoError(t, pool.QueryRow(ctx, `SELECT last_seen FROM gpus WHERE uuid = 'GPU-01'`).Scan(&ts))
		return ts
	}
	for i := range 5 {
		_, err := s.WriteBatch(ctx, []domain.Record{record("GPU-01", base.Add(time.Duration(i)*time.Second))})
		require.NoError(t, err)
	}
	require.True(t, base.Equal(lastSeen()), "4 s of newer samples are within the 5 s resolution")
	_, err := s.WriteBatch(ctx, []domain.Record{record("GPU-01", base.Add(5*time.Second))})
	require.NoError(t, err)
	require.True(t, base.Add(5*time.Second).Equal(lastSeen()))
	moved := record("GPU-01", base.Add(6*time.Second))
	moved.Hostname = "host-moved"
	_, err = s.WriteBatch(ctx, []domain.Record{moved})
	require.NoError(t, err)
	require.True(t, base.Add(6*time.Second).Equal(lastSeen()), "an attribute change is written at once")
}

// TestAttrsKeyMatchesSQL: the store's attribute-set key equals the
// migration's telemetry_attrs_key, so rows migrated in SQL and rows written
// by the store share series.
func TestAttrsKeyMatchesSQL(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	points := []domain.Point{
		{},
		{Hostname: "host-a", GPUIndex: 7, Device: "nvidia7", ModelName: "NVIDIA H100 80GB HBM3", Container: "c", Pod: "p", Namespace: "n",
			LabelsRaw: `DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="host-a"`},
		{Hostname: "hôte-ü", LabelsRaw: "1:2", Device: "12"},
		{Hostname: "ab", Device: "c"}, {Hostname: "a", Device: "bc"}, // no run-in between fields
	}
	seen := map[string]bool{}
	for _, p := range points {
		var sqlKey string
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT telemetry_attrs_key($1, $2, $3, $4, $5, $6, $7, $8)::text`,
			p.Hostname, p.GPUIndex, p.Device, p.ModelName, p.Container, p.Pod, p.Namespace, p.LabelsRaw).Scan(&sqlKey))
		require.Equal(t, sqlKey, postgres.AttrsKey(p).String())
		require.False(t, seen[sqlKey], "distinct attributes, distinct keys")
		seen[sqlKey] = true
	}
}
