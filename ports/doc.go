// Package ports declares the interfaces the apps depend on and the adapters
// implement: the message queue (Publisher, Consumer, Queue), the telemetry
// store, and the telemetry source. Adapters translate their backend's errors
// into the sentinels in errors.go, so apps and tests reason about outcomes,
// not drivers.
//
// # Delivery contract of the queue
//
// Publish is durable before it returns: a nil error means every accepted
// message is committed by the backend and will be delivered. A publish that
// gives an idempotency key is safe to retry: the same key within a topic never
// yields a second message.
//
// Delivery is at-least-once. Lease hands a consumer up to Max ready messages
// for LeaseDuration; while the lease is live no other consumer receives them.
// Ack deletes the lease's messages for good. Release returns them to ready at
// once. A lease that is neither acked nor released before it expires is
// dropped, and its messages are delivered again later, to any consumer.
// Consumers must therefore be idempotent; the collector is, by inserting
// each sample with ON CONFLICT DO NOTHING on its natural key (series,
// timestamp): a redelivered message carries the same sample.
//
// An ack or release of a lease that expired (whose messages may now be leased
// to someone else) fails with ErrLeaseExpired and changes nothing. Acking a
// lease that was already acked succeeds (ack is idempotent).
//
// A lease belongs to the consumer that asked for it: Ack and Release must
// carry the same ConsumerID as the Lease (domain.CheckOwner), and a
// different one fails with ErrInvalidArgument and changes nothing. The random
// lease id is not treated as a bearer capability: a consumer that confuses
// lease ids (a bug, or two collectors sharing state) is refused rather than
// allowed to delete another consumer's messages.
//
// # Delivery limit and dead letters
//
// Every queue counts the deliveries of each message (domain.Message's
// Deliveries). A message handed out MaxDeliveries times (MQ_MAX_DELIVERIES,
// default 5, domain.MaxDeliveriesOf), none of them acked, is not leased
// again: when its last delivery ends without an ack (released or expired)
// the queue itself moves it to its dead letters, with the delivery count
// and the last error it knows of, and counts it in a metric. The other
// messages of its partition keep flowing. A consumer that releases a lease
// may say why (LeaseRef.Reason, at most domain.MaxReasonBytes); the queue
// keeps the last reason and records it in the dead letter. A message whose
// last delivery simply expired has no reason beyond the count.
//
// Where the dead letters go is the backend's: the PostgreSQL queue moves
// the row from queue_messages to the dead_letters table in one statement
// (source 'queue'), the memory queue keeps them in memory, the NATS queue
// publishes them to a dead-letter stream. A queue that can show them
// implements DeadLetterReader; every adapter in this project does, and the
// contract suite reads them through it.
//
// # Rules of a request
//
// The rules every backend applies are in domain (domain/queuerules.go), so a
// request one backend accepts every backend accepts: a topic is 1-64
// characters of A-Z, a-z, 0-9, '.', '_', '-', with no empty dot-separated
// part and no leading '_'; a publish carries 1 to 10,000 messages; a payload
// is present, not null, valid UTF-8 JSON of at most 1 MiB without \u0000; a
// key, idempotency key and consumer id are at most 256 bytes without NUL; a
// consumer id is required; a lease asks for 1 to 5,000 messages for at most
// 300 s (domain.DefaultLeaseLimits; a queue may be configured up to 10,000
// and an hour) and waits 0 to 20 s for them. A backend may refuse more
// where it must (its shortest lease, NATS's max_payload), never less.
// Adapters validate by calling domain; a broken rule is ErrInvalidArgument.
//
// A lease may wait for messages (LeaseRequest.Wait, at most
// domain.MaxLeaseWait, 20 s): with nothing ready the queue parks the request
// and answers it as soon as messages become ready, or empty when the wait
// has passed, so an idle consumer neither spins nor sleeps past the
// messages' arrival. A waiting lease whose caller gives up (its context
// ends) leaves no lease behind. Zero waits not at all.
//
// Ordering: within one partition, a single consumer leasing in a loop sees
// messages in publish-commit order. Across partitions, and across
// redeliveries, there is no order.
//
// Every call blocks until it has an answer or its context ends; a cancelled
// context makes it return promptly with the context's error.
package ports
