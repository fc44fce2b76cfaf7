package queuetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

const (
	// waitTimeout bounds every wait for messages to show up. It is far
	// shorter than longLease, so a message seen again within it was released
	// or its holder restarted, not expired.
	waitTimeout = 20 * time.Second
	// brokenWaitTimeout is collect's wait in a child run over a broken
	// variant (collectWait).
	brokenWaitTimeout = 5 * time.Second
	// pollInterval is the consumers' backoff after an empty lease.
	pollInterval = 10 * time.Millisecond
	// longLease is a lease that never expires during a test.
	longLease = 5 * time.Minute
	// defaultMinLease stands in for a zero Capabilities.MinLease.
	defaultMinLease = time.Second
	// shortAckableLease is the shortest lease a case both acks in time and
	// waits out: long enough that a loaded machine still acks before it
	// expires, short enough to wait for.
	shortAckableLease = 2 * time.Second
	// controlSeq marks a control message: one that is let expire to prove
	// that the leases before it have expired too.
	controlSeq = -2
)

// ackableLease is the lease a case acks before it expires and then waits
// out: shortAckableLease, or MinLease when that is longer.
func (c Capabilities) ackableLease() time.Duration { return max(c.MinLease, shortAckableLease) }

// withDefaults fills the zero fields of caps.
func (c Capabilities) withDefaults() Capabilities {
	if c.MinLease <= 0 {
		c.MinLease = defaultMinLease
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = domain.DefaultMaxDeliveries
	}
	return c
}

// newTopic returns a unique topic: "t" and 12 hex digits.
func newTopic() string {
	id := uuid.New()
	return fmt.Sprintf("t%x", id[:6])
}

// gpuUUID returns a GPU UUID shaped like DCGM's for GPU number i.
func gpuUUID(i int) string {
	return fmt.Sprintf("GPU-%08x-5fd4-f087-0000-%012x", i, i)
}

// point is the payload the suite publishes: a domain.Point-like object with a
// sequence number to check order and identity.
type point struct {
	Timestamp  time.Time `json:"timestamp"`
	MetricName string    `json:"metric_name"`
	GPUIndex   int       `json:"gpu_index"`
	GPUUUID    string    `json:"gpu_uuid"`
	Hostname   string    `json:"hostname"`
	Value      float64   `json:"value"`
	Seq        int       `json:"seq"`
}

var baseTime = time.Date(2025, 7, 18, 13, 42, 33, 0, time.UTC)

// payload is the JSON of point number seq of GPU gpu.
func payload(gpu string, seq int) json.RawMessage {
	b, err := json.Marshal(point{
		Timestamp:  baseTime.Add(time.Duration(seq) * time.Second),
		MetricName: "DCGM_FI_DEV_GPU_UTIL",
		GPUIndex:   seq % 8,
		GPUUUID:    gpu,
		Hostname:   "mtv5-dgx1-hgpu-031",
		Value:      float64(seq % 100),
		Seq:        seq,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// outgoing is message seq of GPU gpu, keyed by the GPU.
func outgoing(gpu string, seq int, idempotencyKey string) ports.OutgoingMessage {
	return ports.OutgoingMessage{Payload: payload(gpu, seq), Key: gpu, IdempotencyKey: idempotencyKey}
}

// batch is messages first..first+n-1 spread over gpus GPUs.
func batch(first, n, gpus int) []ports.OutgoingMessage {
	msgs := make([]ports.OutgoingMessage, n)
	for i := range msgs {
		msgs[i] = outgoing(gpuUUID((first+i)%gpus), first+i, "")
	}
	return msgs
}

// seqOf decodes a leased payload's sequence number.
func seqOf(t testing.TB, m domain.Message) int {
	t.Helper()
	var p point
	require.NoError(t, json.Unmarshal(m.Payload, &p), "payload of %s: %s", m.ID, m.Payload)
	return p.Seq
}

// canonical rewrites a JSON document with sorted keys and no insignificant
// whitespace, so payloads compare by meaning (PostgreSQL jsonb reorders keys).
func canonical(t testing.TB, raw []byte) string {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&v), "payload %s", raw)
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// env is one subtest's queue and topic.
type env struct {
	t     *testing.T
	ctx   context.Context
	h     Harness
	q     ports.Queue // the current instance; replaced by restart
	topic string
	caps  Capabilities
	// stop is Harness.Restart or Harness.Crash: how restart stops the
	// current instance.
	stop func(t testing.TB) ports.Queue
}

func newEnv(t *testing.T, newHarness NewHarness, caps Capabilities) *env {
	t.Helper()
	h := newHarness(t)
	require.NotNil(t, h.Queue, "harness without a queue")
	return &env{t: t, ctx: t.Context(), h: h, q: h.Queue, topic: newTopic(), caps: caps}
}

// restart replaces the queue by a new instance over the same durable
// state, stopping the current one with e.stop.
func (e *env) restart() {
	e.t.Helper()
	require.NotNil(e.t, e.stop, "no Restart or Crash chosen for this case")
	e.q = e.stop(e.t)
	require.NotNil(e.t, e.q, "Restart or Crash returned no queue")
}

func (e *env) publish(msgs ...ports.OutgoingMessage) ports.PublishResult {
	e.t.Helper()
	res, err := e.q.Publish(e.ctx, e.topic, msgs)
	require.NoError(e.t, err, "publish %d messages", len(msgs))
	return res
}

func (e *env) request(max int, d time.Duration) ports.LeaseRequest {
	return ports.LeaseRequest{Topic: e.topic, ConsumerID: "consumer-" + e.topic, Max: max, LeaseDuration: d}
}

func (e *env) ref(l domain.Lease) ports.LeaseRef {
	return ports.LeaseRef{Topic: e.topic, ConsumerID: "consumer-" + e.topic, LeaseID: l.ID}
}

func (e *env) ack(l domain.Lease) {
	e.t.Helper()
	require.NoError(e.t, e.q.Ack(e.ctx, e.ref(l)), "ack lease %s", l.ID)
}

// ackInTime acks l, a lease short enough to expire during the case, and
// tells whether the ack came in time. A lease that expired first (a loaded
// machine can stall the test past a short lease) answers ErrLeaseExpired
// and its messages come back to be leased again; any other error fails.
func (e *env) ackInTime(l domain.Lease) bool {
	e.t.Helper()
	err := e.q.Ack(e.ctx, e.ref(l))
	if errors.Is(err, ports.ErrLeaseExpired) {
		e.t.Logf("lease %s expired before its ack; its messages come back", l.ID)
		return false
	}
	require.NoError(e.t, err, "ack lease %s", l.ID)
	return true
}

// ackAll acks every lease of leases.
func (e *env) ackAll(leases []domain.Lease) {
	e.t.Helper()
	for _, l := range leases {
		e.ack(l)
	}
}

// releaseWithReason releases l, giving reason as the cause of the failure.
func (e *env) releaseWithReason(l domain.Lease, reason string) {
	e.t.Helper()
	ref := e.ref(l)
	ref.Reason = reason
	require.NoError(e.t, e.q.Release(e.ctx, ref), "release lease %s (%s)", l.ID, reason)
}

// publishAndLeaseOne publishes n messages spread over gpus GPUs, leases them
// all for d and requires a single lease to hold them; it returns that lease
// and its messages.
func (e *env) publishAndLeaseOne(n, gpus int, d time.Duration) (domain.Lease, []domain.Message) {
	e.t.Helper()
	e.publish(batch(0, n, gpus)...)
	leases, msgs := e.collect(n, n, d)
	require.Len(e.t, leases, 1, "leases holding %d messages", n)
	return leases[0], msgs
}

// collectRedelivered leases as many messages as first holds, for longLease,
// and requires them to be first's messages delivered again
// (requireRedelivered). It returns the new leases and messages.
func (e *env) collectRedelivered(first []domain.Message) ([]domain.Lease, []domain.Message) {
	e.t.Helper()
	leases, again := e.collect(len(first), len(first), longLease)
	requireRedelivered(e.t, first, again)
	return leases, again
}

// collectWait is how long collect waits for its messages: waitTimeout, or
// brokenWaitTimeout in a child run of RequireCaught. Such a run is meant to
// fail, and the messages a broken queue fails to deliver (AnswerBeforeCommit's,
// lost in a crash) are gone, not late: a longer wait ends in the same failure,
// 15 s later. The meta-test still requires the cases that should pass in the
// child run (DurablePublish/Restart) to pass within the shorter wait.
func collectWait() time.Duration {
	if BrokenVariant() != "" {
		return brokenWaitTimeout
	}
	return waitTimeout
}

// collect leases (max per lease, for d) until it holds exactly n messages,
// failing after waitTimeout. It checks that no lease exceeds max and that no
// message is handed out twice among the leases it holds.
func (e *env) collect(n, max int, d time.Duration) ([]domain.Lease, []domain.Message) {
	e.t.Helper()
	var (
		leases []domain.Lease
		msgs   []domain.Message
		seen   = make(map[uuid.UUID]bool)
	)
	wait := collectWait()
	deadline := time.Now().Add(wait)
	for len(msgs) < n {
		want := min(max, n-len(msgs))
		l, err := e.q.Lease(e.ctx, e.request(want, d))
		require.NoError(e.t, err, "lease")
		require.LessOrEqual(e.t, len(l.Messages), want, "lease with Max %d returned %d messages", want, len(l.Messages))
		if len(l.Messages) == 0 {
			require.True(e.t, time.Now().Before(deadline),
				"only %d of %d messages delivered within %s", len(msgs), n, wait)
			e.pause()
			continue
		}
		require.NotEqual(e.t, uuid.Nil, l.ID, "a lease with messages needs an id")
		for _, m := range l.Messages {
			require.NotEqual(e.t, uuid.Nil, m.ID, "message without msg_uuid")
			require.False(e.t, seen[m.ID], "message %s handed out twice while leased", m.ID)
			seen[m.ID] = true
		}
		leases = append(leases, l)
		msgs = append(msgs, l.Messages...)
	}
	return leases, msgs
}

// drainWithMarker publishes a marker message with key, then leases and acks
// everything until the marker comes back, and returns the other messages it
// saw. With the marker in the same partition as the messages under test, a
// FIFO queue hands out anything still stored there first; any queue hands out
// what is ready.
func (e *env) drainWithMarker(key string) []domain.Message {
	e.t.Helper()
	marker := json.RawMessage(fmt.Sprintf(`{"gpu_uuid":%q,"marker":true,"seq":-1}`, key))
	res := e.publish(ports.OutgoingMessage{Payload: marker, Key: key})
	require.Equal(e.t, 1, res.Accepted, "marker publish")
	var others []domain.Message
	deadline := time.Now().Add(waitTimeout)
	for {
		l, err := e.q.Lease(e.ctx, e.request(100, longLease))
		require.NoError(e.t, err, "lease")
		if len(l.Messages) == 0 {
			require.True(e.t, time.Now().Before(deadline), "marker not delivered within %s", waitTimeout)
			e.pause()
			continue
		}
		found := false
		for _, m := range l.Messages {
			if seqOf(e.t, m) == -1 {
				found = true
				continue
			}
			others = append(others, m)
		}
		e.ack(l)
		if found {
			return others
		}
	}
}

// pause waits pollInterval before the next poll of an empty queue.
func (e *env) pause() { pause(e.ctx, pollInterval) }

// ids returns the message ids of msgs with their delivery counts.
func ids(msgs []domain.Message) map[uuid.UUID]int {
	out := make(map[uuid.UUID]int, len(msgs))
	for _, m := range msgs {
		out[m.ID] = m.Deliveries
	}
	return out
}

// payloads returns the payloads of msgs as text, for failure messages.
func payloads(msgs []domain.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Payload)
	}
	return out
}

// requireRedelivered checks second holds the same messages as first, and
// that the delivery counts went up where the adapter reports them.
func requireRedelivered(t testing.TB, first, second []domain.Message) {
	t.Helper()
	a, b := ids(first), ids(second)
	require.Len(t, b, len(a), "redelivered message count")
	for id, n := range a {
		m, ok := b[id]
		require.True(t, ok, "message %s not redelivered", id)
		if n > 0 {
			require.Greater(t, m, n, "deliveries of message %s", id)
		}
	}
}

// requireSamePayloads checks that got carries the payloads of want, in any
// order, compared by meaning (canonical).
func requireSamePayloads(t testing.TB, want []ports.OutgoingMessage, got []domain.Message, what string) {
	t.Helper()
	w := make([]string, len(want))
	for i, m := range want {
		w[i] = canonical(t, m.Payload)
	}
	g := make([]string, len(got))
	for i, m := range got {
		g[i] = canonical(t, m.Payload)
	}
	require.ElementsMatch(t, w, g, what)
}

// returnsPromptly runs fn and fails when it does not return within waitTimeout.
func returnsPromptly(t testing.TB, name string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(waitTimeout):
		require.FailNow(t, name+" did not return", "waited %s", waitTimeout)
		return nil
	}
}
