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
	"sync"
	"sync/atomic"
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

// Hooks are the start and stop of a loop that runs run, shaped as fx.Hook's
// OnStart and OnStop so a component ties a loop to the app's lifetime in
// one line (lc.Append(fx.Hook{OnStart: start, OnStop: stop})): start
// launches run on a Loop, whose context is not start's; stop cancels it and
// waits, bounded by stop's context, naming the loop in its error. A stop
// without a start returns at once.
func Hooks(name string, run func(ctx context.Context)) (start, stop func(context.Context) error) {
	var l *Loop
	start = func(context.Context) error { l = Go(run); return nil }
	stop = func(ctx context.Context) error {
		if err := l.Stop(ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	return start, stop
}

// Service is a component with one owner goroutine that runs at most once:
// Start runs it on a Loop, Stop stops it. Done is closed when the owner has
// returned — or at Stop when it never started — so callers waiting on the
// owner (an actor call) fail fast either way, and Started tells calls made
// before Start to fail at once instead of waiting for an owner that does not
// run.
type Service struct {
	once atomic.Bool          // set by the first Start or Stop
	loop atomic.Pointer[Loop] // the owner, once started
	done chan struct{}
}

// NewService returns a service that has not started.
func NewService() *Service { return &Service{done: make(chan struct{})} }

// Start runs run once; it reports false, running nothing, after an earlier
// Start or Stop.
func (s *Service) Start(run func(ctx context.Context)) bool {
	if !s.once.CompareAndSwap(false, true) {
		return false
	}
	s.loop.Store(Go(func(ctx context.Context) {
		defer close(s.done)
		run(ctx)
	}))
	return true
}

// Stop stops the owner and waits for it (bounded by ctx); a service that
// never started is marked done at once. It may be called more than once.
func (s *Service) Stop(ctx context.Context) error {
	if s.once.CompareAndSwap(false, true) {
		close(s.done)
		return nil
	}
	return s.loop.Load().Stop(ctx)
}

// Started reports whether Start (or Stop) was called.
func (s *Service) Started() bool { return s.once.Load() }

// Done is closed once the owner has returned, or the service was stopped
// without starting.
func (s *Service) Done() <-chan struct{} { return s.done }

// Group is a component whose goroutines stop in two phases, as a queue's
// writer and reader do: BeginStop closes Quit, asking them to finish what
// they hold and return; Wait waits for that, and when its ctx ends first it
// cancels Context — the parent of their I/O — and still waits. Context is
// also cancelled once they have all returned. A Group runs at most once.
type Group struct {
	once     atomic.Bool // set by the first Start or BeginStop
	wg       sync.WaitGroup
	quit     chan struct{} // closed by BeginStop
	quitOnce sync.Once
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{} // closed when every goroutine has returned, or at BeginStop when none started
}

// NewGroup returns a group that has not started.
func NewGroup() *Group {
	ctx, cancel := context.WithCancel(context.Background())
	return &Group{quit: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// Start runs each of run on its own goroutine; it reports false, running
// nothing, after an earlier Start or BeginStop.
func (g *Group) Start(run ...func()) bool {
	if !g.once.CompareAndSwap(false, true) {
		return false
	}
	for _, f := range run {
		g.wg.Go(f)
	}
	go func() {
		g.wg.Wait()
		g.cancel()
		close(g.done)
	}()
	return true
}

// Go runs one more goroutine of the group (a per-topic owner created on
// demand). Call it only from a goroutine of the group, so the group cannot
// have finished.
func (g *Group) Go(f func()) { g.wg.Go(f) }

// BeginStop closes Quit. It reports whether the group's goroutines run: for
// a group that never started it marks it done at once and reports false. It
// may be called more than once.
func (g *Group) BeginStop() (running bool) {
	g.quitOnce.Do(func() { close(g.quit) })
	if g.once.CompareAndSwap(false, true) {
		g.cancel()
		close(g.done)
		return false
	}
	return true
}

// Wait waits for every goroutine to return. When ctx ends first it cancels
// Context, still waits, and returns ctx's error.
func (g *Group) Wait(ctx context.Context) error {
	select {
	case <-g.done:
		return nil
	case <-ctx.Done():
		g.cancel()
		<-g.done
		return ctx.Err()
	}
}

// Started reports whether Start (or BeginStop) was called.
func (g *Group) Started() bool { return g.once.Load() }

// Quit is closed by BeginStop: the goroutines finish what they hold and return.
func (g *Group) Quit() <-chan struct{} { return g.quit }

// Context is the parent of the goroutines' I/O: cancelled when Wait gives up
// waiting, or once every goroutine has returned.
func (g *Group) Context() context.Context { return g.ctx }

// Done is closed once every goroutine has returned, or at BeginStop when the
// group never started.
func (g *Group) Done() <-chan struct{} { return g.done }
