// Package actor holds the handshake every owner goroutine in the adapters
// uses: hand a request to the goroutine that owns some state, then wait for
// its answer, the caller's context, or the owner's end — whichever comes
// first. The adapters (memory, nats, pgqueue) keep their state and loops;
// only this handshake is shared.
//
// Call suits owners that take closures (memory, nats): the request is a
// function run on the owner's state. Owners whose requests are typed structs
// with their own reply channel (pgqueue's topic owner, whose Lease must be
// able to collect an answer after its caller gave up) use Send and Await,
// the two halves Call is made of. Either way: replies travel on 1-buffered
// channels, so an owner never blocks on a caller that left.
package actor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrStopped reports that the owner goroutine ended (its done channel is
// closed) before it took the request or answered.
var ErrStopped = errors.New("owner goroutine stopped")

// Call sends fn to the owner reading ops and returns what fn returns when the
// owner runs it. It returns ctx's error when ctx ends first, and ErrStopped
// when done is closed first.
func Call[S, T any](ctx context.Context, ops chan<- func(S), done <-chan struct{}, fn func(S) T) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	reply := make(chan T, 1)
	if err := Send(ctx, ops, done, func(s S) { reply <- fn(s) }); err != nil {
		return zero, err
	}
	return Await(ctx, reply, done)
}

// Send hands req to the owner reading ch. It fails with ctx's error or
// ErrStopped when the owner does not take it first.
func Send[R any](ctx context.Context, ch chan<- R, done <-chan struct{}, req R) error {
	select {
	case ch <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return ErrStopped
	}
}

// Await waits for the owner's answer on reply (which must be 1-buffered).
// An answer given just before the owner ended is still returned; otherwise
// it fails with ErrStopped, or ctx's error when ctx ends first. A caller
// that gave up may Await the same reply again, with another context, to
// learn what the owner did meanwhile.
func Await[T any](ctx context.Context, reply <-chan T, done <-chan struct{}) (T, error) {
	var zero T
	select {
	case v := <-reply:
		return v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-done:
		select {
		case v := <-reply:
			return v, nil
		default:
			return zero, ErrStopped
		}
	}
}

// Do is Call for an fn that can fail. It returns fn's answer and error as
// they are; when the handshake fails it returns "op: " and ctx's error, or
// "op: " and closed when the owner has ended.
func Do[S, T any](ctx context.Context, ops chan<- func(S), done <-chan struct{}, op string, closed error,
	fn func(S) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	r, err := Call(ctx, ops, done, func(s S) result {
		v, err := fn(s)
		return result{v, err}
	})
	switch {
	case errors.Is(err, ErrStopped):
		return r.v, fmt.Errorf("%s: %w", op, closed)
	case err != nil:
		return r.v, fmt.Errorf("%s: %w", op, err)
	}
	return r.v, r.err
}

// AwaitParked waits for the answer to a request the owner may park (a long
// poll): up to wait for reply, unless ctx ends or the owner stops first.
// When the wait passes or ctx ends without an answer, it calls withdraw,
// which must return only once the owner has taken the request off its
// queue; an answer the owner gave before that is still returned, so nothing
// the owner granted is lost in the race. It returns:
//   - the answer and a nil error when one came in time, or came while the
//     wait passed;
//   - ok false and a nil error when the wait passed with no answer;
//   - ctx's error when ctx ended, with the answer (ok true) if the owner
//     gave one meanwhile: the caller must give it back;
//   - ErrStopped when the owner ended without answering.
func AwaitParked[T any](ctx context.Context, reply <-chan T, done <-chan struct{}, wait time.Duration,
	withdraw func()) (v T, ok bool, err error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case v := <-reply:
		return v, true, nil
	case <-done:
		select {
		case v := <-reply:
			return v, true, nil
		default:
			return v, false, ErrStopped
		}
	case <-timer.C:
	case <-ctx.Done():
		err = ctx.Err()
	}
	withdraw()
	select {
	case v := <-reply:
		return v, true, err
	default:
		return v, false, err
	}
}
