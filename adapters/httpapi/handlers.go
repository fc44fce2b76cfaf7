package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// NDJSON streams are flushed every streamFlushRows entries or
// streamFlushInterval, whichever comes first, so a slow query still
// trickles and memory stays at one bufio buffer.
const (
	streamFlushRows     = 512
	streamFlushInterval = 250 * time.Millisecond
	streamBufferBytes   = 32 << 10
	// streamWriteWindow is how long a client may stall a stream: every flush
	// moves the connection's write deadline this far ahead, so a long
	// stream outlives the server's WriteTimeout while a dead client still
	// releases its goroutine and its database connection.
	streamWriteWindow = 30 * time.Second
)

// getTelemetry godoc
//
//	@Summary		A GPU's telemetry in a time window
//	@Description	Stored DCGM samples of one GPU, ordered by timestamp ascending. start_time and end_time are both
//	@Description	inclusive; leave one out for an open-ended window. Timestamps are RFC 3339 with or without fractional
//	@Description	seconds (2025-07-18T20:42:34Z, 2025-07-18T20:42:34.123456Z, 2025-07-18T22:42:34+02:00).
//	@Description	<br><br>**Pages** (default): at most limit entries per response. When more entries may exist the
//	@Description	response carries next_cursor; repeat the request with cursor=next_cursor (same id, start_time, end_time
//	@Description	and metric_name; limit may change) until next_cursor is absent. Nothing is ever silently truncated.
//	@Description	A cursor used with a different query is rejected with 400.
//	@Description	<br><br>**Stream**: with Accept: application/x-ndjson (or format=ndjson) the response is every matching
//	@Description	entry, one TelemetryEntry JSON object per line, with no limit and no next_cursor. If the store fails
//	@Description	mid-stream the connection is aborted, so a cut stream is never mistaken for a complete one.
//	@Description	A stream lasts at most API_STREAM_MAX_DURATION (default 5m) and API_STREAM_MAX_ROWS entries (default
//	@Description	1,000,000); one stopped by a limit ends with a line {"error":{"code":"stream_limit",…},"next_cursor":…}
//	@Description	(continue with pages from that cursor) and an aborted connection. At most API_MAX_STREAMS streams (default 16)
//	@Description	run at once; one more is refused with 429 too_many_streams.
//	@Description	<br><br>Unknown query parameters are rejected (400) so that a typo cannot silently widen the window.
//	@Tags			telemetry
//	@Produce		json
//	@Produce		application/x-ndjson
//	@Param			id				path		string			true	"GPU UUID (at most 128 bytes, no control characters)"	example(GPU-5fd4f087-86f3-7a43-b711-4771313afc50)
//	@Param			start_time		query		string			false	"Inclusive lower bound, RFC 3339"						format(date-time)	example(2025-07-18T20:42:34Z)
//	@Param			end_time		query		string			false	"Inclusive upper bound, RFC 3339; not before start_time"	format(date-time)	example(2025-07-18T21:42:34.5Z)
//	@Param			metric_name		query		string			false	"Only this metric (1-128 of A-Z a-z 0-9 _ : . -)"		maxlength(128)		example(DCGM_FI_DEV_GPU_UTIL)
//	@Param			limit			query		int				false	"Page size (ignored by the NDJSON stream)"				default(1000)		minimum(1)	maximum(10000)	example(500)
//	@Param			cursor			query		string			false	"next_cursor of the previous page of the same query, unchanged"
//	@Param			format			query		string			false	"json for pages, ndjson for the stream; overrides Accept"	Enums(json, ndjson)
//	@Param			Accept			header		string			false	"application/x-ndjson selects the stream"				Enums(application/json, application/x-ndjson)
//	@Param			X-Request-Id	header		string			false	"Request id to echo (a sane token); one is generated otherwise"
//	@Success		200				{object}	TelemetryPage	"A page (JSON), or with NDJSON one TelemetryEntry per line"
//	@Failure		400				{object}	ErrorResponse	"Bad time, inverted window, bad limit, bad or foreign cursor, bad metric_name or GPU id, unknown parameter"
//	@Failure		404				{object}	ErrorResponse	"Unknown GPU"
//	@Failure		405				{object}	ErrorResponse	"Method not allowed (see the Allow header)"
//	@Failure		429				{object}	ErrorResponse	"Too many NDJSON streams at once (API_MAX_STREAMS); retry after Retry-After"
//	@Failure		500				{object}	ErrorResponse	"Internal error (details are logged, never returned)"
//	@Failure		503				{object}	ErrorResponse	"The telemetry store is unavailable"
//	@Failure		504				{object}	ErrorResponse	"The store did not answer in time"
//	@Header			all				{string}	X-Request-Id	"The request id, echoed or generated"
//	@Router			/api/v1/gpus/{id}/telemetry [get]
func (s *Server) getTelemetry(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	req, err := s.parseTelemetryRequest(r, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.ndjson {
		s.streamTelemetry(w, r, req.query)
		return
	}
	page, err := s.reader.QueryTelemetry(r.Context(), req.query)
	if err != nil {
		s.writeError(w, r, gpuError(id, err))
		return
	}
	body := TelemetryPage{GPUID: id, Entries: make([]TelemetryEntry, 0, len(page.Records))}
	for _, rec := range page.Records {
		body.Entries = append(body.Entries, entryOf(rec))
	}
	if page.Next != nil {
		body.NextCursor = encodeCursor(req.query, *page.Next)
	}
	s.writeJSON(w, r, http.StatusOK, body)
}

// streamTelemetry writes every matching entry as NDJSON. Headers go out with
// the first entry, so an error before it (an unknown GPU) is still a proper
// JSON error; a failure after it aborts the connection.
//
// A stream takes one of MaxStreams slots (429 when none is free) and lasts
// at most StreamMaxDuration and StreamMaxRows entries; one stopped by a
// limit ends with a StreamLimitLine (the cursor to continue with pages) and
// an aborted connection.
func (s *Server) streamTelemetry(w http.ResponseWriter, r *http.Request, q ports.TelemetryQuery) {
	if !s.streams.acquire() {
		w.Header().Set("Retry-After", "1")
		s.writeError(w, r, tooManyStreams(s.streams.max))
		return
	}
	defer s.streams.release()
	ctx, cancel := context.WithTimeout(r.Context(), s.streamMaxDur)
	defer cancel()
	var (
		rc        = http.NewResponseController(w)
		bw        *bufio.Writer
		enc       *json.Encoder
		rows      int
		last      ports.Cursor // of the last entry written
		lastFlush time.Time
	)
	extendDeadline := func() {
		if err := rc.SetWriteDeadline(time.Now().Add(streamWriteWindow)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.log.Debug("extend ndjson write deadline", "request_id", requestIDFrom(r.Context()), "err", err)
		}
	}
	start := func() {
		extendDeadline()
		h := w.Header()
		h.Set("Content-Type", mediaNDJSON)
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		bw = bufio.NewWriterSize(w, streamBufferBytes)
		enc = json.NewEncoder(bw)
		lastFlush = time.Now()
	}
	flush := func() error {
		extendDeadline()
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		lastFlush = time.Now()
		return nil
	}
	err := s.reader.StreamTelemetry(ctx, q, func(rec domain.Record) error {
		// The port does not promise to honour After in a stream; a resumed
		// stream must still not repeat rows.
		if q.After != nil && !after(rec, *q.After) {
			return nil
		}
		if rows >= s.streamMaxRow {
			return errStreamRows
		}
		if bw == nil {
			start()
		}
		if err := enc.Encode(entryOf(rec)); err != nil {
			return fmt.Errorf("write entry: %w", err)
		}
		rows++
		last = ports.Cursor{Timestamp: rec.Timestamp, ID: rec.ID}
		// The first row goes out at once, with the headers: the client
		// learns the stream started, and a later abort reads as a broken
		// body, not a failed request. (Not the headers alone: the gzip
		// middleware sends nothing before the first byte of the body.)
		if rows == 1 || rows%streamFlushRows == 0 || time.Since(lastFlush) >= streamFlushInterval {
			if err := flush(); err != nil {
				return fmt.Errorf("flush: %w", err)
			}
		}
		return nil
	})
	switch {
	case err == nil && bw == nil:
		start()
	case err == nil:
		if err := bw.Flush(); err != nil {
			s.log.Debug("finish ndjson stream", "request_id", requestIDFrom(r.Context()), "err", err)
		}
	case bw == nil:
		s.writeError(w, r, gpuError(q.GPUUUID, err))
	case r.Context().Err() == nil && (errors.Is(err, errStreamRows) || ctx.Err() != nil):
		s.endAtLimit(r, bw, flush, q, last, rows)
	case r.Context().Err() != nil:
		// The client went away; there is nobody to tell.
		s.log.Debug("ndjson stream canceled", "request_id", requestIDFrom(r.Context()), "rows", rows, "err", err)
	default:
		s.log.Error("ndjson stream failed", "request_id", requestIDFrom(r.Context()), "gpu", q.GPUUUID,
			"rows", rows, "err", err)
		// Headers and rows are out: a status can no longer say it. Abort the
		// connection so the client sees a broken stream, not a short one.
		panic(http.ErrAbortHandler)
	}
}

// endAtLimit ends a stream that reached StreamMaxRows or
// StreamMaxDuration: a last line names the limit and the cursor to continue
// from, then the connection is aborted so the stream cannot pass for
// complete.
func (s *Server) endAtLimit(r *http.Request, bw *bufio.Writer, flush func() error, q ports.TelemetryQuery, last ports.Cursor, rows int) {
	msg := fmt.Sprintf("stream stopped after %d entries, its limit (API_STREAM_MAX_ROWS); continue with cursor=next_cursor", rows)
	if rows < s.streamMaxRow {
		msg = fmt.Sprintf("stream stopped after %s and %d entries, its time limit (API_STREAM_MAX_DURATION); continue with cursor=next_cursor",
			s.streamMaxDur, rows)
	}
	line := StreamLimitLine{Error: ErrorBody{Code: codeStreamLimit, Message: msg, RequestID: requestIDFrom(r.Context())},
		NextCursor: encodeCursor(q, last)}
	s.log.Info("ndjson stream stopped at a limit", "request_id", requestIDFrom(r.Context()), "rows", rows)
	if err := json.NewEncoder(bw).Encode(line); err == nil {
		_ = flush()
	}
	panic(http.ErrAbortHandler)
}

// after reports whether rec comes strictly after c in (timestamp, id) order.
func after(rec domain.Record, c ports.Cursor) bool {
	if !rec.Timestamp.Equal(c.Timestamp) {
		return rec.Timestamp.After(c.Timestamp)
	}
	return rec.ID > c.ID
}

// gpuError names the GPU in a not-found error; other errors pass through
// to writeError unchanged.
func gpuError(id string, err error) error {
	if errors.Is(err, ports.ErrNotFound) {
		return notFound("gpu %q not found", id)
	}
	return fmt.Errorf("telemetry of gpu %q: %w", id, err)
}
