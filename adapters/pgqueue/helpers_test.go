package pgqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

const waitFor = 20 * time.Second

func fullRange() *domain.PartitionRange { return &domain.PartitionRange{First: 0, Last: 255} }

func newPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return pgtest.NewPool(t)
}

func newWriter(t testing.TB, pool *pgxpool.Pool, cfg WriterConfig) *Writer {
	t.Helper()
	return startWriter(t, pool, cfg, nil)
}

// startWriter starts a writer whose metrics register with reg (nil: none);
// the test's cleanup closes it.
func startWriter(t testing.TB, pool *pgxpool.Pool, cfg WriterConfig, reg prometheus.Registerer) *Writer {
	t.Helper()
	w, err := NewWriter(pool, cfg, nil, reg)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

func newReader(t testing.TB, pool *pgxpool.Pool, cfg ReaderConfig) *Reader {
	t.Helper()
	return startReader(t, pool, cfg, nil)
}

// startReader starts a reader (refilling in full every 5ms unless cfg
// says: tests insert rows that no notification announces) whose metrics
// register with reg (nil: none); the test's cleanup closes it.
func startReader(t testing.TB, pool *pgxpool.Pool, cfg ReaderConfig, reg prometheus.Registerer) *Reader {
	t.Helper()
	if cfg.RefillInterval == 0 {
		cfg.RefillInterval = 5 * time.Millisecond
	}
	if cfg.FullRefillInterval == 0 {
		cfg.FullRefillInterval = cfg.RefillInterval
	}
	r, err := NewReader(pool, cfg, nil, reg)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

// publishMsgs publishes msgs(n, prefix) to topic through w and requires
// the publish to succeed.
func publishMsgs(t testing.TB, w *Writer, topic string, n int, prefix string) {
	t.Helper()
	_, err := w.Publish(context.Background(), topic, msgs(n, prefix))
	require.NoError(t, err)
}

func msgs(n int, prefix string) []ports.OutgoingMessage {
	out := make([]ports.OutgoingMessage, n)
	for i := range out {
		out[i] = ports.OutgoingMessage{
			Payload:        json.RawMessage(fmt.Sprintf(`{"n":%d,"gpu_uuid":"GPU-%s-%d"}`, i, prefix, i%17)),
			IdempotencyKey: fmt.Sprintf("%s-%d", prefix, i),
		}
	}
	return out
}

func countRows(t testing.TB, pool *pgxpool.Pool, topic string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT count(*) FROM queue_messages WHERE topic = $1`, topic).Scan(&n))
	return n
}

// drainTopic leases and acks until want distinct messages arrived, and
// returns them by msg_uuid.
func drainTopic(t testing.TB, c ports.Consumer, topic string, want int) map[string]domain.Message {
	t.Helper()
	got := map[string]domain.Message{}
	ctx := context.Background()
	require.Eventually(t, func() bool {
		l, err := c.Lease(ctx, ports.LeaseRequest{Topic: topic, ConsumerID: "c", Max: 500, LeaseDuration: time.Minute})
		require.NoError(t, err)
		for _, m := range l.Messages {
			got[m.ID.String()] = m
		}
		if len(l.Messages) > 0 {
			require.NoError(t, c.Ack(ctx, ports.LeaseRef{Topic: topic, ConsumerID: "c", LeaseID: l.ID}))
		}
		return len(got) >= want
	}, waitFor, 2*time.Millisecond)
	return got
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// metric is the first series of the registered family name (the only one of
// an unlabelled family).
func metric(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0]
		}
	}
	require.FailNow(t, "metric not registered", name)
	return nil
}

// gaugeValue reads a registered gauge.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return metric(t, reg, name).GetGauge().GetValue()
}

// histogramCount reads a registered histogram's sample count.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	return metric(t, reg, name).GetHistogram().GetSampleCount()
}

// checkConfig runs withDefaults over the zero config, which must take want,
// and over each bad config, which must be refused.
func checkConfig[C any](t *testing.T, withDefaults func(C) (C, error), want C, bad map[string]C) {
	t.Helper()
	var zero C
	got, err := withDefaults(zero)
	require.NoError(t, err)
	require.Equal(t, want, got, "the zero config takes the defaults")
	for name, cfg := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := withDefaults(cfg)
			require.Error(t, err)
		})
	}
}

// lockQueueTable holds an exclusive lock on queue_messages until the test
// rolls the returned transaction back (or ends), so flushes block.
func lockQueueTable(t testing.TB, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	lock, err := pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lock.Rollback(ctx) })
	_, err = lock.Exec(ctx, `LOCK TABLE queue_messages IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	return lock
}
