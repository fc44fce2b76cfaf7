// The store's read side: the GPU registry, metric names, latest values,
// series, fleet summaries and raw telemetry pages and streams. Reads go to
// the read pool (a replica when one is configured).

package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

const (
	// sqlListGPUs reads the registry only (a sequential scan of gpus, a few
	// hundred rows: cheaper than any index); it never touches samples.
	// COLLATE "C" orders hostnames bytewise, the same on every server.
	sqlListGPUs = `SELECT uuid, hostname, gpu_index, device, model_name, last_seen
FROM gpus
ORDER BY hostname COLLATE "C", gpu_index, uuid COLLATE "C"`

	// sqlGPUExists is a point lookup on the primary key gpus_pkey.
	sqlGPUExists = `SELECT EXISTS (SELECT 1 FROM gpus WHERE uuid = $1)`

	// QueryTelemetrySQL (exported for test/benchapi's EXPLAIN) reads one GPU's window after a keyset cursor: the
	// GPU's series come from telemetry_series_identity_key (gpu_uuid
	// prefix), and for each an index-only range scan of the samples' primary
	// key (series_id, ts) INCLUDE (value) in each day partition the window
	// touches reads at most LIMIT rows in ts order; a top-N sort of those
	// narrow rows (at most series × LIMIT) merges the series, and only the
	// page's rows are joined to their series' attributes. The cursor (ts,
	// series_id) is strictly after. Unbounded ends are -infinity/infinity, no
	// cursor is (-infinity, 0), a NULL limit reads to the end (streams); $7,
	// when not NULL, keeps one metric.
	QueryTelemetrySQL = `SELECT s.id, p.ts, p.value, s.gpu_uuid, s.metric_name, s.hostname, s.gpu_index, s.device,
    s.model_name, s.container, s.pod, s.namespace, s.labels_raw
FROM (
    SELECT g.id, x.ts, x.value
    FROM telemetry_series g
    CROSS JOIN LATERAL (
        SELECT ts, value FROM telemetry_samples x
        WHERE x.series_id = g.id AND x.ts >= $2 AND x.ts <= $3 AND x.ts >= $4 AND (x.ts > $4 OR g.id > $5)
        ORDER BY x.ts
        LIMIT $6) x
    WHERE g.gpu_uuid = $1 AND ($7::text IS NULL OR g.metric_name = $7)
    ORDER BY x.ts, g.id
    LIMIT $6) p
JOIN telemetry_series s ON s.id = p.id
ORDER BY p.ts, p.id`

	// sqlQueryGPUs is one filtered page of the registry in (hostname, GPU
	// index, UUID) order after a keyset cursor ($5 false: no cursor). The
	// registry is a few hundred rows, so a sequential scan and a top-N sort
	// beat any index.
	sqlQueryGPUs = `SELECT uuid, hostname, gpu_index, device, model_name, last_seen
FROM gpus
WHERE ($1 = '' OR hostname = $1) AND ($2 = '' OR model_name = $2)
    AND (NOT $5::boolean OR (hostname COLLATE "C", gpu_index, uuid COLLATE "C") > ($3::text COLLATE "C", $4::int4, $6::text COLLATE "C"))
ORDER BY hostname COLLATE "C", gpu_index, uuid COLLATE "C"
LIMIT $7`

	// sqlListMetrics groups the series table (a row per GPU, metric and
	// attribute set: thousands, not samples).
	sqlListMetrics = `SELECT metric_name, count(DISTINCT gpu_uuid)
FROM telemetry_series
GROUP BY metric_name
ORDER BY metric_name COLLATE "C"`

	// newestOfSeries joins series s to its newest sample l (ts, value): one
	// backward probe of the samples' primary key, restricted to ts >= the
	// series' last_seen (a lower bound of its newest sample) so run-time
	// pruning skips the older day partitions.
	newestOfSeries = `
CROSS JOIN LATERAL (
    SELECT ts, value FROM telemetry_samples x
    WHERE x.series_id = s.id AND x.ts >= s.last_seen
    ORDER BY x.ts DESC LIMIT 1) l
`

	// sqlLatest finds each metric's newest sample of a GPU: each of the
	// GPU's series (telemetry_series_identity_key) joined to its newest.
	sqlLatest = `SELECT DISTINCT ON (s.metric_name) s.metric_name, l.ts, l.value
FROM telemetry_series s` + newestOfSeries + `WHERE s.gpu_uuid = $1
ORDER BY s.metric_name, l.ts DESC, s.id DESC`

	// sqlFleetLatest is every GPU's newest sample of one metric, GPUs whose
	// newest sample is blank left out: the series of that metric come from
	// telemetry_series_metric_gpu_idx, each joined to its newest. The
	// registry row (gpus_pkey) names the GPU.
	sqlFleetLatest = `SELECT g.uuid, g.hostname, g.gpu_index, g.device, g.model_name, g.last_seen, v.ts, v.value
FROM (
    SELECT DISTINCT ON (s.gpu_uuid) s.gpu_uuid, l.ts, l.value
    FROM telemetry_series s` + newestOfSeries + `WHERE s.metric_name = $1
    ORDER BY s.gpu_uuid, l.ts DESC, s.id DESC) v
JOIN gpus g ON g.uuid = v.gpu_uuid
WHERE v.value IS NOT NULL`

	// sqlSeriesIDs lists a GPU's series of one metric (every attribute set)
	// through telemetry_series_identity_key.
	sqlSeriesIDs = `SELECT id FROM telemetry_series WHERE gpu_uuid = $1 AND metric_name = $2`

	// sqlSeriesRaw buckets raw samples: k is the bucket number from $2 in
	// steps of $4 microseconds; range scans of the samples' primary key per
	// series and day partition of [$2, $3].
	sqlSeriesRaw = `SELECT (extract(epoch FROM x.ts - $2::timestamptz) * 1000000)::bigint / $4 AS k,
    count(x.value), min(x.value), max(x.value), sum(x.value),
    (array_agg(x.value ORDER BY x.ts DESC) FILTER (WHERE x.value IS NOT NULL))[1]
FROM telemetry_samples x
WHERE x.series_id = ANY($1) AND x.ts >= $2 AND x.ts <= $3
GROUP BY 1`

	// sqlSeriesRollup buckets whole minutes: rollup rows (primary key range
	// scans per series and day partition) for the minutes before the
	// watermark $5, raw samples aggregated per minute after it (the minutes
	// not rolled up yet), then minutes grouped into steps of $4
	// microseconds. $3 is the end of the minute holding the window's end.
	sqlSeriesRollup = `WITH m AS (
    SELECT r.bucket AS t, r.count, r.min, r.max, r.sum, r.last
    FROM telemetry_rollups_1m r
    WHERE r.series_id = ANY($1) AND r.bucket >= $2 AND r.bucket < $3 AND r.bucket < $5
    UNION ALL
    SELECT date_bin('1 minute', x.ts, $2), count(x.value), min(x.value), max(x.value), sum(x.value),
        (array_agg(x.value ORDER BY x.ts DESC) FILTER (WHERE x.value IS NOT NULL))[1]
    FROM telemetry_samples x
    WHERE x.series_id = ANY($1) AND x.ts >= GREATEST($2, $5) AND x.ts < $3
    GROUP BY 1)
SELECT (extract(epoch FROM t - $2::timestamptz) * 1000000)::bigint / $4 AS k,
    sum(count)::bigint, min(min), max(max), sum(sum),
    (array_agg(last ORDER BY t DESC) FILTER (WHERE last IS NOT NULL))[1]
FROM m
GROUP BY 1`

	// sqlWatermark reads the rollup watermark (one-row table).
	sqlWatermark = `SELECT rolled_up_to FROM telemetry_maintenance`
)

// QueryGPUs returns one filtered page of the registry.
func (s *TelemetryStore) QueryGPUs(ctx context.Context, q ports.GPUQuery) (ports.GPUPage, error) {
	if q.Limit < 1 {
		return ports.GPUPage{}, fmt.Errorf("query gpus: limit %d is below 1: %w", q.Limit, ports.ErrInvalidArgument)
	}
	var after ports.GPUCursor
	if q.After != nil {
		after = *q.After
	}
	gpus, err := queryRows(ctx, s.read, "query gpus", sqlQueryGPUs, scanGPU, q.Hostname, q.ModelName, after.Hostname,
		int32(after.GPUIndex), q.After != nil, after.UUID, q.Limit+1)
	if err != nil {
		return ports.GPUPage{}, err
	}
	page := ports.GPUPage{GPUs: gpus}
	if len(gpus) > q.Limit {
		page.GPUs = gpus[:q.Limit]
		last := page.GPUs[q.Limit-1]
		page.Next = &ports.GPUCursor{Hostname: last.Hostname, GPUIndex: last.GPUIndex, UUID: last.UUID}
	}
	return page, nil
}

func scanGPU(row pgx.CollectableRow) (domain.GPU, error) {
	var g domain.GPU
	err := row.Scan(&g.UUID, &g.Hostname, &g.GPUIndex, &g.Device, &g.ModelName, &g.LastSeen)
	g.LastSeen = g.LastSeen.UTC()
	return g, err
}

// ListMetrics returns the metric names seen with their GPU counts.
func (s *TelemetryStore) ListMetrics(ctx context.Context) ([]domain.MetricSeen, error) {
	return queryRows(ctx, s.read, "list metrics", sqlListMetrics, func(row pgx.CollectableRow) (domain.MetricSeen, error) {
		var m domain.MetricSeen
		err := row.Scan(&m.Name, &m.GPUs)
		return m, err
	})
}

// LatestValues returns the newest sample of each metric of a GPU.
func (s *TelemetryStore) LatestValues(ctx context.Context, gpuUUID string) ([]domain.LatestValue, error) {
	out, err := queryRows(ctx, s.read, "latest values", sqlLatest, func(row pgx.CollectableRow) (domain.LatestValue, error) {
		var v domain.LatestValue
		err := row.Scan(&v.MetricName, &v.Timestamp, &v.Value)
		v.Timestamp = v.Timestamp.UTC()
		return v, err
	}, gpuUUID)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		if err := s.requireGPU(ctx, gpuUUID); err != nil {
			return nil, fmt.Errorf("latest values: %w", err)
		}
	}
	return out, nil
}

// requireGPU is ErrNotFound unless the registry knows the GPU.
func (s *TelemetryStore) requireGPU(ctx context.Context, gpuUUID string) error {
	var exists bool
	if err := s.read.QueryRow(ctx, sqlGPUExists, gpuUUID).Scan(&exists); err != nil {
		return fmt.Errorf("look up gpu: %w", translate(err))
	}
	if !exists {
		return fmt.Errorf("gpu %s: %w", gpuUUID, ports.ErrNotFound)
	}
	return nil
}

// FleetSummary summarises a metric over every GPU's latest non-null value.
func (s *TelemetryStore) FleetSummary(ctx context.Context, metricName string, topN int) (domain.FleetSummary, error) {
	values, err := queryRows(ctx, s.read, "fleet summary", sqlFleetLatest, func(row pgx.CollectableRow) (domain.GPUValue, error) {
		var v domain.GPUValue
		err := row.Scan(&v.GPU.UUID, &v.GPU.Hostname, &v.GPU.GPUIndex, &v.GPU.Device, &v.GPU.ModelName, &v.GPU.LastSeen,
			&v.Timestamp, &v.Value)
		v.GPU.LastSeen, v.Timestamp = v.GPU.LastSeen.UTC(), v.Timestamp.UTC()
		return v, err
	}, metricName)
	if err != nil {
		return domain.FleetSummary{}, err
	}
	return domain.SummarizeFleet(metricName, values, topN), nil
}

// QuerySeries buckets one metric of a GPU, from rollups when the step
// allows (domain.UsesRollups), from raw samples otherwise.
func (s *TelemetryStore) QuerySeries(ctx context.Context, q ports.SeriesQuery) (domain.Series, error) {
	if err := q.Validate(); err != nil {
		return domain.Series{}, fmt.Errorf("query series: %w", err)
	}
	start, end := q.Start.UTC().Truncate(time.Microsecond), q.End.UTC().Truncate(time.Microsecond)
	ids, err := queryRows(ctx, s.read, "query series", sqlSeriesIDs, pgx.RowTo[int32], q.GPUUUID, q.MetricName)
	if err != nil {
		return domain.Series{}, err
	}
	if len(ids) == 0 {
		if err := s.requireGPU(ctx, q.GPUUUID); err != nil {
			return domain.Series{}, fmt.Errorf("query series: %w", err)
		}
	}
	n := domain.BucketCount(start, end, q.Step)
	out := domain.Series{Source: domain.SourceRaw}
	var aggRows pgx.Rows
	if domain.UsesRollups(start, q.Step) {
		out.Source = domain.SourceRollup
		wm := negInf
		var got pgtype.Timestamptz
		if err := s.read.QueryRow(ctx, sqlWatermark).Scan(&got); err != nil {
			return domain.Series{}, fmt.Errorf("query series: watermark: %w", translate(err))
		}
		if got.Valid {
			wm = got
		}
		aggRows, err = s.read.Query(ctx, sqlSeriesRollup, ids, start, end.Truncate(time.Minute).Add(time.Minute), q.Step.Microseconds(), wm)
	} else {
		aggRows, err = s.read.Query(ctx, sqlSeriesRaw, ids, start, end, q.Step.Microseconds())
	}
	if err != nil {
		return domain.Series{}, fmt.Errorf("query series: %w", translate(err))
	}
	aggs := make(map[int64]domain.Agg)
	for aggRows.Next() {
		var (
			k              int64
			count          int64
			mn, mx, sm, ls *float64
		)
		if err := aggRows.Scan(&k, &count, &mn, &mx, &sm, &ls); err != nil {
			aggRows.Close()
			return domain.Series{}, fmt.Errorf("query series: %w", translate(err))
		}
		if count == 0 || k < 0 || k >= n {
			continue
		}
		aggs[k] = domain.Agg{Count: int(count), Min: *mn, Max: *mx, Sum: *sm, Last: *ls}
	}
	if err := aggRows.Err(); err != nil {
		return domain.Series{}, fmt.Errorf("query series: %w", translate(err))
	}
	out.Buckets = make([]domain.Bucket, n)
	for k := range n {
		out.Buckets[k] = aggs[k].Bucket(start.Add(time.Duration(k) * q.Step))
	}
	return out, nil
}

// ListGPUs returns the registry ordered by hostname, GPU index, UUID.
func (s *TelemetryStore) ListGPUs(ctx context.Context) ([]domain.GPU, error) {
	return queryRows(ctx, s.read, "list gpus", sqlListGPUs, scanGPU)
}

// QueryTelemetry reads Limit+1 rows so that Next is nil exactly when the
// window is exhausted.
func (s *TelemetryStore) QueryTelemetry(ctx context.Context, q ports.TelemetryQuery) (ports.TelemetryPage, error) {
	if err := q.Validate(true); err != nil {
		return ports.TelemetryPage{}, fmt.Errorf("query telemetry: %w", err)
	}
	limit := int64(q.Limit) + 1
	records := make([]domain.Record, 0, min(q.Limit+1, 1024))
	err := s.scan(ctx, q, &limit, func(r domain.Record) error {
		records = append(records, r)
		return nil
	})
	if err != nil {
		return ports.TelemetryPage{}, fmt.Errorf("query telemetry: %w", err)
	}
	page := ports.TelemetryPage{Records: records}
	if len(records) > q.Limit {
		page.Records = records[:q.Limit]
		last := page.Records[q.Limit-1]
		page.Next = &ports.Cursor{Timestamp: last.Timestamp, ID: last.ID}
	}
	return page, nil
}

// StreamTelemetry runs one query and hands rows to fn as pgx reads them off
// the connection, so memory stays constant; the connection is held until
// the stream ends.
func (s *TelemetryStore) StreamTelemetry(ctx context.Context, q ports.TelemetryQuery, fn func(domain.Record) error) error {
	if err := q.Validate(false); err != nil {
		return fmt.Errorf("stream telemetry: %w", err)
	}
	if err := s.scan(ctx, q, nil, fn); err != nil {
		return fmt.Errorf("stream telemetry: %w", err)
	}
	return nil
}

// scan runs the window query (limit nil: to the end) and calls fn per row;
// fn's error is returned as is. An empty result triggers a registry lookup,
// so an unknown GPU is ErrNotFound without an extra round trip on the common
// path (a GPU's telemetry rows commit together with its registry row).
func (s *TelemetryStore) scan(ctx context.Context, q ports.TelemetryQuery, limit *int64, fn func(domain.Record) error) error {
	sql, args := QueryTelemetrySQL, queryArgs(q, limit)
	// Stopping early must abort the query: rows.Close alone would drain
	// every remaining row of a long stream first.
	queryCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows, err := s.read.Query(queryCtx, sql, args...)
	if err != nil {
		return translate(err)
	}
	stop := func(err error) error {
		cancel()
		rows.Close()
		return err
	}
	n := 0
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return stop(err)
		}
		r, err := scanRecord(rows)
		if err != nil {
			return stop(translate(err))
		}
		n++
		if err := fn(r); err != nil {
			return stop(err)
		}
	}
	if err := rows.Err(); err != nil {
		return translate(err)
	}
	if n > 0 {
		return nil
	}
	var exists bool
	if err := s.read.QueryRow(ctx, sqlGPUExists, q.GPUUUID).Scan(&exists); err != nil {
		return fmt.Errorf("look up gpu: %w", translate(err))
	}
	if !exists {
		return fmt.Errorf("gpu %s: %w", q.GPUUUID, ports.ErrNotFound)
	}
	return nil
}

func scanRecord(rows pgx.Rows) (domain.Record, error) {
	var (
		r         domain.Record
		id, index int32
	)
	err := rows.Scan(&id, &r.Timestamp, &r.Value, &r.GPUUUID, &r.MetricName, &r.Hostname, &index, &r.Device,
		&r.ModelName, &r.Container, &r.Pod, &r.Namespace, &r.LabelsRaw)
	r.ID, r.GPUIndex = int64(id), int(index)
	r.Timestamp = r.Timestamp.UTC()
	return r, err
}

var (
	negInf = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	posInf = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
)

func bound(t time.Time, unbounded pgtype.Timestamptz) pgtype.Timestamptz {
	if t.IsZero() {
		return unbounded
	}
	return pgtype.Timestamptz{Time: t, Valid: true}
}

// queryArgs are $1..$7 of QueryTelemetrySQL.
func queryArgs(q ports.TelemetryQuery, limit *int64) []any {
	afterTS, afterID := negInf, int64(0)
	if q.After != nil {
		afterTS, afterID = pgtype.Timestamptz{Time: q.After.Timestamp, Valid: true}, q.After.ID
	}
	var metric *string
	if q.MetricName != "" {
		metric = &q.MetricName
	}
	return []any{q.GPUUUID, bound(q.Start, negInf), bound(q.End, posInf), afterTS, afterID, limit, metric}
}
