package pgqueue

// SQL of the queue. The table is migrations/0001_init.up.sql's
// queue_messages; lease state never touches it.

// insertSQL writes a whole group-commit batch in one statement (one round
// trip, one implicit transaction). unnest keeps the arrays' order, so when a
// batch carries the same (topic, msg_uuid) twice the first is inserted and the
// second hits ON CONFLICT. Uses the unique index queue_messages_topic_msg_uuid_key
// for the conflict check; takes row locks on the inserted rows only. It also
// notifies readyChannel once per topic that got rows, with the lowest id the
// batch inserted for it (see parseReady), delivered to the readers' LISTEN
// at commit (ADR 0014): a reader refills at once from that id instead of at
// its next poll, and from the lowest id notified, so a batch that commits
// after a higher-numbered one is not skipped. The notify subquery is an
// InitPlan, run once; NOTIFY takes a brief database-wide lock at commit,
// shared by the whole batch.
const insertSQL = `WITH ins AS (
    INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key)
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::jsonb[], $4::smallint[])
    ON CONFLICT (topic, msg_uuid) DO NOTHING
    RETURNING id, topic, msg_uuid
)
SELECT topic, msg_uuid FROM ins
WHERE (SELECT count(pg_notify('` + readyChannel + `', t || ' ' || first)) FROM (SELECT topic, min(id) FROM ins GROUP BY topic) d(t, first)) >= 0`

// readyChannel is the NOTIFY channel of insertSQL; parseReady reads its
// payload.
const readyChannel = "pgqueue_ready"

// listenSQL subscribes a reader's listening connection to readyChannel.
const listenSQL = `LISTEN ` + readyChannel

// createStagingSQL, copyInsertSQL: the COPY variant of a flush, kept for
// BenchmarkInsertMethod (it lost to insertSQL, see doc.go). The temporary table
// lives per connection and is emptied at each commit.
const createStagingSQL = `CREATE TEMPORARY TABLE IF NOT EXISTS queue_staging (
    ord int, topic text, msg_uuid uuid, payload jsonb, partition_key smallint
) ON COMMIT DELETE ROWS`

// copyInsertSQL moves the staged batch into the queue in batch order. Uses
// queue_messages_topic_msg_uuid_key for the conflict check.
const copyInsertSQL = `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key)
SELECT topic, msg_uuid, payload, partition_key FROM queue_staging ORDER BY ord
ON CONFLICT (topic, msg_uuid) DO NOTHING
RETURNING topic, msg_uuid`

// refillSQL loads the oldest rows of a topic's partition range from id $7
// on that the reader does not hold ($4: the ids it holds from $7 on, ready,
// leased or awaiting delete). It uses no high-water mark of its own: $7 is
// 0 for a full refill, which also finds a row whose lower id became visible
// after higher ones, and otherwise the lowest id a notification, an expired
// lease or the last refill's LIMIT left to load (see topicState.from). The
// planner walks either the primary key in id order from $7 (large backlogs,
// and the notified refills: it stops after $5 matches) or
// queue_messages_topic_partition_id_idx for the range, $7 checked in the
// index, plus a top-N sort (small backlogs). "<> ALL" is hashed by
// PostgreSQL 15+ when $4 is bound as a constant, which the unnamed
// statement of QueryExecModeCacheDescribe guarantees (a cached generic plan
// would compare every row to every held id).
// The outer filter keeps rows while the payloads before them stay under $6
// bytes, by pg_column_size (the stored, possibly compressed size: free to
// read, and exact for incompressible payloads), so a refill of large rows
// does not send what the reader would drop; the reader still counts decoded
// bytes (pgRows.load). Payloads of filtered rows are never detoasted.
// Reads only; takes no locks beyond the snapshot.
const refillSQL = `SELECT id, msg_uuid, payload, partition_key, created_at, deliveries, last_error FROM (
    SELECT id, msg_uuid, payload, partition_key, created_at, deliveries, last_error,
           sum(pg_column_size(payload)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) - pg_column_size(payload) AS before
    FROM queue_messages
    WHERE topic = $1 AND partition_key BETWEEN $2 AND $3 AND id >= $7 AND id <> ALL($4::bigint[])
    ORDER BY id
    LIMIT $5
) w
WHERE before < $6
ORDER BY id`

// deleteSQL removes acked messages, many acks per statement. Uses the
// primary key; row-locks only the deleted rows.
const deleteSQL = `DELETE FROM queue_messages WHERE id = ANY($1::bigint[])`

// recordDeliveriesSQL keeps the delivery counts (and last errors) of
// messages whose delivery ended without an ack, so a restarted reader goes
// on counting (migration 0003). It runs only on release and expiry, never
// on the lease/ack path; GREATEST keeps it right when two updates of one
// row race, and markArrays sends each row once per statement (the join
// would apply only one of its rows). Uses the primary key; row-locks only the updated rows. An id
// deleted meanwhile (acked) updates nothing.
const recordDeliveriesSQL = `UPDATE queue_messages q
SET deliveries = GREATEST(q.deliveries, u.deliveries),
    last_error = COALESCE(u.last_error, q.last_error)
FROM unnest($1::bigint[], $2::integer[], $3::text[]) AS u(id, deliveries, last_error)
WHERE q.id = u.id`

// deadLetterSQL moves messages at their delivery limit from the queue to
// dead_letters in one statement (one transaction): deleted and recorded
// together, or neither. A message already dead-lettered (dead_letters'
// unique msg_uuid) is still deleted from the queue. Uses the primary key of
// queue_messages and dead_letters_msg_uuid_key.
const deadLetterSQL = `WITH moved AS (
    DELETE FROM queue_messages q
    USING unnest($1::bigint[], $2::integer[], $3::text[]) AS u(id, deliveries, reason)
    WHERE q.id = u.id
    RETURNING q.msg_uuid, q.topic, q.payload, u.reason, u.deliveries
)
INSERT INTO dead_letters (msg_uuid, topic, payload, reason, deliveries, source)
SELECT msg_uuid, topic, payload::text, reason, deliveries, 'queue' FROM moved
ON CONFLICT (msg_uuid) DO NOTHING`

// deadLettersSQL reads a topic's dead letters set aside by the queue,
// oldest first (DeadLetterReader; the contract suite). A sequential scan of
// dead_letters, which stays small; not for a hot path.
const deadLettersSQL = `SELECT msg_uuid, topic, payload, reason, deliveries, source
FROM dead_letters
WHERE topic = $1 AND source = 'queue'
ORDER BY id
LIMIT $2`

// backlogCountSQL counts a topic's rows in a reader's partition range, up to
// $4: an index-only scan of queue_messages_topic_partition_id_idx (heap
// pages not yet all-visible are visited) or, when the range is every
// partition, a sequential scan; its cost grows with the backlog up to the
// cap and never past it: 85 ms per 100,000 rows measured on this 2-core
// machine under heavy load (load average 38). Takes no locks beyond the
// snapshot.
const backlogCountSQL = `SELECT count(*) FROM (
    SELECT 1 FROM queue_messages
    WHERE topic = $1 AND partition_key BETWEEN $2 AND $3
    LIMIT $4
) capped`

// reltuplesSQL is the planner's row estimate of the whole queue table (kept
// by autovacuum and ANALYZE): free to read, as stale as the last analyze.
const reltuplesSQL = `SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = 'queue_messages'::regclass`

// oldestSQL finds the created_at of the oldest row of a topic's range: one
// descent of queue_messages_topic_partition_id_idx per partition to its
// lowest id (ids follow insertion order), so about 256 index probes at most
// whatever the backlog (2 ms warm, 110 ms cold, on 400,000 rows under the
// same load). Takes no locks beyond the snapshot.
const oldestSQL = `SELECT min(o.created_at) FROM generate_series($2::int, $3::int) AS p(k)
CROSS JOIN LATERAL (
    SELECT created_at FROM queue_messages
    WHERE topic = $1 AND partition_key = p.k
    ORDER BY id LIMIT 1
) o`
