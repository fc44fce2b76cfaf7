package startstop_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/internal/startstop"
)

func TestLoopStopsOnItsOwnContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		startCtx, cancelStart := context.WithCancel(context.Background())
		started := make(chan struct{})
		var loop *startstop.Loop
		func(ctx context.Context) { // an fx OnStart hook: its ctx ends when it returns
			loop = startstop.Go(func(ctx context.Context) {
				close(started)
				<-ctx.Done()
			})
		}(startCtx)
		cancelStart()
		<-started
		synctest.Wait()
		select {
		case <-loop.Done():
			t.Fatal("the loop stopped with the start hook's context")
		default:
		}
		require.NoError(t, loop.Stop(context.Background()))
		<-loop.Done()
		require.NoError(t, loop.Stop(context.Background()), "a second Stop")
	})
}

func TestStopIsBounded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		loop := startstop.Go(func(context.Context) { <-release }) // ignores cancellation
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		require.ErrorIs(t, loop.Stop(ctx), context.DeadlineExceeded)
		require.Equal(t, time.Second, time.Since(start))
		close(release)
		<-loop.Done()
	})
}

func TestNeverStarted(t *testing.T) {
	t.Parallel()
	var loop *startstop.Loop
	require.NoError(t, loop.Stop(context.Background()))
	require.NoError(t, (&startstop.Loop{}).Stop(context.Background()))
	require.Nil(t, loop.Done())
}

// Hooks' start outlives its context, as an fx OnStart's must; its stop ends
// the loop, and a stop without a start is a no-op.
func TestHooks(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		stopped := make(chan struct{})
		start, stop := startstop.Hooks("waiter", func(ctx context.Context) {
			<-ctx.Done()
			close(stopped)
		})
		startCtx, cancelStart := context.WithCancel(context.Background())
		require.NoError(t, start(startCtx))
		cancelStart()
		synctest.Wait()
		select {
		case <-stopped:
			t.Fatal("the loop stopped with the start hook's context")
		default:
		}
		require.NoError(t, stop(context.Background()))
		select {
		case <-stopped:
		default:
			t.Fatal("stop returned before the loop did")
		}

		_, neverStarted := startstop.Hooks("idle", func(context.Context) { t.Error("ran without start") })
		require.NoError(t, neverStarted(context.Background()))

		release := make(chan struct{})
		start, stop = startstop.Hooks("stubborn", func(context.Context) { <-release }) // ignores cancellation
		require.NoError(t, start(context.Background()))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		require.EqualError(t, stop(ctx), "stubborn: stop: context deadline exceeded")
		close(release)
	})
}

func TestServiceRunsOnce(t *testing.T) {
	t.Parallel()
	never := startstop.NewService()
	require.False(t, never.Started())
	require.NoError(t, never.Stop(context.Background()))
	<-never.Done() // stopped without starting: done at once
	require.False(t, never.Start(func(context.Context) { t.Error("ran after Stop") }))

	s := startstop.NewService()
	require.True(t, s.Start(func(ctx context.Context) { <-ctx.Done() }))
	require.False(t, s.Start(func(context.Context) { t.Error("ran twice") }))
	require.True(t, s.Started())
	require.NoError(t, s.Stop(context.Background()))
	<-s.Done()
}

// A Group stops gracefully when its goroutines heed Quit, and by cancelling
// their context when the caller's ctx ends first.
func TestGroupStopsInTwoPhases(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := startstop.NewGroup()
		finished := make(chan struct{})
		require.True(t, g.Start(func() {
			<-g.Quit()
			g.Go(func() { close(finished) }) // a goroutine added by one of the group's
		}))
		require.False(t, g.Start(func() { t.Error("ran twice") }))
		require.True(t, g.BeginStop())
		require.NoError(t, g.Wait(context.Background()))
		<-finished
		require.Error(t, g.Context().Err(), "the context ends once all returned")

		stubborn := startstop.NewGroup()
		require.True(t, stubborn.Start(func() { <-stubborn.Context().Done() })) // ignores Quit
		require.True(t, stubborn.BeginStop())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		require.ErrorIs(t, stubborn.Wait(ctx), context.DeadlineExceeded)
		require.Equal(t, time.Second, time.Since(start), "Wait gave up at ctx's end, not before")
		<-stubborn.Done()
	})
}

func TestGroupNeverStarted(t *testing.T) {
	t.Parallel()
	g := startstop.NewGroup()
	require.False(t, g.Started())
	require.False(t, g.BeginStop(), "nothing runs")
	<-g.Done()
	<-g.Quit()
	require.True(t, g.Started())
	require.False(t, g.Start(func() { t.Error("ran after BeginStop") }))
	require.NoError(t, g.Wait(context.Background()))
}
