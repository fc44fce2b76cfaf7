package httpapi

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
)

// routeUnmatched labels requests no route matched (404 and 405), so that
// scanners cannot blow up the metric's cardinality.
const routeUnmatched = "unmatched"

// requestIDHeader carries the request id both ways.
const requestIDHeader = "X-Request-Id"

// saneRequestID accepts the ids proxies and tracers generate (UUIDs, hex,
// base64) and nothing that could forge a log line.
var saneRequestID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:+=/-]{0,127}$`)

type ctxKey int

const stateKey ctxKey = 0

// requestState is what the outer middleware learns about a request from the
// inner layers. It is created, written and read by the one goroutine serving
// the request.
type requestState struct {
	id    string
	route string
}

func stateFrom(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey).(*requestState)
	return st
}

func requestIDFrom(ctx context.Context) string {
	if st := stateFrom(ctx); st != nil {
		return st.id
	}
	return ""
}

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

// captureRoute is a mux middleware: it runs only for matched routes and
// records the route template for the log and the metric.
func captureRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := stateFrom(r.Context()); st != nil {
			if tpl, err := mux.CurrentRoute(r).GetPathTemplate(); err == nil {
				st.route = tpl
			}
		}
		next.ServeHTTP(w, r)
	})
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
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "apigw_http_request_duration_seconds",
		Help: "Time to serve API requests, from the first byte read to the last byte written, by route template, method and status code.",
		// Up to 60 s: NDJSON streams of a long window are legitimately slow.
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route", "method", "code"})
	if reg == nil {
		return h, nil
	}
	if err := reg.Register(h); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.HistogramVec); ok {
				return existing, nil
			}
		}
		return h, err
	}
	return h, nil
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

// gzipWriters recycles compressors: a gzip.Writer holds about 800 KiB.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // a valid level never fails
	return zw
}}

// compress gzips responses for clients that accept it. The choice is made
// when the handler starts its response: only 200s and errors of a
// compressible type (JSON, NDJSON, HTML, JS, CSS, text) that are not already
// encoded. NDJSON streams are compressed too: Flush flushes the gzip stream
// before the connection, so every flushed line reaches the client whole.
// BestSpeed: telemetry JSON is so repetitive that level 1 gets most of the
// ratio for a fraction of the CPU.
func compress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if r.Method == http.MethodHead || !acceptsGzip(r.Header.Values("Accept-Encoding")) {
			next.ServeHTTP(w, r)
			return
		}
		gw := &gzipWriter{ResponseWriter: w}
		next.ServeHTTP(gw, r)
		// Not deferred: when the handler aborts (panics), the gzip stream
		// must not get a valid trailer that would make a cut body look whole.
		gw.close()
	})
}

// acceptsGzip reports whether Accept-Encoding allows gzip (q > 0).
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
				continue
			}
			k, q, ok := strings.Cut(strings.TrimSpace(params), "=")
			if ok && strings.TrimSpace(k) == "q" {
				f, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
				return err == nil && f > 0
			}
			return true
		}
	}
	return false
}

// gzipWriter compresses the body once the handler's headers show it should.
type gzipWriter struct {
	http.ResponseWriter
	decided bool         // owned by the request's goroutine
	zw      *gzip.Writer // owned by the request's goroutine; nil when not compressing
}

func (g *gzipWriter) decide(code int) {
	if g.decided {
		return
	}
	g.decided = true
	h := g.Header()
	if h.Get("Content-Encoding") != "" || h.Get("Content-Range") != "" ||
		code == http.StatusPartialContent || code == http.StatusNoContent || code == http.StatusNotModified ||
		(code != http.StatusOK && code < 400) || !compressible(h.Get("Content-Type")) {
		return
	}
	h.Set("Content-Encoding", "gzip")
	h.Del("Content-Length")
	g.zw = gzipWriters.Get().(*gzip.Writer)
	g.zw.Reset(g.ResponseWriter)
}

func (g *gzipWriter) WriteHeader(code int) {
	if code >= 200 {
		g.decide(code)
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipWriter) Write(b []byte) (int, error) {
	if !g.decided {
		g.WriteHeader(http.StatusOK)
	}
	if g.zw == nil {
		return g.ResponseWriter.Write(b)
	}
	return g.zw.Write(b)
}

// FlushError pushes what the compressor holds to the client, then flushes
// the connection; http.ResponseController.Flush calls it.
func (g *gzipWriter) FlushError() error {
	if g.zw != nil {
		if err := g.zw.Flush(); err != nil {
			return err
		}
	}
	return http.NewResponseController(g.ResponseWriter).Flush()
}

func (g *gzipWriter) Flush() { _ = g.FlushError() }

func (g *gzipWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// close ends the gzip stream and recycles the compressor.
func (g *gzipWriter) close() {
	if g.zw == nil {
		return
	}
	_ = g.zw.Close() // a failed write already failed the handler's Write
	g.zw.Reset(io.Discard)
	gzipWriters.Put(g.zw)
	g.zw = nil
}

func compressible(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"), mt == mediaJSON, mt == mediaNDJSON,
		mt == "application/javascript", mt == "application/yaml", strings.HasSuffix(mt, "+json"):
		return true
	}
	return false
}
