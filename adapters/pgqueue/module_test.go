package pgqueue

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func TestModule(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	common := fx.Options(
		fx.NopLogger,
		Module,
		fx.Supply(pool, discardLogger()),
		fx.Provide(func() prometheus.Registerer { return prometheus.NewRegistry() }),
	)
	t.Run("whole queue", func(t *testing.T) {
		t.Parallel()
		var (
			q ports.Queue
			p ports.Publisher
			c ports.Consumer
			r *Reader
		)
		opts := fx.Options(common,
			fx.Supply(WriterConfig{}, ReaderConfig{Range: fullRange(), RefillInterval: time.Millisecond}),
			fx.Populate(&q, &p, &c, &r))
		require.NoError(t, fx.ValidateApp(opts))
		app := fxtest.New(t, opts)
		app.RequireStart()
		require.Same(t, q.(*Queue).Writer(), p, "one writer")
		require.Same(t, q.(*Queue).Reader(), c, "one reader")
		_, err := p.Publish(context.Background(), "fx", []ports.OutgoingMessage{{Payload: json.RawMessage(`{}`)}})
		require.NoError(t, err)
		l := leaseSome(t, c, "fx", "c", 1, time.Minute)
		require.NoError(t, c.Ack(context.Background(), ref(l)), "Drain on stop waits for outstanding leases")
		app.RequireStop()
		require.True(t, r.Draining(), "stop drained the reader")
	})
	t.Run("writer only needs no reader config", func(t *testing.T) {
		t.Parallel()
		var p ports.Publisher
		app := fxtest.New(t, common, fx.Supply(WriterConfig{}), fx.Populate(&p))
		app.RequireStart()
		app.RequireStop()
		_, err := p.Publish(context.Background(), "fx", []ports.OutgoingMessage{{Payload: json.RawMessage(`{}`)}})
		require.ErrorIs(t, err, ports.ErrClosed, "stop closed the writer")
	})
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		breakIt func(q *Queue, pool *pgxpool.Pool)
		err     error
	}{
		{"healthy", func(*Queue, *pgxpool.Pool) {}, nil},
		{"reader draining", func(q *Queue, _ *pgxpool.Pool) { require.NoError(t, q.Reader().Close(context.Background())) }, ports.ErrClosed},
		{"database unreachable", func(_ *Queue, pool *pgxpool.Pool) { pool.Close() }, ports.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := pgtest.Pool(t, pgtest.NewDatabase(t))
			q, err := NewQueue(pool, Config{Reader: ReaderConfig{Range: fullRange()}}, nil, nil)
			require.NoError(t, err)
			require.NoError(t, q.Start(context.Background()))
			t.Cleanup(func() { _ = q.Close(context.Background()) })
			tc.breakIt(q, pool)
			err = q.Check(context.Background())
			if tc.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.err)
		})
	}
}
