package queuetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/ports"
)

// The consumer-id rule (ports/doc.go): a lease is settled only by the
// consumer it was granted to. Another consumer's Ack or Release fails with
// ErrInvalidArgument and changes nothing; the owner's Ack still works, and
// nothing is delivered again.
func (s suite) testConsumerIDRule(t *testing.T) {
	e := s.env(t)
	held, _ := e.publishAndLeaseOne(3, 1, longLease)

	other := e.ref(held)
	other.ConsumerID = "someone-else"
	require.ErrorIs(t, e.q.Ack(e.ctx, other), ports.ErrInvalidArgument, "ack by another consumer")
	require.ErrorIs(t, e.q.Release(e.ctx, other), ports.ErrInvalidArgument, "release by another consumer")

	l, err := e.q.Lease(e.ctx, e.request(10, longLease))
	require.NoError(t, err)
	require.Empty(t, l.Messages, "a refused release must not return the messages")

	e.ack(held)
	require.Empty(t, e.drainWithMarker(gpuUUID(0)), "acked messages came back")
}
