package pgqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/adapters/internal/leasebook"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// leaseSome leases until a lease holds at least one message.
func leaseSome(t testing.TB, c ports.Consumer, topic, consumer string, max int, d time.Duration) domain.Lease {
	t.Helper()
	var l domain.Lease
	require.Eventually(t, func() bool {
		var err error
		l, err = c.Lease(context.Background(), ports.LeaseRequest{Topic: topic, ConsumerID: consumer, Max: max, LeaseDuration: d})
		require.NoError(t, err)
		return len(l.Messages) > 0
	}, waitFor, time.Millisecond)
	return l
}

func ref(l domain.Lease) ports.LeaseRef {
	return ports.LeaseRef{Topic: l.Topic, ConsumerID: l.ConsumerID, LeaseID: l.ID}
}

// insertSQLTest inserts one row outside the writer, as a concurrent writer's
// transaction would.
const insertSQLTest = `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key)
VALUES ($1, $2, $3, $4) RETURNING id`

// A row whose lower id commits after a higher one was already delivered is
// still delivered: the refill has no high-water mark.
func TestRefillSeesLateCommits(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	r := startReader(t, pool, ReaderConfig{Range: fullRange(), RefillInterval: time.Millisecond}, reg)

	txA, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = txA.Rollback(ctx) }()
	txB, err := pool.Begin(ctx)
	require.NoError(t, err)
	var idA, idB int64
	require.NoError(t, txA.QueryRow(ctx, insertSQLTest, "late", uuid.New(), `{"name":"A"}`, 7).Scan(&idA))
	require.NoError(t, txB.QueryRow(ctx, insertSQLTest, "late", uuid.New(), `{"name":"B"}`, 7).Scan(&idB))
	require.Less(t, idA, idB)
	require.NoError(t, txB.Commit(ctx))

	l := leaseSome(t, r, "late", "c", 10, time.Minute)
	require.Len(t, l.Messages, 1)
	require.JSONEq(t, `{"name":"B"}`, string(l.Messages[0].Payload))
	require.NoError(t, r.Ack(ctx, ref(l)))
	// Let refills run after B was seen, as a high-water mark would have
	// moved past A by now.
	refills := histogramCount(t, reg, "mqreader_refill_duration_seconds")
	require.Eventually(t, func() bool { return histogramCount(t, reg, "mqreader_refill_duration_seconds") > refills+2 },
		waitFor, time.Millisecond)

	require.NoError(t, txA.Commit(ctx))
	l = leaseSome(t, r, "late", "c", 10, time.Minute)
	require.Len(t, l.Messages, 1)
	require.JSONEq(t, `{"name":"A"}`, string(l.Messages[0].Payload))
	require.NoError(t, r.Ack(ctx, ref(l)))
}

// Eight writers commit their transactions in an order unrelated to their
// ids while a consumer drains: every row is delivered, exactly once.
func TestRefillConcurrentWriters(t *testing.T) {
	t.Parallel()
	const (
		writers = 8
		txs     = 20
		perTx   = 3
		total   = writers * txs * perTx
	)
	pool := newPool(t)
	ctx := context.Background()
	r := newReader(t, pool, ReaderConfig{Range: fullRange(), RefillInterval: time.Millisecond, RefillBatch: 50})

	var g errgroup.Group
	for w := range writers {
		g.Go(func() error {
			for i := range txs {
				tx, err := pool.Begin(ctx)
				if err != nil {
					return err
				}
				for k := range perTx {
					p := fmt.Sprintf(`{"w":%d,"i":%d,"k":%d}`, w, i, k)
					if _, err := tx.Exec(ctx, insertSQLTest, "cw", uuid.New(), p, (w*31+k)%256); err != nil {
						return err
					}
				}
				// Hold the transaction a random while: ids are taken, the
				// commit comes later, after other writers' higher ids.
				if _, err := tx.Exec(ctx, `SELECT pg_sleep(random() * 0.004)`); err != nil {
					return err
				}
				if err := tx.Commit(ctx); err != nil {
					return err
				}
			}
			return nil
		})
	}

	delivered := map[string]int{}
	deadline := time.Now().Add(waitFor)
	for len(delivered) < total {
		require.True(t, time.Now().Before(deadline), "delivered %d of %d", len(delivered), total)
		l, err := r.Lease(ctx, ports.LeaseRequest{Topic: "cw", ConsumerID: "c", Max: 37, LeaseDuration: time.Minute})
		require.NoError(t, err)
		for _, m := range l.Messages {
			delivered[string(m.Payload)]++
		}
		if len(l.Messages) > 0 {
			require.NoError(t, r.Ack(ctx, ref(l)))
		}
	}
	require.NoError(t, g.Wait())
	for p, n := range delivered {
		require.Equal(t, 1, n, "deliveries of %s", p)
	}
	require.Equal(t, 0, countRows(t, pool, "cw"))
}

// Every message whose publish returned is leased by new instances after a
// restart.
func TestRestartBetweenPublishAndLease(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	pool1 := pgtest.Pool(t, dsn)
	w1, err := NewWriter(pool1, WriterConfig{}, nil, nil)
	require.NoError(t, err)
	require.NoError(t, w1.Start(context.Background()))
	r1, err := NewReader(pool1, ReaderConfig{Range: fullRange()}, nil, nil)
	require.NoError(t, err)
	require.NoError(t, r1.Start(context.Background()))
	var g errgroup.Group
	for i := range 6 {
		g.Go(func() error {
			_, err := w1.Publish(ctx, "restart", msgs(50, fmt.Sprintf("r%d", i)))
			return err
		})
	}
	require.NoError(t, g.Wait())
	// The first reader even holds some of them under a lease when it stops.
	leaseSome(t, r1, "restart", "c", 20, 5*time.Minute)
	require.NoError(t, r1.Close(ctx))
	require.NoError(t, w1.Close(ctx))
	pool1.Close()

	pool2 := pgtest.Pool(t, dsn)
	r2 := newReader(t, pool2, ReaderConfig{Range: fullRange()})
	got := drainTopic(t, r2, "restart", 300)
	require.Len(t, got, 300)
	for _, m := range got {
		require.Equal(t, domain.PartitionOf(gpuOf(t, m)), m.Partition, "partition of %s", m.ID)
	}
}

func gpuOf(t testing.TB, m domain.Message) string {
	var p struct {
		GPU string `json:"gpu_uuid"`
	}
	require.NoError(t, json.Unmarshal(m.Payload, &p))
	return p.GPU
}

// An ack after the lease expired and its message was leased again is
// refused and deletes nothing; the new lease's ack deletes the row before it
// returns.
func TestLateAckAfterExpiry(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	reg := prometheus.NewRegistry()
	r := startReader(t, pool, ReaderConfig{Range: fullRange(), MinLease: 50 * time.Millisecond,
		RefillInterval: time.Millisecond}, reg)
	publishMsgs(t, w, "late-ack", 1, "x")

	first := leaseSome(t, r, "late-ack", "c1", 1, 100*time.Millisecond)
	second := leaseSome(t, r, "late-ack", "c2", 1, time.Minute)
	require.Equal(t, first.Messages[0].ID, second.Messages[0].ID)
	require.Equal(t, 1, first.Messages[0].Deliveries)
	require.Equal(t, 2, second.Messages[0].Deliveries)

	require.ErrorIs(t, r.Ack(ctx, ref(first)), ports.ErrLeaseExpired)
	require.ErrorIs(t, r.Release(ctx, ref(first)), ports.ErrLeaseExpired)
	require.Equal(t, 1, countRows(t, pool, "late-ack"), "the late ack deleted nothing")
	require.NoError(t, r.Ack(ctx, ref(second)))
	require.Equal(t, 0, countRows(t, pool, "late-ack"), "ack returned before its delete committed")
	require.NoError(t, r.Ack(ctx, ref(second)), "repeated ack")
	require.Equal(t, 1.0, testutil.ToFloat64(r.metrics.expired))
	require.Equal(t, 1.0, testutil.ToFloat64(r.metrics.redelivered))
	require.Equal(t, 2.0, testutil.ToFloat64(r.metrics.leased))
	require.Equal(t, 1.0, testutil.ToFloat64(r.metrics.acked))
}

// Two readers with disjoint ranges over one table never deliver the same
// message, and together deliver all of them.
func TestDisjointRanges(t *testing.T) {
	t.Parallel()
	const total = 600
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	ranges := []domain.PartitionRange{{First: 0, Last: 127}, {First: 128, Last: 255}}
	readers := make([]*Reader, len(ranges))
	for i := range ranges {
		readers[i] = newReader(t, pool, ReaderConfig{Range: &ranges[i], RefillBatch: 64})
	}
	for i := 0; i < total; i += 100 {
		publishMsgs(t, w, "ranges", 100, fmt.Sprintf("m%d", i))
	}

	var done atomic.Int64
	got := make([]map[uuid.UUID]int, len(readers))
	var g errgroup.Group
	for i, r := range readers {
		got[i] = map[uuid.UUID]int{}
		g.Go(func() error {
			deadline := time.Now().Add(waitFor)
			for done.Load() < total {
				if time.Now().After(deadline) {
					return fmt.Errorf("reader %d: %d of %d delivered in all", i, done.Load(), total)
				}
				l, err := r.Lease(ctx, ports.LeaseRequest{Topic: "ranges", ConsumerID: "c", Max: 25, LeaseDuration: time.Minute})
				if err != nil {
					return err
				}
				for _, m := range l.Messages {
					if !ranges[i].Contains(m.Partition) {
						return fmt.Errorf("reader %d delivered partition %d", i, m.Partition)
					}
					got[i][m.ID]++
				}
				if len(l.Messages) > 0 {
					if err := r.Ack(ctx, ref(l)); err != nil {
						return err
					}
					done.Add(int64(len(l.Messages)))
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	for i := range got {
		require.NotEmpty(t, got[i], "reader %d delivered nothing", i)
		for id, n := range got[i] {
			require.Equal(t, 1, n, "deliveries of %s", id)
			_, both := got[1-i][id]
			require.False(t, both, "message %s delivered by both readers", id)
		}
	}
	require.Equal(t, total, len(got[0])+len(got[1]))
}

// Drain refuses leases at once, waits for the outstanding ones to be acked
// or to expire, then returns; unacked messages stay in the table.
func TestDrain(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	r := newReader(t, pool, ReaderConfig{Range: fullRange(), MinLease: 50 * time.Millisecond})
	for i := range 3 {
		_, err := w.Publish(ctx, "drain", []ports.OutgoingMessage{{Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Key: "one"}})
		require.NoError(t, err)
	}
	acked := leaseSome(t, r, "drain", "c", 1, time.Minute)
	expiring := leaseSome(t, r, "drain", "c", 1, 300*time.Millisecond)
	require.True(t, r.Ready())

	drained := make(chan error, 1)
	go func() { drained <- r.Drain(ctx) }()
	require.Eventually(t, r.Draining, waitFor, time.Millisecond)
	require.False(t, r.Ready())
	require.Error(t, r.Check(ctx))
	_, err := r.Lease(ctx, ports.LeaseRequest{Topic: "drain", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
	require.ErrorIs(t, err, ports.ErrClosed)
	select {
	case err := <-drained:
		require.FailNow(t, "drain returned with a minute-long lease outstanding", "err: %v", err)
	default:
	}

	require.NoError(t, r.Ack(ctx, ref(acked)), "acks work while draining")
	select {
	case err := <-drained:
		require.NoError(t, err, "drain returns once the other lease expired")
	case <-time.After(waitFor):
		require.FailNow(t, "drain did not return after the last lease expired")
	}
	require.ErrorIs(t, r.Ack(ctx, ref(expiring)), ports.ErrClosed)
	require.Equal(t, 2, countRows(t, pool, "drain"), "the expired and the never-leased message stay queued")
	require.NoError(t, r.Drain(ctx), "second drain")
}

// Drain gives up after DrainTimeout, or when its context ends, and reports
// the leases it abandoned; their messages stay queued.
func TestDrainGivesUp(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
	}{
		{"drain timeout", context.Background(), nil},
		{"context ends", cancelled, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := newPool(t)
			w := newWriter(t, pool, WriterConfig{})
			r := newReader(t, pool, ReaderConfig{Range: fullRange(), DrainTimeout: 50 * time.Millisecond})
			publishMsgs(t, w, "give-up", 2, "d")
			leaseSome(t, r, "give-up", "c", 1, 5*time.Minute)
			err := r.Drain(tc.ctx)
			require.ErrorContains(t, err, "1 leases were still outstanding")
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
			}
			require.Equal(t, 2, countRows(t, pool, "give-up"))
		})
	}
}

func TestUnassignedReader(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	r := newReader(t, pool, ReaderConfig{})
	require.False(t, r.Ready())
	require.Nil(t, r.Range())
	require.ErrorIs(t, r.Check(ctx), ports.ErrUnavailable)
	_, err := r.Lease(ctx, ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
	require.ErrorIs(t, err, ports.ErrUnavailable)
	require.ErrorContains(t, err, "no partition range assigned")
	require.ErrorIs(t, r.Ack(ctx, ports.LeaseRef{Topic: "t", ConsumerID: "c", LeaseID: uuid.New()}), ports.ErrUnavailable)
}

// Release puts messages back at the front of their partition, in order.
func TestReleaseKeepsOrder(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	r := newReader(t, pool, ReaderConfig{Range: fullRange()})
	for i := range 12 {
		_, err := w.Publish(ctx, "order", []ports.OutgoingMessage{{Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Key: "k"}})
		require.NoError(t, err)
	}
	seqs := func(l domain.Lease) []int {
		out := make([]int, len(l.Messages))
		for i, m := range l.Messages {
			var p struct{ I int }
			require.NoError(t, json.Unmarshal(m.Payload, &p))
			out[i] = p.I
		}
		return out
	}
	var first domain.Lease
	require.Eventually(t, func() bool {
		var err error
		first, err = r.Lease(ctx, ports.LeaseRequest{Topic: "order", ConsumerID: "c", Max: 5, LeaseDuration: time.Minute})
		require.NoError(t, err)
		if len(first.Messages) > 0 && len(first.Messages) < 5 {
			require.NoError(t, r.Release(ctx, ref(first))) // loaded only partly so far; try again
			return false
		}
		return len(first.Messages) == 5
	}, waitFor, time.Millisecond)
	require.Equal(t, []int{0, 1, 2, 3, 4}, seqs(first))
	second := leaseSome(t, r, "order", "c", 3, time.Minute)
	require.Equal(t, []int{5, 6, 7}, seqs(second))
	require.NoError(t, r.Release(ctx, ref(first)))
	third := leaseSome(t, r, "order", "c", 20, time.Minute)
	require.Equal(t, []int{0, 1, 2, 3, 4, 8, 9, 10, 11}, seqs(third))
	require.Equal(t, 2, third.Messages[0].Deliveries)
	require.Equal(t, 1, third.Messages[5].Deliveries)
}

// Settling with another consumer's id is refused and leaves the lease live.
func TestConsumerMismatch(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	r := newReader(t, pool, ReaderConfig{Range: fullRange()})
	publishMsgs(t, w, "owner", 1, "o")
	l := leaseSome(t, r, "owner", "alice", 1, time.Minute)
	other := ports.LeaseRef{Topic: "owner", ConsumerID: "bob", LeaseID: l.ID}
	require.ErrorIs(t, r.Ack(ctx, other), ports.ErrInvalidArgument)
	require.ErrorIs(t, r.Release(ctx, other), ports.ErrInvalidArgument)
	require.NoError(t, r.Ack(ctx, ref(l)))
	require.Equal(t, 0, countRows(t, pool, "owner"))
}

// A failed DELETE fails the ack with ErrUnavailable and leaves the lease
// live, so the ack can be retried.
func TestAckDeleteFailure(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	r := newReader(t, pool, ReaderConfig{Range: fullRange()})
	publishMsgs(t, w, "delfail", 2, "d")
	l := leaseSome(t, r, "delfail", "c", 2, time.Minute)

	rename := func(from, to string) {
		_, err := pool.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s RENAME TO %s`, from, to))
		require.NoError(t, err)
	}
	rename("queue_messages", "queue_messages_away")
	require.ErrorIs(t, r.Ack(ctx, ref(l)), ports.ErrUnavailable)
	rename("queue_messages_away", "queue_messages")
	require.NoError(t, r.Ack(ctx, ref(l)), "retried ack")
	require.Equal(t, 0, countRows(t, pool, "delfail"))
}

// Concurrent acks share DELETE statements.
func TestAckBatching(t *testing.T) {
	t.Parallel()
	const leases = 40
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	reg := prometheus.NewRegistry()
	r := startReader(t, pool, ReaderConfig{Range: fullRange(), DeleteInterval: 20 * time.Millisecond}, reg)
	publishMsgs(t, w, "batch", leases, "b")
	var held []domain.Lease
	for n := 0; n < leases; {
		l := leaseSome(t, r, "batch", "c", 1, time.Minute)
		held = append(held, l)
		n += len(l.Messages)
	}
	var g errgroup.Group
	for _, l := range held {
		g.Go(func() error { return r.Ack(ctx, ref(l)) })
	}
	require.NoError(t, g.Wait())
	require.Equal(t, 0, countRows(t, pool, "batch"))
	deletes := histogramCount(t, reg, "mqreader_delete_duration_seconds")
	require.Less(t, deletes, uint64(leases))
	t.Logf("%d acks in %d deletes", leases, deletes)
}

// The reader holds at most BufferSize messages per topic.
func TestReaderBufferBound(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	reg := prometheus.NewRegistry()
	r := startReader(t, pool, ReaderConfig{Range: fullRange(), BufferSize: 10, RefillInterval: time.Millisecond}, reg)
	publishMsgs(t, w, "bound", 30, "b")

	var leases []domain.Lease
	n := 0
	require.Eventually(t, func() bool {
		l, err := r.Lease(ctx, ports.LeaseRequest{Topic: "bound", ConsumerID: "c", Max: 100, LeaseDuration: time.Minute})
		require.NoError(t, err)
		if len(l.Messages) > 0 {
			leases = append(leases, l)
		}
		n += len(l.Messages)
		return n == 10
	}, waitFor, time.Millisecond)
	require.Equal(t, 1.0, gaugeValue(t, reg, "mqreader_buffer_utilization_ratio"))
	require.Equal(t, 10.0, gaugeValue(t, reg, "mqreader_buffered_messages"))
	// The backlog is measured in PostgreSQL: all 30 rows, not the 10 in
	// memory, and the oldest is as old as the publish.
	require.Eventually(t, func() bool { return labelled(t, reg, "mqreader_backlog_messages", "bound") == 30 }, waitFor, 10*time.Millisecond)
	require.Greater(t, labelled(t, reg, "mqreader_oldest_message_age_seconds", "bound"), 0.0)
	l, err := r.Lease(ctx, ports.LeaseRequest{Topic: "bound", ConsumerID: "c", Max: 100, LeaseDuration: time.Minute})
	require.NoError(t, err)
	require.Empty(t, l.Messages, "the buffer is full of leased messages")
	require.Equal(t, uuid.Nil, l.ID)
	for _, l := range leases {
		require.NoError(t, r.Ack(ctx, ref(l)))
	}
	rest := drainTopic(t, r, "bound", 20)
	require.Len(t, rest, 20)
}

func TestLeaseValidation(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	r := newReader(t, pool, ReaderConfig{Range: fullRange(), MaxTopics: 2})
	tests := []struct {
		name string
		req  ports.LeaseRequest
		err  error
	}{
		{"max 0", ports.LeaseRequest{Topic: "a", ConsumerID: "c", Max: 0, LeaseDuration: time.Minute}, ports.ErrInvalidArgument},
		{"max too large", ports.LeaseRequest{Topic: "a", ConsumerID: "c", Max: domain.MaxLeaseMessages + 1, LeaseDuration: time.Minute}, ports.ErrInvalidArgument},
		{"below min lease", ports.LeaseRequest{Topic: "a", ConsumerID: "c", Max: 1, LeaseDuration: 100 * time.Millisecond}, ports.ErrInvalidArgument},
		{"over max lease", ports.LeaseRequest{Topic: "a", ConsumerID: "c", Max: 1, LeaseDuration: 2 * time.Hour}, ports.ErrInvalidArgument},
		{"bad topic", ports.LeaseRequest{Topic: "a b", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute}, ports.ErrInvalidArgument},
		{"first topic", ports.LeaseRequest{Topic: "a", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute}, nil},
		{"second topic", ports.LeaseRequest{Topic: "b", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute}, nil},
		{"third topic over MaxTopics", ports.LeaseRequest{Topic: "c", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute}, ports.ErrInvalidArgument},
	}
	// Sequential: the topic cases count topics.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Lease(ctx, tc.req)
			if tc.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.err)
		})
	}
}

func TestReaderConfig(t *testing.T) {
	t.Parallel()
	checkConfig(t, ReaderConfig.withDefaults, DefaultReaderConfig(), map[string]ReaderConfig{
		"bad range":         {Range: &domain.PartitionRange{First: 5, Last: 2}},
		"range past 255":    {Range: &domain.PartitionRange{First: 0, Last: 256}},
		"negative buffer":   {BufferSize: -1},
		"negative interval": {DeleteInterval: -1},
	})
}

// newTestState is a topic state for unit tests of its bookkeeping; no
// goroutine runs.
func newTestState(t *testing.T, rng domain.PartitionRange) *topicState {
	t.Helper()
	cfg, err := ReaderConfig{Range: &rng}.withDefaults()
	require.NoError(t, err)
	m, err := newReaderMetrics(nil, func() float64 { return 0 }, func() float64 { return 0 }, func() float64 { return 0 }, nil)
	require.NoError(t, err)
	r := &Reader{cfg: cfg, metrics: m, logger: discardLogger()}
	return &topicState{
		t: &topic{r: r, name: "unit"}, cfg: cfg, first: rng.First,
		ready: make([][]*message, rng.Len()), held: map[int64]*message{}, leases: map[uuid.UUID]*lease{},
		acked: leasebook.NewRecent[uuid.UUID, struct{}](8), seen: leasebook.NewRecent[int64, int](8),
		tombstones: map[int64]struct{}{},
	}
}

// take is fair across partitions and FIFO within each.
func TestTakeFairness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		sizes []int // ready messages per partition
		n     int
		want  []int // messages taken per partition
	}{
		{"even split", []int{50, 50, 50, 50}, 20, []int{5, 5, 5, 5}},
		{"short partition gives what it has", []int{50, 50, 3}, 21, []int{9, 9, 3}},
		{"one partition", []int{0, 40, 0}, 25, []int{0, 25, 0}},
		{"fewer ready than asked", []int{2, 0, 1}, 10, []int{2, 0, 1}},
		{"one each", []int{5, 5, 5, 5, 5}, 5, []int{1, 1, 1, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestState(t, domain.PartitionRange{First: 10, Last: 10 + len(tc.sizes) - 1})
			id := int64(0)
			for p, n := range tc.sizes {
				for range n {
					id++
					m := &message{id: id, partition: 10 + p}
					s.held[id] = m
					s.ready[p] = append(s.ready[p], m)
					s.readyCount++
				}
			}
			got := s.take(tc.n, math.MaxInt)
			per := make([]int, len(tc.sizes))
			last := map[int]int64{}
			for _, m := range got {
				per[m.partition-10]++
				require.Greater(t, m.id, last[m.partition], "FIFO within partition %d", m.partition)
				last[m.partition] = m.id
			}
			require.Equal(t, tc.want, per)
			total := 0
			for _, q := range s.ready {
				total += len(q)
			}
			require.Equal(t, total, s.readyCount)
		})
	}
}

// Rows deleted while a refill was in flight are not reloaded from its
// (older) result, and the tombstones are cleared with it.
func TestRefillSkipsTombstonesAndHeld(t *testing.T) {
	t.Parallel()
	s := newTestState(t, domain.PartitionRange{First: 0, Last: 3})
	s.held[2] = &message{id: 2, partition: 1}
	s.refilling = true
	s.tombstones[1] = struct{}{}
	rows := []loadedRow{{id: 1, partition: 0}, {id: 2, partition: 1}, {id: 3, partition: 2}, {id: 4, partition: 9}}
	s.refilled(refillResult{rows: rows, limit: 10, maxBytes: math.MaxInt}, time.Now())
	require.False(t, s.refilling)
	require.Empty(t, s.tombstones)
	require.ElementsMatch(t, []int64{2, 3}, slices.Collect(maps.Keys(s.held)), "held ids")
	require.Equal(t, 1, s.readyCount, "only row 3 became ready")
	require.False(t, s.refillMore, "a short result means caught up")
}

// Only live leases stay in the expiry heap: an acked or released lease
// leaves it at once (so it does not pin its payloads until it would have
// expired), and a lease whose delete failed returns to it.
func TestExpiryHeapHoldsLiveLeases(t *testing.T) {
	t.Parallel()
	s := newTestState(t, domain.PartitionRange{First: 0, Last: 1})
	for id := range int64(6) {
		m := &message{id: id + 1, partition: int(id % 2)}
		s.held[m.id] = m
		s.ready[m.partition] = append(s.ready[m.partition], m)
		s.readyCount++
	}
	now := time.Now()
	req := ports.LeaseRequest{Topic: "unit", ConsumerID: "c", Max: 2, LeaseDuration: time.Minute}
	leases := make([]domain.Lease, 3)
	for i := range leases {
		rep := s.lease(req, now)
		require.NoError(t, rep.err)
		leases[i] = rep.lease
	}
	require.Equal(t, 3, s.expiry.Len())
	ackReply := make(chan error, 1)
	waiting, err := s.settle(settleCall{ref: ref(leases[0]), reply: ackReply}, now)
	require.NoError(t, err)
	require.True(t, waiting, "ack waits for its delete")
	waiting, err = s.settle(settleCall{ref: ref(leases[1]), release: true, reply: make(chan error, 1)}, now)
	require.NoError(t, err)
	require.False(t, waiting)
	require.Equal(t, 1, s.expiry.Len(), "acking and released leases left the heap")
	require.Equal(t, 2, s.readyCount, "released messages are ready again")

	// Hand the pending ack to a DELETE that fails, as maybeDelete and its
	// goroutine would.
	batch := s.pendingDel
	s.pendingDel, s.pendingIDs, s.deleting = nil, 0, true
	s.deleted(deleteResult{leases: batch, err: errors.New("connection reset")}, now)
	require.ErrorIs(t, <-ackReply, ports.ErrUnavailable)
	require.Equal(t, 2, s.expiry.Len(), "a lease whose delete failed is live again")
	s.expire(now.Add(2 * time.Minute))
	require.Zero(t, s.expiry.Len())
	require.Empty(t, s.leases)
	require.Len(t, s.held, 2, "expired messages left memory; released ones stay")
}

// A drain does not wait for a lease whose caller gave up while it was being
// granted (the contract suite's AbandonedLeaseGivenBack checks the messages
// come back): a collector stopping mid-Lease used to hold the reader's drain
// until that lease expired.
func TestDrainAfterAbandonedLeases(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	r := newReader(t, pool, ReaderConfig{Range: fullRange(), DrainTimeout: time.Hour})
	const total = 20
	publishMsgs(t, w, "abandon", total, "a")
	require.NoError(t, r.Release(ctx, ref(leaseSome(t, r, "abandon", "c", total, 5*time.Minute))))
	acked := 0
	for i := range 2000 {
		callCtx, cancel := context.WithTimeout(ctx, time.Duration(i%50)*time.Microsecond)
		l, err := r.Lease(callCtx, ports.LeaseRequest{Topic: "abandon", ConsumerID: "c", Max: total, LeaseDuration: 5 * time.Minute})
		cancel()
		if err == nil && len(l.Messages) > 0 {
			// A lease that reached its caller is a delivery, which the
			// delivery limit counts: ack it rather than release it again.
			require.NoError(t, r.Ack(ctx, ref(l)))
			acked += len(l.Messages)
		}
	}
	drainCtx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	require.NoError(t, r.Drain(drainCtx), "no lease is outstanding")
	require.Equal(t, total-acked, countRows(t, pool, "abandon"))
}

// Against PostgreSQL: a released delivery's count and reason land in
// queue_messages (the lease/ack path writes nothing there), and a second
// reader, started after the first stopped, goes on counting from them.
func TestDeliveryCountsPersisted(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	publishMsgs(t, w, "counted", 2, "d")
	r := newReader(t, pool, ReaderConfig{Range: fullRange(), MaxDeliveries: 2})
	l := leaseSome(t, r, "counted", "c", 2, time.Minute)
	require.Len(t, l.Messages, 2)
	rel := ref(l)
	rel.Reason = "store down"
	require.NoError(t, r.Release(ctx, rel))
	recorded := func() int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM queue_messages
WHERE topic = 'counted' AND deliveries = 1 AND last_error = 'store down'`).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return recorded() == 2 }, waitFor, 5*time.Millisecond)
	require.NoError(t, r.Close(ctx))

	r2 := newReader(t, pool, ReaderConfig{Range: fullRange(), MaxDeliveries: 2})
	l2 := leaseSome(t, r2, "counted", "c", 2, time.Minute)
	for _, m := range l2.Messages {
		require.Equal(t, 2, m.Deliveries, "the new reader goes on counting")
	}
	require.NoError(t, r2.Release(ctx, ref(l2)))
	require.Eventually(t, func() bool { return countRows(t, pool, "counted") == 0 }, waitFor, 5*time.Millisecond)
	dead, err := r2.DeadLetters(ctx, "counted", 10)
	require.NoError(t, err)
	require.Len(t, dead, 2)
	for _, d := range dead {
		require.Equal(t, 2, d.Deliveries)
		require.Equal(t, domain.DeadLetterSourceQueue, d.Source)
		require.Contains(t, d.Reason, "store down", "the last reason known survives the restart")
	}
}

// Against PostgreSQL: a refill keeps no more than the buffer's byte room
// (plus the one row a refill always keeps), whatever its row LIMIT, and
// every message still arrives.
func TestReaderBufferBytes(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	const size = 100 << 10
	big := make([]ports.OutgoingMessage, 20)
	for i := range big {
		big[i] = ports.OutgoingMessage{Payload: json.RawMessage(`"` + strings.Repeat("x", size) + `"`), Key: fmt.Sprint(i)}
	}
	_, err := w.Publish(ctx, "bytes", big)
	require.NoError(t, err)
	r := newReader(t, pool, ReaderConfig{Range: fullRange(), BufferBytes: 3 * size, RefillBatch: 100})
	got := 0
	require.Eventually(t, func() bool {
		l := leaseSome(t, r, "bytes", "c", 100, time.Minute)
		_, held := topicHeld(r, "bytes")
		require.LessOrEqual(t, held, int64(4*(size+leaseEntryBytes)), "held past the byte budget by more than one row")
		got += len(l.Messages)
		if len(l.Messages) > 0 {
			require.NoError(t, r.Ack(ctx, ref(l)))
		}
		return got == len(big)
	}, waitFor, time.Millisecond)
}

// Past BacklogCountCap the backlog is the table's estimate scaled to the
// range, never less than the cap.
func TestReaderBacklogEstimate(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	publishMsgs(t, w, "est", 400, "e")
	_, err := pool.Exec(ctx, "ANALYZE queue_messages")
	require.NoError(t, err)
	st, err := pgRows{pool: pool}.stats(ctx, "est", domain.PartitionRange{First: 0, Last: 127}, 10)
	require.NoError(t, err)
	require.True(t, st.estimated)
	require.InDelta(t, 200, st.backlog, 20, "half the partitions, half the table")
	st, err = pgRows{pool: pool}.stats(ctx, "est", *fullRange(), 1000)
	require.NoError(t, err)
	require.False(t, st.estimated)
	require.EqualValues(t, 400, st.backlog)
	require.False(t, st.oldest.IsZero())
	st, err = pgRows{pool: pool}.stats(ctx, "none", *fullRange(), 1000)
	require.NoError(t, err)
	require.Zero(t, st.backlog)
	require.True(t, st.oldest.IsZero())
}

// Against PostgreSQL: one UPDATE may carry a row's count twice (a message
// released again while the previous UPDATE was in flight). UPDATE … FROM
// applies only one of the joined rows, so the batch must hold each row
// once: its highest count and its latest reason, whatever their order.
func TestRecordDeliveriesOfOneRowTwice(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{})
	publishMsgs(t, w, "twice", 2, "t")
	rows, err := pool.Query(ctx, `SELECT id FROM queue_messages WHERE topic = 'twice' ORDER BY id`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Len(t, ids, 2)
	a, b := ids[0], ids[1]
	require.NoError(t, pgRows{pool: pool}.record(ctx, []deliveryMark{
		{id: a, deliveries: 3, text: "attempt 3"}, {id: b, deliveries: 5, text: "attempt 5"},
		{id: a, deliveries: 4, text: "attempt 4"}, {id: b, deliveries: 4}, // given back: one fewer, no reason
	}))
	got := map[int64]string{}
	for _, id := range ids {
		var n int
		var text string
		require.NoError(t, pool.QueryRow(ctx, `SELECT deliveries, coalesce(last_error, '') FROM queue_messages WHERE id = $1`, id).Scan(&n, &text))
		got[id] = fmt.Sprintf("%d %s", n, text)
	}
	require.Equal(t, map[int64]string{a: "4 attempt 4", b: "5 attempt 5"}, got)
}
