package pgqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
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
	w, err := NewWriter(pool, cfg, nil, nil)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

func newReader(t testing.TB, pool *pgxpool.Pool, cfg ReaderConfig) *Reader {
	t.Helper()
	if cfg.RefillInterval == 0 {
		cfg.RefillInterval = 5 * time.Millisecond
	}
	r, err := NewReader(pool, cfg, nil, nil)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
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
