package pgqueue

// SQL of the queue. The table is migrations/0001_init.up.sql's
// queue_messages; lease state never touches it.

// insertSQL writes a whole group-commit batch in one statement (one round
// trip, one implicit transaction). unnest keeps the arrays' order, so when a
// batch carries the same (topic, msg_uuid) twice the first is inserted and the
// second hits ON CONFLICT. Uses the unique index queue_messages_topic_msg_uuid_key
// for the conflict check; takes row locks on the inserted rows only.
const insertSQL = `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::jsonb[], $4::smallint[])
ON CONFLICT (topic, msg_uuid) DO NOTHING
RETURNING topic, msg_uuid`

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

// refillSQL loads the oldest rows of a topic's partition range that the
// reader does not hold ($4: every id it holds, ready, leased or awaiting
// delete). It uses no high-water mark: a row whose lower id became visible
// after higher ones is still found. The planner walks either the primary key
// in id order (large backlogs: stops after $5 matches) or
// queue_messages_topic_partition_id_idx for the range plus a top-N sort
// (small backlogs). "<> ALL" is hashed by PostgreSQL 15+ when $4 is bound as a
// constant, which the unnamed statement of QueryExecModeCacheDescribe
// guarantees (a cached generic plan would compare every row to every held id).
// Reads only; takes no locks beyond the snapshot.
const refillSQL = `SELECT id, msg_uuid, payload, partition_key, created_at, deliveries, last_error
FROM queue_messages
WHERE topic = $1 AND partition_key BETWEEN $2 AND $3 AND id <> ALL($4::bigint[])
ORDER BY id
LIMIT $5`

// deleteSQL removes acked messages, many acks per statement. Uses the
// primary key; row-locks only the deleted rows.
const deleteSQL = `DELETE FROM queue_messages WHERE id = ANY($1::bigint[])`

// recordDeliveriesSQL keeps the delivery counts (and last errors) of
// messages whose delivery ended without an ack, so a restarted reader goes
// on counting (migration 0003). It runs only on release and expiry, never
// on the lease/ack path; GREATEST keeps it right when two updates of one
// row race. Uses the primary key; row-locks only the updated rows. An id
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
