package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/internal/retry"
)

var errTransient = errors.New("transient")

// hinted is a transient error with a server's wait hint.
type hinted struct{ d time.Duration }

func (h hinted) Error() string             { return "busy" }
func (h hinted) RetryDelay() time.Duration { return h.d }

// recorder records the policy's waits instead of sleeping.
type recorder struct{ waits, notified []time.Duration }

func (r *recorder) policy(p retry.Policy) retry.Policy {
	p.Sleep = func(ctx context.Context, d time.Duration) error { r.waits = append(r.waits, d); return ctx.Err() }
	p.Notify = func(err error, d time.Duration) {
		if err == nil {
			panic("notified without an error")
		}
		r.notified = append(r.notified, d)
	}
	return p
}

// failing fails n times with err, then succeeds; it counts its calls.
func failing(n int, err error, calls *int) func() (int, error) {
	return func() (int, error) {
		*calls++
		if *calls <= n {
			return 0, err
		}
		return *calls, nil
	}
}

func TestDo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		policy    retry.Policy
		fails     int
		err       error
		wantCalls int
		wantErr   error // nil: success
		minWaits  []time.Duration
	}{
		{name: "success at once", fails: 0, err: errTransient, wantCalls: 1},
		{name: "transient twice then success", fails: 2, err: errTransient, wantCalls: 3},
		{name: "gives up after MaxTries", policy: retry.Policy{MaxTries: 4}, fails: 100, err: errTransient, wantCalls: 4, wantErr: errTransient},
		{name: "permanent is not retried", fails: 100, err: retry.Permanent(errTransient), wantCalls: 1, wantErr: errTransient},
		{name: "Retry-After honoured", fails: 1, err: hinted{time.Second}, wantCalls: 2, minWaits: []time.Duration{time.Second}},
		{name: "absurd Retry-After capped", fails: 1, err: hinted{24 * time.Hour}, wantCalls: 2, minWaits: []time.Duration{retry.DefaultMaxRetryAfter}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r recorder
			calls := 0
			got, err := retry.Do(t.Context(), r.policy(tc.policy), failing(tc.fails, tc.err, &calls))
			require.Equal(t, tc.wantCalls, calls)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				_, perm := errors.AsType[*backoff.PermanentError](err)
				require.False(t, perm, "a Permanent error comes back unwrapped")
			} else {
				require.NoError(t, err)
				require.Equal(t, calls, got)
			}
			require.Len(t, r.waits, calls-1, "one wait between attempts")
			require.Equal(t, r.waits, r.notified, "notified of every wait")
			for i, lo := range tc.minWaits {
				require.GreaterOrEqual(t, r.waits[i], lo)
			}
			for _, w := range r.waits {
				require.LessOrEqual(t, w, retry.DefaultMaxRetryAfter)
			}
		})
	}
}

func TestDoKeepsTheLastErrorWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	p := retry.Policy{Initial: time.Hour, Max: time.Hour, Notify: func(error, time.Duration) { cancel() }}
	_, err := retry.Do(ctx, p, failing(100, errTransient, &calls))
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "transient", "the last error is in the message")
	require.Equal(t, 1, calls, "the hour-long wait ended with the context")
}

func TestDoRetriesUntilMaxElapsed(t *testing.T) {
	t.Parallel()
	// Real, short waits: the lower bound on the time spent is the property
	// under test (no drop before MaxElapsed), and it cannot flake.
	const elapsed = 60 * time.Millisecond
	calls := 0
	start := time.Now()
	_, err := retry.Do(t.Context(), retry.Policy{Initial: time.Millisecond, Max: 4 * time.Millisecond, MaxElapsed: elapsed}, failing(1<<30, errTransient, &calls))
	require.ErrorIs(t, err, errTransient)
	require.GreaterOrEqual(t, time.Since(start), elapsed, "never gives up before MaxElapsed")
	require.Greater(t, calls, 2)
}

func TestBackOffIsCappedAndJittered(t *testing.T) {
	t.Parallel()
	const initial, ceiling = 10 * time.Millisecond, 80 * time.Millisecond
	for range 50 {
		b := retry.NewBackOff(initial, ceiling)
		for n := range 70 {
			interval := min(ceiling, initial<<min(n, 20))
			d := b.NextBackOff()
			lo := time.Duration(float64(interval) * (1 - retry.Jitter))
			hi := time.Duration(float64(interval)*(1+retry.Jitter)) + 1
			require.GreaterOrEqual(t, d, lo, "try %d", n)
			require.LessOrEqual(t, d, hi, "try %d", n)
		}
	}
	b := retry.NewBackOff(0, 0)
	require.Equal(t, retry.DefaultInitial, b.InitialInterval)
	require.Equal(t, retry.DefaultMax, b.MaxInterval)
}
