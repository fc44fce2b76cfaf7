package actor_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/internal/actor"
)

type counter struct{ n int }

// owner runs ops until stop closes, then closes done.
func owner(ops <-chan func(*counter), stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	c := &counter{} // owned by owner
	for {
		select {
		case op := <-ops:
			op(c)
		case <-stop:
			return
		}
	}
}

func TestCall(t *testing.T) {
	t.Parallel()
	ops, stop, done := make(chan func(*counter)), make(chan struct{}), make(chan struct{})
	go owner(ops, stop, done)

	for want := 1; want <= 3; want++ {
		got, err := actor.Call(context.Background(), ops, done, func(c *counter) int { c.n++; return c.n })
		require.NoError(t, err)
		require.Equal(t, want, got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := actor.Call(ctx, ops, done, func(c *counter) int { return c.n })
	require.ErrorIs(t, err, context.Canceled)

	close(stop)
	<-done
	_, err = actor.Call(context.Background(), ops, done, func(c *counter) int { return c.n })
	require.ErrorIs(t, err, actor.ErrStopped)
}

func TestCallCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	ops, done := make(chan func(*counter)), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := actor.Call(ctx, ops, done, func(c *counter) int { return c.n })
		errc <- err
	}()
	op := <-ops // the owner takes the request but has not answered yet
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	op(&counter{}) // answering after the caller gave up must not block
	close(done)
}

// AwaitParked returns an answer that came in time, returns empty when the
// wait passes, and never loses an answer the owner gave while the caller
// was withdrawing: it is returned (wait over) or handed back with ctx's
// error (context ended).
func TestAwaitParked(t *testing.T) {
	t.Parallel()
	never := make(chan struct{})
	t.Run("answered", func(t *testing.T) {
		t.Parallel()
		reply := make(chan int, 1)
		reply <- 7
		v, ok, err := actor.AwaitParked(context.Background(), reply, never, time.Hour, func() { t.Error("withdrew an answered request") })
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, 7, v)
	})
	t.Run("wait passes", func(t *testing.T) {
		t.Parallel()
		withdrawn := false
		_, ok, err := actor.AwaitParked(context.Background(), make(chan int, 1), never, time.Millisecond, func() { withdrawn = true })
		require.NoError(t, err)
		require.False(t, ok)
		require.True(t, withdrawn)
	})
	t.Run("answered while withdrawing", func(t *testing.T) {
		t.Parallel()
		reply := make(chan int, 1)
		v, ok, err := actor.AwaitParked(context.Background(), reply, never, time.Millisecond, func() { reply <- 9 })
		require.NoError(t, err)
		require.True(t, ok, "the answer given before the withdrawal was lost")
		require.Equal(t, 9, v)
	})
	t.Run("context ends, answer handed back", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		reply := make(chan int, 1)
		v, ok, err := actor.AwaitParked(ctx, reply, never, time.Hour, func() { reply <- 3 })
		require.ErrorIs(t, err, context.Canceled)
		require.True(t, ok)
		require.Equal(t, 3, v)
	})
	t.Run("owner stopped", func(t *testing.T) {
		t.Parallel()
		done := make(chan struct{})
		close(done)
		_, ok, err := actor.AwaitParked(context.Background(), make(chan int, 1), done, time.Hour, func() {})
		require.ErrorIs(t, err, actor.ErrStopped)
		require.False(t, ok)
	})
}
