package pgqueue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/ratelog/ratelogtest"
	"github.com/gpufleet/telemetry/ports"
)

// The reader's engine (topic owners) over an in-memory rowStore, in virtual
// time: lease expiry, redelivery counts, delete batching and failure, refill
// pacing and drain, each to the exact instant. PostgreSQL's side of the same
// behaviour is tested in reader_test.go against a real server.

// memRows is a rowStore in memory. Its rows are an immutable map replaced
// on every delete (copy-on-write through an atomic pointer), so it needs no
// lock; the counters let tests see how the engine used it.
type memRows struct {
	rows      atomic.Pointer[map[int64]loadedRow]
	dead      atomic.Pointer[[]domain.DeadLetter]
	loads     atomic.Int64
	deletes   atomic.Int64
	failNext  atomic.Int64 // deletes still to fail
	failLoads atomic.Bool  // every load fails while set
	lastBatch atomic.Int64 // ids in the last delete
}

func newMemRows(topic string, n int) *memRows {
	m := &memRows{}
	rows := make(map[int64]loadedRow, n)
	for i := range n {
		id := int64(i + 1)
		rows[id] = loadedRow{id: id, uuid: domain.MessageID(topic, fmt.Sprint(id)),
			payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, id)), partition: int16(i % domain.NumPartitions),
			createdAt: time.Now()}
	}
	m.rows.Store(&rows)
	m.dead.Store(&[]domain.DeadLetter{})
	return m
}

func (m *memRows) load(ctx context.Context, _ string, rng domain.PartitionRange, from int64, held []int64, limit, maxBytes int) ([]loadedRow, error) {
	m.loads.Add(1)
	if m.failLoads.Load() {
		return nil, errors.New("connection refused")
	}
	skip := make(map[int64]bool, len(held))
	for _, id := range held {
		skip[id] = true
	}
	rows := *m.rows.Load()
	ids := slices.Sorted(maps.Keys(rows))
	var out []loadedRow
	size := 0
	for _, id := range ids {
		r := rows[id]
		if id >= from && !skip[id] && rng.Contains(int(r.partition)) && len(out) < limit {
			if size += loadedBytes(r); len(out) > 0 && size > maxBytes {
				break
			}
			out = append(out, r)
		}
	}
	return out, ctx.Err()
}

func (m *memRows) stats(_ context.Context, _ string, rng domain.PartitionRange, _ int) (rangeStats, error) {
	var st rangeStats
	for _, r := range *m.rows.Load() {
		if rng.Contains(int(r.partition)) {
			st.backlog++
			if st.oldest.IsZero() || r.createdAt.Before(st.oldest) {
				st.oldest = r.createdAt
			}
		}
	}
	return st, nil
}

func (m *memRows) delete(_ context.Context, ids []int64) error {
	m.deletes.Add(1)
	m.lastBatch.Store(int64(len(ids)))
	if m.failNext.Add(-1) >= 0 {
		return errors.New("connection reset")
	}
	for {
		old := m.rows.Load()
		next := maps.Clone(*old)
		for _, id := range ids {
			delete(next, id)
		}
		if m.rows.CompareAndSwap(old, &next) {
			return nil
		}
	}
}

func (m *memRows) ping(context.Context) error { return nil }

func (m *memRows) record(_ context.Context, marks []deliveryMark) error {
	m.update(func(rows map[int64]loadedRow) {
		for _, k := range marks {
			if r, ok := rows[k.id]; ok {
				r.deliveries, r.lastError = max(r.deliveries, k.deliveries), cmp.Or(k.text, r.lastError)
				rows[k.id] = r
			}
		}
	})
	return nil
}

func (m *memRows) deadLetter(_ context.Context, marks []deliveryMark) error {
	var moved []domain.DeadLetter
	m.update(func(rows map[int64]loadedRow) {
		moved = moved[:0]
		for _, k := range marks {
			if r, ok := rows[k.id]; ok {
				delete(rows, k.id)
				moved = append(moved, domain.DeadLetter{MsgUUID: r.uuid, Payload: r.payload, Reason: k.text,
					Deliveries: k.deliveries, Source: domain.DeadLetterSourceQueue})
			}
		}
	})
	for {
		old := m.dead.Load()
		next := append(slices.Clone(*old), moved...)
		if m.dead.CompareAndSwap(old, &next) {
			return nil
		}
	}
}

func (m *memRows) deadLetters(context.Context, string, int) ([]domain.DeadLetter, error) {
	return *m.dead.Load(), nil
}

// update applies fn to a copy of the rows and installs it.
func (m *memRows) update(fn func(map[int64]loadedRow)) {
	for {
		old := m.rows.Load()
		next := maps.Clone(*old)
		fn(next)
		if m.rows.CompareAndSwap(old, &next) {
			return
		}
	}
}

func (m *memRows) count() int { return len(*m.rows.Load()) }

// engine starts a reader over rows; tests must run inside a synctest bubble.
func engine(t *testing.T, rows rowStore, cfg ReaderConfig) *Reader {
	t.Helper()
	if cfg.Range == nil {
		cfg.Range = fullRange()
	}
	r, err := newReaderOn(rows, cfg, discardLogger(), nil)
	require.NoError(t, err)
	require.NoError(t, r.Start(t.Context()))
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

// leaseWhenReady leases until a lease has messages: the first Lease of a
// topic starts it, and its first refill runs in the background.
func leaseWhenReady(t *testing.T, r *Reader, max int, d time.Duration) domain.Lease {
	t.Helper()
	for range 10 {
		l, err := r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: max, LeaseDuration: d})
		require.NoError(t, err)
		if len(l.Messages) > 0 {
			return l
		}
		time.Sleep(r.cfg.RefillInterval)
		synctest.Wait()
	}
	t.Fatal("no messages became ready")
	return domain.Lease{}
}

func TestEngineExpiryRedelivers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newMemRows("t", 3)
		r := engine(t, rows, ReaderConfig{Lease: domain.LeaseLimits{MaxDuration: time.Hour},
			// Few refills in the virtual hour: the expiry must bring the rows back by itself.
			RefillInterval: 20 * time.Minute, FullRefillInterval: 20 * time.Minute})
		first := leaseWhenReady(t, r, 10, time.Hour)
		require.Len(t, first.Messages, 3)

		time.Sleep(time.Hour - time.Nanosecond)
		synctest.Wait()
		l, err := r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 10, LeaseDuration: time.Minute})
		require.NoError(t, err)
		require.Empty(t, l.Messages, "nothing is redelivered a nanosecond before the expiry")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		require.ErrorIs(t, r.Ack(t.Context(), ref(first)), ports.ErrLeaseExpired, "an ack at the expiry is too late")
		again := leaseWhenReady(t, r, 10, time.Minute)
		require.ElementsMatch(t, ids(first.Messages), ids(again.Messages))
		for _, m := range again.Messages {
			require.Equal(t, 2, m.Deliveries, "the reader remembers the first delivery")
		}
		require.NoError(t, r.Ack(t.Context(), ref(again)))
		require.Zero(t, rows.count(), "acked rows are deleted")
	})
}

// The rows of an expired lease are announced (ADR 0016) and loaded again
// as soon as a refill may start: at the expiry, or FastRefillInterval after
// the last refill when that is later. Not at the next poll (an hour here),
// nor at a tick after that: the owner wakes when the refill comes due.
func TestEngineExpiredRowsReloadedWhenDue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newMemRows("t", 2)
		r := engine(t, rows, ReaderConfig{RefillInterval: time.Hour, FullRefillInterval: time.Hour,
			FastRefillInterval: 10 * time.Millisecond, MinLease: time.Millisecond})
		a := leaseWhenReady(t, r, 1, time.Second)
		time.Sleep(3 * time.Millisecond)
		b, err := r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: time.Second})
		require.NoError(t, err)
		require.Len(t, b.Messages, 1)
		synctest.Wait()
		loads := rows.loads.Load()

		time.Sleep(time.Second - 3*time.Millisecond)
		synctest.Wait()
		require.Equal(t, loads+1, rows.loads.Load(), "a's rows loaded at its expiry")
		time.Sleep(3 * time.Millisecond) // b expires, 3 ms after that refill
		synctest.Wait()
		require.Equal(t, loads+1, rows.loads.Load(), "no refill sooner than FastRefillInterval after the last")
		time.Sleep(7 * time.Millisecond)
		synctest.Wait()
		require.Equal(t, loads+2, rows.loads.Load(), "b's rows loaded FastRefillInterval after the last refill")
		l, err := r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 10, LeaseDuration: time.Minute})
		require.NoError(t, err)
		require.ElementsMatch(t, append(ids(a.Messages), ids(b.Messages)...), ids(l.Messages))
	})
}

// Acks within DeleteInterval share one DELETE, and none returns before it
// commits.
func TestEngineBatchesDeletes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newMemRows("t", 30)
		r := engine(t, rows, ReaderConfig{DeleteInterval: time.Second})
		var leases []domain.Lease
		for len(leases) < 3 {
			leases = append(leases, leaseWhenReady(t, r, 10, time.Minute))
		}
		start := time.Now()
		acked := make(chan time.Duration, len(leases))
		for _, l := range leases {
			go func() {
				if err := r.Ack(context.Background(), ref(l)); err == nil {
					acked <- time.Since(start)
				}
			}()
		}
		synctest.Wait()
		require.Zero(t, rows.deletes.Load(), "no DELETE before DeleteInterval")
		require.Empty(t, acked, "no ack answered before its DELETE")
		for range leases {
			require.Equal(t, time.Second, <-acked)
		}
		require.EqualValues(t, 1, rows.deletes.Load(), "one DELETE for the three acks")
		require.EqualValues(t, 30, rows.lastBatch.Load())
		require.Zero(t, rows.count())
	})
}

// A failed DELETE fails the ack with ErrUnavailable and leaves the lease
// live, so the ack can be retried; nothing is redelivered meanwhile.
func TestEngineDeleteFailureKeepsLease(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newMemRows("t", 5)
		r := engine(t, rows, ReaderConfig{})
		l := leaseWhenReady(t, r, 10, time.Minute)
		rows.failNext.Store(1)
		require.ErrorIs(t, r.Ack(t.Context(), ref(l)), ports.ErrUnavailable)
		require.Equal(t, 5, rows.count())

		time.Sleep(30 * time.Second)
		synctest.Wait()
		other, err := r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 10, LeaseDuration: time.Minute})
		require.NoError(t, err)
		require.Empty(t, other.Messages, "the lease is still live: nothing to redeliver")
		require.NoError(t, r.Ack(t.Context(), ref(l)), "the retried ack")
		require.Zero(t, rows.count())
	})
}

// An idle topic polls once per RefillInterval, not in a busy loop; a
// failing database is asked at the same pace: a failed refill counts as one
// for the pacing, a failed full refill as a full one.
func TestEngineRefillPacing(t *testing.T) {
	t.Parallel()
	for _, failing := range []bool{false, true} {
		t.Run(fmt.Sprintf("failing=%t", failing), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				rows := newMemRows("t", 0)
				rows.failLoads.Store(failing)
				r := engine(t, rows, ReaderConfig{RefillInterval: 100 * time.Millisecond})
				_, err := r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
				require.NoError(t, err)
				synctest.Wait()
				before := rows.loads.Load()
				time.Sleep(10 * time.Second)
				synctest.Wait()
				require.InDelta(t, 100, rows.loads.Load()-before, 1, "loads in 10 s at one per 100 ms")
			})
		})
	}
}

// A failing database fails a refill every RefillInterval; the log gets the
// first failure and then one line per ratelog.Interval, each saying how many
// it stands for, and the metric counts them all.
func TestEngineRefillFailuresLogOncePerInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newMemRows("t", 0)
		rows.failLoads.Store(true)
		logs := ratelogtest.NewSink()
		reg := prometheus.NewRegistry()
		r, err := newReaderOn(rows, ReaderConfig{Range: fullRange(), RefillInterval: 100 * time.Millisecond}, logs.Logger(), reg)
		require.NoError(t, err)
		require.NoError(t, r.Start(t.Context()))
		t.Cleanup(func() { _ = r.Close(context.Background()) })
		_, err = r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
		require.NoError(t, err)
		synctest.Wait()

		time.Sleep(25 * time.Second)
		synctest.Wait()
		skipped := ratelogtest.Skipped(logs.Drain(), "refill failed")
		require.Len(t, skipped, 3, "at 0 s, 10 s and 20 s")
		require.Equal(t, int64(0), skipped[0])
		require.Equal(t, int64(99), skipped[1], "the 100 ms refills between 0 s and 10 s")
		require.Equal(t, int64(99), skipped[2])
		require.Equal(t, float64(rows.loads.Load()), testutil.ToFloat64(r.metrics.refillFails), "every failure is counted")
	})
}

// deafRows is memRows whose subscription to notifications fails at once,
// every time (a database that refuses the listening connection).
type deafRows struct {
	*memRows
	attempts atomic.Int64
}

func (d *deafRows) listen(context.Context, func(), func(string, int64)) error {
	d.attempts.Add(1)
	return errors.New("connection refused")
}

// A subscription that keeps failing is retried with backoff; the reader
// polls meanwhile (mqreader_listening 0), every failure is counted, and the
// log gets the first and then one line per ratelog.Interval.
func TestEngineListenFailuresLogOncePerInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := &deafRows{memRows: newMemRows("t", 0)}
		logs := ratelogtest.NewSink()
		reg := prometheus.NewRegistry()
		r, err := newReaderOn(rows, ReaderConfig{Range: fullRange()}, logs.Logger(), reg)
		require.NoError(t, err)
		require.NoError(t, r.Start(t.Context()))
		t.Cleanup(func() { _ = r.Close(context.Background()) })

		time.Sleep(65 * time.Second)
		synctest.Wait()
		attempts := rows.attempts.Load()
		skipped := ratelogtest.Skipped(logs.Drain(), "listening for new rows failed; polling faster until it is back")
		require.GreaterOrEqual(t, attempts, int64(15), "retried with backoff capped at 5 s")
		require.NotEmpty(t, skipped)
		require.LessOrEqual(t, len(skipped), 7, "at most the first and one per 10 s in 65 s")
		require.Zero(t, skipped[0], "the first failure is logged at once")
		var stood int64
		for _, n := range skipped {
			stood += n + 1
		}
		require.LessOrEqual(t, stood, attempts)
		require.Greater(t, stood, int64(len(skipped)), "later lines say how many failures they stand for")
		require.Equal(t, float64(attempts), testutil.ToFloat64(r.metrics.listenFails), "every failure is counted")
		require.Zero(t, r.listeningRatio(), "mqreader_listening while it polls")
	})
}

// Drain refuses new leases at once, waits for the outstanding one exactly
// as long as DrainTimeout, then reports it abandoned; its rows stay.
func TestEngineDrainWaitsThenAbandons(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newMemRows("t", 4)
		r := engine(t, rows, ReaderConfig{DrainTimeout: 30 * time.Second})
		leaseWhenReady(t, r, 10, 5*time.Minute)
		start := time.Now()
		err := r.Drain(t.Context())
		require.ErrorContains(t, err, "1 leases were still outstanding")
		require.Equal(t, 30*time.Second, time.Since(start))
		require.Equal(t, 4, rows.count(), "unacked rows stay for the next owner")
		_, err = r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
		require.ErrorIs(t, err, ports.ErrClosed)
	})
}

// Drain returns as soon as the last outstanding lease is acked.
func TestEngineDrainEndsWithLastAck(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newMemRows("t", 4)
		r := engine(t, rows, ReaderConfig{DrainTimeout: time.Hour})
		l := leaseWhenReady(t, r, 10, 5*time.Minute)
		drained := make(chan error, 1)
		start := time.Now()
		go func() { drained <- r.Drain(context.Background()) }()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		require.Empty(t, drained, "still waiting for the lease")
		require.NoError(t, r.Ack(t.Context(), ref(l)), "acks still work while draining")
		require.NoError(t, <-drained)
		require.Equal(t, 5*time.Second, time.Since(start))
		require.Zero(t, rows.count())
	})
}

func ids(msgs []domain.Message) []uuid.UUID {
	out := make([]uuid.UUID, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// A reader and a writer start nothing until Start: calls fail fast, and
// stopping one that never started returns at once.
func TestStartsNothingUntilStart(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r, err := newReaderOn(newMemRows("t", 1), ReaderConfig{Range: fullRange()}, discardLogger(), nil)
		require.NoError(t, err)
		_, err = r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
		require.ErrorIs(t, err, ports.ErrClosed)
		require.ErrorContains(t, err, "not started")
		require.NoError(t, r.Drain(t.Context()))
		require.ErrorIs(t, r.Start(t.Context()), ports.ErrClosed, "Start after Drain")

		pool, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none") // connects lazily: never here
		require.NoError(t, err)
		defer pool.Close()
		w, err := NewWriter(pool, WriterConfig{}, discardLogger(), nil)
		require.NoError(t, err)
		_, err = w.Publish(t.Context(), "t", []ports.OutgoingMessage{{Payload: json.RawMessage(`1`)}})
		require.ErrorIs(t, err, ports.ErrClosed)
		require.NoError(t, w.Close(t.Context()))
		synctest.Wait() // nothing was started, so nothing is left running
	})
}

// The delivery limit on the engine, in virtual time: deliveries ending
// without an ack (released with a reason, or expired) are recorded in the
// rows; the third (MaxDeliveries) moves the message to the dead letters with
// its count and last reason instead of offering it again; redeliveries are
// counted at the lease.
func TestEngineDeliveryLimit(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newMemRows("t", 1)
		r := engine(t, rows, ReaderConfig{MaxDeliveries: 3})
		row := func() loadedRow {
			for _, l := range *rows.rows.Load() {
				return l
			}
			return loadedRow{}
		}

		first := leaseWhenReady(t, r, 10, time.Minute)
		require.Equal(t, 1, first.Messages[0].Deliveries)
		rel := ref(first)
		rel.Reason = "attempt 1 failed"
		require.NoError(t, r.Release(t.Context(), rel))
		synctest.Wait()
		require.Equal(t, 1, row().deliveries, "a released delivery is recorded")
		require.Equal(t, "attempt 1 failed", row().lastError)

		second := leaseWhenReady(t, r, 10, time.Minute)
		require.Equal(t, 2, second.Messages[0].Deliveries)
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Equal(t, 2, row().deliveries, "an expired delivery is recorded")
		require.Equal(t, "attempt 1 failed", row().lastError, "an expiry keeps the last reason")

		third := leaseWhenReady(t, r, 10, time.Minute)
		require.Equal(t, 3, third.Messages[0].Deliveries)
		rel = ref(third)
		rel.Reason = "attempt 3 failed"
		require.NoError(t, r.Release(t.Context(), rel))
		synctest.Wait()
		require.Zero(t, rows.count(), "the message left the queue")
		dead, err := r.DeadLetters(t.Context(), "t", 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		require.Equal(t, first.Messages[0].ID, dead[0].MsgUUID)
		require.Equal(t, 3, dead[0].Deliveries)
		require.Contains(t, dead[0].Reason, "delivered 3 times")
		require.Contains(t, dead[0].Reason, "attempt 3 failed")

		time.Sleep(time.Second)
		synctest.Wait()
		l, err := r.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 10, LeaseDuration: time.Minute})
		require.NoError(t, err)
		require.Empty(t, l.Messages, "never offered again")
		require.Equal(t, 2.0, testutil.ToFloat64(r.metrics.redelivered))
		require.Equal(t, 1.0, testutil.ToFloat64(r.metrics.deadLettered))
	})
}

// A row whose recorded count already reached the limit (its last delivery
// ended before a restart) is moved by the refill that loads it, never
// offered; its neighbours are.
func TestEngineRefillDeadLettersExhaustedRows(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newMemRows("t", 2)
		require.NoError(t, rows.record(t.Context(), []deliveryMark{{id: 1, deliveries: 3, text: "before the restart"}}))
		r := engine(t, rows, ReaderConfig{MaxDeliveries: 3})
		l := leaseWhenReady(t, r, 10, time.Minute)
		require.Len(t, l.Messages, 1)
		require.Equal(t, 1, l.Messages[0].Deliveries)
		synctest.Wait()
		dead, err := r.DeadLetters(t.Context(), "t", 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		require.Equal(t, 3, dead[0].Deliveries)
		require.Contains(t, dead[0].Reason, "before the restart")
		require.NoError(t, r.Ack(t.Context(), ref(l)))
		require.Zero(t, rows.count())
	})
}

// newBigRows is a memRows of n rows whose payloads are size bytes each.
func newBigRows(n, size int) *memRows {
	m := newMemRows("t", n)
	rows := *m.rows.Load()
	for id, r := range rows {
		r.payload = json.RawMessage(`"` + strings.Repeat("x", size-2) + `"`)
		rows[id] = r
	}
	return m
}

// The buffer is bounded by bytes as well as by count: with room for 100
// messages but bytes for 4, a topic holds at most 5 (a refill always keeps
// its first row), a lease carries no more than LeaseMaxBytes, and the
// utilization gauge reads the byte ratio.
func TestEngineByteBudgets(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const size = 100 << 10
		const unit = size + leaseEntryBytes
		rows := newBigRows(50, size)
		r := engine(t, rows, ReaderConfig{BufferSize: 100, BufferBytes: 4*unit + 10, LeaseMaxBytes: 3*unit - 1,
			RefillInterval: time.Millisecond})
		first := leaseWhenReady(t, r, 100, time.Minute)
		require.Len(t, first.Messages, 2, "a lease stops before LeaseMaxBytes")
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		held, heldBytes := topicHeld(r, "t")
		require.Equal(t, 5, held, "4 within the byte budget, then one more")
		require.LessOrEqual(t, heldBytes, r.cfg.BufferBytes+unit, "past the budget by more than one message")
		require.GreaterOrEqual(t, r.utilization(), 1.0, "the byte ratio drives utilization when bytes fill first")

		got := len(first.Messages)
		require.NoError(t, r.Ack(t.Context(), ref(first)))
		for got < 50 {
			l := leaseWhenReady(t, r, 100, time.Minute)
			require.LessOrEqual(t, len(l.Messages), 2)
			got += len(l.Messages)
			require.NoError(t, r.Ack(t.Context(), ref(l)))
			_, b := topicHeld(r, "t")
			require.LessOrEqual(t, b, r.cfg.BufferBytes+unit)
		}
		require.Zero(t, rows.count(), "every row delivered and acked")
	})
}

// A message larger than LeaseMaxBytes still goes out, alone.
func TestEngineLeaseCarriesOneOversizedMessage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rows := newBigRows(3, 4096)
		r := engine(t, rows, ReaderConfig{LeaseMaxBytes: 1000})
		l := leaseWhenReady(t, r, 10, time.Minute)
		require.Len(t, l.Messages, 1)
	})
}

// The stats loop measures the topic's rows in the range, not only those in
// memory, and the oldest one's age.
func TestEngineStats(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		created := time.Now()
		rows := newMemRows("t", 40)
		reg := prometheus.NewRegistry()
		r, err := newReaderOn(rows, ReaderConfig{Range: fullRange(), BufferSize: 10, StatsInterval: 5 * time.Second}, discardLogger(), reg)
		require.NoError(t, err)
		require.NoError(t, r.Start(t.Context()))
		t.Cleanup(func() { _ = r.Close(context.Background()) })
		l := leaseWhenReady(t, r, 5, 5*time.Minute)
		time.Sleep(statsTick)
		synctest.Wait()
		require.Equal(t, 40.0, labelled(t, reg, "mqreader_backlog_messages", "t"), "every row of the range, not the 10 in memory")
		require.Equal(t, 10.0, gaugeValue(t, reg, "mqreader_buffered_messages"))
		time.Sleep(time.Minute)
		synctest.Wait()
		age := labelled(t, reg, "mqreader_oldest_message_age_seconds", "t")
		require.InDelta(t, time.Since(created).Seconds(), age, 1)
		require.NoError(t, r.Ack(t.Context(), ref(l)))
		time.Sleep(6 * time.Second)
		synctest.Wait()
		require.Equal(t, 35.0, labelled(t, reg, "mqreader_backlog_messages", "t"))
	})
}

// topicHeld reads a topic's in-memory count and bytes.
func topicHeld(r *Reader, name string) (int, int64) {
	t := (*r.topics.Load())[name]
	return int(t.held.Load()), t.heldBytes.Load()
}

// labelled reads the gauge name{topic=topic}.
func labelled(t *testing.T, reg *prometheus.Registry, name, topic string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "topic" && lp.GetValue() == topic {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	require.FailNow(t, "no such series", "%s{topic=%q}", name, topic)
	return 0
}
