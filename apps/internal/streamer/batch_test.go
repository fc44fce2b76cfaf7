package streamer

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/ports"
)

func TestTakeQueued(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		queued int
		closed bool
		limit  int
		want   int
	}{
		{name: "nothing waiting", queued: 0, limit: 5, want: 1},
		{name: "fewer than the limit", queued: 2, limit: 5, want: 3},
		{name: "more than the limit", queued: 10, limit: 5, want: 5},
		{name: "limit one takes nothing more", queued: 3, limit: 1, want: 1},
		{name: "closed channel", queued: 2, closed: true, limit: 5, want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			work := make(chan emission, tt.queued)
			for i := range tt.queued {
				work <- emission{msg: ports.OutgoingMessage{IdempotencyKey: fmt.Sprint(i + 2)}}
			}
			if tt.closed {
				close(work)
			}
			got := takeQueued(work, []emission{{msg: ports.OutgoingMessage{IdempotencyKey: "1"}}}, tt.limit)
			require.Len(t, got, tt.want)
			for i, e := range got {
				require.Equal(t, fmt.Sprint(i+1), e.msg.IdempotencyKey, "queue order kept")
			}
			require.Len(t, work, tt.queued-(tt.want-1), "the rest stays queued")
		})
	}
}

// gatedPublisher holds its first Publish until release is closed, so the
// streamer's queue fills behind it; it records every call's size.
type gatedPublisher struct {
	release chan struct{}
	first   atomic.Bool
	sizes   chan int // one per call; sized by the test
	// reject fails every publish holding a message whose key ends so.
	reject string
	inner  *publisher
}

func (p *gatedPublisher) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	if p.first.CompareAndSwap(false, true) {
		select {
		case <-p.release:
		case <-ctx.Done():
			return ports.PublishResult{}, ctx.Err()
		}
	}
	p.sizes <- len(msgs)
	if p.reject != "" {
		for _, m := range msgs {
			if strings.HasSuffix(m.IdempotencyKey, p.reject) {
				return ports.PublishResult{}, fmt.Errorf("publish: %w: bad message", ports.ErrInvalidArgument)
			}
		}
	}
	return p.inner.Publish(ctx, topic, msgs)
}

func TestBatchesWhatIsQueued(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		batch      int
		wantSecond int // least size of the publish after the gate opens, with 10 queued
	}{
		{name: "batch of 4", batch: 4, wantSecond: 4},
		{name: "batch larger than the queue", batch: 50, wantSecond: 10},
		{name: "batch 1 publishes each alone", batch: 1, wantSecond: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				const rows = 40
				pub := &gatedPublisher{release: make(chan struct{}), sizes: make(chan int, rows), inner: newPublisher(rows)}
				s, _ := newStreamer(newSource(rows), pub, Config{Senders: 1, QueueSize: 10, Batch: tt.batch})
				done := make(chan error, 1)
				go func() { done <- s.Run(t.Context()) }()
				// The sender holds its first publish at the gate (row 1 and
				// whatever was queued when it took it), 10 more rows fill the
				// queue, and the reader blocks on the next one.
				synctest.Wait()
				first := int(testutil.ToFloat64(s.m.read)) - 10 - 1
				close(pub.release)
				require.NoError(t, <-done)
				close(pub.sizes)
				var sizes []int
				total := 0
				for n := range pub.sizes {
					sizes = append(sizes, n)
					total += n
					require.LessOrEqual(t, n, tt.batch, "no publish exceeds the batch")
				}
				require.Equal(t, rows, total)
				require.Equal(t, first, sizes[0], "the first publish took only what was queued")
				// The reader may slip one more row in as the sender drains.
				require.GreaterOrEqual(t, sizes[1], tt.wantSecond, "the next publish took what was queued")
				got := pub.inner.drain(t, s.RunID())
				require.Len(t, got, rows)
				for i, m := range got {
					require.Equal(t, fmt.Sprintf("%s/%d", s.RunID(), i+1), m.IdempotencyKey, "every row once")
				}
				require.Equal(t, float64(rows), testutil.ToFloat64(s.m.published))
				require.Zero(t, testutil.ToFloat64(s.m.dropped))
			})
		})
	}
}

func TestInvalidBatchIsResentOneByOne(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rows = 20
		pub := &gatedPublisher{release: make(chan struct{}), sizes: make(chan int, 2*rows), reject: "/5", inner: newPublisher(rows)}
		s, _ := newStreamer(newSource(rows), pub, Config{Senders: 1, QueueSize: 10, Batch: 8})
		done := make(chan error, 1)
		go func() { done <- s.Run(t.Context()) }()
		synctest.Wait()
		close(pub.release)
		require.NoError(t, <-done)
		got := pub.inner.drain(t, s.RunID())
		require.Len(t, got, rows-1, "only the invalid message is lost")
		for _, m := range got {
			require.NotEqual(t, s.RunID()+"/5", m.IdempotencyKey)
		}
		require.Equal(t, 1.0, testutil.ToFloat64(s.m.dropped))
		require.Equal(t, float64(rows-1), testutil.ToFloat64(s.m.published))
		require.Zero(t, retried(s), "an invalid batch is split, not retried")
	})
}
