package pgqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/ratelog/ratelogtest"
	"github.com/gpufleet/telemetry/ports"
)

func TestWriterStoresRows(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	w := newWriter(t, pool, WriterConfig{})
	ctx := context.Background()
	res, err := w.Publish(ctx, "rows", []ports.OutgoingMessage{
		{Payload: json.RawMessage(`{"gpu_uuid":"GPU-1","v":1}`), IdempotencyKey: "k1"},
		{Payload: json.RawMessage(`{"v":2}`), Key: "GPU-2"},
	})
	require.NoError(t, err)
	require.Equal(t, ports.PublishResult{Accepted: 2}, res)

	var part int
	require.NoError(t, pool.QueryRow(ctx, `SELECT partition_key FROM queue_messages WHERE msg_uuid = $1`,
		domain.MessageID("rows", "k1")).Scan(&part))
	require.Equal(t, domain.PartitionOf("GPU-1"), part, "partition of the idempotent message")
	require.NoError(t, pool.QueryRow(ctx, `SELECT partition_key FROM queue_messages WHERE payload->>'v' = '2'`).Scan(&part))
	require.Equal(t, domain.PartitionOf("GPU-2"), part, "partition of the keyed message")
}

// Duplicates within one publish, across publishes, and across concurrent
// publishes sharing a flush: exactly one copy is stored and accepted.
func TestWriterDuplicates(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	// A long interval and a batch of 20 make the 20 concurrent publishes
	// below share flushes.
	w := newWriter(t, pool, WriterConfig{MaxBatch: 20, FlushInterval: time.Minute, Flushers: 1})
	ctx := context.Background()
	one := func(key string) []ports.OutgoingMessage {
		return []ports.OutgoingMessage{{Payload: json.RawMessage(`{"k":"` + key + `"}`), IdempotencyKey: key}}
	}

	var g errgroup.Group
	results := make([]ports.PublishResult, 20)
	for i := range results {
		g.Go(func() error {
			var err error
			results[i], err = w.Publish(ctx, "dups", one("same"))
			return err
		})
	}
	require.NoError(t, g.Wait())
	total := ports.PublishResult{}
	for _, r := range results {
		total.Accepted += r.Accepted
		total.Duplicates += r.Duplicates
	}
	require.Equal(t, ports.PublishResult{Accepted: 1, Duplicates: 19}, total)
	require.Less(t, w.flushes.Load(), int64(20), "the concurrent publishes shared flushes")

	w2 := newWriter(t, pool, WriterConfig{FlushInterval: 0})
	res, err := w2.Publish(ctx, "dups", append(one("a"), append(one("a"), one("same")...)...))
	require.NoError(t, err)
	require.Equal(t, ports.PublishResult{Accepted: 1, Duplicates: 2}, res)
	require.Equal(t, 2, countRows(t, pool, "dups"))
}

// With the table locked, flushes cannot commit: the 10-message buffer fills,
// then every publish that does not fit fails at once and stores nothing, and
// a publish that fits still succeeds.
func TestWriterBackpressure(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	w := startWriter(t, pool, WriterConfig{BufferSize: 10, FlushInterval: 0}, reg)

	lock := lockQueueTable(t, pool)

	var g errgroup.Group
	publish := func(prefix string, n int) func() error {
		return func() error {
			res, err := w.Publish(ctx, "bp", msgs(n, prefix))
			if err == nil && res.Accepted != n {
				err = fmt.Errorf("%s: accepted %d of %d", prefix, res.Accepted, n)
			}
			return err
		}
	}
	g.Go(publish("a", 4))
	g.Go(publish("b", 3))
	require.Eventually(t, func() bool { return w.Utilization() == 0.7 }, waitFor, time.Millisecond)

	tests := []struct {
		name string
		n    int
	}{
		{"one more than the room", 4},
		{"far more than the room", 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.Publish(ctx, "bp", msgs(tc.n, "rejected-"+tc.name))
			require.ErrorIs(t, err, ports.ErrBackpressure)
		})
	}
	g.Go(publish("c", 3)) // fits exactly
	require.Eventually(t, func() bool { return w.Utilization() == 1 }, waitFor, time.Millisecond)
	_, err := w.Publish(ctx, "bp", msgs(1, "rejected-full"))
	require.ErrorIs(t, err, ports.ErrBackpressure)
	require.Equal(t, 1.0, gaugeValue(t, reg, "mqwriter_buffer_utilization_ratio"))

	require.NoError(t, lock.Rollback(ctx))
	require.NoError(t, g.Wait())
	require.Equal(t, 10, countRows(t, pool, "bp"), "only the accepted publishes are stored")
	require.Equal(t, 0.0, w.Utilization())
	require.Equal(t, 3.0, testutil.ToFloat64(w.metrics.rejected.WithLabelValues(reasonBackpressure)))
	require.Equal(t, 10.0, testutil.ToFloat64(w.metrics.published))
}

// 200 concurrent single-message publishes share far fewer transactions.
func TestWriterGroupCommit(t *testing.T) {
	t.Parallel()
	const publishers = 200
	pool := newPool(t)
	reg := prometheus.NewRegistry()
	w := startWriter(t, pool, DefaultWriterConfig(), reg)

	start := make(chan struct{})
	var g errgroup.Group
	for i := range publishers {
		g.Go(func() error {
			<-start
			_, err := w.Publish(context.Background(), "gc", msgs(1, fmt.Sprintf("p%d", i)))
			return err
		})
	}
	close(start)
	require.NoError(t, g.Wait())
	require.Equal(t, publishers, countRows(t, pool, "gc"))
	flushes := w.flushes.Load()
	require.Less(t, flushes, int64(publishers), "flush transactions for %d publishes", publishers)
	require.Equal(t, uint64(flushes), histogramCount(t, reg, "mqwriter_flush_batch_messages"))
	t.Logf("%d publishes in %d flushes", publishers, flushes)
}

// A flush PostgreSQL fails answers every publisher with ErrUnavailable,
// acknowledges nothing, and frees the buffer.
func TestWriterFlushFailure(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w := newWriter(t, pool, WriterConfig{BufferSize: 100})
	_, err := pool.Exec(ctx, `ALTER TABLE queue_messages RENAME TO queue_messages_gone`)
	require.NoError(t, err)

	var g errgroup.Group
	for i := range 5 {
		g.Go(func() error {
			_, err := w.Publish(ctx, "fail", msgs(3, fmt.Sprintf("f%d", i)))
			if !errors.Is(err, ports.ErrUnavailable) {
				return fmt.Errorf("publish %d: want ErrUnavailable, got %v", i, err)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	require.Equal(t, 0.0, w.Utilization(), "buffer room released")

	_, err = pool.Exec(ctx, `ALTER TABLE queue_messages_gone RENAME TO queue_messages`)
	require.NoError(t, err)
	require.Equal(t, 0, countRows(t, pool, "fail"), "nothing stored")
	res, err := w.Publish(ctx, "fail", msgs(3, "after"))
	require.NoError(t, err)
	require.Equal(t, 3, res.Accepted)
}

// A database that fails every flush is logged once per ratelog.Interval,
// not once per flush; every failure is still counted.
func TestWriterFlushFailuresLogOncePerInterval(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	logs := ratelogtest.NewSink()
	reg := prometheus.NewRegistry()
	w, err := NewWriter(pool, WriterConfig{}, logs.Logger(), reg)
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	_, err = pool.Exec(ctx, `ALTER TABLE queue_messages RENAME TO queue_messages_gone`)
	require.NoError(t, err)

	const publishes = 20
	for i := range publishes {
		_, err := w.Publish(ctx, "fail", msgs(1, fmt.Sprintf("f%d", i)))
		require.ErrorIs(t, err, ports.ErrUnavailable, "publish %d", i)
	}
	require.Equal(t, []int64{0}, ratelogtest.Skipped(logs.Drain(), "flush failed"),
		"%d failed flushes within the interval are one line", publishes)
	require.Equal(t, float64(publishes), testutil.ToFloat64(w.metrics.rejected.WithLabelValues(reasonUnavailable)),
		"every failure is counted")
}

// A payload that passes validation but that jsonb refuses fails only its
// own publish, not the others sharing its flush.
func TestWriterDataErrorIsolated(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	// MaxBatch 2 with a long interval: the two publishes share one flush.
	w := newWriter(t, pool, WriterConfig{MaxBatch: 2, FlushInterval: time.Minute, Flushers: 1})
	bad := []ports.OutgoingMessage{{Payload: json.RawMessage(`{"v":1e1000000}`)}}

	var g errgroup.Group
	var badErr error
	g.Go(func() error {
		_, badErr = w.Publish(ctx, "data", bad)
		return nil
	})
	g.Go(func() error {
		res, err := w.Publish(ctx, "data", msgs(1, "good"))
		if err == nil && res.Accepted != 1 {
			err = fmt.Errorf("accepted %d", res.Accepted)
		}
		return err
	})
	require.NoError(t, g.Wait())
	require.ErrorIs(t, badErr, ports.ErrInvalidArgument)
	require.Equal(t, 1, countRows(t, pool, "data"))
	require.Equal(t, int64(3), w.flushes.Load(), "one shared flush, then one per publish")
}

// Close commits what is buffered, then refuses publishes.
func TestWriterClose(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w, err := NewWriter(pool, WriterConfig{FlushInterval: time.Hour, MaxBatch: 1000}, nil, nil)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))

	var g errgroup.Group
	for i := range 10 {
		g.Go(func() error {
			_, err := w.Publish(ctx, "close", msgs(2, fmt.Sprintf("c%d", i)))
			return err
		})
	}
	// The hour-long interval holds the publishes in run until Close flushes
	// them. (A publish still on its way to run when Close starts fails with
	// ErrClosed instead.)
	require.Eventually(t, func() bool { return w.gathered.Load() == 20 }, waitFor, time.Millisecond)
	require.NoError(t, w.Close(ctx))
	require.NoError(t, g.Wait())
	require.Equal(t, 20, countRows(t, pool, "close"))
	_, err = w.Publish(ctx, "close", msgs(1, "late"))
	require.ErrorIs(t, err, ports.ErrClosed)
	require.NoError(t, w.Close(ctx), "second close")
}

// Close with an expired context cancels the stuck flush: its publisher gets
// ErrUnavailable, and Close still waits for the goroutines.
func TestWriterCloseTimeout(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	w, err := NewWriter(pool, WriterConfig{}, nil, nil)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	lockQueueTable(t, pool) // held to the end: the flush cannot commit

	errc := make(chan error, 1)
	go func() {
		_, err := w.Publish(ctx, "stuck", msgs(1, "s"))
		errc <- err
	}()
	// The flush has started and waits for the lock.
	require.Eventually(t, func() bool { return w.flushes.Load() == 1 }, waitFor, time.Millisecond)
	expired, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, w.Close(expired), context.Canceled)
	require.ErrorIs(t, <-errc, ports.ErrUnavailable)
}

func TestWriterConfig(t *testing.T) {
	t.Parallel()
	want := DefaultWriterConfig()
	want.FlushInterval = 0 // a setting, not unset: flush as soon as nothing more gathers
	checkConfig(t, WriterConfig.withDefaults, want, map[string]WriterConfig{
		"negative buffer":   {BufferSize: -1},
		"negative interval": {FlushInterval: -time.Millisecond},
	})
}

// The metric names are promlint-clean.
func TestMetricsLint(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	reg := prometheus.NewRegistry()
	startWriter(t, pool, WriterConfig{}, reg)
	startReader(t, pool, ReaderConfig{Range: fullRange()}, reg)

	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 20, "registered metric families")
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)
}

// The buffer is bounded by bytes as well: with room for 1000 messages but
// bytes for two large ones, a third waits for room (429), a publish larger
// than the whole buffer is invalid, and utilization reads the byte ratio.
func TestWriterByteBudget(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	const size = 64 << 10
	w := startWriter(t, pool, WriterConfig{BufferSize: 1000, BufferBytes: 2 * (size + writerRowBytes)}, nil)
	big := func(key string) []ports.OutgoingMessage {
		return []ports.OutgoingMessage{{Payload: json.RawMessage(`"` + strings.Repeat("x", size-2) + `"`), Key: key}}
	}

	lock := lockQueueTable(t, pool)
	var g errgroup.Group
	for _, k := range []string{"a", "b"} {
		g.Go(func() error { _, err := w.Publish(ctx, "bytes", big(k)); return err })
	}
	require.Eventually(t, func() bool { return w.Utilization() == 1 }, waitFor, time.Millisecond)
	_, err := w.Publish(ctx, "bytes", big("c"))
	require.ErrorIs(t, err, ports.ErrBackpressure, "no byte room left, though 998 messages would fit")
	_, err = w.Publish(ctx, "bytes", append(big("d"), append(big("e"), big("f")...)...))
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.ErrorContains(t, err, "bytes exceed the writer's buffer")
	require.NoError(t, lock.Rollback(ctx))
	require.NoError(t, g.Wait())
	require.Equal(t, 0.0, w.Utilization())
	require.Equal(t, 2, countRows(t, pool, "bytes"))
}
