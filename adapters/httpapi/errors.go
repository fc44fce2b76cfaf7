package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/gpufleet/telemetry/ports"
)

// Stable error codes of the API.
const (
	codeBadRequest       = "bad_request"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeUnavailable      = "unavailable"
	codeTimeout          = "timeout"
	codeCanceled         = "canceled"
	codeInternal         = "internal"
)

// statusClientClosedRequest is nginx's code for a client that went away
// before the answer; nobody reads it but the access log and the metrics.
const statusClientClosedRequest = 499

// apiError is an error whose status, code and message are meant for the
// client. Handlers build one for everything they reject themselves.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, code: codeBadRequest, message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &apiError{status: http.StatusNotFound, code: codeNotFound, message: fmt.Sprintf(format, args...)}
}

// writeError is the one way an error leaves the API. It maps the ports
// sentinels to statuses, writes {"error":{…}}, and logs what the client is
// not told: the detail of a 5xx never reaches the body (it may hold SQL or
// driver text).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		ae  *apiError
		log = s.log.With("request_id", requestIDFrom(r.Context()), "method", r.Method, "path", r.URL.Path)
	)
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, ports.ErrNotFound):
		ae = &apiError{http.StatusNotFound, codeNotFound, "not found"}
	case errors.Is(err, ports.ErrInvalidArgument):
		// Requests are validated before they reach the reader, so this is a
		// reader rejecting what we let through: say little, log the rest.
		log.Warn("reader rejected a validated query", "err", err)
		ae = &apiError{http.StatusBadRequest, codeBadRequest, "invalid query"}
	case errors.Is(err, ports.ErrUnavailable), errors.Is(err, ports.ErrClosed):
		log.Warn("telemetry store unavailable", "err", err)
		w.Header().Set("Retry-After", "1")
		ae = &apiError{http.StatusServiceUnavailable, codeUnavailable, "the telemetry store is unavailable; retry shortly"}
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		log.Debug("client went away", "err", err)
		ae = &apiError{statusClientClosedRequest, codeCanceled, "request canceled"}
	case errors.Is(err, context.DeadlineExceeded):
		log.Warn("request timed out", "err", err)
		ae = &apiError{http.StatusGatewayTimeout, codeTimeout, "the query took too long; narrow the window or lower the limit"}
	default:
		log.Error("internal error", "err", err)
		ae = &apiError{http.StatusInternalServerError, codeInternal, "internal error"}
	}
	body := ErrorResponse{Error: ErrorBody{Code: ae.code, Message: ae.message, RequestID: requestIDFrom(r.Context())}}
	s.writeJSON(w, r, ae.status, body)
}

// jsonBuffers recycles response buffers: a 1,000-entry page is about
// 570 KiB, which a fresh buffer reaches by doubling a dozen times, copying
// and zeroing twice that on every request (measured by test/benchapi).
var jsonBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer keeps a rare huge page (limit=10000 is about 6 MiB) from
// being held by the pool.
const maxPooledBuffer = 2 << 20

// writeJSON encodes v fully before writing anything, so a value that cannot
// be encoded becomes a 500 rather than half a body.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	buf := jsonBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBuffer {
			jsonBuffers.Put(buf)
		}
	}()
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		if _, isErr := v.(ErrorResponse); isErr {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		s.writeError(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	// A length instead of chunked encoding; the gzip middleware drops it
	// when it compresses.
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if _, err := w.Write(buf.Bytes()); err != nil {
		s.log.Debug("write response", "request_id", requestIDFrom(r.Context()), "err", err)
	}
}

// logger returns l, or slog.Default() when l is nil.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
