package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// Defaults of the NDJSON stream's limits (Options).
const (
	// DefaultMaxStreams bounds the NDJSON streams served at once: each holds
	// a database connection for as long as its client reads.
	DefaultMaxStreams = 16
	// DefaultStreamMaxDuration bounds one stream's life.
	DefaultStreamMaxDuration = 5 * time.Minute
	// DefaultStreamMaxRows bounds one stream's entries.
	DefaultStreamMaxRows = 1_000_000
)

// Stable codes of the stream's limits.
const (
	codeTooManyStreams = "too_many_streams"
	codeStreamLimit    = "stream_limit"
)

// streamSlots counts the NDJSON streams in progress.
type streamSlots struct {
	max    int64        // immutable
	active atomic.Int64 // streams in progress
}

// acquire takes a slot, or reports that all are taken.
func (s *streamSlots) acquire() bool {
	for {
		cur := s.active.Load()
		if cur >= s.max {
			return false
		}
		if s.active.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

func (s *streamSlots) release() { s.active.Add(-1) }

// tooManyStreams is the 429 of a stream over the cap.
func tooManyStreams(max int64) error {
	return &apiError{status: http.StatusTooManyRequests, code: codeTooManyStreams,
		message: fmt.Sprintf("%d NDJSON streams are in progress, the most this server serves at once (API_MAX_STREAMS); "+
			"retry later or read pages (without Accept: application/x-ndjson)", max)}
}

// errStreamRows ends a stream at its row limit.
var errStreamRows = errors.New("stream row limit reached")

// StreamLimitLine is the last line of an NDJSON stream stopped by a limit
// (API_STREAM_MAX_ROWS or API_STREAM_MAX_DURATION): it names the limit and
// carries the cursor to continue from with pages; the connection is then
// aborted, so the stream is never mistaken for a complete one.
type StreamLimitLine struct {
	Error      ErrorBody `json:"error"`
	NextCursor string    `json:"next_cursor"`
}
