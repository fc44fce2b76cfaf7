package pgqueue

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// A waiting lease is answered by the writer's notification, not by polling:
// the reader here polls once an hour while it listens, so only the NOTIFY of
// the publish's commit can bring the message within the wait; and after its
// listening connection is killed, it listens again on a new one, and the
// metrics say so (mqreader_listening, mqreader_listen_errors_total).
func TestWaitingLeaseWokenByNotify(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	w := newWriter(t, pool, WriterConfig{})
	reg := prometheus.NewRegistry()
	r := startReader(t, pool, ReaderConfig{Range: fullRange(), RefillInterval: time.Hour}, reg)
	ctx := t.Context()
	req := ports.LeaseRequest{Topic: "notified", ConsumerID: "c", Max: 10, LeaseDuration: time.Minute, Wait: domain.MaxLeaseWait}

	// The topic's owner starts (and runs its first refill) on the first
	// lease; the listener must be live before the publish it is to hear.
	first, err := r.Lease(ctx, ports.LeaseRequest{Topic: req.Topic, ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
	require.NoError(t, err)
	require.Empty(t, first.Messages)
	require.Eventually(t, r.listening.Load, 10*time.Second, 5*time.Millisecond, "listener never subscribed")
	require.Equal(t, 1.0, gaugeValue(t, reg, "mqreader_listening"))
	require.Zero(t, metric(t, reg, "mqreader_listen_errors_total").GetCounter().GetValue())

	leaseAfter := func(publish func()) domain.Lease {
		t.Helper()
		got := make(chan domain.Lease, 1)
		go func() {
			l, err := r.Lease(ctx, req)
			if err != nil {
				t.Error(err)
			}
			got <- l
		}()
		publish()
		l := <-got
		require.NotEmpty(t, l.Messages, "a waiting lease was not woken within its wait")
		require.NoError(t, r.Ack(ctx, ports.LeaseRef{Topic: req.Topic, ConsumerID: "c", LeaseID: l.ID}))
		return l
	}
	leaseAfter(func() {
		publishMsgs(t, w, req.Topic, 1, "a")
	})

	// Kill the listening connection: the reader subscribes again on a new
	// one, and notifications reach it as before.
	listeners := func() (pids []int32) {
		rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1`, listenSQL)
		require.NoError(t, err)
		pids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
		require.NoError(t, err)
		return pids
	}
	before := listeners()
	require.Len(t, before, 1, "listening connections")
	_, err = pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, before[0])
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		now := listeners()
		return len(now) == 1 && now[0] != before[0] && r.listening.Load()
	}, 10*time.Second, 5*time.Millisecond, "the reader did not listen again")
	require.Equal(t, 1.0, metric(t, reg, "mqreader_listen_errors_total").GetCounter().GetValue(), "the lost subscription is counted")
	require.Equal(t, 1.0, gaugeValue(t, reg, "mqreader_listening"))
	leaseAfter(func() {
		publishMsgs(t, w, req.Topic, 1, "b")
	})
}

// Between full refills a topic loads from the lowest id announced to it
// (ADR 0016), so nothing is left behind that a high-water mark would skip:
// here full refills and polls come once an hour, and only announcements
// bring rows. A batch whose lower ids commit after a higher-numbered batch
// was loaded is announced from its own first id; the rows of an expired
// lease are announced by the expiry.
func TestAnnouncedRefills(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	r := newReader(t, pool, ReaderConfig{Range: fullRange(), RefillInterval: time.Hour, MinLease: time.Millisecond})
	ctx := t.Context()
	const topic = "announced"
	waiting := ports.LeaseRequest{Topic: topic, ConsumerID: "c", Max: 10, LeaseDuration: time.Minute, Wait: domain.MaxLeaseWait}
	first, err := r.Lease(ctx, ports.LeaseRequest{Topic: topic, ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
	require.NoError(t, err)
	require.Empty(t, first.Messages)
	require.Eventually(t, r.listening.Load, 10*time.Second, 5*time.Millisecond, "listener never subscribed")

	// insert runs the writer's statement (with its notification) in tx.
	insert := func(tx pgx.Tx, name string) {
		t.Helper()
		rows, err := tx.Query(ctx, insertSQL, []string{topic}, []uuid.UUID{uuid.New()}, []string{`{"name":"` + name + `"}`}, []int16{7})
		require.NoError(t, err)
		rows.Close()
		require.NoError(t, rows.Err())
	}
	leaseOne := func(req ports.LeaseRequest, name string) domain.Lease {
		t.Helper()
		l, err := r.Lease(ctx, req)
		require.NoError(t, err)
		require.Len(t, l.Messages, 1, "a waiting lease ended without %s", name)
		require.JSONEq(t, `{"name":"`+name+`"}`, string(l.Messages[0].Payload))
		return l
	}

	txA, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = txA.Rollback(ctx) }()
	insert(txA, "A") // takes the lower id, commits last
	txB, err := pool.Begin(ctx)
	require.NoError(t, err)
	insert(txB, "B")
	require.NoError(t, txB.Commit(ctx))
	l := leaseOne(waiting, "B")
	require.NoError(t, r.Ack(ctx, ref(l)))
	require.NoError(t, txA.Commit(ctx))
	a := leaseOne(waiting, "A")

	// A lease of A that expires: its row is loaded again at once.
	require.NoError(t, r.Release(ctx, ref(a)))
	a = leaseOne(ports.LeaseRequest{Topic: topic, ConsumerID: "c", Max: 10, LeaseDuration: 50 * time.Millisecond}, "A")
	l = leaseOne(waiting, "A")
	require.NotEqual(t, a.ID, l.ID)
	require.NoError(t, r.Ack(ctx, ref(l)))
	require.Zero(t, countRows(t, pool, topic))
}

// A notification's payload is "<topic> <lowest id>"; one without an id (a
// writer older than the ids) asks for a full refill.
func TestParseReady(t *testing.T) {
	t.Parallel()
	for payload, want := range map[string]struct {
		topic string
		from  int64
	}{
		"telemetry 42":             {"telemetry", 42},
		"telemetry":                {"telemetry", 0},
		"telemetry x":              {"telemetry", 0},
		"telemetry -3":             {"telemetry", 0},
		"a.b-c_d 9007199254740993": {"a.b-c_d", 9007199254740993},
	} {
		topic, from := parseReady(payload)
		require.Equal(t, want.topic, topic, payload)
		require.Equal(t, want.from, from, payload)
	}
}

// A subscription that does not hear its own probe (as behind PgBouncer in
// transaction mode, where LISTEN lands on a server connection the client
// does not keep) is reported deaf and never said live, so the reader polls
// at RefillInterval instead of waiting a FullRefillInterval for rows that no
// notification will announce.
func TestDeafListener(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	subscribed := false
	err := pgRows{pool: pool, probeChannel: "nobody_listens_here"}.listen(t.Context(), func() { subscribed = true }, func(string, int64) {})
	require.ErrorIs(t, err, errDeaf)
	require.False(t, subscribed, "a deaf subscription was reported live")
}
