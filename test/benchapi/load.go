package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/adapters/postgres"
)

// The benchmark's own SQL: bulk loading and inspection of its private
// database. The API's queries stay in adapters/postgres.
const (
	// sqlCountTelemetry counts exactly: after VACUUM an index-only scan of
	// telemetry_legacy_pkey, else a parallel sequential scan.
	sqlCountTelemetry = `SELECT count(*) FROM telemetry_legacy`

	// sqlCountSamples counts the time-series store's samples.
	sqlCountSamples = `SELECT count(*) FROM telemetry_samples`

	// sqlFillSeries and legacyFillSamples (migration 0002's own statement)
	// copy the loaded rows into the time-series schema the way migration
	// 0002 does (series in the order of their first row, so within a GPU
	// and timestamp series ids follow the legacy ids; samples in time
	// order, as live ingestion writes them, through the primary key and its
	// conflict check).
	sqlFillSeries = `INSERT INTO telemetry_series (gpu_uuid, metric_name, attrs_key, hostname, gpu_index, device, model_name,
    container, pod, namespace, labels_raw, first_seen, last_seen)
SELECT gpu_uuid, metric_name,
    telemetry_attrs_key(hostname, gpu_index, device, model_name, container, pod, namespace, labels_raw),
    hostname, gpu_index, device, model_name, container, pod, namespace, labels_raw, min("timestamp"), max("timestamp")
FROM telemetry_legacy
GROUP BY gpu_uuid, metric_name, hostname, gpu_index, device, model_name, container, pod, namespace, labels_raw
ORDER BY min(id)`
	sqlFillPartitions = `SELECT count(*) FILTER (WHERE telemetry_ensure_partition('telemetry_samples', d))
FROM generate_series(date_trunc('day', $1::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', $2::timestamptz, interval '1 day') d`
	sqlVacuumSeries = `VACUUM (ANALYZE) telemetry_series, telemetry_samples`

	// sqlSeriesSizes: the time-series store on disk. A partitioned table has
	// no storage of its own: its size is its partitions' (pg_inherits).
	sqlSeriesSizes = `SELECT
    (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits WHERE inhparent = 'telemetry_samples'::regclass),
    (SELECT coalesce(sum(pg_indexes_size(inhrelid)), 0) FROM pg_inherits WHERE inhparent = 'telemetry_samples'::regclass),
    pg_total_relation_size('telemetry_series'),
    (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits WHERE inhparent = 'telemetry_rollups_1m'::regclass)`

	// sqlGPUSpan summarises the registry (a few hundred rows, sequential scan).
	sqlGPUSpan = `SELECT count(*), coalesce(min(first_seen), 'epoch'), coalesce(max(last_seen), 'epoch'),
    coalesce(array_agg(uuid ORDER BY uuid), '{}') FROM gpus`

	sqlTruncate = `TRUNCATE telemetry_legacy, gpus, telemetry_series, telemetry_samples, telemetry_rollups_1m RESTART IDENTITY;
UPDATE telemetry_maintenance SET rolled_up_to = NULL`

	// sqlSetSequence moves the id sequence past the explicit ids of the load,
	// so a later insert through the store cannot collide.
	sqlSetSequence = `SELECT setval(pg_get_serial_sequence('telemetry_legacy', 'id'), $1)`

	// sqlCreateDropped records indexes dropped for the load, so an
	// interrupted run recreates them next time instead of leaving the
	// table without them.
	sqlCreateDropped = `CREATE TABLE IF NOT EXISTS benchapi_dropped_indexes (
    ord int PRIMARY KEY, name text NOT NULL, is_constraint bool NOT NULL, def text NOT NULL)`

	// sqlSaveIndexes copies the definitions of telemetry's indexes from the
	// catalog: a constraint-backed index (primary key, unique) as the ALTER
	// TABLE that recreates the constraint, any other as CREATE INDEX. The
	// primary key sorts first so it is rebuilt first.
	sqlSaveIndexes = `INSERT INTO benchapi_dropped_indexes (ord, name, is_constraint, def)
SELECT row_number() OVER (ORDER BY x.indisprimary DESC, i.relname), i.relname, c.conname IS NOT NULL,
    CASE WHEN c.conname IS NOT NULL
        THEN format('ALTER TABLE %s ADD CONSTRAINT %I %s', x.indrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
        ELSE pg_get_indexdef(x.indexrelid) END
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid AND c.contype IN ('p', 'u')
WHERE x.indrelid = 'telemetry_legacy'::regclass
RETURNING name, is_constraint`

	sqlDroppedIndexes = `SELECT ord, name, def FROM benchapi_dropped_indexes ORDER BY ord`
	sqlForgetDropped  = `DELETE FROM benchapi_dropped_indexes WHERE ord = $1`

	// sqlIndexBuildSettings give the rebuild memory and both cores for the
	// session only: the cluster's configuration is not ours to change.
	sqlIndexBuildSettings = `SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 2`

	sqlVacuumAnalyze = `VACUUM (ANALYZE) telemetry_legacy, gpus`

	// sqlSizes and sqlIndexSizes read sizes from the catalog.
	sqlSizes      = `SELECT pg_relation_size('telemetry_legacy'), pg_indexes_size('telemetry_legacy'), pg_total_relation_size('telemetry_legacy')`
	sqlIndexSizes = `SELECT i.relname, pg_relation_size(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = 'telemetry_legacy'::regclass`

	sqlServerVersion = `SHOW server_version`
)

// loadStats is what loading took.
type loadStats struct {
	Reused            bool    `json:"reused"`
	Workers           int     `json:"workers,omitempty"`
	IndexMode         string  `json:"index_mode,omitempty"`
	CopySeconds       float64 `json:"copy_seconds,omitempty"`
	CopyRowsPerSecond float64 `json:"copy_rows_per_second,omitempty"`
	IndexSeconds      float64 `json:"index_rebuild_seconds,omitempty"`
	VacuumSeconds     float64 `json:"vacuum_analyze_seconds,omitempty"`
	// SeriesSeconds is filling the time-series schema from the loaded rows
	// (series, partitions, samples through their primary key, VACUUM);
	// RollupSeconds the maintenance run that rolls them up.
	SeriesSeconds float64 `json:"series_fill_seconds,omitempty"`
	RollupSeconds float64 `json:"rollup_seconds,omitempty"`
	TotalSeconds  float64 `json:"total_seconds,omitempty"`
	RowsPerSecond float64 `json:"rows_per_second,omitempty"`
}

// tableSizes are the on-disk sizes after loading.
type tableSizes struct {
	HeapBytes    int64            `json:"heap_bytes"`
	IndexBytes   int64            `json:"index_bytes"`
	TotalBytes   int64            `json:"total_bytes"`
	BytesPerRow  float64          `json:"bytes_per_row"`
	IndexesBytes map[string]int64 `json:"indexes_bytes"`
	// The time-series store (issue 14): samples (all day partitions, table
	// and indexes), series, rollups; bytes per sample counts samples and
	// series, the rollups apart.
	SamplesBytes      int64   `json:"samples_bytes"`
	SamplesIndexBytes int64   `json:"samples_index_bytes"`
	SeriesBytes       int64   `json:"series_bytes"`
	RollupBytes       int64   `json:"rollup_bytes"`
	BytesPerSample    float64 `json:"bytes_per_sample"`
	NewToOldSizeRatio float64 `json:"new_to_old_size_ratio"`
}

// Disk budget of a row: heap about 520 bytes (labels_raw is most of it),
// indexes about 150; the rest is headroom for WAL and index-build sorts.
const (
	estBytesPerRow  = 800
	diskHeadroomFix = 3 << 30
)

// fitRows returns rows, or fewer (whole timestamps) when the file system
// of dir, with reclaim more bytes freed, cannot hold them; dir "" (a remote
// server) is not checked.
func fitRows(dir string, rows, perTS, reclaim int64) (fit int64, avail uint64, err error) {
	if dir == "" {
		return rows, 0, nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("disk space of %s: %w", dir, err)
	}
	avail = st.Bavail*uint64(st.Bsize) + uint64(max(reclaim, 0))
	need := uint64(rows)*estBytesPerRow + diskHeadroomFix
	if need <= avail || avail <= diskHeadroomFix {
		return rows, avail, nil
	}
	fit = int64((avail-diskHeadroomFix)/estBytesPerRow) / perTS * perTS
	return fit, avail, nil
}

// existing describes the loaded table when it holds exactly d's rows and
// GPUs, so it can be reused; why says what differs otherwise.
func existing(ctx context.Context, pool *pgxpool.Pool, gpus []gpuTemplate, rows int64) (d *dataset, why string, err error) {
	var (
		n, nGPUs       int64
		oldest, newest time.Time
		uuids          []string
	)
	if err := pool.QueryRow(ctx, sqlGPUSpan).Scan(&nGPUs, &oldest, &newest, &uuids); err != nil {
		return nil, "", fmt.Errorf("inspect gpus: %w", err)
	}
	want := make([]string, 0, len(gpus))
	for _, g := range gpus {
		want = append(want, g.gpu.UUID)
	}
	slices.Sort(want)
	if !slices.Equal(uuids, want) {
		return nil, fmt.Sprintf("the registry holds %d GPUs, not the %d wanted", nGPUs, len(gpus)), nil
	}
	if err := pool.QueryRow(ctx, sqlCountTelemetry).Scan(&n); err != nil {
		return nil, "", fmt.Errorf("count telemetry: %w", err)
	}
	if n != rows {
		return nil, fmt.Sprintf("telemetry_legacy holds %d rows, not %d", n, rows), nil
	}
	if err := pool.QueryRow(ctx, sqlCountSamples).Scan(&n); err != nil {
		return nil, "", fmt.Errorf("count samples: %w", err)
	}
	if n != rows {
		return nil, fmt.Sprintf("telemetry_samples holds %d samples, not %d", n, rows), nil
	}
	d, err = newDataset(gpus, rows, newest)
	if err != nil {
		return nil, "", err
	}
	if !d.oldest.Equal(oldest.UTC()) {
		return nil, fmt.Sprintf("timestamps span %s..%s, not the %d seconds this layout needs", oldest.UTC(), newest.UTC(), d.timestamps), nil
	}
	return d, "", nil
}

// loadOptions tunes the load.
type loadOptions struct {
	workers      int
	rebuildIndex bool
	progress     io.Writer
}

// load replaces telemetry and the registry with d's rows.
func load(ctx context.Context, pool *pgxpool.Pool, dsn string, d *dataset, opts loadOptions) (loadStats, error) {
	st := loadStats{Workers: opts.workers, IndexMode: "keep"}
	if opts.rebuildIndex {
		st.IndexMode = "rebuild"
	}
	start := time.Now()
	if _, err := pool.Exec(ctx, sqlTruncate); err != nil {
		return st, fmt.Errorf("truncate: %w", err)
	}
	if opts.rebuildIndex {
		if err := dropIndexes(ctx, pool, opts.progress); err != nil {
			return st, err
		}
	}

	copyStart := time.Now()
	if err := copyRows(ctx, dsn, d, opts); err != nil {
		return st, err
	}
	if _, err := pool.Exec(ctx, sqlSetSequence, d.rows); err != nil {
		return st, fmt.Errorf("set id sequence: %w", err)
	}
	if err := copyGPUs(ctx, pool, d); err != nil {
		return st, err
	}
	st.CopySeconds = time.Since(copyStart).Seconds()
	st.CopyRowsPerSecond = float64(d.rows) / st.CopySeconds
	fmt.Fprintf(opts.progress, "copied %d rows in %.1f s (%.0f rows/s)\n", d.rows, st.CopySeconds, st.CopyRowsPerSecond)

	indexStart := time.Now()
	if err := restoreIndexes(ctx, dsn, opts.progress); err != nil {
		return st, err
	}
	st.IndexSeconds = time.Since(indexStart).Seconds()

	vacuumStart := time.Now()
	fmt.Fprintln(opts.progress, "vacuum analyze")
	// VACUUM sets hint bits and the visibility map now rather than in the
	// first measured reads, as autovacuum would have on a live table.
	if _, err := pool.Exec(ctx, sqlVacuumAnalyze); err != nil {
		return st, fmt.Errorf("vacuum analyze: %w", err)
	}
	st.VacuumSeconds = time.Since(vacuumStart).Seconds()

	seriesStart := time.Now()
	if err := fillSeries(ctx, pool, d, opts.progress); err != nil {
		return st, err
	}
	st.SeriesSeconds = time.Since(seriesStart).Seconds()
	rollupStart := time.Now()
	store := postgres.NewTelemetryStoreWith(pool, nil, postgres.Options{})
	rep, err := store.Maintain(ctx, d.newest().Add(3*time.Minute))
	if err != nil {
		return st, fmt.Errorf("roll up: %w", err)
	}
	st.RollupSeconds = time.Since(rollupStart).Seconds()
	fmt.Fprintf(opts.progress, "time-series schema filled in %.1f s; %d rollup rows in %.1f s\n", st.SeriesSeconds, rep.RowsRolledUp, st.RollupSeconds)
	st.TotalSeconds = time.Since(start).Seconds()
	st.RowsPerSecond = float64(d.rows) / st.TotalSeconds
	return st, nil
}

// fillSeries copies the loaded rows into the time-series schema.
func fillSeries(ctx context.Context, pool *pgxpool.Pool, d *dataset, progress io.Writer) error {
	fmt.Fprintln(progress, "filling the time-series schema (series, day partitions, samples)")
	fillSamples, err := legacyFillSamples()
	if err != nil {
		return err
	}
	steps := []struct {
		name string
		sql  string
		args []any
	}{
		{"series", sqlFillSeries, nil},
		{"partitions", sqlFillPartitions, []any{d.oldest, d.newest()}},
		{"samples", fillSamples, nil},
		{"vacuum", sqlVacuumSeries, nil},
	}
	for _, st := range steps {
		if _, err := pool.Exec(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("fill %s: %w", st.name, err)
		}
	}
	return nil
}

// copyRows streams d's rows with COPY on opts.workers connections, each a
// contiguous range of rows, printing progress every 10 s.
func copyRows(ctx context.Context, dsn string, d *dataset, opts loadOptions) error {
	var copied atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	done := make(chan struct{})
	var reporter errgroup.Group
	reporter.Go(func() error {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-done:
				return nil
			case <-t.C:
				n := copied.Load()
				fmt.Fprintf(opts.progress, "  %d / %d rows (%.1f%%, %.0f rows/s)\n", n, d.rows,
					100*float64(n)/float64(d.rows), float64(n)/time.Since(start).Seconds())
			}
		}
	})
	workers := int64(max(opts.workers, 1))
	per := (d.rows + workers - 1) / workers
	for w := range workers {
		from, to := w*per, min((w+1)*per, d.rows)
		if from >= to {
			break
		}
		g.Go(func() error { return copyRange(gctx, dsn, d, from, to, &copied) })
	}
	err := g.Wait()
	close(done)
	_ = reporter.Wait() // never fails
	return err
}

// copyRange copies rows [from, to) on a connection of its own.
func copyRange(ctx context.Context, dsn string, d *dataset, from, to int64, copied *atomic.Int64) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("copy rows %d-%d: connect: %w", from, to, err)
	}
	defer conn.Close(context.Background())
	// One COPY is one transaction; waiting for its WAL flush buys nothing
	// for a benchmark table.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = off"); err != nil {
		return fmt.Errorf("copy rows %d-%d: %w", from, to, err)
	}
	src := &rowSource{d: d, next: from, end: to, row: make([]any, len(copyColumns)), copied: copied}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"telemetry_legacy"}, copyColumns, src)
	if err != nil {
		return fmt.Errorf("copy rows %d-%d: %w", from, to, err)
	}
	if n != to-from {
		return fmt.Errorf("copy rows %d-%d: copied %d", from, to, n)
	}
	return nil
}

// rowSource generates rows [next, end) for pgx.CopyFrom, which encodes each
// row before asking for the next, so one row slice is reused.
type rowSource struct {
	d         *dataset
	next, end int64         // owned by the COPY goroutine
	row       []any         // owned by the COPY goroutine
	copied    *atomic.Int64 // shared progress counter
}

func (s *rowSource) Next() bool {
	if s.next >= s.end {
		s.copied.Add(s.next % 1024)
		return false
	}
	s.d.fill(s.row, s.next)
	s.next++
	if s.next%1024 == 0 {
		s.copied.Add(1024)
	}
	return true
}

func (s *rowSource) Values() ([]any, error) { return s.row, nil }

func (s *rowSource) Err() error { return nil }

// copyGPUs fills the registry with every GPU's first and last timestamp.
func copyGPUs(ctx context.Context, pool *pgxpool.Pool, d *dataset) error {
	rows := make([][]any, 0, len(d.gpus))
	for gi, t := range d.gpus {
		g := t.gpu
		rows = append(rows, []any{g.UUID, g.Hostname, int32(g.GPUIndex), g.Device, g.ModelName, d.oldest, d.lastSeen(gi)})
	}
	cols := []string{"uuid", "hostname", "gpu_index", "device", "model_name", "first_seen", "last_seen"}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"gpus"}, cols, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copy gpus: %w", err)
	}
	return nil
}

// dropIndexes saves the definitions of telemetry's indexes and drops them,
// in one transaction.
func dropIndexes(ctx context.Context, pool *pgxpool.Pool, progress io.Writer) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlCreateDropped); err != nil {
			return fmt.Errorf("drop indexes: %w", err)
		}
		rows, err := tx.Query(ctx, sqlSaveIndexes)
		if err != nil {
			return fmt.Errorf("drop indexes: save definitions: %w", err)
		}
		type index struct {
			name       string
			constraint bool
		}
		saved, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
			var i index
			return i, r.Scan(&i.name, &i.constraint)
		})
		if err != nil {
			return fmt.Errorf("drop indexes: save definitions: %w", err)
		}
		for _, i := range saved {
			stmt := "DROP INDEX " + pgx.Identifier{i.name}.Sanitize()
			if i.constraint {
				stmt = "ALTER TABLE telemetry_legacy DROP CONSTRAINT " + pgx.Identifier{i.name}.Sanitize()
			}
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("drop index %s: %w", i.name, err)
			}
			fmt.Fprintf(progress, "dropped index %s for the load\n", i.name)
		}
		return nil
	})
}

// restoreIndexes recreates the indexes dropIndexes saved (none when the
// last load finished), each in a transaction with forgetting it. It runs on
// a connection of its own: its session settings must not reach the pool.
func restoreIndexes(ctx context.Context, dsn string, progress io.Writer) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("restore indexes: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sqlCreateDropped); err != nil {
		return fmt.Errorf("restore indexes: %w", err)
	}
	rows, err := conn.Query(ctx, sqlDroppedIndexes)
	if err != nil {
		return fmt.Errorf("restore indexes: %w", err)
	}
	type index struct {
		ord       int
		name, def string
	}
	pending, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var i index
		return i, r.Scan(&i.ord, &i.name, &i.def)
	})
	if err != nil {
		return fmt.Errorf("restore indexes: %w", err)
	}
	if len(pending) == 0 {
		return nil
	}
	if _, err := conn.Exec(ctx, sqlIndexBuildSettings); err != nil {
		return fmt.Errorf("restore indexes: %w", err)
	}
	for _, i := range pending {
		start := time.Now()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, i.def); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, sqlForgetDropped, i.ord)
			return err
		})
		if err != nil {
			return fmt.Errorf("recreate index %s: %w", i.name, err)
		}
		fmt.Fprintf(progress, "built index %s in %.1f s\n", i.name, time.Since(start).Seconds())
	}
	return nil
}

// sizes reads the table's sizes.
func sizes(ctx context.Context, pool *pgxpool.Pool, rows int64) (tableSizes, error) {
	var s tableSizes
	if err := pool.QueryRow(ctx, sqlSizes).Scan(&s.HeapBytes, &s.IndexBytes, &s.TotalBytes); err != nil {
		return s, fmt.Errorf("table sizes: %w", err)
	}
	s.IndexesBytes = map[string]int64{}
	rs, err := pool.Query(ctx, sqlIndexSizes)
	if err != nil {
		return s, fmt.Errorf("index sizes: %w", err)
	}
	var (
		name string
		n    int64
	)
	_, err = pgx.ForEachRow(rs, []any{&name, &n}, func() error {
		s.IndexesBytes[name] = n
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("index sizes: %w", err)
	}
	if err := pool.QueryRow(ctx, sqlSeriesSizes).Scan(&s.SamplesBytes, &s.SamplesIndexBytes, &s.SeriesBytes, &s.RollupBytes); err != nil {
		return s, fmt.Errorf("time-series sizes: %w", err)
	}
	if rows > 0 {
		s.BytesPerRow = float64(s.TotalBytes) / float64(rows)
		s.BytesPerSample = float64(s.SamplesBytes+s.SeriesBytes) / float64(rows)
		s.NewToOldSizeRatio = s.BytesPerSample / s.BytesPerRow
	}
	return s, nil
}
