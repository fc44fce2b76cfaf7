package queuetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

// The long poll (LeaseRequest.Wait). The port gives no way to see that a
// lease is parked, so the cases assert outcomes only: what a waiting lease
// returns, never how long it took.

const (
	// longWait is a wait no case sees end: a waiting lease given it returns
	// because of a message or its context, never because of the wait.
	longWait = domain.MaxLeaseWait
	// shortWait is a wait a case sees end.
	shortWait = 300 * time.Millisecond
	// parkPause gives a waiting lease time to reach its queue before the
	// case publishes. The assertions hold whichever comes first; the pause
	// only makes the interesting order (parked, then published) the usual
	// one, so a queue that ignores the wait fails the case.
	parkPause = 100 * time.Millisecond
)

// waitingLease starts a Lease of up to max messages with wait on ctx and
// returns where its outcome will arrive.
func (e *env) waitingLease(ctx context.Context, max int, wait time.Duration) <-chan leaseOutcome {
	return e.waitingLeaseFor(ctx, max, wait, longLease)
}

// waitingLeaseFor is waitingLease for a lease of d.
func (e *env) waitingLeaseFor(ctx context.Context, max int, wait, d time.Duration) <-chan leaseOutcome {
	req := e.request(max, d)
	req.Wait = wait
	out := make(chan leaseOutcome, 1)
	go func() {
		l, err := e.q.Lease(ctx, req)
		out <- leaseOutcome{l, err}
	}()
	return out
}

type leaseOutcome struct {
	lease domain.Lease
	err   error
}

// outcome waits for a waiting lease's outcome, failing after waitTimeout
// (longer than longWait: a lease still out then never returned).
func (e *env) outcome(name string, c <-chan leaseOutcome) leaseOutcome {
	e.t.Helper()
	select {
	case o := <-c:
		return o
	case <-time.After(waitTimeout + longWait):
		require.FailNow(e.t, name+" did not return", "waited %s", waitTimeout+longWait)
		return leaseOutcome{}
	}
}

// A lease waiting on an empty topic receives a message published while it
// waits: it does not return empty before the wait ends.
func (s suite) testWaitingLeaseReceivesLaterPublish(t *testing.T) {
	e := s.env(t)
	waiting := e.waitingLease(e.ctx, 10, longWait)
	pause(e.ctx, parkPause)
	e.publish(batch(0, 1, 1)...)
	o := e.outcome("waiting lease", waiting)
	require.NoError(t, o.err)
	require.Len(t, o.lease.Messages, 1, "a waiting lease returned without the message published within its wait")
	require.Equal(t, 0, seqOf(t, o.lease.Messages[0]))
	e.ack(o.lease)
}

// A waiting lease with nothing to deliver ends empty, and waiting strands
// nothing: a message published after it ended is delivered, and a lease
// waiting while a message is ready returns with that message.
func (s suite) testWaitingLeaseEndsEmpty(t *testing.T) {
	e := s.env(t)
	o := e.outcome("waiting lease", e.waitingLease(e.ctx, 10, shortWait))
	require.NoError(t, o.err)
	require.Empty(t, o.lease.Messages, "a lease on an empty topic returned messages")

	e.publish(batch(0, 3, 3)...)
	got := 0
	for got < 3 {
		o = e.outcome("waiting lease", e.waitingLease(e.ctx, 10, longWait))
		require.NoError(t, o.err)
		require.NotEmpty(t, o.lease.Messages, "a waiting lease returned empty while %d messages were ready", 3-got)
		got += len(o.lease.Messages)
		e.ack(o.lease)
	}
	require.Equal(t, 3, got)
}

// Ending a waiting lease's context ends the wait with the context's error,
// and leaves nothing behind: a message published afterwards goes to the
// next lease, not to the cancelled one.
//
// A remote adapter may see the cancel after the publish: its server grants
// the message to the waiting lease whose caller has left. One that gives
// such a lease back (Capabilities.GivesBackAbandonedLeases) hands the
// message to the next lease at once; one that cannot holds it until that
// lease expires, so there the cancelled lease asks for MinLease and the next
// lease's wait outlasts it.
func (s suite) testWaitingLeaseCancelled(t *testing.T) {
	e := s.env(t)
	ctx, cancel := context.WithCancel(e.ctx)
	abandoned := longLease
	if !s.caps.GivesBackAbandonedLeases {
		abandoned = s.caps.MinLease
	}
	waiting := e.waitingLeaseFor(ctx, 10, longWait, abandoned)
	pause(e.ctx, parkPause)
	cancel()
	o := e.outcome("cancelled waiting lease", waiting)
	require.ErrorIs(t, o.err, context.Canceled)

	e.publish(batch(0, 1, 1)...)
	o = e.outcome("waiting lease", e.waitingLease(e.ctx, 10, longWait))
	require.NoError(t, o.err)
	require.Len(t, o.lease.Messages, 1, "the message published after a cancelled wait was not delivered to the next lease")
	e.ack(o.lease)
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
