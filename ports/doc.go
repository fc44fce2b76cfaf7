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
// Ordering: within one partition, a single consumer leasing in a loop sees
// messages in publish-commit order. Across partitions, and across
// redeliveries, there is no order.
//
// Every call blocks until it has an answer or its context ends; a cancelled
// context makes it return promptly with the context's error.
package ports
