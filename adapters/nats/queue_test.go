package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"golang.org/x/sync/errgroup"

	natsq "github.com/gpufleet/telemetry/adapters/nats"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/freeport"
)

// newTopic is a topic of its own for a test: on a shared server, streams of
// different prefixes must still not share subjects.
func newTopic() string { return fmt.Sprintf("t%x", uuid.New().ID()) }

func msg(gpu string, seq int, idempotencyKey string) ports.OutgoingMessage {
	return ports.OutgoingMessage{
		Payload:        json.RawMessage(fmt.Sprintf(`{"gpu_uuid":%q,"seq":%d}`, gpu, seq)),
		Key:            gpu,
		IdempotencyKey: idempotencyKey,
	}
}

func leaseReq(topic string, max int, d time.Duration) ports.LeaseRequest {
	return ports.LeaseRequest{Topic: topic, ConsumerID: "c", Max: max, LeaseDuration: d}
}

func ref(l domain.Lease) ports.LeaseRef {
	return ports.LeaseRef{Topic: l.Topic, ConsumerID: "c", LeaseID: l.ID}
}

// serverURL is NATS_URL, or an in-process server's.
func serverURL(t *testing.T) string {
	if url := externalURL(); url != "" {
		return url
	}
	return startServer(t).url()
}

// newTestQueue is a started queue on serverURL's server with the given
// AckWait (on a prefix of its own when the server is shared), and that URL.
func newTestQueue(t *testing.T, ackWait time.Duration, reg prometheus.Registerer) (*natsq.Queue, string) {
	t.Helper()
	url := serverURL(t)
	return newQueue(t, url, testConfig(t, url, ackWait), reg), url
}

// testConfig is a Config with the given AckWait, on a prefix of its own when
// the server is shared.
func testConfig(t *testing.T, url string, ackWait time.Duration) natsq.Config {
	cfg := natsq.Config{AckWait: ackWait}
	if externalURL() != "" {
		cfg.StreamPrefix = uniquePrefix(t, url)
	}
	return cfg
}

// publish publishes msgs to topic and requires them all accepted.
func publish(t *testing.T, q ports.Queue, topic string, msgs ...ports.OutgoingMessage) {
	t.Helper()
	res, err := q.Publish(t.Context(), topic, msgs)
	require.NoError(t, err)
	require.Equal(t, ports.PublishResult{Accepted: len(msgs)}, res)
}

// ackAll acks each of leases on q and requires every ack to succeed.
func ackAll(t *testing.T, q ports.Queue, leases []domain.Lease) {
	t.Helper()
	for _, l := range leases {
		require.NoError(t, q.Ack(t.Context(), ref(l)))
	}
}

// leaseWithin is how long leaseN keeps leasing: the tests' AckWait plus
// 10s, because a pull that a starved client cut short (natsq's fetchIdleCut,
// seen under a cold `make test`) gets its messages back only after AckWait.
// Tests that tell a Nak from AckWait use an AckWait of a minute.
const leaseWithin = testAckWait + 10*time.Second

// leaseN leases (for d) until it holds n messages, failing after leaseWithin.
func leaseN(t *testing.T, q ports.Queue, topic string, n int, d time.Duration) ([]domain.Lease, []domain.Message) {
	t.Helper()
	var (
		leases []domain.Lease
		msgs   []domain.Message
	)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		l, err := q.Lease(t.Context(), leaseReq(topic, n-len(msgs), d))
		require.NoError(c, err)
		if len(l.Messages) > 0 {
			leases = append(leases, l)
			msgs = append(msgs, l.Messages...)
		}
		assert.Len(c, msgs, n, "messages leased")
	}, leaseWithin, 20*time.Millisecond)
	return leases, msgs
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  natsq.Config
	}{
		{"no url", natsq.Config{}},
		{"negative replicas", natsq.Config{URL: "nats://127.0.0.1:1", Replicas: -1}},
		{"six replicas", natsq.Config{URL: "nats://127.0.0.1:1", Replicas: 6}},
		{"ack wait below a second", natsq.Config{URL: "nats://127.0.0.1:1", AckWait: 10 * time.Millisecond}},
		{"negative duplicate window", natsq.Config{URL: "nats://127.0.0.1:1", DuplicateWindow: -time.Second}},
		{"prefix with an underscore", natsq.Config{URL: "nats://127.0.0.1:1", StreamPrefix: "a_b"}},
		{"prefix with a dot", natsq.Config{URL: "nats://127.0.0.1:1", StreamPrefix: "a.b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, err := natsq.New(t.Context(), tc.cfg, nil, nil)
			require.Error(t, err)
			require.Nil(t, q)
		})
	}
}

// TestTopicNames checks the topics NATS subjects cannot carry are refused,
// and that topics differing only in "." and "_" get streams of their own.
func TestTopicNames(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	q, _ := newTestQueue(t, 0, nil)
	ctx := t.Context()

	for _, bad := range []string{".a", "a.", "a..b", "_INBOX.x", "_x"} {
		t.Run("refused "+bad, func(t *testing.T) {
			t.Parallel()
			_, err := q.Publish(ctx, bad, []ports.OutgoingMessage{msg("GPU-a", 1, "")})
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			_, err = q.Lease(ctx, ports.LeaseRequest{Topic: bad, ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
		})
	}

	t.Run("distinct", func(t *testing.T) {
		t.Parallel()
		topics := []string{topic + ".b", topic + "_b", topic + "__b", topic + "_db", topic + "-b"}
		for i, name := range topics {
			res, err := q.Publish(ctx, name, []ports.OutgoingMessage{msg("GPU-a", i, "")})
			require.NoError(t, err, "publish to %q", name)
			require.Equal(t, 1, res.Accepted)
		}
		for i, name := range topics {
			// leaseN, not one Lease: a pull cut on a loaded machine returns
			// its message only after AckWait.
			leases, got := leaseN(t, q, name, 1, time.Minute)
			require.JSONEq(t, fmt.Sprintf(`{"gpu_uuid":"GPU-a","seq":%d}`, i), string(got[0].Payload), "topic %q", name)
			ackAll(t, q, leases)
		}
	})
}

// TestMessageFields checks what a leased message carries: the id derived
// from the idempotency key, the key's partition, the store time, and the
// delivery count, which grows with each redelivery.
func TestMessageFields(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	q, _ := newTestQueue(t, 0, nil)
	ctx := t.Context()
	before := time.Now().Add(-time.Second)
	publish(t, q, topic, msg("GPU-1234", 1, "row-1"))

	for deliveries := 1; deliveries <= 2; deliveries++ {
		l, got := leaseN(t, q, topic, 1, time.Minute)
		m := got[0]
		require.Equal(t, domain.MessageID(topic, "row-1"), m.ID)
		require.Equal(t, domain.PartitionOf("GPU-1234"), m.Partition)
		require.Equal(t, topic, m.Topic)
		require.Equal(t, deliveries, m.Deliveries)
		require.True(t, m.CreatedAt.After(before), "created at %s", m.CreatedAt)
		require.NoError(t, q.Release(ctx, ref(l[0])))
	}
}

// TestForeignMessage checks a message published to a partition subject by
// another client, without a message id, gets an id that stays the same
// across redeliveries.
func TestForeignMessage(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	q, url := newTestQueue(t, 0, nil)
	ctx := t.Context()
	// The first lease sets the topic's stream up.
	l, err := q.Lease(ctx, leaseReq(topic, 1, time.Minute))
	require.NoError(t, err)
	require.Empty(t, l.Messages)

	nc, err := natsgo.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	_, err = nc.Request(topic+".17", []byte(`{"gpu_uuid":"GPU-x"}`), 5*time.Second) // the reply is the PubAck
	require.NoError(t, err)

	leases, first := leaseN(t, q, topic, 1, time.Minute)
	require.NotEqual(t, uuid.Nil, first[0].ID)
	require.Equal(t, 17, first[0].Partition)
	require.NoError(t, q.Release(ctx, ref(leases[0])))
	leases, second := leaseN(t, q, topic, 1, time.Minute)
	require.Equal(t, first[0].ID, second[0].ID)
	require.NoError(t, q.Ack(ctx, ref(leases[0])))
}

// TestLongLeaseOutlivesAckWait checks a lease longer than the consumer's
// AckWait keeps its messages (the client sends InProgress), and can still be
// acked.
func TestLongLeaseOutlivesAckWait(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	url := serverURL(t)
	cfg := testConfig(t, url, time.Second)
	holder := newQueue(t, url, cfg, nil)
	other := newQueue(t, url, cfg, nil)
	publish(t, holder, topic, msg("GPU-a", 1, ""), msg("GPU-b", 2, ""))
	// Ten AckWaits, so the ack after the three-second watch below lands
	// well inside the lease on a loaded machine too.
	leases, _ := leaseN(t, holder, topic, 2, 10*time.Second)

	require.Never(t, func() bool {
		l, err := other.Lease(t.Context(), leaseReq(topic, 10, natsq.MinLease))
		require.NoError(t, err)
		return len(l.Messages) > 0
	}, 3*time.Second, 100*time.Millisecond, "messages redelivered during a live lease three AckWaits long")

	ackAll(t, holder, leases)
	l, err := other.Lease(t.Context(), leaseReq(topic, 10, time.Minute))
	require.NoError(t, err)
	require.Empty(t, l.Messages, "acked messages delivered again")
}

// TestShortLeaseNakedAtExpiry checks a lease shorter than AckWait hands its
// messages back when it expires, not when the server's AckWait would.
func TestShortLeaseNakedAtExpiry(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	reg := prometheus.NewRegistry()
	q, _ := newTestQueue(t, time.Minute, reg)
	publish(t, q, topic, msg("GPU-a", 1, ""), msg("GPU-b", 2, ""))
	leases, _ := leaseN(t, q, topic, 2, natsq.MinLease)
	// Within 10s, far below the minute of AckWait.
	again, msgs := leaseN(t, q, topic, 2, time.Minute)
	for _, m := range msgs {
		require.Equal(t, 2, m.Deliveries)
	}
	for _, l := range leases {
		require.ErrorIs(t, q.Ack(t.Context(), ref(l)), ports.ErrLeaseExpired)
	}
	ackAll(t, q, again)
	require.Equal(t, float64(len(leases)), counter(t, reg, "nats_queue_leases_expired_total"))
}

// TestCloseHandsLeasesBack checks Close Naks its live leases, so another
// client gets their messages at once rather than after AckWait.
func TestCloseHandsLeasesBack(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	url := serverURL(t)
	cfg := testConfig(t, url, time.Minute)
	closing := newQueue(t, url, cfg, nil)
	other := newQueue(t, url, cfg, nil)
	publish(t, closing, topic, msg("GPU-a", 1, ""), msg("GPU-b", 2, ""), msg("GPU-c", 3, ""))
	leases, _ := leaseN(t, closing, topic, 3, 5*time.Minute)
	require.NoError(t, closing.Close())
	require.NoError(t, closing.Close(), "second close")

	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"publish", func(ctx context.Context) error {
			_, err := closing.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 4, "")})
			return err
		}},
		{"lease", func(ctx context.Context) error {
			_, err := closing.Lease(ctx, leaseReq(topic, 1, time.Minute))
			return err
		}},
		{"ack", func(ctx context.Context) error { return closing.Ack(ctx, ref(leases[0])) }},
		{"release", func(ctx context.Context) error { return closing.Release(ctx, ref(leases[0])) }},
		{"check", closing.Check},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			require.ErrorIs(t, c.call(t.Context()), ports.ErrClosed)
		})
	}

	again, _ := leaseN(t, other, topic, 3, time.Minute) // within 10s: the Naks, not AckWait
	ackAll(t, other, again)
}

// TestConcurrentAcksOfOneLease checks acks of one lease racing each other
// all succeed and ack its messages once.
func TestConcurrentAcksOfOneLease(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	reg := prometheus.NewRegistry()
	q, _ := newTestQueue(t, 0, reg)
	publish(t, q, topic, msg("GPU-a", 1, ""), msg("GPU-b", 2, ""), msg("GPU-c", 3, ""))
	leases, _ := leaseN(t, q, topic, 3, time.Minute)
	require.Len(t, leases, 1)

	var g errgroup.Group
	for range 8 {
		g.Go(func() error { return q.Ack(t.Context(), ref(leases[0])) })
	}
	require.NoError(t, g.Wait())
	require.Equal(t, 3.0, counter(t, reg, "nats_queue_messages_acked_total"))
	require.ErrorIs(t, q.Release(t.Context(), ref(leases[0])), ports.ErrLeaseExpired, "release of an acked lease")
}

// TestPublishBeyondWindow publishes more messages in one call than the
// adapter keeps awaiting their PubAck at once.
// TestFirstUsesShareOneSetUp publishes one message per call from many
// goroutines to a topic not yet set up, as a streamer's window does on a cold
// start: the stream and consumer are set up once, not once per call.
func TestFirstUsesShareOneSetUp(t *testing.T) {
	t.Parallel()
	if externalURL() != "" {
		t.Skip("NATS_URL set: the API request count is the in-process server's")
	}
	const callers = 256
	ts := startServer(t)
	q := newQueue(t, ts.url(), natsq.Config{}, nil)
	apiRequests := func() uint64 {
		info, err := ts.srv.Jsz(nil)
		require.NoError(t, err)
		return info.API.Total
	}
	before := apiRequests()
	topic := newTopic()
	var g errgroup.Group
	for i := range callers {
		g.Go(func() error {
			_, err := q.Publish(t.Context(), topic, []ports.OutgoingMessage{msg("GPU-1", i, "key-"+strconv.Itoa(i))})
			return err
		})
	}
	require.NoError(t, g.Wait())
	// One set-up: an update then a create for the stream and for its
	// dead-letter stream (nats.go's CreateOrUpdateStream), one request for
	// the consumer. One set-up per call would be 5 × callers.
	require.LessOrEqual(t, apiRequests()-before, uint64(5), "JetStream API requests for %d first uses", callers)
	_, got := leaseN(t, q, topic, callers, time.Minute)
	require.Len(t, got, callers)
}

func TestPublishBeyondWindow(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	const n = 1100 // the window is 1024
	q, _ := newTestQueue(t, 0, nil)
	msgs := make([]ports.OutgoingMessage, n)
	for i := range msgs {
		msgs[i] = msg("GPU-"+strconv.Itoa(i%247), i, "key-"+strconv.Itoa(i))
	}
	publish(t, q, topic, msgs...)
	res, err := q.Publish(t.Context(), topic, msgs)
	require.NoError(t, err)
	require.Equal(t, ports.PublishResult{Duplicates: n}, res, "the same keys again")
	leases, got := leaseN(t, q, topic, n, time.Minute)
	seen := make(map[uuid.UUID]bool, n)
	for _, m := range got {
		require.False(t, seen[m.ID], "message %s twice", m.ID)
		seen[m.ID] = true
	}
	ackAll(t, q, leases)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	reg := prometheus.NewRegistry()
	q, url := newTestQueue(t, 0, reg)
	ctx := t.Context()

	res, err := q.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 1, "k1"), msg("GPU-a", 2, "k2"), msg("GPU-a", 3, "k1")})
	require.NoError(t, err)
	require.Equal(t, ports.PublishResult{Accepted: 2, Duplicates: 1}, res)
	leases, _ := leaseN(t, q, topic, 2, time.Minute)
	require.NoError(t, q.Release(ctx, ref(leases[0])))
	leases, _ = leaseN(t, q, topic, 2, time.Minute)
	ackAll(t, q, leases)

	want := map[string]float64{
		"nats_queue_messages_published_total": 2,
		"nats_queue_messages_duplicate_total": 1,
		"nats_queue_messages_released_total":  2,
		"nats_queue_messages_acked_total":     2,
		"nats_queue_leases_expired_total":     0,
		"nats_queue_fetch_stalls_total":       0,
	}
	for name, v := range want {
		require.Equal(t, v, counter(t, reg, name), name)
	}
	promxtest.RequireLintClean(t, reg)

	_, err = natsq.New(ctx, natsq.Config{URL: url}, nil, reg)
	require.Error(t, err, "a second queue on the same registry")
}

// counter reads one counter from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	require.Failf(t, "metric not registered", "%s", name)
	return 0
}

// TestUnreachableServer checks a queue whose server is down can be built
// and fails every call with ports.ErrUnavailable.
func TestUnreachableServer(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	addr, err := freeport.Addr() // nothing listens there
	require.NoError(t, err)
	url := "nats://" + addr
	q := newQueue(t, url, natsq.Config{}, nil)

	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"check", q.Check},
		{"publish", func(ctx context.Context) error {
			_, err := q.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 1, "")})
			return err
		}},
		{"lease", func(ctx context.Context) error { _, err := q.Lease(ctx, leaseReq(topic, 1, time.Minute)); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			require.ErrorIs(t, c.call(t.Context()), ports.ErrUnavailable)
		})
	}
}

// TestServerRestart checks the queue reports the server's outage and
// recovers on its own when the server is back, with the messages published
// before it.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	ts := startServer(t)
	q := newQueue(t, ts.url(), natsq.Config{}, nil)
	publish(t, q, topic, msg("GPU-a", 1, ""))

	ts.shutdown()
	require.Eventually(t, func() bool { return q.Check(t.Context()) != nil }, 10*time.Second, 20*time.Millisecond)
	require.ErrorIs(t, q.Check(t.Context()), ports.ErrUnavailable)
	_, err := q.Publish(t.Context(), topic, []ports.OutgoingMessage{msg("GPU-a", 2, "")})
	require.ErrorIs(t, err, ports.ErrUnavailable)

	ts.start(t)
	require.Eventually(t, func() bool { return q.Check(t.Context()) == nil }, 20*time.Second, 50*time.Millisecond,
		"no reconnect")
	leases, got := leaseN(t, q, topic, 1, time.Minute)
	require.JSONEq(t, `{"gpu_uuid":"GPU-a","seq":1}`, string(got[0].Payload))
	require.NoError(t, q.Ack(t.Context(), ref(leases[0])))
}

func TestModule(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	url := serverURL(t)
	cfg := testConfig(t, url, 0)
	cfg.URL = url
	opts := fx.Options(
		fx.Supply(cfg),
		fx.Provide(func() prometheus.Registerer { return prometheus.NewRegistry() }),
		natsq.Module,
		fx.Invoke(func(ports.Queue, ports.Publisher, ports.Consumer, *natsq.Queue) {}),
	)
	require.NoError(t, fx.ValidateApp(opts))

	var q ports.Queue
	app := fxtest.New(t, opts, fx.Populate(&q))
	app.RequireStart()
	res, err := q.Publish(t.Context(), topic, []ports.OutgoingMessage{msg("GPU-a", 1, "")})
	require.NoError(t, err)
	require.Equal(t, 1, res.Accepted)
	app.RequireStop()
	_, err = q.Publish(t.Context(), topic, []ports.OutgoingMessage{msg("GPU-a", 2, "")})
	require.ErrorIs(t, err, ports.ErrClosed, "queue closed on stop")
}

// TestStreamDeletedIsRecreated checks a topic whose stream was deleted
// behind the queue's back is set up again by a later call.
func TestStreamDeletedIsRecreated(t *testing.T) {
	t.Parallel()
	topic := newTopic()
	url := serverURL(t)
	cfg := testConfig(t, url, 0)
	q := newQueue(t, url, cfg, nil)
	publish(t, q, topic, msg("GPU-a", 1, ""))

	nc, err := natsgo.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	prefix := cfg.StreamPrefix
	if prefix == "" {
		prefix = natsq.DefaultConfig().StreamPrefix
	}
	require.NoError(t, js.DeleteStream(t.Context(), prefix+"_"+topic))

	require.Eventually(t, func() bool {
		_, err := q.Publish(t.Context(), topic, []ports.OutgoingMessage{msg("GPU-a", 2, "")})
		if err != nil {
			require.ErrorIs(t, err, ports.ErrUnavailable)
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "publish never succeeded after the stream was deleted")
	leases, got := leaseN(t, q, topic, 1, time.Minute)
	require.JSONEq(t, `{"gpu_uuid":"GPU-a","seq":2}`, string(got[0].Payload))
	require.NoError(t, q.Ack(t.Context(), ref(leases[0])))
}
