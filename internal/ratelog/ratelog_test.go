package ratelog_test

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/internal/ratelog"
	"github.com/gpufleet/telemetry/internal/ratelog/ratelogtest"
)

func TestAllowLogsFirstThenOncePerInterval(t *testing.T) {
	t.Parallel()
	l := ratelog.New(10 * time.Second)
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

	ok, skipped := l.Allow(t0)
	require.True(t, ok, "the first occurrence is logged")
	require.Zero(t, skipped)
	for i := range 99 {
		ok, _ := l.Allow(t0.Add(time.Duration(i) * 100 * time.Millisecond))
		require.False(t, ok, "occurrence %d falls inside the interval", i+2)
	}
	ok, skipped = l.Allow(t0.Add(10 * time.Second))
	require.True(t, ok, "the first occurrence after the interval is logged")
	require.Equal(t, int64(99), skipped, "and says how many were not")

	ok, skipped = l.Allow(t0.Add(time.Hour))
	require.True(t, ok, "a failure long after the last one is logged at once")
	require.Zero(t, skipped)
}

// Concurrent callers: exactly one of a burst is logged, and the next logged
// line accounts for all the others.
func TestAllowConcurrent(t *testing.T) {
	t.Parallel()
	l := ratelog.New(time.Minute)
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	const callers, each = 8, 1000
	logged := make(chan bool, callers*each)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range each {
				ok, _ := l.Allow(t0)
				logged <- ok
			}
		})
	}
	wg.Wait()
	close(logged)
	n := 0
	for ok := range logged {
		if ok {
			n++
		}
	}
	require.Equal(t, 1, n, "one line for a burst within the interval")
	ok, skipped := l.Allow(t0.Add(time.Minute))
	require.True(t, ok)
	require.Equal(t, int64(callers*each-1), skipped)
}

// Warn logs what Allow lets through, at WARN, with the caller's attributes
// and "skipped".
func TestWarnLogsWhatAllowLetsThrough(t *testing.T) {
	t.Parallel()
	l := ratelog.New(10 * time.Second)
	logs := ratelogtest.NewSink()
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for i := range 25 {
		l.Warn(logs.Logger(), t0.Add(time.Duration(i)*time.Second), "flush failed", "topic", "t")
	}
	records := logs.Drain()
	require.Equal(t, []int64{0, 9, 9}, ratelogtest.Skipped(records, "flush failed"), "at 0 s, 10 s and 20 s")
	for _, r := range records {
		require.Equal(t, slog.LevelWarn, r.Level)
		var topic string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "topic" {
				topic = a.Value.String()
			}
			return true
		})
		require.Equal(t, "t", topic)
	}
}
