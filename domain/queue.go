package domain

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// TelemetryTopic is the topic the streamer publishes to and the collector leases from.
const TelemetryTopic = "telemetry"

// idempotencyNamespace scopes UUIDv5 message ids derived from idempotency keys.
var idempotencyNamespace = uuid.MustParse("6f1c2a7e-4b1d-5c55-9d0e-7a3e1f2b9c40")

// MessageID returns the message UUID for a publish: a random one, or when the
// publisher gives an idempotency key, the UUIDv5 of (topic, key), so a retried
// publish carries the same id and the queue stores it once.
func MessageID(topic, idempotencyKey string) uuid.UUID {
	if idempotencyKey == "" {
		return uuid.New()
	}
	return uuid.NewSHA1(idempotencyNamespace, []byte(topic+"\x00"+idempotencyKey))
}

// Message is one message held by the queue.
type Message struct {
	// ID is the message UUID (msg_uuid) assigned by the queue's writer; it is
	// the dedup key downstream.
	ID        uuid.UUID       `json:"msg_uuid"`
	Topic     string          `json:"topic"`
	Partition int             `json:"partition"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
	// Deliveries counts how often this message was handed out, this one
	// included. The queue dead-letters a message instead of handing it out
	// more than its delivery limit (MaxDeliveriesOf). The PostgreSQL queue
	// keeps the count across reader restarts except for a delivery that was
	// still outstanding when its reader crashed (see adapters/pgqueue).
	Deliveries int `json:"deliveries"`
}

// Lease is a batch of messages handed to one consumer until ExpiresAt.
// Acking the lease deletes them; letting it expire makes them deliverable again.
type Lease struct {
	ID         uuid.UUID `json:"lease_id"`
	Topic      string    `json:"topic"`
	ConsumerID string    `json:"consumer_id"`
	ExpiresAt  time.Time `json:"expires_at"`
	Messages   []Message `json:"messages"`
}
