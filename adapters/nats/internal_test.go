package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

func TestStreamName(t *testing.T) {
	t.Parallel()
	cfg := Config{StreamPrefix: "tq"}
	tests := []struct{ topic, want string }{
		{"telemetry", "tq_telemetry"},
		{"a.b", "tq_a_db"},
		{"a_b", "tq_a__b"},
		{"a_db", "tq_a__db"},
		{"a-b", "tq_a-b"},
		{"a._", "tq_a_d__"},
	}
	seen := make(map[string]string)
	for _, tc := range tests {
		t.Run(tc.topic, func(t *testing.T) {
			require.Equal(t, tc.want, cfg.streamName(tc.topic))
		})
		name := cfg.streamName(tc.topic)
		require.NotContains(t, seen, name, "topics %q and %q share a stream", seen[name], tc.topic)
		seen[name] = tc.topic
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	got, err := Config{URL: "nats://x:4222"}.withDefaults()
	require.NoError(t, err)
	want := DefaultConfig()
	want.URL = "nats://x:4222"
	require.Equal(t, want, got)
	require.Equal(t, Config{URL: "nats://x:4222", Replicas: 1, AckWait: 30 * time.Second,
		DuplicateWindow: 2 * time.Minute, StreamPrefix: "tq", MaxDeliveries: domain.DefaultMaxDeliveries}, got)
	_, err = Config{URL: "nats://x:4222", MaxDeliveries: domain.MaxMaxDeliveries + 1}.withDefaults()
	require.ErrorContains(t, err, "max deliveries")
}

// A release reason may hold any text; a header value cannot hold CR or LF.
func TestOneLine(t *testing.T) {
	t.Parallel()
	require.Equal(t, "a b  c", oneLine("a\nb\r\nc"))
}

// The dead-letter stream of a topic is no topic's stream.
func TestDeadLetterStreamName(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	require.Equal(t, "tq_tele_dmetry_DLQ", c.deadLetterStream("tele.metry"))
	for _, topic := range []string{"x_DLQ", "x.DLQ", "x__DLQ"} {
		require.NotEqual(t, c.deadLetterStream("x"), c.streamName(topic), topic)
	}
	require.Equal(t, "_dlq.tele.metry", deadLetterSubject("tele.metry"))
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	apiErr := func(code int, errCode jetstream.ErrorCode) error {
		return fmt.Errorf("publish: %w", &jetstream.APIError{Code: code, ErrorCode: errCode, Description: "x"})
	}
	tests := []struct {
		name string
		err  error
		want error // nil: neither a sentinel nor a context error
	}{
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), context.Canceled},
		{"deadline", context.DeadlineExceeded, context.DeadlineExceeded},
		{"connection closed", natsgo.ErrConnectionClosed, ports.ErrUnavailable},
		{"no responders", natsgo.ErrNoResponders, ports.ErrUnavailable},
		{"reconnecting", natsgo.ErrReconnectBufExceeded, ports.ErrUnavailable},
		{"pub ack timeout", jetstream.ErrAsyncPublishTimeout, ports.ErrUnavailable},
		{"jetstream disabled", jetstream.ErrJetStreamNotEnabled, ports.ErrUnavailable},
		{"storage full", apiErr(503, codeStorageResourcesExceeded), ports.ErrBackpressure},
		{"insufficient resources", apiErr(503, codeInsufficientResources), ports.ErrBackpressure},
		{"message too large", apiErr(400, jetstream.JSErrCodeStreamMessageExceedsMaximum), ports.ErrInvalidArgument},
		{"stream config conflict", apiErr(400, jetstream.JSErrCodeStreamNameInUse), nil},
		{"already a sentinel", fmt.Errorf("x: %w", ports.ErrLeaseExpired), ports.ErrLeaseExpired},
	}
	sentinels := []error{ports.ErrUnavailable, ports.ErrBackpressure, ports.ErrInvalidArgument, ports.ErrLeaseExpired}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := translate(tc.err)
			require.ErrorIs(t, got, tc.err, "the original error stays in the chain")
			if tc.want != nil {
				require.ErrorIs(t, got, tc.want)
				return
			}
			for _, s := range sentinels {
				require.NotErrorIs(t, got, s)
			}
		})
	}
	require.NoError(t, translate(nil))
}

func TestMaxAckPendingReached(t *testing.T) {
	t.Parallel()
	require.True(t, maxAckPendingReached(errors.New("nats: Exceeded MaxAckPending")))
	require.False(t, maxAckPendingReached(errors.New("nats: Exceeded MaxWaiting")))
	require.False(t, maxAckPendingReached(nil))
}

// emptyBatch is a fetch's batch that ended with no message.
type emptyBatch struct{ msgs chan jetstream.Msg }

func newEmptyBatch() emptyBatch {
	b := emptyBatch{msgs: make(chan jetstream.Msg)}
	close(b.msgs)
	return b
}

func (b emptyBatch) Messages() <-chan jetstream.Msg { return b.msgs }
func (emptyBatch) Error() error                     { return nil }

// A pull the client cut (fetchIdleCut after it was sent) is counted however
// late collect got to its batch: the idle time runs from the pull, not from
// collect's start (from there, a process slow to get to collect measured
// less than the cut, and TestStalledPullIsCountedAndRedelivered failed on a
// loaded machine with the stall uncounted). A batch that ended at once is
// not a stall.
func TestCollectCountsACutPullFromItsStart(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	q := &Queue{log: slog.New(slog.DiscardHandler), metrics: m}
	tp := &topic{name: "t", ackWait: time.Second}

	msgs, err := q.collect(t.Context(), tp, time.Now(), newEmptyBatch(), nil)
	require.NoError(t, err)
	require.Empty(t, msgs)
	require.Zero(t, testutil.ToFloat64(m.fetchStalls), "a batch that ended at once")

	// The pull went out 1.005 s before collect got to its batch, which had
	// ended with nothing: the client's cut.
	msgs, err = q.collect(t.Context(), tp, time.Now().Add(-fetchIdleCut-5*time.Millisecond), newEmptyBatch(), nil)
	require.NoError(t, err)
	require.Empty(t, msgs)
	require.Equal(t, 1.0, testutil.ToFloat64(m.fetchStalls), "a pull cut after fetchIdleCut")
}
