package ports

import (
	"context"

	"github.com/gpufleet/telemetry/domain"
)

// OutgoingMessage is one message to publish; its rules (sizes, keys, the
// partition key) are domain's, checked by domain.ValidatePublish.
type OutgoingMessage = domain.OutgoingMessage

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

// LeaseRequest asks for up to Max messages of Topic for LeaseDuration;
// domain's LeaseRequest.Validate states its bounds.
type LeaseRequest = domain.LeaseRequest

// LeaseRef names a lease for Ack and Release.
type LeaseRef = domain.LeaseRef

// Consumer is the read side of the queue.
type Consumer interface {
	// Lease hands out up to req.Max ready messages. When none is ready and
	// req.Wait is zero it returns a lease with no messages and a nil error at
	// once. With a Wait (a long poll) it waits for messages instead: it
	// returns as soon as some are ready (those ready then, up to Max, maybe
	// fewer), or a lease with no messages when Wait has passed; the caller's
	// context ending, or the queue draining or closing, ends the wait early
	// (with the context's error, or ErrClosed). It fails with
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
	// that knows it failed; ref.Reason, when given, is kept as the
	// messages' last error. A message at the delivery limit is dead-lettered
	// instead (see the package doc). An expired or unknown lease fails with
	// ErrLeaseExpired.
	Release(ctx context.Context, ref LeaseRef) error
}

// Queue is a whole queue: both sides.
type Queue interface {
	Publisher
	Consumer
}

// Checker reports whether a component can serve now: its dependencies are
// reachable and it is not closed or draining. Every app's /readyz runs the
// Checkers of its components (platform.CheckOf). Check must answer within
// ctx and say why in its error (ErrUnavailable, ErrClosed).
type Checker interface {
	Check(ctx context.Context) error
}

// DeadLetterReader is an optional capability of a queue: reading the
// messages it dead-lettered itself at the delivery limit (see ports/doc.go).
// The contract suite uses it to observe dead letters on every adapter; an
// operator reads the PostgreSQL queue's through the dead_letters table.
type DeadLetterReader interface {
	// DeadLetters returns up to limit of the messages of topic the queue
	// dead-lettered, oldest first, each with its delivery count and reason.
	DeadLetters(ctx context.Context, topic string, limit int) ([]domain.DeadLetter, error)
}

// NotReadyError is a Checker's error with a short reason that /readyz may
// show to whoever can reach the probe: no host names, addresses or
// credentials in Reason (the wrapped Err, which may hold them, is only
// logged). /readyz shows the Reason of the first NotReadyError in an error's
// chain, and for any other error only a generic word.
type NotReadyError struct {
	Reason string
	Err    error
}

func (e *NotReadyError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *NotReadyError) Unwrap() error { return e.Err }
