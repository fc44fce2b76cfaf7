package postgres

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/adapters/internal/pgdb"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

var (
	_ ports.TelemetryStore = (*TelemetryStore)(nil)
	_ ports.Checker        = (*TelemetryStore)(nil)
)

const (
	// sqlUpsertSeries registers the series of a batch this process does not
	// know yet (one row each, sorted by key so concurrent writers lock in
	// one order) through telemetry_series_identity_key. A new series starts
	// with first_seen = last_seen = its oldest sample in the batch: a lower
	// bound that stays true even if the samples insert then fails. The no-op
	// update on conflict makes RETURNING answer for existing rows too.
	sqlUpsertSeries = `INSERT INTO telemetry_series AS s (gpu_uuid, metric_name, attrs_key, hostname, gpu_index,
    device, model_name, container, pod, namespace, labels_raw, first_seen, last_seen)
SELECT g, m, a, h, i, d, mo, c, p, n, l, f, f
FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::int4[], $6::text[], $7::text[], $8::text[],
    $9::text[], $10::text[], $11::text[], $12::timestamptz[]) AS v(g, m, a, h, i, d, mo, c, p, n, l, f)
ON CONFLICT (gpu_uuid, metric_name, attrs_key) DO UPDATE SET first_seen = LEAST(s.first_seen, EXCLUDED.first_seen)
RETURNING id, gpu_uuid, metric_name, attrs_key, last_seen`

	// sqlInsertSamples inserts a batch as three arrays in one statement.
	// Conflicts probe the primary key (series_id, ts) of the day's partition
	// (the natural key: a redelivered sample is skipped, also one repeated
	// in the batch), so the command tag counts exactly the new samples.
	// Rows are sent sorted by (series_id, ts), so concurrent writers of
	// overlapping batches lock in one order and cannot deadlock. A sample
	// for a day without a partition fails the whole statement with 23514;
	// WriteBatch then creates the day and retries.
	sqlInsertSamples = `INSERT INTO telemetry_samples (series_id, ts, value)
SELECT * FROM unnest($1::int4[], $2::timestamptz[], $3::float8[])
ON CONFLICT DO NOTHING`

	// sqlTouchSeries moves last_seen forward for the series whose newest
	// sample passed the cached value by SeriesResolution (primary key
	// lookups, ids sorted).
	sqlTouchSeries = `UPDATE telemetry_series s SET last_seen = v.ts
FROM unnest($1::int4[], $2::timestamptz[]) AS v(id, ts)
WHERE s.id = v.id AND s.last_seen < v.ts`

	// sqlUpsertGPUs upserts the registry rows of the GPUs whose attributes
	// changed or whose newest sample passed the cached last_seen by
	// RegistryResolution (one row each, sorted by UUID: one lock order)
	// through gpus_pkey. last_seen only moves forward; the attributes follow
	// the newest sample, so a late redelivery cannot revert a renamed host.
	sqlUpsertGPUs = `INSERT INTO gpus AS g (uuid, hostname, gpu_index, device, model_name, first_seen, last_seen)
SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[])
ON CONFLICT (uuid) DO UPDATE SET
    hostname   = CASE WHEN EXCLUDED.last_seen >= g.last_seen THEN EXCLUDED.hostname   ELSE g.hostname   END,
    gpu_index  = CASE WHEN EXCLUDED.last_seen >= g.last_seen THEN EXCLUDED.gpu_index  ELSE g.gpu_index  END,
    device     = CASE WHEN EXCLUDED.last_seen >= g.last_seen THEN EXCLUDED.device     ELSE g.device     END,
    model_name = CASE WHEN EXCLUDED.last_seen >= g.last_seen THEN EXCLUDED.model_name ELSE g.model_name END,
    first_seen = LEAST(g.first_seen, EXCLUDED.first_seen),
    last_seen  = GREATEST(g.last_seen, EXCLUDED.last_seen)`

	// sqlEnsurePartitions creates the day partitions of a table for the
	// given instants (telemetry_ensure_partition, migration 0002) and
	// counts the ones it created.
	sqlEnsurePartitions = `SELECT count(*) FILTER (WHERE telemetry_ensure_partition($1, d))
FROM unnest($2::timestamptz[]) AS d`

	// sqlInsertDeadLetters stores poison messages; a repeat hits the unique
	// index dead_letters_msg_uuid_key and is skipped.
	sqlInsertDeadLetters = `INSERT INTO dead_letters (msg_uuid, topic, payload, reason, deliveries, source)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::text[])
ON CONFLICT (msg_uuid) DO NOTHING`
)

// Options tune a TelemetryStore; the zero value keeps the defaults noted.
type Options struct {
	// Retention is how long raw samples are kept (0: forever). Older
	// samples are dropped at write (counted as Expired) and their day
	// partitions by Maintain once the whole day is past it.
	Retention time.Duration
	// RollupRetention is how long 1-minute rollups are kept (0: forever).
	RollupRetention time.Duration
	// RegistryResolution: a GPU's registry row is rewritten when its
	// attributes change or its newest sample is this much newer than the
	// last_seen this process wrote (0: on every newer sample). It bounds how
	// far /gpus' last_seen may lag.
	RegistryResolution time.Duration
	// SeriesResolution is the same for a series' last_seen (a lower bound
	// that keeps latest-value lookups in the newest partitions).
	SeriesResolution time.Duration
	// PartitionsAhead is how many days after today Maintain creates (default 2).
	PartitionsAhead int
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
	// ReadPool, when set, serves the read-only API queries (a replica
	// behind CloudNativePG's -ro service; rows committed on the primary
	// show up there after the replication lag). Nil reads from the primary.
	ReadPool *pgxpool.Pool
}

// Defaults of Options for a running collector.
const (
	DefaultRegistryResolution = 5 * time.Second
	DefaultSeriesResolution   = time.Hour
	defaultPartitionsAhead    = 2
)

// TelemetryStore is the PostgreSQL ports.TelemetryStore on the time-series
// schema of migration 0002 (ADR 0004). It is safe for concurrent use: the
// data is in the database; the registry caches are copy-on-write maps and
// atomics.
type TelemetryStore struct {
	pool *pgxpool.Pool
	read *pgxpool.Pool // Options.ReadPool, else pool
	log  *slog.Logger
	opts Options

	series cowMap[pointKey, seriesEntry]
	gpus   cowMap[string, gpuEntry]

	// Counters for the maintenance metrics (read by Stats).
	expired, partitionsCreated, partitionsDropped, rolledUp atomic.Int64
}

// NewTelemetryStore returns a store on pool (not owned: the caller closes
// it) with default Options. A nil logger means slog.Default().
func NewTelemetryStore(pool *pgxpool.Pool, logger *slog.Logger) *TelemetryStore {
	return NewTelemetryStoreWith(pool, logger, Options{
		RegistryResolution: DefaultRegistryResolution, SeriesResolution: DefaultSeriesResolution})
}

// NewTelemetryStoreWith returns a store with opts.
func NewTelemetryStoreWith(pool *pgxpool.Pool, logger *slog.Logger, opts Options) *TelemetryStore {
	if logger == nil {
		logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PartitionsAhead <= 0 {
		opts.PartitionsAhead = defaultPartitionsAhead
	}
	read := opts.ReadPool
	if read == nil {
		read = pool
	}
	return &TelemetryStore{pool: pool, read: read, opts: opts, log: logger.With("component", "postgres.TelemetryStore")}
}

// Stats are the store's lifetime counters, for metrics.
type Stats struct {
	ExpiredSamples, PartitionsCreated, PartitionsDropped, RowsRolledUp int64
}

// Stats returns the counters so far.
func (s *TelemetryStore) Stats() Stats {
	return Stats{ExpiredSamples: s.expired.Load(), PartitionsCreated: s.partitionsCreated.Load(),
		PartitionsDropped: s.partitionsDropped.Load(), RowsRolledUp: s.rolledUp.Load()}
}

// querier is what a pool, a connection and a transaction share.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// queryRows runs sql on q and scans every row with scan. Both failures,
// the query's and a row's, are translated and wrapped in what, the read's
// name.
func queryRows[T any](ctx context.Context, q querier, what, sql string, scan pgx.RowToFunc[T], args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, translate(err))
	}
	out, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, translate(err))
	}
	return out, nil
}

// Check pings the database.
func (s *TelemetryStore) Check(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return &ports.NotReadyError{Reason: "database unreachable", Err: fmt.Errorf("ping postgres: %w", translate(err))}
	}
	return nil
}

// WriteBatch stores the batch's samples, registering new series first,
// and keeps the GPU registry current. The samples insert, the series
// last_seen moves and the registry upsert go in one pgx batch, which
// PostgreSQL runs as one implicit transaction: all commit or none.
// Registry upkeep is skipped for what this process wrote recently (see
// Options), so a steady stream does not rewrite a registry row per sample.
// Duplicates counts every record not inserted (already stored, or repeated
// in the batch); Expired the records older than the raw retention.
func (s *TelemetryStore) WriteBatch(ctx context.Context, records []domain.Record) (ports.WriteResult, error) {
	if err := domain.ValidateRecords(records); err != nil {
		return ports.WriteResult{}, fmt.Errorf("write batch: %w", err)
	}
	var res ports.WriteResult
	kept := records
	if s.opts.Retention > 0 {
		cutoff := s.opts.Now().Add(-s.opts.Retention)
		kept = make([]domain.Record, 0, len(records))
		for _, r := range records {
			if r.Timestamp.Before(cutoff) {
				res.Expired++
				continue
			}
			kept = append(kept, r)
		}
		if res.Expired > 0 {
			s.expired.Add(int64(res.Expired))
			s.log.WarnContext(ctx, "dropped samples older than the raw retention", "samples", res.Expired, "retention", s.opts.Retention)
		}
	}
	if len(kept) == 0 {
		return res, nil
	}
	keys := make([]pointKey, len(kept))
	for i, r := range kept {
		keys[i] = keyOf(r.Point)
	}
	entries, err := s.registerSeries(ctx, kept, keys)
	if err != nil {
		return ports.WriteResult{}, fmt.Errorf("write batch of %d: %w", len(kept), err)
	}
	plan := s.planBatch(kept, keys, entries)
	inserted, err := s.sendBatch(ctx, plan)
	if pgdb.IsNoPartition(err) {
		if _, err = s.ensurePartitions(ctx, s.pool, tableSamples, plan.ts); err == nil {
			inserted, err = s.sendBatch(ctx, plan)
		}
	}
	// The batch is one implicit transaction: a deadlock (the touch's row
	// locks follow its plan, which may differ between two writers' batch
	// sizes) or a serialization failure rolled all of it back, and running
	// it again is the cure PostgreSQL prescribes. Bounded; then the caller's
	// error (the collector releases the lease).
	for attempt := 2; attempt <= maxBatchAttempts && pgdb.IsRolledBack(err); attempt++ {
		s.log.WarnContext(ctx, "telemetry batch rolled back by the database; writing it again", "attempt", attempt, "err", err)
		inserted, err = s.sendBatch(ctx, plan)
	}
	if err != nil {
		return ports.WriteResult{}, fmt.Errorf("write batch of %d: %w", len(kept), translate(err))
	}
	plan.commit()
	res.Inserted, res.Duplicates = inserted, len(kept)-inserted
	s.log.DebugContext(ctx, "wrote telemetry batch", "records", len(records), "inserted", res.Inserted,
		"duplicates", res.Duplicates, "expired", res.Expired)
	return res, nil
}

// registerSeries returns the series entry of every key of the batch,
// upserting the ones the cache does not know (each once, at its oldest
// sample of the batch) and adding them to the cache. The batch keeps its own
// map: the cache may start over under it (maxCacheEntries).
func (s *TelemetryStore) registerSeries(ctx context.Context, records []domain.Record, keys []pointKey) (map[pointKey]*seriesEntry, error) {
	entries := make(map[pointKey]*seriesEntry, 16)
	oldest := map[pointKey]int{}
	for i, k := range keys {
		if e, ok := s.series.get(k); ok {
			entries[k] = e
			continue
		}
		if j, ok := oldest[k]; !ok || records[i].Timestamp.Before(records[j].Timestamp) {
			oldest[k] = i
		}
	}
	if len(oldest) == 0 {
		return entries, nil
	}
	idx := make([]int, 0, len(oldest))
	ids := make(map[seriesKey]pointKey, len(oldest)) // the database's identity of each new key
	attrsOf := make(map[int]uuid.UUID, len(oldest))
	for k, i := range oldest {
		idx = append(idx, i)
		a := attrsKey(records[i].Point)
		attrsOf[i] = a
		ids[seriesKey{gpu: k.gpu, metric: k.metric, attrs: a}] = k
	}
	slices.SortFunc(idx, func(a, b int) int {
		ka, kb := keys[a], keys[b]
		aa, ab := attrsOf[a], attrsOf[b]
		return cmp.Or(cmp.Compare(ka.gpu, kb.gpu), cmp.Compare(ka.metric, kb.metric), slices.Compare(aa[:], ab[:]))
	})
	n := len(idx)
	gpu, metric, host, device, model, container, pod, ns, labels := make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attrs, index, first := make([]pgtype.UUID, n), make([]int32, n), make([]time.Time, n)
	for j, i := range idx {
		r := records[i]
		gpu[j], metric[j], attrs[j], host[j], index[j] = r.GPUUUID, r.MetricName, uuidParam(attrsOf[i]), r.Hostname, int32(r.GPUIndex)
		device[j], model[j], container[j], pod[j], ns[j], labels[j], first[j] = r.Device, r.ModelName, r.Container, r.Pod, r.Namespace, r.LabelsRaw, r.Timestamp
	}
	rows, err := s.pool.Query(ctx, sqlUpsertSeries, gpu, metric, attrs, host, index, device, model, container, pod, ns, labels, first)
	if err != nil {
		return nil, fmt.Errorf("register series: %w", translate(err))
	}
	added := make(map[pointKey]*seriesEntry, len(oldest))
	for rows.Next() {
		var (
			k        seriesKey
			id       int32
			lastSeen time.Time
		)
		if err := rows.Scan(&id, &k.gpu, &k.metric, &k.attrs, &lastSeen); err != nil {
			rows.Close()
			return nil, fmt.Errorf("register series: %w", translate(err))
		}
		pk, ok := ids[k]
		if !ok {
			continue // not one of ours (cannot happen: RETURNING answers the rows sent)
		}
		e := &seriesEntry{id: id}
		e.lastSeen.Store(micros(lastSeen))
		added[pk] = e
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("register series: %w", translate(err))
	}
	maps.Copy(entries, s.series.addAll(added))
	for k := range oldest {
		if entries[k] == nil {
			// RETURNING answers for every row of an upsert; never expected.
			return nil, fmt.Errorf("register series: series of %s %s not returned", k.gpu, k.metric)
		}
	}
	return entries, nil
}

// batchPlan is what one WriteBatch sends, and the cache updates to apply
// once it committed.
type batchPlan struct {
	ids      []int32
	ts       []time.Time
	values   []*float64
	touchIDs []int32
	touchTS  []time.Time
	gpuArgs  []any
	commit   func()
}

// planBatch turns the batch into sqlInsertSamples' arrays (sorted by
// series, then time) and decides which series and registry rows need a
// write.
func (s *TelemetryStore) planBatch(records []domain.Record, keys []pointKey, entries map[pointKey]*seriesEntry) *batchPlan {
	type row struct {
		id int32
		r  *domain.Record
	}
	rows := make([]row, len(records))
	newest := map[*seriesEntry]time.Time{}
	for i := range records {
		e := entries[keys[i]] // registerSeries returned every key
		rows[i] = row{id: e.id, r: &records[i]}
		if t, ok := newest[e]; !ok || records[i].Timestamp.After(t) {
			newest[e] = records[i].Timestamp
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(a.id, b.id), a.r.Timestamp.Compare(b.r.Timestamp))
	})
	p := &batchPlan{ids: make([]int32, len(rows)), ts: make([]time.Time, len(rows)), values: make([]*float64, len(rows))}
	for i, r := range rows {
		p.ids[i], p.ts[i], p.values[i] = r.id, r.r.Timestamp, r.r.Value
	}
	var touched []*seriesEntry
	for e, t := range newest {
		if micros(t) >= e.lastSeen.Load()+s.opts.SeriesResolution.Microseconds() && micros(t) > e.lastSeen.Load() {
			touched = append(touched, e)
		}
	}
	slices.SortFunc(touched, func(a, b *seriesEntry) int { return cmp.Compare(a.id, b.id) })
	for _, e := range touched {
		p.touchIDs, p.touchTS = append(p.touchIDs, e.id), append(p.touchTS, newest[e])
	}
	gpus := s.staleGPUs(records)
	if len(gpus) > 0 {
		p.gpuArgs = gpuColumns(gpus)
	}
	p.commit = func() {
		for _, e := range touched {
			advance(&e.lastSeen, micros(newest[e]))
		}
		for _, g := range gpus {
			e := s.gpus.add(g.gpu.UUID, &gpuEntry{})
			for {
				cur := e.state.Load()
				if cur != nil && cur.LastSeen.After(g.gpu.LastSeen) {
					break
				}
				next := g.gpu
				if e.state.CompareAndSwap(cur, &next) {
					break
				}
			}
		}
	}
	return p
}

// gpuUpdate is one registry row to upsert: the attributes of the GPU's
// newest sample in the batch, its oldest and newest timestamps.
type gpuUpdate struct {
	gpu   domain.GPU
	first time.Time
}

// staleGPUs reduces the batch to one registry row per GPU and keeps those
// whose row this process has not written, whose attributes changed, or
// whose newest sample is RegistryResolution past what it wrote.
func (s *TelemetryStore) staleGPUs(records []domain.Record) []gpuUpdate {
	byUUID := make(map[string]*gpuUpdate)
	for _, r := range records {
		g := domain.GPUOf(r.Point)
		e, ok := byUUID[g.UUID]
		if !ok {
			byUUID[g.UUID] = &gpuUpdate{gpu: g, first: g.LastSeen}
			continue
		}
		if !g.LastSeen.Before(e.gpu.LastSeen) {
			e.gpu = g
		}
		if g.LastSeen.Before(e.first) {
			e.first = g.LastSeen
		}
	}
	out := make([]gpuUpdate, 0, len(byUUID))
	for _, u := range byUUID {
		if e, ok := s.gpus.get(u.gpu.UUID); ok {
			if cur := e.state.Load(); cur != nil {
				same := cur.Hostname == u.gpu.Hostname && cur.GPUIndex == u.gpu.GPUIndex && cur.Device == u.gpu.Device && cur.ModelName == u.gpu.ModelName
				if !u.gpu.LastSeen.After(cur.LastSeen) || (same && u.gpu.LastSeen.Sub(cur.LastSeen) < s.opts.RegistryResolution) {
					continue
				}
			}
		}
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b gpuUpdate) int { return cmp.Compare(a.gpu.UUID, b.gpu.UUID) })
	return out
}

// sendBatch runs the plan's statements in one pgx batch (one implicit
// transaction) and returns how many samples were new.
func (s *TelemetryStore) sendBatch(ctx context.Context, p *batchPlan) (int, error) {
	b := &pgx.Batch{}
	b.Queue(sqlInsertSamples, p.ids, p.ts, p.values)
	if len(p.touchIDs) > 0 {
		b.Queue(sqlTouchSeries, p.touchIDs, p.touchTS)
	}
	if p.gpuArgs != nil {
		b.Queue(sqlUpsertGPUs, p.gpuArgs...)
	}
	br := s.pool.SendBatch(ctx, b)
	tag, err := br.Exec()
	for i := 1; err == nil && i < b.Len(); i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// maxBatchAttempts bounds the runs of one batch that deadlocks or fails to
// serialize.
const maxBatchAttempts = 3

// ensurePartitions creates the day partitions of table for the instants
// (deduplicated to days) and returns how many it created.
func (s *TelemetryStore) ensurePartitions(ctx context.Context, q querier, table string, instants []time.Time) (int, error) {
	days := map[time.Time]struct{}{}
	for _, t := range instants {
		days[t.UTC().Truncate(24*time.Hour)] = struct{}{}
	}
	list := make([]time.Time, 0, len(days))
	for d := range days {
		list = append(list, d)
	}
	slices.SortFunc(list, time.Time.Compare)
	var created int
	if err := q.QueryRow(ctx, sqlEnsurePartitions, table, list).Scan(&created); err != nil {
		return 0, fmt.Errorf("create partitions of %s: %w", table, translate(err))
	}
	if created > 0 {
		s.partitionsCreated.Add(int64(created))
		s.log.InfoContext(ctx, "created partitions", "table", table, "partitions", created)
	}
	return created, nil
}

// uuidParam is id as a query parameter. pgx encodes a uuid.UUID through its
// driver.Valuer (to a string, a failed binary encode, a re-parse: about 5µs
// per id, an eighth of the collector's CPU in make bench's profile); a
// pgtype.UUID goes straight to the binary form.
func uuidParam(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

// gpuColumns turns registry updates into sqlUpsertGPUs's arrays.
func gpuColumns(updates []gpuUpdate) []any {
	n := len(updates)
	id, host, device, model := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	index := make([]int32, n)
	first, last := make([]time.Time, n), make([]time.Time, n)
	for i, e := range updates {
		id[i], host[i], index[i], device[i], model[i] = e.gpu.UUID, e.gpu.Hostname, int32(e.gpu.GPUIndex), e.gpu.Device, e.gpu.ModelName
		first[i], last[i] = e.first, e.gpu.LastSeen
	}
	return []any{id, host, index, device, model, first, last}
}

// WriteDeadLetters stores letters; repeats of a message are ignored.
func (s *TelemetryStore) WriteDeadLetters(ctx context.Context, letters []domain.DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	n := len(letters)
	ids, topics, payloads, reasons := make([]pgtype.UUID, n), make([]string, n), make([]string, n), make([]string, n)
	deliveries, sources := make([]int32, n), make([]string, n)
	for i, l := range letters {
		if l.MsgUUID == uuid.Nil {
			return fmt.Errorf("write dead letters: letter %d: msg_uuid is nil: %w", i, ports.ErrInvalidArgument)
		}
		ids[i], topics[i], payloads[i], reasons[i] = uuidParam(l.MsgUUID), l.Topic, string(l.Payload), domain.TruncateReason(l.Reason)
		deliveries[i], sources[i] = int32(min(l.Deliveries, domain.MaxMaxDeliveries+1)), cmp.Or(l.Source, domain.DeadLetterSourceCollector)
	}
	if _, err := s.pool.Exec(ctx, sqlInsertDeadLetters, ids, topics, payloads, reasons, deliveries, sources); err != nil {
		return fmt.Errorf("write %d dead letters: %w", n, translate(err))
	}
	return nil
}
