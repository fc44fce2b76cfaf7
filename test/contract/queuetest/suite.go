package queuetest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// suite is one run of the contract: how to build a harness and what the
// adapter can do.
type suite struct {
	newHarness NewHarness
	caps       Capabilities
}

// Run runs the queue contract against fresh instances from newHarness. Every
// subtest gets its own harness and topic and runs in parallel; a subtest that
// needs a capability caps lacks is skipped with the reason. A zero
// caps.MinLease means one second.
func Run(t *testing.T, newHarness NewHarness, caps Capabilities) {
	t.Helper()
	s := suite{newHarness: newHarness, caps: caps.withDefaults()}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"PublishThenLease", s.testPublishThenLease},
		{"LeaseRespectsMax", s.testLeaseRespectsMax},
		{"EmptyQueue", s.testEmptyQueue},
		{"AckRemovesForGood", s.testAckRemovesForGood},
		{"AckRemovesForGoodAcrossRestart", s.afterStop(s.testAckRemovesForGoodAcrossRestart)},
		{"AckIsIdempotent", s.testAckIsIdempotent},
		{"UnknownLease", s.testUnknownLease},
		{"AckAfterDeadline", s.testAckAfterDeadline},
		{"AckAfterRedelivery", s.testAckAfterRedelivery},
		{"LeaseExpiryRedelivers", s.testLeaseExpiryRedelivers},
		{"ReleaseRedelivers", s.testReleaseRedelivers},
		{"ConcurrentConsumers", s.testConcurrentConsumers},
		{"IdempotencyKey", s.testIdempotencyKey},
		{"MixedBatchDuplicates", s.testMixedBatchDuplicates},
		{"DurablePublish", s.afterStop(s.testDurablePublish)},
		{"LeasedRedeliveredAfterRestart", s.afterStop(s.testLeasedRedeliveredAfterRestart)},
		{"FIFOWithinPartition", s.testFIFOWithinPartition},
		{"InvalidArguments", s.testInvalidArguments},
		{"CancelledContext", s.testCancelledContext},
		{"AbandonedLeaseGivenBack", s.testAbandonedLeaseGivenBack},
		{"ConsumerIDRule", s.testConsumerIDRule},
		{"DeliveryLimit", s.testDeliveryLimit},
		{"DeliveryLimitAcrossRestart", s.testDeliveryLimitAcrossRestart},
		{"WaitingLeaseReceivesLaterPublish", s.testWaitingLeaseReceivesLaterPublish},
		{"WaitingLeaseEndsEmpty", s.testWaitingLeaseEndsEmpty},
		{"WaitingLeaseCancelled", s.testWaitingLeaseCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

func (s suite) env(t *testing.T) *env { return newEnv(t, s.newHarness, s.caps) }

func (s suite) requireDurable(t *testing.T) {
	t.Helper()
	if !s.caps.Durable {
		t.Skip("adapter is not durable (Capabilities.Durable is false)")
	}
}

// afterStop runs a durability case twice, each on a fresh instance: once
// stopping it with Harness.Restart (a clean Close) and once with
// Harness.Crash (no Close, connections cut), since a graceful stop flushes
// what a crash loses.
func (s suite) afterStop(run func(t *testing.T, e *env)) func(t *testing.T) {
	return func(t *testing.T) {
		s.requireDurable(t)
		for _, kind := range []string{"Restart", "Crash"} {
			t.Run(kind, func(t *testing.T) {
				t.Parallel()
				e := s.env(t)
				e.stop = e.h.Restart
				if kind == "Crash" {
					e.stop = e.h.Crash
				}
				require.NotNil(t, e.stop, "a durable adapter's harness needs %s", kind)
				run(t, e)
			})
		}
	}
}

func (s suite) testPublishThenLease(t *testing.T) {
	e := s.env(t)
	msgs := batch(0, 20, 4)
	res := e.publish(msgs...)
	require.Equal(t, ports.PublishResult{Accepted: 20}, res)

	leases, got := e.collect(20, 100, longLease)
	requireSamePayloads(t, msgs, got, "leased payloads")
	require.Len(t, ids(got), 20, "distinct msg_uuids")
	e.ackAll(leases)
}

func (s suite) testLeaseRespectsMax(t *testing.T) {
	for _, max := range []int{1, 7, 25, 100} {
		t.Run(fmt.Sprintf("max%d", max), func(t *testing.T) {
			t.Parallel()
			e := s.env(t)
			e.publish(batch(0, 25, 3)...)
			// collect fails when a lease holds more than it asked for.
			leases, got := e.collect(25, max, longLease)
			require.Len(t, ids(got), 25)
			if max == 1 {
				require.Len(t, leases, 25, "one message per lease")
			}
		})
	}
}

func (s suite) testEmptyQueue(t *testing.T) {
	e := s.env(t)
	l, err := e.q.Lease(e.ctx, e.request(10, longLease))
	require.NoError(t, err)
	require.Empty(t, l.Messages)
}

// An acked message never comes back, not even after its lease would have
// expired: the acks are on leases short enough to expire during the test,
// and a control message leased after them, in the same partition, is let
// expire. Once the control is redelivered every acked lease is past its
// expiry too, so an Ack that deleted nothing would have shown its messages.
//
// Each lease is acked as soon as it is granted, so a lease has to outlive
// one round trip, not the collection of all ten messages. A lease that
// expires even so (a loaded machine stalled the test past it) is refused
// with ErrLeaseExpired, and its messages, never acked, are collected again.
func (s suite) testAckRemovesForGood(t *testing.T) {
	e := s.env(t)
	gpu := gpuUUID(1)
	const n = 10
	msgs := make([]ports.OutgoingMessage, n)
	for i := range msgs {
		msgs[i] = outgoing(gpu, i, "")
	}
	e.publish(msgs...)
	d := s.caps.ackableLease()
	deadline := time.Now().Add(waitTimeout)
	acked := make(map[uuid.UUID]bool, n)
	for len(acked) < n {
		require.True(t, time.Now().Before(deadline), "%d of %d messages acked within %s", len(acked), n, waitTimeout)
		leases, _ := e.collect(min(4, n-len(acked)), 4, d)
		for _, l := range leases {
			if !e.ackInTime(l) {
				continue
			}
			for _, m := range l.Messages {
				require.False(t, acked[m.ID], "acked message %s delivered again: %s", m.ID, m.Payload)
				acked[m.ID] = true
			}
		}
	}

	e.publish(outgoing(gpu, controlSeq, ""))
	_, control := e.collect(1, 1, d)
	held, again := e.collect(1, 1, longLease)
	require.Equal(t, controlSeq, seqOf(t, again[0]),
		"acked message delivered again (its lease expired before the control's): %s", again[0].Payload)
	require.Equal(t, control[0].ID, again[0].ID, "the control message came back")
	e.ack(held[0])
	require.Empty(t, payloads(e.drainWithMarker(gpu)), "acked messages delivered again after their leases expired")
	l, err := e.q.Lease(e.ctx, e.request(100, longLease))
	require.NoError(t, err)
	require.Empty(t, l.Messages, "queue not empty after draining")
}

func (s suite) testAckRemovesForGoodAcrossRestart(t *testing.T, e *env) {
	gpu := gpuUUID(2)
	msgs := make([]ports.OutgoingMessage, 10)
	for i := range msgs {
		msgs[i] = outgoing(gpu, i, "")
	}
	e.publish(msgs...)
	leases, _ := e.collect(10, 5, longLease)
	e.ackAll(leases)
	e.restart()
	require.Empty(t, payloads(e.drainWithMarker(gpu)), "acked messages delivered again after restart")
}

func (s suite) testAckIsIdempotent(t *testing.T) {
	e := s.env(t)
	e.publish(batch(0, 3, 3)...)
	leases, _ := e.collect(3, 3, longLease)
	for _, l := range leases {
		e.ack(l)
		require.NoError(t, e.q.Ack(e.ctx, e.ref(l)), "second ack of lease %s", l.ID)
	}
}

func (s suite) testUnknownLease(t *testing.T) {
	e := s.env(t)
	held, got := e.publishAndLeaseOne(5, 2, longLease)

	calls := []struct {
		name string
		call func(ports.LeaseRef) error
	}{
		{"ack", func(r ports.LeaseRef) error { return e.q.Ack(e.ctx, r) }},
		{"release", func(r ports.LeaseRef) error { return e.q.Release(e.ctx, r) }},
	}
	// Sequential: the cases share the held lease, which must survive them all.
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.call(ports.LeaseRef{Topic: e.topic, ConsumerID: "consumer-" + e.topic, LeaseID: uuid.New()})
			require.ErrorIs(t, err, ports.ErrLeaseExpired)
		})
	}
	// Nothing was removed: the held lease is live, and its messages come back.
	require.NoError(t, e.q.Release(e.ctx, e.ref(held)), "release of the live lease")
	again, _ := e.collectRedelivered(got)
	e.ackAll(again)
}

func (s suite) testAckAfterDeadline(t *testing.T) {
	e := s.env(t)
	l, first := e.publishAndLeaseOne(3, 3, s.caps.MinLease)
	require.Eventually(t, func() bool { return time.Now().After(l.ExpiresAt.Add(10 * time.Millisecond)) },
		waitTimeout, pollInterval, "lease never reached its ExpiresAt %s", l.ExpiresAt)

	require.ErrorIs(t, e.q.Ack(e.ctx, e.ref(l)), ports.ErrLeaseExpired, "ack after expiry")
	require.ErrorIs(t, e.q.Release(e.ctx, e.ref(l)), ports.ErrLeaseExpired, "release after expiry")

	again, _ := e.collectRedelivered(first)
	e.ackAll(again)
}

func (s suite) testAckAfterRedelivery(t *testing.T) {
	e := s.env(t)
	expired, first := e.publishAndLeaseOne(3, 3, s.caps.MinLease)

	// The messages come back only once the short lease expired.
	second, got := e.collectRedelivered(first)
	require.ErrorIs(t, e.q.Ack(e.ctx, e.ref(expired)), ports.ErrLeaseExpired, "ack of the expired lease")

	// The late ack deleted nothing: the messages are still there.
	for _, l := range second {
		require.NoError(t, e.q.Release(e.ctx, e.ref(l)))
	}
	third, _ := e.collectRedelivered(got)
	e.ackAll(third)
}

func (s suite) testLeaseExpiryRedelivers(t *testing.T) {
	e := s.env(t)
	e.publish(batch(0, 5, 5)...)
	_, first := e.collect(5, 5, s.caps.MinLease)
	again, _ := e.collectRedelivered(first)
	e.ackAll(again)
}

func (s suite) testReleaseRedelivers(t *testing.T) {
	e := s.env(t)
	released, first := e.publishAndLeaseOne(5, 2, longLease)
	require.NoError(t, e.q.Release(e.ctx, e.ref(released)))

	// The lease has minutes left: only the release can explain a redelivery
	// within waitTimeout.
	again, _ := e.collectRedelivered(first)

	require.ErrorIs(t, e.q.Ack(e.ctx, e.ref(released)), ports.ErrLeaseExpired, "ack of a released lease")
	require.ErrorIs(t, e.q.Release(e.ctx, e.ref(released)), ports.ErrLeaseExpired, "second release")
	e.ackAll(again)
}

func (s suite) testConcurrentConsumers(t *testing.T) {
	const (
		total   = 500
		workers = 20
	)
	e := s.env(t)
	for first := 0; first < total; first += 100 {
		require.Equal(t, 100, e.publish(batch(first, 100, 16)...).Accepted)
	}

	var (
		holders sync.Map // msg id → worker holding it under a live lease
		acks    sync.Map // msg id → *atomic.Int32 successful acks covering it
		seqs    sync.Map // msg id → payload seq
		acked   atomic.Int64
	)
	ctx, cancel := context.WithTimeout(e.ctx, 2*waitTimeout)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	for w := range workers {
		g.Go(func() error {
			req := e.request(1+w%10, longLease)
			for acked.Load() < total {
				l, err := e.q.Lease(ctx, req)
				if err != nil {
					return fmt.Errorf("worker %d: lease (%d acked): %w", w, acked.Load(), err)
				}
				if len(l.Messages) == 0 {
					select {
					case <-ctx.Done():
						return fmt.Errorf("worker %d: %d of %d acked: %w", w, acked.Load(), total, ctx.Err())
					case <-time.After(pollInterval):
					}
					continue
				}
				for _, m := range l.Messages {
					if other, loaded := holders.LoadOrStore(m.ID, w); loaded {
						return fmt.Errorf("message %s leased to workers %d and %d at once", m.ID, other, w)
					}
					var p point
					if err := json.Unmarshal(m.Payload, &p); err != nil {
						return fmt.Errorf("payload of %s: %w", m.ID, err)
					}
					seqs.Store(m.ID, p.Seq)
				}
				if err := e.q.Ack(ctx, e.ref(l)); err != nil {
					return fmt.Errorf("worker %d: ack %s: %w", w, l.ID, err)
				}
				for _, m := range l.Messages {
					holders.Delete(m.ID)
					n, _ := acks.LoadOrStore(m.ID, new(atomic.Int32))
					n.(*atomic.Int32).Add(1)
				}
				acked.Add(int64(len(l.Messages)))
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())

	distinct := 0
	acks.Range(func(id, n any) bool {
		distinct++
		require.Equal(t, int32(1), n.(*atomic.Int32).Load(), "acks of message %s", id)
		return true
	})
	require.Equal(t, total, distinct, "distinct messages acked")
	var gotSeqs []int
	seqs.Range(func(_, seq any) bool {
		gotSeqs = append(gotSeqs, seq.(int))
		return true
	})
	slices.Sort(gotSeqs)
	for i, seq := range gotSeqs {
		require.Equal(t, i, seq, "payload sequence numbers")
	}
}

func (s suite) testIdempotencyKey(t *testing.T) {
	e := s.env(t)
	gpu := gpuUUID(7)
	first := e.publish(outgoing(gpu, 1, "row-1"))
	require.Equal(t, ports.PublishResult{Accepted: 1}, first)
	// A retry with the same key but another payload is still the same message.
	second := e.publish(outgoing(gpu, 2, "row-1"))
	require.Equal(t, ports.PublishResult{Duplicates: 1}, second)

	leases, got := e.collect(1, 10, longLease)
	require.Equal(t, 1, seqOf(t, got[0]), "the first publish wins")
	e.ackAll(leases)
	require.Empty(t, payloads(e.drainWithMarker(gpu)), "duplicate delivered")
}

func (s suite) testMixedBatchDuplicates(t *testing.T) {
	e := s.env(t)
	gpu := gpuUUID(8)
	steps := []struct {
		name string
		msgs []ports.OutgoingMessage
		want ports.PublishResult
	}{
		{"new keys", []ports.OutgoingMessage{outgoing(gpu, 1, "k1"), outgoing(gpu, 2, "k2")},
			ports.PublishResult{Accepted: 2}},
		{"one old key, one new, one without key", []ports.OutgoingMessage{
			outgoing(gpu, 3, "k2"), outgoing(gpu, 4, "k3"), outgoing(gpu, 5, "")},
			ports.PublishResult{Accepted: 2, Duplicates: 1}},
		{"a key twice in one batch", []ports.OutgoingMessage{outgoing(gpu, 6, "k4"), outgoing(gpu, 7, "k4")},
			ports.PublishResult{Accepted: 1, Duplicates: 1}},
	}
	// Sequential: each step depends on the ones before.
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			res, err := e.q.Publish(e.ctx, e.topic, st.msgs)
			require.NoError(t, err)
			require.Equal(t, st.want, res)
		})
	}
	leases, got := e.collect(5, 10, longLease)
	gotSeqs := make([]int, len(got))
	for i, m := range got {
		gotSeqs[i] = seqOf(t, m)
	}
	require.ElementsMatch(t, []int{1, 2, 4, 5, 6}, gotSeqs)
	e.ackAll(leases)
	require.Empty(t, payloads(e.drainWithMarker(gpu)), "duplicate delivered")
}

func (s suite) testDurablePublish(t *testing.T, e *env) {
	msgs := batch(0, 20, 5)
	e.publish(msgs[:10]...)
	e.publish(msgs[10:]...)
	e.restart()
	leases, got := e.collect(20, 100, longLease)
	requireSamePayloads(t, msgs, got, "messages after restart")
	e.ackAll(leases)
}

func (s suite) testLeasedRedeliveredAfterRestart(t *testing.T, e *env) {
	e.publish(batch(0, 10, 3)...)
	_, first := e.collect(10, 100, longLease)
	e.restart()
	// The leases had minutes left; the restart alone makes them deliverable.
	leases, second := e.collect(10, 100, longLease)
	require.ElementsMatch(t, slices.Collect(maps.Keys(ids(first))), slices.Collect(maps.Keys(ids(second))),
		"redelivered messages")
	e.ackAll(leases)
}

func (s suite) testFIFOWithinPartition(t *testing.T) {
	if !s.caps.OrderedPerPartition {
		t.Skip("adapter does not order a partition (Capabilities.OrderedPerPartition is false)")
	}
	const n = 50
	e := s.env(t)
	gpu := gpuUUID(9)
	for i := range n {
		e.publish(outgoing(gpu, i, ""))
	}
	var order []int
	for len(order) < n {
		leases, got := e.collect(min(10, n-len(order)), 10, longLease)
		for _, m := range got {
			order = append(order, seqOf(t, m))
		}
		e.ackAll(leases)
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	require.Equal(t, want, order, "delivery order of one partition")
}

func (s suite) testInvalidArguments(t *testing.T) {
	e := s.env(t)
	good := []ports.OutgoingMessage{outgoing(gpuUUID(1), 1, "")}
	lease := func(mutate func(*ports.LeaseRequest)) func(context.Context, ports.Queue) error {
		return func(ctx context.Context, q ports.Queue) error {
			req := e.request(10, longLease)
			mutate(&req)
			_, err := q.Lease(ctx, req)
			return err
		}
	}
	publish := func(topic string, msgs []ports.OutgoingMessage) func(context.Context, ports.Queue) error {
		return func(ctx context.Context, q ports.Queue) error {
			_, err := q.Publish(ctx, topic, msgs)
			return err
		}
	}
	ref := ports.LeaseRef{ConsumerID: "c", LeaseID: uuid.New()}
	tests := []struct {
		name string
		call func(context.Context, ports.Queue) error
	}{
		{"publish empty topic", publish("", good)},
		{"publish topic with a space", publish("bad topic", good)},
		{"publish topic with a slash", publish("a/b", good)},
		{"publish non-ASCII topic", publish("tépic", good)},
		{"publish topic of 65 chars", publish(strings.Repeat("a", 65), good)},
		{"publish nil messages", publish(e.topic, nil)},
		{"publish no messages", publish(e.topic, []ports.OutgoingMessage{})},
		{"publish payload not JSON", publish(e.topic, []ports.OutgoingMessage{{Payload: json.RawMessage(`{not json`)}})},
		{"publish truncated JSON", publish(e.topic, []ports.OutgoingMessage{{Payload: json.RawMessage(`{"gpu_uuid":"x"`)}})},
		{"publish one bad payload in a batch", publish(e.topic, append(batch(0, 3, 1),
			ports.OutgoingMessage{Payload: json.RawMessage(`nope`)}))},
		{"lease empty topic", lease(func(r *ports.LeaseRequest) { r.Topic = "" })},
		{"lease bad topic", lease(func(r *ports.LeaseRequest) { r.Topic = "no such/topic" })},
		{"lease max 0", lease(func(r *ports.LeaseRequest) { r.Max = 0 })},
		{"lease max -1", lease(func(r *ports.LeaseRequest) { r.Max = -1 })},
		{"lease duration 0", lease(func(r *ports.LeaseRequest) { r.LeaseDuration = 0 })},
		{"lease duration negative", lease(func(r *ports.LeaseRequest) { r.LeaseDuration = -time.Second })},
		{"lease duration below MinLease", lease(func(r *ports.LeaseRequest) { r.LeaseDuration = s.caps.MinLease / 2 })},
		{"lease without consumer id", lease(func(r *ports.LeaseRequest) { r.ConsumerID = "" })},
		{"lease max over the limit", lease(func(r *ports.LeaseRequest) { r.Max = domain.MaxLeaseMessages + 1 })},
		{"publish null payload", publish(e.topic, []ports.OutgoingMessage{{Payload: json.RawMessage(`null`)}})},
		{"publish key with NUL", publish(e.topic, []ports.OutgoingMessage{{Payload: json.RawMessage(`1`), Key: "a\x00b"}})},
		{"publish topic with an empty part", publish("a..b", good)},
		{"ack empty topic", func(ctx context.Context, q ports.Queue) error { return q.Ack(ctx, ref) }},
		{"release empty topic", func(ctx context.Context, q ports.Queue) error { return q.Release(ctx, ref) }},
	}
	// The group returns once its parallel cases are done.
	t.Run("rejected", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				require.ErrorIs(t, tc.call(e.ctx, e.q), ports.ErrInvalidArgument)
			})
		}
	})
	t.Run("nothing stored", func(t *testing.T) {
		require.Empty(t, payloads(e.drainWithMarker(gpuUUID(0))), "a rejected publish stored messages")
	})
}

func (s suite) testCancelledContext(t *testing.T) {
	e := s.env(t)
	held, _ := e.publishAndLeaseOne(2, 2, longLease)

	cancelled, cancel := context.WithCancel(e.ctx)
	cancel()
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"publish", func(ctx context.Context) error {
			_, err := e.q.Publish(ctx, e.topic, batch(10, 1, 1))
			return err
		}},
		{"lease", func(ctx context.Context) error {
			_, err := e.q.Lease(ctx, e.request(10, longLease))
			return err
		}},
		{"ack", func(ctx context.Context) error { return e.q.Ack(ctx, e.ref(held)) }},
		{"release", func(ctx context.Context) error { return e.q.Release(ctx, e.ref(held)) }},
	}
	// Sequential: the cases share the held lease.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := returnsPromptly(t, tc.name, func() error { return tc.call(cancelled) })
			require.ErrorIs(t, err, context.Canceled)
		})
	}
	// The cancelled release did not release: the lease is still live.
	e.ack(held)
	// The cancelled publish stored nothing.
	require.Empty(t, payloads(e.drainWithMarker(gpuUUID(0))), "a publish with a cancelled context stored messages")
}

// A Lease abandoned by its caller at any moment (deadlines from 0 to ~50µs
// land before, during and after the grant) strands no message in a lease
// nobody holds: afterwards one Lease gets every message.
func (s suite) testAbandonedLeaseGivenBack(t *testing.T) {
	if !s.caps.GivesBackAbandonedLeases {
		t.Skip("adapter leaves an abandoned lease to expire (Capabilities.GivesBackAbandonedLeases is false)")
	}
	e := s.env(t)
	const total = 20
	e.publish(batch(0, total, 4)...)
	leases, _ := e.collect(total, total, longLease)
	for _, l := range leases {
		require.NoError(t, e.q.Release(e.ctx, e.ref(l)))
	}
	next := total
	for i := range 2000 {
		ctx, cancel := context.WithTimeout(e.ctx, time.Duration(i%50)*time.Microsecond)
		l, err := e.q.Lease(ctx, e.request(total, longLease))
		cancel()
		if err == nil && len(l.Messages) > 0 {
			// A lease that reached its caller is a delivery (and the
			// delivery limit counts it): settle it and publish as many
			// fresh messages, so the total stays the same.
			e.ack(l)
			e.publish(batch(next, len(l.Messages), 4)...)
			next += len(l.Messages)
		}
	}
	// Every message is ready again (the fresh ones once published): no
	// lease was stranded, or its messages would wait minutes (longLease).
	leases, _ = e.collect(total, total, longLease)
	e.ackAll(leases)
}
