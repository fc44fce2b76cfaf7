// Package retry is the module's one retry policy: capped exponential backoff
// with ±50 % jitter (cenkalti/backoff/v5's ExponentialBackOff), a bound on
// attempts and on elapsed time, a notify hook the caller wires to a
// Prometheus counter, Permanent for errors not worth retrying, and a
// server's Retry-After honoured. Each path has one policy and one loop: a
// caller that retries an operation gives the operation's own client a
// single attempt, never a loop of its own (the streamer publishes through a
// client configured so).
//
// It lives at the module root, not under adapters/internal, because both
// layers need it: the mqhttp client (an adapter) and the streamer and
// collector loops (apps), and Go's internal rule hides adapters/internal
// from apps. It imports nothing of the module (test/archtest checks), so it
// cannot bend the dependency direction.
//
// Do is a loop of its own over backoff.BackOff rather than backoff.Retry
// because backoff.Retry gives up as soon as the next wait would cross
// MaxElapsedTime (the streamer must not drop a message before its timeout),
// returns only the context's error on cancellation (the last failure is what
// an operator needs), and cannot be given a clock, so a test of a one-minute
// Retry-After would sleep a minute.
package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Defaults of a zero Policy.
const (
	DefaultInitial       = 50 * time.Millisecond
	DefaultMax           = 5 * time.Second
	DefaultMaxRetryAfter = time.Minute
	// Jitter is the randomization factor: a wait is drawn uniformly from
	// [1-Jitter, 1+Jitter] times the current interval, so clients that
	// failed together do not come back together.
	Jitter = 0.5
)

// Policy says how long and how often one operation is retried. The zero
// value retries with the default backoff until the context ends.
type Policy struct {
	// Initial is the first interval (default 50 ms); each next one doubles,
	// up to Max (default 5 s). A wait is the interval ± Jitter.
	Initial, Max time.Duration
	// MaxTries bounds the attempts in all, the first included; 0 is no bound.
	MaxTries int
	// MaxElapsed bounds the time spent retrying; 0 is no bound. Do never
	// gives up before it has passed: the last wait is cut to end at it, and
	// one more attempt is made there.
	MaxElapsed time.Duration
	// MaxRetryAfter caps a server's wait hint (default one minute).
	MaxRetryAfter time.Duration
	// Notify, when set, is called before each wait with the error that
	// caused it and the wait; it runs on the caller's goroutine, so it must
	// not block (increment a counter, log).
	Notify func(err error, wait time.Duration)
	// Sleep waits d or until ctx ends; nil is a timer. A seam for tests.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Hinter is an error carrying a server's wait hint (HTTP Retry-After). Do
// waits at least that long, capped at MaxRetryAfter, before the next try.
type Hinter interface {
	error
	RetryDelay() time.Duration
}

// Permanent marks err as not worth retrying (an invalid argument, an
// expired lease): Do returns it at once, unwrapped.
func Permanent(err error) error { return backoff.Permanent(err) }

// NewBackOff returns the policy's backoff: an exponential from initial
// doubling up to ceiling, with Jitter. It never stops by itself. Loops that are
// not retries of one operation (the collector's pause after a failed batch)
// use it too, so there is one shape of backoff in the module.
func NewBackOff(initial, ceiling time.Duration) *backoff.ExponentialBackOff {
	if initial <= 0 {
		initial = DefaultInitial
	}
	if ceiling <= 0 {
		ceiling = DefaultMax
	}
	ceiling = max(ceiling, initial)
	b := &backoff.ExponentialBackOff{InitialInterval: initial, RandomizationFactor: Jitter, Multiplier: 2, MaxInterval: ceiling}
	b.Reset()
	return b
}

// Do runs op until it succeeds, returns a Permanent error, runs out of tries
// or time, or ctx ends. It returns op's last result and error (a Permanent
// one unwrapped); when ctx ended it returns the context's error with the
// last failure in the message.
func Do[T any](ctx context.Context, p Policy, op func() (T, error)) (T, error) {
	b := NewBackOff(p.Initial, p.Max)
	maxHint := p.MaxRetryAfter
	if maxHint <= 0 {
		maxHint = DefaultMaxRetryAfter
	}
	sleep := p.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	var deadline time.Time
	if p.MaxElapsed > 0 {
		deadline = time.Now().Add(p.MaxElapsed)
	}
	for tries := 1; ; tries++ {
		res, err := op()
		if err == nil {
			return res, nil
		}
		if perm, ok := errors.AsType[*backoff.PermanentError](err); ok {
			return res, perm.Unwrap()
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		if p.MaxTries > 0 && tries >= p.MaxTries {
			return res, err
		}
		wait := b.NextBackOff()
		if h, ok := errors.AsType[Hinter](err); ok && h.RetryDelay() > 0 {
			wait = max(wait, min(h.RetryDelay(), maxHint))
		}
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return res, err
			}
			wait = min(wait, left)
		}
		if p.Notify != nil {
			p.Notify(err, wait)
		}
		if serr := sleep(ctx, wait); serr != nil {
			return res, fmt.Errorf("%w (last error: %v)", serr, err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
