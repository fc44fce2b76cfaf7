package pgqueue

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// A waiting lease is answered by the writer's notification, not by polling:
// the reader here polls once an hour while it listens, so only the NOTIFY of
// the publish's commit can bring the message within the wait; and after its
// listening connection is killed, it listens again on a new one.
func TestWaitingLeaseWokenByNotify(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	w := newWriter(t, pool, WriterConfig{})
	r := newReader(t, pool, ReaderConfig{Range: fullRange(), RefillInterval: time.Hour})
	ctx := t.Context()
	req := ports.LeaseRequest{Topic: "notified", ConsumerID: "c", Max: 10, LeaseDuration: time.Minute, Wait: domain.MaxLeaseWait}

	// The topic's owner starts (and runs its first refill) on the first
	// lease; the listener must be live before the publish it is to hear.
	first, err := r.Lease(ctx, ports.LeaseRequest{Topic: req.Topic, ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
	require.NoError(t, err)
	require.Empty(t, first.Messages)
	require.Eventually(t, r.listening.Load, 10*time.Second, 5*time.Millisecond, "listener never subscribed")

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
		_, err := w.Publish(ctx, req.Topic, msgs(1, "a"))
		require.NoError(t, err)
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
	leaseAfter(func() {
		_, err := w.Publish(ctx, req.Topic, msgs(1, "b"))
		require.NoError(t, err)
	})
}
