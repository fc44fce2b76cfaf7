package migrations_test

import (
	"context"
	"fmt"
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

// latestTables are the tables of an empty, fully migrated database.
var latestTables = []string{"dead_letters", "gpus", "queue_messages", "telemetry_maintenance",
	"telemetry_rollups_1m", "telemetry_samples", "telemetry_series"}

func TestUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := connect(t, pgtest.NewEmptyDatabase(t))

	all, err := migrations.All()
	require.NoError(t, err)
	require.NotEmpty(t, all)

	applied, err := migrations.Up(ctx, conn)
	require.NoError(t, err)
	require.Len(t, applied, len(all))
	require.Equal(t, latestTables, tables(t, conn))

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
	require.Equal(t, latestTables, tables(t, conn))
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

// TestTimeSeriesMigrationKeepsData populates the wide telemetry table of
// 0001 (three days, GPUs that changed host, a NULL value, a natural-key
// duplicate under two message UUIDs), migrates up to the time-series
// schema and back down, and checks no sample is lost or invented either way.
func TestTimeSeriesMigrationKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, all := migratedBackTo(t, 1)

	_, err := conn.Exec(ctx, `INSERT INTO telemetry (uuid, gpu_uuid, gpu_index, device, hostname, model_name, metric_name,
    "timestamp", value, labels_raw)
SELECT gen_random_uuid(), 'GPU-' || (i % 4), i % 4, 'nvidia' || (i % 4), CASE WHEN i < 150 THEN 'host-a' ELSE 'host-b' END,
    'H100', 'm' || (i % 3), TIMESTAMPTZ '2025-07-18 20:00:00Z' + i * interval '7 minutes',
    CASE WHEN i % 10 = 0 THEN NULL ELSE i END, 'l'
FROM generate_series(1, 300) i`)
	require.NoError(t, err)
	// The same sample again under another message UUID: one sample after up.
	_, err = conn.Exec(ctx, `INSERT INTO telemetry (uuid, gpu_uuid, gpu_index, device, hostname, model_name, metric_name, "timestamp", value, labels_raw)
SELECT gen_random_uuid(), gpu_uuid, gpu_index, device, hostname, model_name, metric_name, "timestamp", value, labels_raw
FROM telemetry WHERE value = 42`)
	require.NoError(t, err)
	const content = `SELECT gpu_uuid, gpu_index, device, hostname, model_name, metric_name, "timestamp", value, labels_raw
FROM %s ORDER BY "timestamp", gpu_uuid`
	read := func(from string) []string {
		rows, err := conn.Query(ctx, fmt.Sprintf(content, from))
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			v, err := r.Values()
			return fmt.Sprint(v), err
		})
		require.NoError(t, err)
		return out
	}
	before := read(`(SELECT DISTINCT gpu_uuid, gpu_index, device, hostname, model_name, metric_name, "timestamp", value, labels_raw FROM telemetry) d`)
	require.Len(t, before, 300)

	_, err = migrations.Up(ctx, conn)
	require.NoError(t, err)
	const joined = `(SELECT s.gpu_uuid, s.gpu_index, s.device, s.hostname, s.model_name, s.metric_name, x.ts AS "timestamp", x.value, s.labels_raw
FROM telemetry_samples x JOIN telemetry_series s ON s.id = x.series_id) j`
	require.Equal(t, before, read(joined), "every sample kept, the duplicate collapsed")
	var series, partitions int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM telemetry_series`).Scan(&series))
	require.Equal(t, 2*4*3, series, "a series per GPU, metric and attribute set: each pair reported from both hosts")
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry_samples'::regclass`).Scan(&partitions))
	require.Equal(t, 3, partitions, "one partition per day of data (35 h from 20:07)")

	_, err = migrations.Down(ctx, conn, len(all)-1) // back to 0001 through every later step
	require.NoError(t, err)
	require.Equal(t, before, read("telemetry"), "down restores the wide rows")
	var distinct int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(DISTINCT uuid) FROM telemetry`).Scan(&distinct))
	require.Equal(t, 300, distinct)
}

// Migration 0003 adds its columns without rewriting the tables (a
// catalog-only ADD COLUMN: same relfilenode), and the rows already there
// read as never delivered (queue) and dead-lettered by the collector.
func TestDeliveryLimitMigrationRewritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, _ := migratedBackTo(t, 2)
	_, err := conn.Exec(ctx, `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key)
SELECT 'telemetry', gen_random_uuid(), '{"n":1}', i % 256 FROM generate_series(1, 1000) i`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `INSERT INTO dead_letters (msg_uuid, topic, payload, reason) VALUES (gen_random_uuid(), 'telemetry', 'x', 'r')`)
	require.NoError(t, err)
	filenodes := func() (q, d int64) {
		require.NoError(t, conn.QueryRow(ctx, `SELECT pg_relation_filenode('queue_messages')::bigint, pg_relation_filenode('dead_letters')::bigint`).Scan(&q, &d))
		return q, d
	}
	q0, d0 := filenodes()
	_, err = migrations.Up(ctx, conn)
	require.NoError(t, err)
	q1, d1 := filenodes()
	require.Equal(t, q0, q1, "queue_messages was rewritten")
	require.Equal(t, d0, d1, "dead_letters was rewritten")
	var undelivered, fromCollector int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM queue_messages WHERE deliveries = 0 AND last_error IS NULL`).Scan(&undelivered))
	require.Equal(t, 1000, undelivered)
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM dead_letters WHERE deliveries = 0 AND source = 'collector'`).Scan(&fromCollector))
	require.Equal(t, 1, fromCollector)
}

// migratedBackTo is a connection to a new database migrated all the way up
// and then down, through every later migration's down step, to version;
// with every migration.
func migratedBackTo(t *testing.T, version int) (*pgx.Conn, []migrations.Migration) {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, pgtest.NewEmptyDatabase(t))
	all, err := migrations.All()
	require.NoError(t, err)
	_, err = migrations.Up(ctx, conn)
	require.NoError(t, err)
	down, err := migrations.Down(ctx, conn, len(all)-version)
	require.NoError(t, err)
	require.Len(t, down, len(all)-version, "back to %04d", version)
	return conn, all
}
