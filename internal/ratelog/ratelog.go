// Package ratelog keeps a failure that repeats from flooding the log. A
// loop that meets the same error many times a second (a writer flushing
// into a database that is down, a reader refilling from it) logs the first
// occurrence, then at most one per interval, and each line it logs says how
// many occurrences it stands for. Counting every occurrence is the
// metrics' job, not the log's.
//
// It lives at the module root beside retry, imports nothing of the module,
// and uses atomics, not a mutex, so any goroutine may call Allow and Warn.
package ratelog

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// Interval is the pause between two logged occurrences that the pipeline's
// loops use: short enough that an outage shows in the log at once and then
// every few seconds, long enough that a minute of outage is a handful of
// lines instead of thousands.
const Interval = 10 * time.Second

// Limiter decides which occurrences of one failure are logged.
type Limiter struct {
	every time.Duration
	next  atomic.Int64 // UnixNano before which occurrences are only counted; 0 = log the next
	held  atomic.Int64 // occurrences not logged since the last logged one
}

// New returns a Limiter that logs at most one occurrence per every.
func New(every time.Duration) *Limiter { return &Limiter{every: every} }

// Allow records one occurrence at now and reports whether to log it. When
// it does, skipped is how many occurrences since the last logged one were
// not logged; log it with the line ("skipped", n).
func (l *Limiter) Allow(now time.Time) (ok bool, skipped int64) {
	t := now.UnixNano()
	next := l.next.Load()
	if t < next || !l.next.CompareAndSwap(next, t+int64(l.every)) {
		l.held.Add(1)
		return false, 0
	}
	return true, l.held.Swap(0)
}

// Warn records one occurrence at now and, when Allow lets it through, logs
// msg at WARN with args and ("skipped", n). Every call site of the pipeline
// logs this way, so each rate-limited line says what it stands for.
func (l *Limiter) Warn(logger *slog.Logger, now time.Time, msg string, args ...any) {
	if ok, skipped := l.Allow(now); ok {
		logger.Warn(msg, append(args, "skipped", skipped)...)
	}
}
