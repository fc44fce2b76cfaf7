package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/gpufleet/telemetry/ports"
)

const (
	// sqlListDeadLetters is one page of dead letters, newest first, after
	// a keyset position ($1 0: none): a backward range scan of the primary
	// key dead_letters_pkey, stopped by the LIMIT. left() truncates a
	// payload to $3 characters ($3 0: whole) so a page of huge poison
	// messages stays small on the wire.
	sqlListDeadLetters = `SELECT id, msg_uuid, topic,
    CASE WHEN $3::int > 0 THEN left(payload, $3::int) ELSE payload END,
    octet_length(payload), reason, created_at
FROM dead_letters
WHERE ($1::bigint = 0 OR id < $1::bigint)
ORDER BY id DESC
LIMIT $2`

	// sqlPipelineStats is the pipeline view's snapshot, all cheap:
	// - samples inserted: the statistics collector's insert counters of
	//   the sample partitions (a few catalog rows; they lag by up to the
	//   stats flush interval, and a dropped partition takes its count along);
	// - the queue backlog and the dead-letter count: counts stopped at $1
	//   rows, so a huge backlog costs at most $1 index entries;
	// - the oldest waiting message: one probe of queue_messages_pkey;
	// - the database clock.
	// queue_messages is the PostgreSQL queue's table (migration 0001): it
	// exists whichever queue backend runs, and is simply empty under NATS.
	sqlPipelineStats = `SELECT now(),
    (SELECT coalesce(sum(st.n_tup_ins), 0)::bigint FROM pg_stat_user_tables st
        WHERE st.relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'telemetry_samples'::regclass)),
    (SELECT count(*) FROM (SELECT 1 FROM queue_messages LIMIT $1) q),
    (SELECT created_at FROM queue_messages ORDER BY id LIMIT 1),
    (SELECT count(*) FROM (SELECT 1 FROM dead_letters LIMIT $1) d)`

	// sqlHosts groups the registry (a row per GPU: hundreds) by host.
	sqlHosts = `SELECT hostname, count(*), max(last_seen) FROM gpus GROUP BY hostname ORDER BY hostname COLLATE "C"`
)

// ListDeadLetters returns one page of dead letters, newest first.
func (s *TelemetryStore) ListDeadLetters(ctx context.Context, q ports.DeadLetterQuery) (ports.DeadLetterPage, error) {
	if err := q.Validate(); err != nil {
		return ports.DeadLetterPage{}, fmt.Errorf("list dead letters: %w", err)
	}
	letters, err := queryRows(ctx, s.pool, "list dead letters", sqlListDeadLetters, scanDeadLetter,
		q.Before, q.Limit+1, q.PayloadChars)
	if err != nil {
		return ports.DeadLetterPage{}, err
	}
	page := ports.DeadLetterPage{Letters: letters}
	if len(letters) > q.Limit {
		page.Letters = letters[:q.Limit]
		page.Next = page.Letters[q.Limit-1].ID
	}
	return page, nil
}

func scanDeadLetter(row pgx.CollectableRow) (ports.StoredDeadLetter, error) {
	var (
		l       ports.StoredDeadLetter
		id      pgtype.UUID
		payload string
	)
	err := row.Scan(&l.ID, &id, &l.Topic, &payload, &l.PayloadBytes, &l.Reason, &l.CreatedAt)
	l.MsgUUID, l.Payload, l.CreatedAt = id.Bytes, []byte(payload), l.CreatedAt.UTC()
	return l, err
}

// PipelineStats reads the snapshot in two small queries.
func (s *TelemetryStore) PipelineStats(ctx context.Context) (ports.PipelineStats, error) {
	var (
		out    ports.PipelineStats
		oldest pgtype.Timestamptz
	)
	err := s.pool.QueryRow(ctx, sqlPipelineStats, ports.CountCap+1).Scan(&out.At, &out.SamplesInserted,
		&out.QueueBacklog, &oldest, &out.DeadLetters)
	if err != nil {
		return ports.PipelineStats{}, fmt.Errorf("pipeline stats: %w", translate(err))
	}
	out.At = out.At.UTC()
	if oldest.Valid {
		t := oldest.Time.UTC()
		out.OldestQueued = &t
	}
	out.QueueBacklog, out.QueueBacklogCapped = capCount(out.QueueBacklog)
	out.DeadLetters, out.DeadLettersCapped = capCount(out.DeadLetters)
	out.Hosts, err = queryRows(ctx, s.pool, "pipeline stats: hosts", sqlHosts, func(row pgx.CollectableRow) (ports.HostSeen, error) {
		var h ports.HostSeen
		err := row.Scan(&h.Hostname, &h.GPUs, &h.LastSeen)
		h.LastSeen = h.LastSeen.UTC()
		return h, err
	})
	if err != nil {
		return ports.PipelineStats{}, err
	}
	return out, nil
}

// capCount turns a count stopped at CountCap+1 rows into (CountCap, true).
func capCount(n int64) (int64, bool) {
	if n > ports.CountCap {
		return ports.CountCap, true
	}
	return n, false
}
