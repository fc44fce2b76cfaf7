// Package pgqueue is the primary queue adapter: a durable FIFO in
// PostgreSQL (the queue_messages table) with leases held in memory by
// partitioned readers. It implements the delivery contract of package ports.
//
// # Write side
//
// Writer group-commits publishes. Publish validates the request, derives each
// message's msg_uuid (domain.MessageID) and partition, reserves room in a
// bounded buffer with an atomic counter (all or nothing: a full buffer
// answers ports.ErrBackpressure at once and stores nothing), and hands the
// request to the owner goroutine. The owner gathers concurrent publishes
// into batches of up to MaxBatch messages, waiting at most FlushInterval,
// and gives each batch to one of Flushers goroutines so it keeps accepting
// while batches commit. A flusher writes the whole batch with one INSERT …
// SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING: one round trip, one
// transaction. Each publisher is answered with its own accepted and
// duplicate counts only after COMMIT; a failed flush answers all of them
// with ports.ErrUnavailable and frees their room.
// Why unnest and not COPY: docs/adr/0005-group-commit-with-unnest.md.
//
// # Read side
//
// Reader owns one range of the 256 partitions. Its state is in memory only,
// one owner goroutine per topic: ready messages per partition in load
// order, leases, acked leases waiting for their DELETE, and a bounded memory
// of delivery counts and acked lease ids. Lease takes messages fairly across
// partitions and first-in-first-out within each. Ack moves a lease to a
// batched DELETE … WHERE id = ANY($1) and returns after it commits. Release
// puts the messages back at the front of their partitions. An expired
// lease's messages are dropped from memory; a later refill reloads them
// (redelivery). The lease id is the guard against late acks: an ack of an
// expired lease fails with ports.ErrLeaseExpired and deletes nothing, even
// though its messages may be leased again by then. Ack and Release must name
// the consumer that took the lease (ports.ErrInvalidArgument otherwise).
//
// Refills use no high-water mark. bigserial ids are taken before commit, so
// with concurrent writers a lower id can become visible after a higher one;
// "id > last seen" would skip it for good. A refill instead loads the oldest
// rows of the range, from an id on, that the topic does not hold (ready,
// leased or awaiting delete), passing the held ids from that id on. The id
// is what was announced to the topic since its last refill started (ADR
// 0016): the writer's notification of a commit carries the lowest id the
// batch inserted for the topic, an expired lease announces its rows, and a
// refill cut short by its batch announces the row after its last. A batch
// that commits late is announced from its own first id, so it is found like
// any other. Every FullRefillInterval (and on every poll while the listener
// is down) a full refill starts from 0 and passes every held id: it finds
// what nothing announced (a row inserted by other means, a writer too old
// to say its ids). A failed refill is retried RefillInterval later, with
// what it was to load. One refill runs at a time per topic, off the owner
// goroutine; rows held by the time it returns, or deleted while it ran
// (tombstones), are skipped. The held ids are bound as a constant
// (pgx.QueryExecModeCacheDescribe, an unnamed statement) so PostgreSQL
// hashes the "<> ALL" list: on 400k queued rows with 10k held ids, a full
// refill of 2000 takes ~20ms with that custom plan and ~650ms with a cached
// generic plan, which compares each row with every held id. A refill from
// the announced id walks only the rows from it on: BenchmarkEmptyRefill,
// 2,000 held, 6.6 ms in full against 1.3 ms from the announced id.
//
// # Long-poll leases
//
// A Lease with a Wait that finds nothing ready is parked in the topic's
// owner and answered, oldest first, once a refill makes messages ready, or
// empty when its wait ends (its caller withdraws it from the owner first,
// so an answer given in that instant is returned or given back). The
// writer's insert NOTIFYs pgqueue_ready with each topic and its lowest new
// id at commit; each Reader holds one pool connection LISTENing (none with
// a pool of one) and announces the id to the topic's owner, which refills
// FastRefillInterval after its last refill, whether or not a lease waits:
// the next lease finds the rows ready. Polling is the fallback while the
// listener is down: RefillInterval, or FastRefillInterval while a lease
// waits; a resubscribed listener refills every topic in full once (ADR
// 0014).
//
// # Delivery limit
//
// Each held message carries its delivery count. The count of a delivery
// that ends with an ack never needs to be durable, so the lease/ack path
// writes nothing for it. When a delivery ends without an ack (Release,
// expiry, or a reader that stops with leases outstanding) the topic's owner
// queues the message's count and the release reason for one batched UPDATE
// of queue_messages.deliveries and last_error (migration 0003), run off
// the owner goroutine; a refill takes the larger of that column and the
// reader's own memory. A message whose count reached
// ReaderConfig.MaxDeliveries is not offered again: it stays held (no refill
// reloads it) until one statement moves it from queue_messages to
// dead_letters (source 'queue', its count and domain.ExhaustedReason); a
// failed move is retried. A reader crash forgets only the delivery that
// was outstanding when it died. ADR 0006 compares this with incrementing
// the column on every lease (BenchmarkDeliveryCount).
// mqreader_messages_redelivered_total counts, at the lease, a message
// handed out again; mqreader_messages_dead_lettered_total the moves.
//
// Memory is bounded by bytes as well as counts: a topic holds at most
// BufferSize messages and BufferBytes of payload (exceeded by at most one
// message), a refill keeps at most RefillBytes (refillSQL leaves out rows
// past it by stored size), and a lease carries at most LeaseMaxBytes (always
// at least one message).
//
// mqreader_backlog_messages{topic} is the table's truth, not memory's: a
// separate loop (stats.go) counts each topic's rows in the reader's range
// every StatsInterval, up to BacklogCountCap (past it, pg_class's estimate
// scaled to the range), and finds the oldest row's created_at for
// mqreader_oldest_message_age_seconds; counting on every scrape would cost a
// scan of the backlog each time. mqreader_buffered_messages is what the
// reader holds in memory (ready and leased).
//
// # Concurrency
//
// There are no mutexes. Every piece of mutable state has one owner
// goroutine; callers send it a request with a 1-buffered reply channel and
// select on their context and the owner's done channel. Every PostgreSQL
// call runs off the owner goroutine and reports on a channel. Counters read
// by metrics are atomics. Close and Drain wait for every goroutine.
package pgqueue
