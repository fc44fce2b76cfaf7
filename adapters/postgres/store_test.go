package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/contract/storetest"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func newStore(t testing.TB) ports.TelemetryStore {
	return postgres.NewTelemetryStore(pgtest.NewPool(t), nil)
}

// newStoreWith is an exact-registry store (the suite checks last_seen to
// the microsecond); TestCoarseRegistry covers the default resolutions.
func newStoreWith(t testing.TB, o storetest.Options) ports.TelemetryStore {
	return postgres.NewTelemetryStoreWith(pgtest.NewPool(t), nil, postgres.Options{
		Retention: o.Retention, RollupRetention: o.RollupRetention, Now: o.Now})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, newStoreWith)
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, newStore)
}

var base = time.Date(2025, 7, 18, 13, 42, 33, 0, time.UTC)

func ptr(v float64) *float64 { return &v }

func record(gpu string, ts time.Time) domain.Record {
	return domain.Record{MsgUUID: uuid.New(), Point: domain.Point{
		Timestamp: ts, MetricName: "DCGM_FI_DEV_GPU_UTIL", GPUUUID: gpu, GPUIndex: 1,
		Device: "nvidia1", Hostname: "host-" + gpu[len(gpu)-2:], ModelName: "H100", Value: ptr(42),
	}}
}

func count(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

func TestDeadLettersStoredOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := postgres.NewTelemetryStore(pool, nil)
	a := domain.DeadLetter{MsgUUID: uuid.New(), Topic: "telemetry", Payload: []byte(`{"bad":`), Reason: "unexpected end of JSON input"}
	b := domain.DeadLetter{MsgUUID: uuid.New(), Topic: "telemetry", Payload: []byte(`[]`), Reason: "not an object"}
	require.NoError(t, s.WriteDeadLetters(ctx, []domain.DeadLetter{a}))
	require.NoError(t, s.WriteDeadLetters(ctx, []domain.DeadLetter{a, b, b}))
	require.Equal(t, 2, count(t, pool, "dead_letters"))
	var payload, reason string
	require.NoError(t, pool.QueryRow(ctx, `SELECT payload, reason FROM dead_letters WHERE msg_uuid = $1`, a.MsgUUID).Scan(&payload, &reason))
	require.Equal(t, string(a.Payload), payload)
	require.Equal(t, a.Reason, reason)
}

// TestGPURegistryIsUsed proves ListGPUs and the unknown-GPU check read the
// registry, not telemetry: with every telemetry row deleted, the GPUs are
// still listed and a query for one is an empty page, not ErrNotFound.
func TestGPURegistryIsUsed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := postgres.NewTelemetryStore(pool, nil)
	_, err := s.WriteBatch(ctx, []domain.Record{record("GPU-01", base), record("GPU-02", base), record("GPU-01", base.Add(time.Second))})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM telemetry_samples`)
	require.NoError(t, err)

	gpus, err := s.ListGPUs(ctx)
	require.NoError(t, err)
	require.Len(t, gpus, 2)
	require.Equal(t, "GPU-01", gpus[0].UUID)
	require.True(t, base.Add(time.Second).Equal(gpus[0].LastSeen))

	page, err := s.QueryTelemetry(ctx, ports.TelemetryQuery{GPUUUID: "GPU-02", Limit: 10})
	require.NoError(t, err)
	require.Empty(t, page.Records)
	require.Nil(t, page.Next)
}

// TestConcurrentWriteBatch: 8 collectors write distinct samples of the same
// GPUs, each in its own GPU order, while also racing on one shared batch.
// Sorted lock order means no deadlock (which would surface as
// ErrUnavailable), and the counts add up.
func TestConcurrentWriteBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := postgres.NewTelemetryStoreWith(pool, nil, postgres.Options{})
	const writers, batches, gpusN = 8, 10, 16
	gpus := make([]string, gpusN)
	for i := range gpus {
		gpus[i] = fmt.Sprintf("GPU-%02d", i)
	}
	shared := make([]domain.Record, 0, gpusN)
	for _, g := range gpus {
		shared = append(shared, record(g, base))
	}
	type result struct {
		res ports.WriteResult
		err error
	}
	results := make(chan result, writers*(batches+1))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				order := slices.Clone(gpus)
				if (w+b)%2 == 1 {
					slices.Reverse(order)
				}
				batch := make([]domain.Record, 0, 4*gpusN)
				for k := range 4 {
					for _, g := range order {
						// Each writer has its own instants: distinct samples.
						batch = append(batch, record(g, base.Add(time.Duration(b*4+k+1)*time.Second+time.Duration(w)*time.Millisecond)))
					}
				}
				res, err := s.WriteBatch(ctx, batch)
				results <- result{res, err}
			}
			order := slices.Clone(shared)
			if w%2 == 1 {
				slices.Reverse(order)
			}
			res, err := s.WriteBatch(ctx, order)
			results <- result{res, err}
		})
	}
	wg.Wait()
	close(results)
	var total ports.WriteResult
	for r := range results {
		require.NoError(t, r.err)
		total.Inserted += r.res.Inserted
		total.Duplicates += r.res.Duplicates
	}
	unique := writers*batches*4*gpusN + gpusN
	require.Equal(t, ports.WriteResult{Inserted: unique, Duplicates: (writers - 1) * gpusN}, total)
	require.Equal(t, unique, count(t, pool, "telemetry_samples"))
	listed, err := s.ListGPUs(ctx)
	require.NoError(t, err)
	require.Len(t, listed, gpusN)
	for _, g := range listed {
		require.True(t, base.Add(batches*4*time.Second+(writers-1)*time.Millisecond).Equal(g.LastSeen))
	}
}

// TestQueryUsesIndex checks the window query finds the GPU's series by
// index and reads each as a range scan of the samples' primary key.
func TestQueryUsesIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := postgres.NewTelemetryStore(pool, nil)
	for g := range 20 {
		batch := make([]domain.Record, 500)
		for i := range batch {
			batch[i] = record(fmt.Sprintf("GPU-%02d", g), base.Add(time.Duration(i)*time.Second))
		}
		_, err := s.WriteBatch(ctx, batch)
		require.NoError(t, err)
	}
	_, err := pool.Exec(ctx, `ANALYZE telemetry_samples`)
	require.NoError(t, err)
	tests := []struct{ name, metric string }{
		{"window", ""},
		{"window and metric", "DCGM_FI_DEV_GPU_UTIL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := postgres.QueryArgs(ports.TelemetryQuery{GPUUUID: "GPU-03", Start: base, End: base.Add(time.Hour),
				MetricName: tc.metric, After: &ports.Cursor{Timestamp: base.Add(time.Minute), ID: 7}}, 100)
			rows, err := pool.Query(ctx, "EXPLAIN "+postgres.QueryTelemetrySQL, args...)
			require.NoError(t, err)
			var plan []string
			for rows.Next() {
				var line string
				require.NoError(t, rows.Scan(&line))
				plan = append(plan, line)
			}
			require.NoError(t, rows.Err())
			text := fmt.Sprint(plan)
			require.Contains(t, text, "Index Scan using telemetry_series_", text)
			require.Contains(t, text, "Index Only Scan using telemetry_samples_20250718_pkey", text)
			require.NotContains(t, text, "Seq Scan on telemetry_samples", text)
		})
	}
}

func TestErrorTranslation(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	open := pgtest.Pool(t, dsn)
	closed := pgtest.Pool(t, dsn)
	closed.Close()
	good := record("GPU-01", base)
	nul := record("GPU-01", base)
	nul.LabelsRaw = "a\x00b" // valid Go, impossible in a text column
	badUTF8 := record("GPU-01", base)
	badUTF8.Pod = "\xff\xfe"
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name string
		pool *pgxpool.Pool
		ctx  context.Context
		recs []domain.Record
		want error
	}{
		{"closed pool", closed, context.Background(), []domain.Record{good}, ports.ErrUnavailable},
		{"deadline passed", open, expired, []domain.Record{good}, ports.ErrUnavailable},
		{"cancelled", open, cancelled, []domain.Record{good}, context.Canceled},
		{"nul byte in text", open, context.Background(), []domain.Record{good, nul}, ports.ErrInvalidArgument},
		{"invalid utf-8", open, context.Background(), []domain.Record{badUTF8}, ports.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := postgres.NewTelemetryStore(tc.pool, nil)
			_, err := s.WriteBatch(tc.ctx, tc.recs)
			require.ErrorIs(t, err, tc.want)
			if tc.pool == closed {
				_, err = s.ListGPUs(context.Background())
				require.ErrorIs(t, err, ports.ErrUnavailable)
				require.ErrorIs(t, s.Check(context.Background()), ports.ErrUnavailable)
			}
		})
	}
	// The failed batches stored nothing, not even the valid record.
	require.Zero(t, count(t, open, "telemetry_samples"))
	require.Zero(t, count(t, open, "gpus"))
}

func TestConnectAndMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewEmptyDatabase(t)
	pool, err := postgres.Connect(ctx, dsn, postgres.PoolOptions{MaxConns: 3, ApplicationName: "storetest"})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.EqualValues(t, 3, pool.Config().MaxConns)
	require.NoError(t, postgres.Migrate(ctx, pool))
	require.NoError(t, postgres.Migrate(ctx, pool), "migrating twice is a no-op")
	require.Zero(t, count(t, pool, "telemetry_samples"))
	var app string
	require.NoError(t, pool.QueryRow(ctx, `SELECT current_setting('application_name')`).Scan(&app))
	require.Equal(t, "storetest", app)
	require.NoError(t, postgres.NewTelemetryStore(pool, nil).Check(ctx))

	tests := []struct {
		name string
		dsn  string
		want error
	}{
		{"unparsable", "postgres://u:secret@host:notaport/db", nil},
		{"nothing listening", "postgres://u:secret@127.0.0.1:1/db?sslmode=disable", ports.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := postgres.Connect(ctx, tc.dsn, postgres.PoolOptions{ConnectTimeout: 2 * time.Second})
			require.Error(t, err)
			require.NotContains(t, err.Error(), "secret", "the password never reaches logs")
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

// TestWriteBatchOneTransaction makes the registry upsert (the batch's second
// statement) fail and checks the telemetry insert before it rolled back too.
func TestWriteBatchOneTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	_, err := pool.Exec(ctx, `CREATE FUNCTION refuse_gpu() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.hostname = 'host-boom' THEN RAISE EXCEPTION 'refused'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_gpu BEFORE INSERT OR UPDATE ON gpus FOR EACH ROW EXECUTE FUNCTION refuse_gpu();`)
	require.NoError(t, err)
	s := postgres.NewTelemetryStore(pool, nil)
	ok, boom := record("GPU-01", base), record("GPU-02", base)
	boom.Hostname = "host-boom"
	_, err = s.WriteBatch(ctx, []domain.Record{ok, boom})
	require.ErrorContains(t, err, "refused")
	require.Zero(t, count(t, pool, "telemetry_samples"))
	require.Zero(t, count(t, pool, "gpus"))

	res, err := s.WriteBatch(ctx, []domain.Record{ok})
	require.NoError(t, err)
	require.Equal(t, ports.WriteResult{Inserted: 1}, res)
}
