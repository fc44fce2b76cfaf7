// Package ratelogtest gives tests a slog handler that keeps what is logged,
// to count the lines a rate-limited failure wrote.
package ratelogtest

import (
	"context"
	"log/slog"
)

// Sink is a slog.Handler that keeps every record in a buffered channel (the
// channel is the owner: no lock). A test that logs more than its capacity
// blocks the logger, so size it for the worst case the test allows.
type Sink chan slog.Record

// NewSink returns a Sink that holds up to 1<<14 records.
func NewSink() Sink { return make(Sink, 1<<14) }

// Logger is a logger writing to s.
func (s Sink) Logger() *slog.Logger { return slog.New(s) }

// Enabled reports true for every level.
func (s Sink) Enabled(context.Context, slog.Level) bool { return true }

// Handle keeps a copy of r.
func (s Sink) Handle(_ context.Context, r slog.Record) error {
	s <- r.Clone()
	return nil
}

// WithAttrs returns s: attributes added to the logger are not kept.
func (s Sink) WithAttrs([]slog.Attr) slog.Handler { return s }

// WithGroup returns s.
func (s Sink) WithGroup(string) slog.Handler { return s }

// Drain returns the records logged so far, oldest first.
func (s Sink) Drain() []slog.Record {
	var out []slog.Record
	for {
		select {
		case r := <-s:
			out = append(out, r)
		default:
			return out
		}
	}
}

// Skipped returns, one per record with message msg, its "skipped"
// attribute (0 when absent).
func Skipped(records []slog.Record, msg string) []int64 {
	var out []int64
	for _, r := range records {
		if r.Message != msg {
			continue
		}
		var n int64
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "skipped" {
				n = a.Value.Int64()
			}
			return true
		})
		out = append(out, n)
	}
	return out
}
