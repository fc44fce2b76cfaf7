package actor_test

import (
	"context"
	"testing"

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
