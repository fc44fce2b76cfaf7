package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/gpufleet/telemetry/ports"
)

// The partitioned tables of migration 0002; partitions are named
// <table>_YYYYMMDD (UTC days).
const (
	tableSamples = "telemetry_samples"
	tableRollups = "telemetry_rollups_1m"
	day          = 24 * time.Hour
)

// maintenanceLockKey is the session advisory lock one maintenance runner
// holds at a time ("gpumaint" in ASCII). A killed runner's connection
// closes and releases it.
const maintenanceLockKey int64 = 0x6770756d61696e74

// Rollup pacing: a minute is rolled up rollupSettle after it ends (samples
// in flight through the queue land first); each run also re-rolls
// rollupRelook before the watermark so late samples within it are counted;
// one transaction covers at most rollupChunk.
const (
	rollupSettle = 2 * time.Minute
	rollupRelook = 5 * time.Minute
	rollupChunk  = time.Hour
)

const (
	sqlTryLock = `SELECT pg_try_advisory_lock($1)`
	sqlUnlock  = `SELECT pg_advisory_unlock($1)`

	// sqlPartitions lists a partitioned table's partitions (pg_inherits).
	sqlPartitions = `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass`

	// sqlRollUp aggregates [$1, $2) of raw samples per series and minute
	// into rollups, replacing rows already there (a re-run or a re-roll of
	// late samples computes them again from the same raw rows). The BRIN
	// index on ts limits the scan to the chunk's blocks of the day
	// partition; the upsert locks the rollup rows it writes.
	sqlRollUp = `INSERT INTO telemetry_rollups_1m AS r (series_id, bucket, count, min, max, sum, last)
SELECT series_id, date_bin('1 minute', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
    count(value), min(value), max(value), sum(value),
    (array_agg(value ORDER BY ts DESC) FILTER (WHERE value IS NOT NULL))[1]
FROM telemetry_samples
WHERE ts >= $1 AND ts < $2
GROUP BY 1, 2
ON CONFLICT (series_id, bucket) DO UPDATE SET
    count = EXCLUDED.count, min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum, last = EXCLUDED.last`

	// sqlSetWatermark records progress in the same transaction as the
	// rollup rows, so a killed run resumes exactly where it committed.
	sqlSetWatermark = `UPDATE telemetry_maintenance SET rolled_up_to = $1`
)

// Maintain creates partitions ahead, rolls up raw samples to now minus a
// settling delay, then drops partitions past their retention (rolling up
// first, so raw data about to go is summarised before it goes). One runner
// at a time: it takes a session advisory lock on a dedicated connection and
// returns Ran false if another holds it. Every step is idempotent and each
// rollup chunk commits with its watermark, so a kill at any point loses
// nothing and the next run resumes.
func (s *TelemetryStore) Maintain(ctx context.Context, now time.Time) (ports.MaintenanceReport, error) {
	var rep ports.MaintenanceReport
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return rep, fmt.Errorf("maintain: acquire: %w", translate(err))
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, sqlTryLock, maintenanceLockKey).Scan(&locked); err != nil {
		return rep, fmt.Errorf("maintain: lock: %w", translate(err))
	}
	if !locked {
		return rep, nil
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), sqlUnlock, maintenanceLockKey) }()
	rep.Ran = true
	c := conn.Conn()

	ahead := make([]time.Time, 0, s.opts.PartitionsAhead+1)
	for i := range s.opts.PartitionsAhead + 1 {
		ahead = append(ahead, now.UTC().Add(time.Duration(i)*day))
	}
	for _, table := range []string{tableSamples, tableRollups} {
		n, err := s.ensurePartitions(ctx, c, table, ahead)
		if err != nil {
			return rep, fmt.Errorf("maintain: %w", err)
		}
		rep.PartitionsCreated += n
	}
	if rep.RowsRolledUp, rep.RolledUpTo, err = s.rollUp(ctx, c, now); err != nil {
		return rep, fmt.Errorf("maintain: %w", err)
	}
	for table, keep := range map[string]time.Duration{tableSamples: s.opts.Retention, tableRollups: s.opts.RollupRetention} {
		n, err := s.dropExpired(ctx, c, table, now, keep)
		rep.PartitionsDropped += n
		if err != nil {
			return rep, fmt.Errorf("maintain: %w", err)
		}
	}
	return rep, nil
}

// partitionDays lists the days that have a partition of table, oldest first.
func partitionDays(ctx context.Context, c *pgx.Conn, table string) (map[time.Time]string, []time.Time, error) {
	names, err := queryRows(ctx, c, "list partitions of "+table, sqlPartitions, pgx.RowTo[string], table)
	if err != nil {
		return nil, nil, err
	}
	byDay := map[time.Time]string{}
	var days []time.Time
	for _, name := range names {
		d, err := time.Parse("20060102", strings.TrimPrefix(name, table+"_"))
		if err != nil {
			continue // not one of ours
		}
		byDay[d] = name
		days = append(days, d)
	}
	slices.SortFunc(days, time.Time.Compare)
	return byDay, days, nil
}

// rollUp rolls up whole minutes from the watermark (minus rollupRelook) to
// now - rollupSettle, one committed chunk at a time, skipping days without
// a samples partition.
func (s *TelemetryStore) rollUp(ctx context.Context, c *pgx.Conn, now time.Time) (int, time.Time, error) {
	target := now.UTC().Add(-rollupSettle).Truncate(time.Minute)
	var wm pgtype.Timestamptz
	if err := c.QueryRow(ctx, sqlWatermark).Scan(&wm); err != nil {
		return 0, time.Time{}, fmt.Errorf("read watermark: %w", translate(err))
	}
	_, days, err := partitionDays(ctx, c, tableSamples)
	if err != nil {
		return 0, time.Time{}, err
	}
	from := time.Time{}
	if wm.Valid {
		from = wm.Time.UTC().Add(-rollupRelook)
	} else if len(days) > 0 {
		from = days[0]
	}
	var rolled int
	last := time.Time{}
	if wm.Valid {
		last = wm.Time.UTC()
	}
	for _, d := range days {
		if !d.Add(day).After(from) || !d.Before(target) {
			continue
		}
		for lo := latest(d, from); lo.Before(d.Add(day)) && lo.Before(target); {
			hi := earliest(lo.Add(rollupChunk).Truncate(rollupChunk), d.Add(day), target)
			n, err := s.rollUpChunk(ctx, c, lo, hi)
			if err != nil {
				return rolled, last, err
			}
			rolled += n
			last, lo = hi, hi
			if err := ctx.Err(); err != nil {
				return rolled, last, err
			}
		}
	}
	if target.After(last) {
		// No samples partition reaches the target: nothing to roll up up to it.
		if _, err := c.Exec(ctx, sqlSetWatermark, target); err != nil {
			return rolled, last, fmt.Errorf("set watermark: %w", translate(err))
		}
		last = target
	}
	return rolled, last, nil
}

// rollUpChunk rolls up [lo, hi) and moves the watermark to hi in one
// transaction.
func (s *TelemetryStore) rollUpChunk(ctx context.Context, c *pgx.Conn, lo, hi time.Time) (int, error) {
	if _, err := s.ensurePartitions(ctx, c, tableRollups, []time.Time{lo, hi.Add(-time.Microsecond)}); err != nil {
		return 0, err
	}
	var n int
	err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, sqlRollUp, lo, hi)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		_, err = tx.Exec(ctx, sqlSetWatermark, hi)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("roll up %s..%s: %w", lo.Format(time.RFC3339), hi.Format(time.RFC3339), translate(err))
	}
	s.rolledUp.Add(int64(n))
	return n, nil
}

// dropExpired drops the partitions of table whose whole day is older than
// now - keep (keep 0: never).
func (s *TelemetryStore) dropExpired(ctx context.Context, c *pgx.Conn, table string, now time.Time, keep time.Duration) (int, error) {
	if keep <= 0 {
		return 0, nil
	}
	byDay, days, err := partitionDays(ctx, c, table)
	if err != nil {
		return 0, err
	}
	cutoff := now.Add(-keep)
	dropped := 0
	for _, d := range days {
		if d.Add(day).After(cutoff) {
			break
		}
		// DROP takes an ACCESS EXCLUSIVE lock on the parent for a moment;
		// it is metadata only, no rows are deleted one by one.
		if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{byDay[d]}.Sanitize()); err != nil {
			return dropped, fmt.Errorf("drop partition %s: %w", byDay[d], translate(err))
		}
		dropped++
		s.partitionsDropped.Add(1)
		s.log.InfoContext(ctx, "dropped partition past retention", "partition", byDay[d], "retention", keep)
	}
	return dropped, nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earliest(ts ...time.Time) time.Time {
	out := ts[0]
	for _, t := range ts[1:] {
		if t.Before(out) {
			out = t
		}
	}
	return out
}
