package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gpufleet/telemetry/ports"
)

// JetStream API error codes translate handles (nats-server's errors.json).
const (
	codeInsufficientResources    jetstream.ErrorCode = 10023
	codeMemoryResourcesExceeded  jetstream.ErrorCode = 10028
	codeStorageResourcesExceeded jetstream.ErrorCode = 10047
)

// translate maps an error of a NATS or JetStream call to the ports sentinel
// callers test for, keeping the client's error in the chain for logs. The
// caller's context errors pass through. A server out of storage or memory is
// ports.ErrBackpressure; a message over the stream's size limit is
// ports.ErrInvalidArgument. Any other JetStream API error with status 400 is a
// request the server refuses for good (a stream that exists with another,
// immutable configuration) and stays a plain error; everything else (no
// connection, no responders, timeouts, a JetStream that is down or not
// enabled) means the server could not do the work now: ports.ErrUnavailable.
func translate(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, ports.ErrInvalidArgument), errors.Is(err, ports.ErrUnavailable),
		errors.Is(err, ports.ErrClosed), errors.Is(err, ports.ErrLeaseExpired), errors.Is(err, ports.ErrBackpressure):
		return err
	}
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
		switch {
		case apiErr.ErrorCode == codeInsufficientResources, apiErr.ErrorCode == codeMemoryResourcesExceeded,
			apiErr.ErrorCode == codeStorageResourcesExceeded:
			return fmt.Errorf("%w: %w", ports.ErrBackpressure, err)
		case apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
			return fmt.Errorf("%w: %w", ports.ErrInvalidArgument, err)
		case apiErr.Code == 400:
			return fmt.Errorf("jetstream: %w", err)
		}
	}
	return fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
}

// maxAckPendingReached reports whether a fetch ended because the consumer
// has MaxAckPending messages handed out: nothing is ready until some are
// acked. The client reports it only by the status description.
func maxAckPendingReached(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "maxackpending")
}

// missingStream reports whether err says the topic's stream or consumer is
// gone, so the cached handle must be rebuilt.
func missingStream(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, natsgo.ErrNoResponders)
}
