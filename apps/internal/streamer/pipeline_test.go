package streamer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

func TestPipelinedPublishesEveryRowOnce(t *testing.T) {
	t.Parallel()
	for _, window := range []int{1, 8, 1024} {
		t.Run(fmt.Sprintf("window %d", window), func(t *testing.T) {
			t.Parallel()
			const rows = 300
			pub := newPublisher(rows)
			s, _ := newStreamer(newSource(rows), pub, Config{Window: window})
			require.NoError(t, s.Run(t.Context()))
			got := pub.drain(t, s.RunID())
			require.Len(t, got, rows)
			for i, m := range got {
				require.Equal(t, s.RunID()+"/"+strconv.Itoa(i+1), m.IdempotencyKey, "every row once")
			}
			require.EqualValues(t, rows, pub.calls.Load(), "one publish per row")
			require.Equal(t, float64(rows), testutil.ToFloat64(s.m.published))
			require.Zero(t, testutil.ToFloat64(s.m.dropped))
		})
	}
}

// holdingPublisher holds every publish until release is closed.
type holdingPublisher struct {
	release chan struct{}
	held    atomic.Int64
	inner   *publisher
}

func (p *holdingPublisher) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	p.held.Add(1)
	select {
	case <-p.release:
	case <-ctx.Done():
		return ports.PublishResult{}, ctx.Err()
	}
	return p.inner.Publish(ctx, topic, msgs)
}

// countingSource counts the points taken from a source.
type countingSource struct {
	ports.Source
	taken atomic.Int64
}

func (c *countingSource) Next(ctx context.Context) (domain.Point, error) {
	p, err := c.Source.Next(ctx)
	if err == nil {
		c.taken.Add(1)
	}
	return p, err
}

// A full window stops the reading: a row is taken from the source (and so
// stamped) only when it can be sent at once; nothing waits in between.
func TestPipelinedWindowHoldsTheReading(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rows, window = 50, 4
		pub := &holdingPublisher{release: make(chan struct{}), inner: newPublisher(rows)}
		src := &countingSource{Source: newSource(rows)}
		s, _ := newStreamer(src, pub, Config{Window: window})
		done := make(chan error, 1)
		go func() { done <- s.Run(t.Context()) }()
		synctest.Wait()
		require.EqualValues(t, window, pub.held.Load(), "the window is in flight")
		require.EqualValues(t, window, src.taken.Load(), "no row is read before it can be sent")
		close(pub.release)
		require.NoError(t, <-done)
		require.Len(t, pub.inner.drain(t, s.RunID()), rows)
	})
}

// Backpressure slows the pipelined stream and drops nothing: each refused
// message is retried with its own key until accepted.
func TestPipelinedBackpressureDropsNothing(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rows = 40
		pub := newPublisher(rows)
		pub.failWith = ports.ErrBackpressure
		pub.failures.Store(25)
		s, _ := newStreamer(newSource(rows), pub, Config{Window: 8})
		require.NoError(t, s.Run(t.Context()))
		got := pub.drain(t, s.RunID())
		require.Len(t, got, rows)
		require.Equal(t, 25.0, retried(s))
		require.Zero(t, testutil.ToFloat64(s.m.dropped))
	})
}

func TestPipelinedStopsWithItsContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		pub := &holdingPublisher{release: make(chan struct{}), inner: newPublisher(10)}
		src := newSource(10)
		src.loop = true
		s, _ := newStreamer(src, pub, Config{Window: 3})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		synctest.Wait()
		cancel()
		require.True(t, errors.Is(<-done, context.Canceled), "Run returns once every message in flight gave up")
		require.Zero(t, testutil.ToFloat64(s.m.dropped), "a message abandoned on stop was never acknowledged: not a drop")
	})
}
