package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/internal/promx"
)

// requestIDHeader carries the request id both ways.
const requestIDHeader = "X-Request-Id"

// saneRequestID accepts the ids proxies and tracers generate (UUIDs, hex,
// base64) and nothing that could forge a log line.
var saneRequestID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:+=/-]{0,127}$`)

// observe is the outermost middleware: it assigns the request id, then logs
// and times the request once it is done, even when the handler aborts it.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(requestIDHeader)
		if !saneRequestID.MatchString(id) {
			id = uuid.NewString()
		}
		st := &requestState{id: id, route: routeUnmatched}
		w.Header().Set(requestIDHeader, id)
		rec := &recorder{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), stateKey, st))

		completed := false
		// No recover: a panicking handler (http.ErrAbortHandler, or a bug that
		// net/http will log with its stack) is still logged and counted, as a
		// 500 since the client did not get its answer.
		defer func() {
			status := rec.status
			switch {
			case !completed:
				status = http.StatusInternalServerError
			case status == 0:
				status = http.StatusOK // nothing written: net/http sends 200
			}
			elapsed := time.Since(start)
			s.duration.WithLabelValues(st.route, methodLabel(r.Method), strconv.Itoa(status)).Observe(elapsed.Seconds())
			s.log.LogAttrs(r.Context(), levelFor(status), "http request",
				slog.String("request_id", id), slog.String("method", r.Method), slog.String("route", st.route),
				slog.String("path", r.URL.Path), slog.Int("status", status), slog.Int64("bytes", rec.bytes),
				slog.Duration("duration", elapsed), slog.Bool("aborted", !completed))
		}()
		next.ServeHTTP(rec, r)
		completed = true
	})
}

// levelFor logs server failures louder than ordinary requests.
func levelFor(status int) slog.Level {
	if status >= 500 {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// methodLabel keeps the method label to a fixed set: methods are client input.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// newDurationHistogram registers apigw_http_request_duration_seconds on reg,
// reusing an identical collector a previous Server registered there.
func newDurationHistogram(reg prometheus.Registerer) (*prometheus.HistogramVec, error) {
	// Up to 60 s: NDJSON streams of a long window are legitimately slow.
	return promx.Reuse(reg, promx.HistogramVec("apigw_http_request_duration_seconds",
		"Time to serve API requests, from the first byte read to the last byte written, by route template, method and status code.",
		[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}, "route", "method", "code"))
}

// recorder notes the status and the bytes that went to the client.
type recorder struct {
	http.ResponseWriter
	status int   // owned by the request's goroutine
	bytes  int64 // owned by the request's goroutine
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 && code >= 200 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

// FlushError is what http.ResponseController.Flush calls; Flush serves
// plain http.Flusher users.
func (rw *recorder) FlushError() error { return http.NewResponseController(rw.ResponseWriter).Flush() }

func (rw *recorder) Flush() { _ = rw.FlushError() }

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }
