package mqhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gpufleet/telemetry/ports"
)

// Stable error codes of the protocol (the "code" of an error body).
const (
	CodeInvalidArgument      = "invalid_argument"
	CodeNotFound             = "not_found"
	CodeUnauthenticated      = "unauthenticated"
	CodeForbidden            = "forbidden"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeLeaseExpired         = "lease_expired"
	CodePayloadTooLarge      = "payload_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeBackpressure         = "backpressure"
	CodeClosed               = "closed"
	CodeUnavailable          = "unavailable"
	CodeTimeout              = "timeout"
	CodeInternal             = "internal"
)

// retryAfterSeconds is the Retry-After the server sends with 429 and 503.
const retryAfterSeconds = "1"

// protocolError is a failure of the HTTP layer itself (size, media type,
// routing), carrying its status and code.
type protocolError struct {
	status  int
	code    string
	message string
}

func (e *protocolError) Error() string { return e.message }

// badRequest is a 400 for a request that fails validation. It wraps
// ports.ErrInvalidArgument so one mapping serves the port's errors and ours.
func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ports.ErrInvalidArgument, fmt.Sprintf(format, args...))
}

func tooLarge(format string, args ...any) error {
	return &protocolError{status: http.StatusRequestEntityTooLarge, code: CodePayloadTooLarge, message: fmt.Sprintf(format, args...)}
}

// answers lists, in order of precedence, the errors classify recognises
// with errors.Is and the fixed answer each gets.
var answers = []struct {
	err     error
	status  int
	code    string
	message string
}{
	{ports.ErrLeaseExpired, http.StatusConflict, CodeLeaseExpired, "lease expired or unknown; its messages may be delivered again"},
	{ports.ErrNotFound, http.StatusNotFound, CodeNotFound, "not found"},
	{ports.ErrBackpressure, http.StatusTooManyRequests, CodeBackpressure, "queue buffer full; retry later"},
	{ports.ErrClosed, http.StatusServiceUnavailable, CodeClosed, "shutting down; retry on another instance or later"},
	{ports.ErrUnavailable, http.StatusServiceUnavailable, CodeUnavailable, "temporarily unavailable; retry later"},
	{context.DeadlineExceeded, http.StatusGatewayTimeout, CodeTimeout, "request timed out"},
	{context.Canceled, http.StatusServiceUnavailable, CodeUnavailable, "request cancelled"},
}

// classify maps an error to the status, code and client-facing message of
// its answer. It is the one place ports sentinels become HTTP statuses.
// Only invalid-argument messages carry the error's text (they describe the
// request); everything else gets a fixed message so internals never leak.
func classify(err error) (status int, code, message string) {
	var pe *protocolError
	switch {
	case errors.As(err, &pe):
		return pe.status, pe.code, pe.message
	case errors.Is(err, ports.ErrInvalidArgument):
		return http.StatusBadRequest, CodeInvalidArgument, err.Error()
	}
	for _, a := range answers {
		if errors.Is(err, a.err) {
			return a.status, a.code, a.message
		}
	}
	return http.StatusInternalServerError, CodeInternal, "internal error"
}

// writeError answers err as a JSON error body and returns the status sent.
func writeError(w http.ResponseWriter, err error) int {
	status, code, message := classify(err)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message}})
	return status
}

// selfEncoder is a body that writes its own JSON, for a body whose size
// grows with the load (leaseResponse: payloads copied rather than
// re-compacted by encoding/json).
type selfEncoder interface{ encodeJSON() []byte }

// writeJSON answers v with status. An encoding failure cannot be reported
// to the client once the header is out, and our wire types always encode.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if se, ok := v.(selfEncoder); ok {
		b := se.encodeJSON()
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, _ = w.Write(b)
		return
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
