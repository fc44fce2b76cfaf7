package ports

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/domain"
)

// OutgoingMessage is one message to publish.
type OutgoingMessage struct {
	Payload json.RawMessage `json:"payload"`
	// Key chooses the partition (domain.PartitionOf(Key)); telemetry uses the
	// GPU UUID. When empty, the queue takes the payload's "gpu_uuid" field, or
	// spreads the message by its id.
	Key string `json:"key,omitempty"`
	// IdempotencyKey, when set, makes the publish safe to retry: the message
	// id is derived from (topic, key), and a second message with the same id
	// is reported as a duplicate, not stored.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// PublishResult counts what a publish did: Accepted messages are new and
// committed; Duplicates were already in the queue (same message id).
type PublishResult struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

// Publisher is the write side of the queue.
type Publisher interface {
	// Publish stores msgs on topic and returns once they are durable. It
	// fails with ErrInvalidArgument for a bad topic or message, ErrBackpressure
	// when the queue is full (nothing stored: retry after a pause),
	// ErrUnavailable when the backend is down (nothing is known to be stored:
	// retry with the same idempotency keys), or the context's error.
	Publish(ctx context.Context, topic string, msgs []OutgoingMessage) (PublishResult, error)
}

// LeaseRequest asks for up to Max messages of Topic for LeaseDuration.
type LeaseRequest struct {
	Topic         string
	ConsumerID    string
	Max           int
	LeaseDuration time.Duration
}

// LeaseRef names a lease for Ack and Release.
type LeaseRef struct {
	Topic      string
	ConsumerID string
	LeaseID    uuid.UUID
}

// Consumer is the read side of the queue.
type Consumer interface {
	// Lease hands out up to req.Max ready messages. When none is ready it
	// returns a lease with no messages and a nil error at once: it does not
	// wait for messages (callers poll with their own backoff). It fails with
	// ErrInvalidArgument for a bad request, ErrClosed while draining, or
	// ErrUnavailable. When ctx ends first, the adapter gives back any lease
	// it granted meanwhile where it can tell (the in-process adapters do);
	// otherwise that lease's messages return at its expiry.
	Lease(ctx context.Context, req LeaseRequest) (domain.Lease, error)
	// Ack deletes the lease's messages durably before it returns. Acking an
	// already acked lease succeeds; an expired or unknown lease fails with
	// ErrLeaseExpired and deletes nothing.
	Ack(ctx context.Context, ref LeaseRef) error
	// Release returns the lease's messages to ready at once, for a consumer
	// that knows it failed. An expired or unknown lease fails with
	// ErrLeaseExpired.
	Release(ctx context.Context, ref LeaseRef) error
}

// Queue is a whole queue: both sides.
type Queue interface {
	Publisher
	Consumer
}

// Checker reports whether a component's dependencies are reachable; the
// apps' /readyz calls it.
type Checker interface {
	Check(ctx context.Context) error
}
