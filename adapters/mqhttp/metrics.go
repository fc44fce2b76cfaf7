package mqhttp

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/internal/promx"
)

// serverMetrics are the server's Prometheus collectors; safe for concurrent use.
type serverMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	refusals *prometheus.CounterVec
}

func newServerMetrics(reg prometheus.Registerer, log *slog.Logger, auth bool) serverMetrics {
	m := serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqhttp_requests_total",
			Help: "Queue protocol requests answered, by route and HTTP status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mqhttp_request_duration_seconds",
			Help: "Time to answer a queue protocol request, by route.",
			// 0.5 ms to ~16 s: a lease from memory is sub-millisecond, a
			// group-committed publish waits for PostgreSQL.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqhttp_auth_refusals_total",
			Help: "Queue protocol requests refused by authentication, by reason: missing or invalid token (401), token of the wrong scope (403).",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m
	}
	var err error
	if auth {
		if m.refusals, err = register(reg, m.refusals); err != nil {
			log.Warn("mqhttp: register metric", slog.String("metric", "mqhttp_auth_refusals_total"), slog.Any("error", err))
		}
		// Every reason is exposed from the start, so an alert on a rate
		// has a series to read before the first refusal.
		for _, reason := range []string{RefusalMissing, RefusalInvalid, RefusalWrongScope} {
			m.refusals.WithLabelValues(reason)
		}
	}
	if m.requests, err = register(reg, m.requests); err != nil {
		log.Warn("mqhttp: register metric", slog.String("metric", "mqhttp_requests_total"), slog.Any("error", err))
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		log.Warn("mqhttp: register metric", slog.String("metric", "mqhttp_request_duration_seconds"), slog.Any("error", err))
	}
	return m
}

// register registers c, or returns the identical collector already there
// (two servers in one process share their series): promx.Reuse.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	return promx.Reuse(reg, c)
}

func (m serverMetrics) observe(route string, status int, elapsed time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(elapsed.Seconds())
}

func (m serverMetrics) refused(reason string) {
	m.refusals.WithLabelValues(reason).Inc()
}
