// Package nats is the NATS JetStream adapter of the queue port: the optional
// backend (QUEUE_BACKEND=nats) that lets the pipeline be compared with our own
// PostgreSQL queue. Queue implements ports.Queue and ports.Checker on
// nats.go's jetstream package.
//
// # Layout on the server
//
// Each topic gets one stream, created on first use (an idempotent
// CreateOrUpdate, sent once by a client however many calls wait for it),
// named <StreamPrefix>_<topic> with "_" in the topic written "__" and "."
// written "_d" (stream names cannot hold dots). It has
// work-queue retention (a message is deleted when acked), file storage,
// Config.Replicas replicas and the subjects <topic>.<partition>, where the
// partition is domain.PartitionOf of the message key, else the payload's
// "gpu_uuid", else the message id. The subject namespace is the topic itself:
// two deployments sharing a server must not share topic names. One durable
// pull consumer per stream ("consumers", explicit acks, MaxAckPending 100000,
// unlimited deliveries) is shared by every collector.
//
// # Delivery
//
// Publish sends every message asynchronously with its message id,
// domain.MessageID(topic, idempotency key), as the Nats-Msg-Id header and
// returns only after the server's PubAck for each one; a PubAck flagged
// Duplicate is counted as a duplicate. The dedup window is
// Config.DuplicateWindow (default 2 minutes): a retry with the same
// idempotency key within it is a duplicate; after it, JetStream no longer
// remembers the id and a late retry stores the message again. The collector's
// insert on the message UUID keeps that harmless.
//
// Lease fetches up to Max ready messages without waiting (an empty lease
// when none is ready). nats.go ends such a pull when the server sends
// nothing for a second and then drops what arrives for it, while the server
// counts those messages delivered: in a process starved of CPU for that
// long the lease comes back short, its messages return after AckWait with
// one more delivery counted, and nats_queue_fetch_stalls_total counts the
// pull (with a WARN log). The PostgreSQL queue has no such cut.
//
// JetStream's redelivery timer is the consumer's AckWait, one value for the
// whole consumer, while every lease has its own duration, so the lease state
// lives in one owner goroutine: when a lease ends before AckWait it Naks its
// messages at expiry (redelivered at once); while it lasts longer it sends
// InProgress every AckWait/2. A crashed consumer's messages
// come back after at most AckWait. Ack costs one round trip per lease: a plain
// ack of every message but the last, then a double ack of the last; the
// server applies one consumer's acks in arrival order, so its answer means
// every ack of the lease was applied (Queue.ackAll cites the server code), and
// after a reconnect during an Ack the acks are sent again. The consumer's ack
// policy stays explicit: AckAll would also ack what other live leases hold.
// Release Naks the messages. Deliveries is JetStream's NumDelivered, which
// survives restarts.
//
// The delivery limit (Config.MaxDeliveries) is applied by this client: a
// message the server hands out with NumDelivered above it (every earlier
// delivery ended without an ack) is published to the topic's dead-letter
// stream, <stream>_DLQ on subject "_dlq.<topic>" (limits retention, the
// newest 100,000 kept), with its message id, delivery count and reason
// (the last Release reason this client was given) as headers, then acked
// off the work queue; it is never leased. The consumer's MaxDeliver stays
// unlimited: at a server-side limit the message would stay unacked in the
// work-queue stream for good, reachable only through an advisory. Unlike
// the other backends, a fetch whose caller gave up counts as a delivery
// here (the server counted it). DeadLetters reads the dead-letter stream.
//
// Ordering: one consumer leasing in a loop gets a partition's messages in
// stream order, which is the order the server acknowledged their publishes.
// Redelivered (expired or released) messages are handed out again before
// newer ones, as in the other adapters.
//
// # Durability
//
// A PubAck means the message is in the server's file store, not that it is on
// disk: by default JetStream fsyncs only every 2 minutes (sync_interval), so
// a power loss can lose acknowledged publishes and acks. The servers this
// project starts (the tests' in-process server and apps/natsd) set
// server.Options.SyncAlways (sync_interval: always in a config file), which
// fsyncs every write before it is acknowledged. An external server (NATS_URL)
// must be configured so too, or run with three replicas, for publish to be as
// durable as the port promises; this adapter cannot check it.
//
// The price is real: a single server with SyncAlways fsyncs each message and
// each ack on its own (there is no group commit: an ack of a work-queue
// message writes a delete tombstone, fsynced before the next ack is read;
// AckAll would write one per message too), so throughput is bounded by
// the disk's fsync latency — hundreds of publishes per second on a disk that
// takes a millisecond or two per fsync, against tens of thousands with the
// default interval (see BenchmarkQueue and BenchmarkQueueIntervalSync). A
// clustered stream (Replicas 3) batches its writes through the Raft log
// instead.
//
// # Errors
//
// A server that cannot be reached (down, reconnecting, no JetStream) yields
// ports.ErrUnavailable at once: the connection keeps no reconnect buffer, so
// nothing is sent minutes later behind the caller's back. A server out of
// storage yields ports.ErrBackpressure. A stream or consumer deleted behind the
// adapter's back is set up again by the next call.
package nats
