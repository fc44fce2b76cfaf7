package ports

import (
	"errors"

	"github.com/gpufleet/telemetry/domain"
)

// Sentinel errors. Adapters wrap them with context (fmt.Errorf("…: %w", ErrX));
// callers test with errors.Is.
var (
	// ErrNotFound: the thing asked for does not exist (an unknown GPU).
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: the request is malformed or out of bounds; retrying
	// it unchanged fails again. It is domain.ErrInvalidArgument, which the
	// domain's rules wrap.
	ErrInvalidArgument = domain.ErrInvalidArgument
	// ErrLeaseExpired: the lease is unknown to this queue or expired; its
	// messages may be held by another consumer now, so nothing was changed.
	ErrLeaseExpired = errors.New("lease expired or unknown")
	// ErrBackpressure: the queue's buffer is full; retry later.
	ErrBackpressure = errors.New("queue buffer full")
	// ErrClosed: the component is shutting down or closed (a draining reader).
	ErrClosed = errors.New("closed")
	// ErrUnavailable: a dependency (the database, the queue service) cannot be
	// reached now; the call may succeed later.
	ErrUnavailable = errors.New("unavailable")
)
