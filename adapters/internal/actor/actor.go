// Package actor holds the call every owner-goroutine adapter makes: hand a
// function to the goroutine that owns some state, then wait for its answer,
// the caller's context, or the owner's end — whichever comes first. The
// adapters (memory, nats) keep their state and loops; only this handshake is
// shared.
package actor

import (
	"context"
	"errors"
)

// ErrStopped reports that the owner goroutine ended (its done channel is
// closed) before it answered.
var ErrStopped = errors.New("owner goroutine stopped")

// Call sends fn to the owner reading ops and returns what fn returns when the
// owner runs it. It returns ctx's error when ctx ends first, and ErrStopped
// when done is closed first. The answer travels on a 1-buffered channel, so
// the owner never blocks on a caller that gave up.
func Call[S, T any](ctx context.Context, ops chan<- func(S), done <-chan struct{}, fn func(S) T) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	reply := make(chan T, 1)
	select {
	case ops <- func(s S) { reply <- fn(s) }:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-done:
		return zero, ErrStopped
	}
	select {
	case v := <-reply:
		return v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-done:
		// The owner may have answered just before it ended.
		select {
		case v := <-reply:
			return v, nil
		default:
			return zero, ErrStopped
		}
	}
}
