// Package startstop gives every long-lived component of the project the same
// lifecycle, the shape of river's startstop.BaseStartStop: a constructor
// starts nothing; Start launches the component's loop on a context the
// component owns (never the caller's: fx cancels the OnStart context as soon
// as the hook returns, uber-go/fx issue 801); Stop cancels that context and
// waits, bounded by its own context, for the loop to return.
//
// It lives outside adapters/ and apps/ because both use it; it imports
// nothing of the module.
package startstop

import (
	"context"
	"fmt"
)

// Loop is a running goroutine owned by a component. The zero value (and a
// nil *Loop) is a loop that never started: Stop returns at once.
type Loop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Go runs run on a new goroutine with a context that only Stop cancels.
func Go(run func(ctx context.Context)) *Loop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Loop{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer cancel()
		run(ctx)
	}()
	return l
}

// Stop cancels the loop's context and waits for run to return, or for ctx
// to end (then it reports ctx's error; the loop still stops on its own). It
// may be called more than once, and on a loop that never started.
func (l *Loop) Stop(ctx context.Context) error {
	if l == nil || l.done == nil {
		return nil
	}
	l.cancel()
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop: %w", ctx.Err())
	}
}

// Done is closed once run has returned; nil for a loop that never started.
func (l *Loop) Done() <-chan struct{} {
	if l == nil {
		return nil
	}
	return l.done
}
