package kube

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/gpufleet/telemetry/ports"
)

// errConflict marks a write that lost an optimistic-concurrency race (the
// object changed since it was read); the sync is simply run again.
var errConflict = errors.New("conflict")

// translate maps an API server error to what the worker acts on, keeping the
// original in the chain for logs: a missing object is ports.ErrNotFound; a
// stale resourceVersion or a create that lost a race is errConflict (retry at
// once); a request the server refuses as invalid is ports.ErrInvalidArgument
// (retrying it unchanged fails again); anything else (timeouts, throttling,
// an unreachable server, RBAC being rolled out) is ports.ErrUnavailable and
// retried with backoff.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: %w", ports.ErrNotFound, err)
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return fmt.Errorf("%w: %w", errConflict, err)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsRequestEntityTooLargeError(err):
		return fmt.Errorf("%w: %w", ports.ErrInvalidArgument, err)
	default:
		return fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
}
