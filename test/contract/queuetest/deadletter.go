package queuetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// deadLetters is the dead-letter view of the env's harness: Harness.DeadLetters,
// else the queue itself when it implements ports.DeadLetterReader.
func (e *env) deadLetters() []domain.DeadLetter {
	e.t.Helper()
	r := e.h.DeadLetters
	if r == nil {
		var ok bool
		r, ok = e.q.(ports.DeadLetterReader)
		require.True(e.t, ok, "the harness has no DeadLetters and %T is no ports.DeadLetterReader", e.q)
	}
	letters, err := r.DeadLetters(e.ctx, e.topic, 100)
	require.NoError(e.t, err, "read dead letters")
	return letters
}

// awaitDeadLetters waits until the topic has a dead letter and returns its
// dead letters.
func (e *env) awaitDeadLetters() []domain.DeadLetter {
	e.t.Helper()
	var letters []domain.DeadLetter
	require.Eventually(e.t, func() bool {
		letters = e.deadLetters()
		return len(letters) > 0
	}, waitTimeout, pollInterval, "no dead letter on the topic")
	return letters
}

// The delivery limit (ports/doc.go): a message handed out MaxDeliveries
// times without an ack ends in the dead letters, with its delivery count and
// the last reason given on release, and is never leased again; the other
// messages of its partition keep flowing meanwhile. Deliveries end both
// ways: odd ones are released with a reason, even ones left to expire (the
// last one is released, so the dead letter has a reason to keep). A
// delivery to be released is leased for longLease, so a loaded machine
// cannot let it expire first; one to be let expire, and the good messages
// leased meanwhile, for the short ackable lease.
func (s suite) testDeliveryLimit(t *testing.T) {
	e := s.env(t)
	limit := s.caps.MaxDeliveries
	gpu := gpuUUID(11)
	poisonPayload := payload(gpu, 0)
	e.publish(ports.OutgoingMessage{Payload: poisonPayload, Key: gpu})

	var (
		poisonID  uuid.UUID
		delivered int
		good      int // good messages acked so far
		published int // good messages published so far
		seq       = 1
		lease     = s.caps.ackableLease()
		deadline  = time.Now().Add(waitTimeout + time.Duration(limit)*lease)
	)
	for delivered < limit {
		require.True(t, time.Now().Before(deadline),
			"the message was delivered %d of %d times within the deadline", delivered, limit)
		d := longLease
		if next := delivered + 1; next%2 == 0 && next < limit {
			d = lease // the poison's next delivery is let expire
		}
		l, err := e.q.Lease(e.ctx, e.request(1, d))
		require.NoError(t, err, "lease")
		if len(l.Messages) == 0 {
			e.pause()
			continue
		}
		m := l.Messages[0]
		if seqOf(t, m) != 0 {
			if e.ackInTime(l) {
				good++
			}
			continue
		}
		delivered++
		if poisonID == uuid.Nil {
			poisonID = m.ID
		}
		require.Equal(t, poisonID, m.ID, "the poison message's id changed")
		if m.Deliveries > 0 {
			require.Equal(t, delivered, m.Deliveries, "delivery count of delivery %d", delivered)
		}
		// Its partition keeps flowing: two more good messages behind it.
		e.publish(outgoing(gpu, seq, ""), outgoing(gpu, seq+1, ""))
		seq += 2
		published += 2
		if delivered%2 == 0 && delivered < limit {
			continue // left to expire
		}
		e.releaseWithReason(l, fmt.Sprintf("attempt %d failed", delivered))
	}

	// The poison never comes back; every good message does.
	rest := e.drainWithMarker(gpu)
	for _, m := range rest {
		require.NotEqual(t, poisonID, m.ID, "message leased again after %d deliveries", limit)
	}
	require.Equal(t, published, good+len(rest), "good messages of the partition delivered")

	letters := e.awaitDeadLetters()
	require.Len(t, letters, 1, "dead letters of the topic")
	d := letters[0]
	require.Equal(t, poisonID, d.MsgUUID)
	require.Equal(t, e.topic, d.Topic)
	require.Equal(t, limit, d.Deliveries, "dead letter's delivery count")
	require.Equal(t, domain.DeadLetterSourceQueue, d.Source)
	require.Contains(t, d.Reason, fmt.Sprintf("attempt %d failed", limit), "dead letter's reason")
	require.Equal(t, canonical(t, poisonPayload), canonical(t, json.RawMessage(d.Payload)), "dead letter's payload")

	// Nothing is leased again, and nothing more is dead-lettered.
	l, err := e.q.Lease(e.ctx, e.request(100, longLease))
	require.NoError(t, err)
	require.Empty(t, l.Messages, "messages leased after the drain")
	require.Len(t, e.deadLetters(), 1, "dead letters after the drain")
}

// The delivery count is durable: a message released MaxDeliveries-1 times
// and then delivered by a restarted queue arrives with the count going on,
// and its next release dead-letters it.
func (s suite) testDeliveryLimitAcrossRestart(t *testing.T) {
	s.requireDurable(t)
	e := s.env(t)
	e.stop = e.h.Restart
	require.NotNil(t, e.stop, "a durable adapter's harness needs Restart")
	limit := s.caps.MaxDeliveries
	gpu := gpuUUID(12)
	e.publish(outgoing(gpu, 0, ""))
	for d := 1; d < limit; d++ {
		leases, got := e.collect(1, 1, longLease)
		if got[0].Deliveries > 0 {
			require.Equal(t, d, got[0].Deliveries, "delivery %d", d)
		}
		e.releaseWithReason(leases[0], fmt.Sprintf("attempt %d failed", d))
	}
	e.restart()
	leases, got := e.collect(1, 1, longLease)
	require.Equal(t, limit, got[0].Deliveries, "delivery count after a restart")
	e.releaseWithReason(leases[0], "last attempt failed")
	require.Empty(t, e.drainWithMarker(gpu), "message leased again at its limit")
	letters := e.awaitDeadLetters()
	require.Len(t, letters, 1)
	require.Equal(t, limit, letters[0].Deliveries)
	require.Contains(t, letters[0].Reason, "last attempt failed")
}
