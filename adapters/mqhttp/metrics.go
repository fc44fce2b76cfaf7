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
		requests: promx.CounterVec("mqhttp_requests_total",
			"Queue protocol requests answered, by route and HTTP status code.", "route", "code"),
		// 0.5 ms to ~16 s: a lease from memory is sub-millisecond, a
		// group-committed publish waits for PostgreSQL.
		duration: promx.HistogramVec("mqhttp_request_duration_seconds",
			"Time to answer a queue protocol request, by route.", prometheus.ExponentialBuckets(0.0005, 2, 16), "route"),
		refusals: promx.CounterVec("mqhttp_auth_refusals_total",
			"Queue protocol requests refused by authentication, by reason: missing or invalid token (401), token of the wrong scope (403).", "reason"),
	}
	if reg == nil {
		return m
	}
	var err error
	if auth {
		if m.refusals, err = promx.Reuse(reg, m.refusals); err != nil {
			log.Warn("mqhttp: register metric", slog.String("metric", "mqhttp_auth_refusals_total"), slog.Any("error", err))
		}
		// Every reason is exposed from the start, so an alert on a rate
		// has a series to read before the first refusal.
		promx.Zero(m.refusals, RefusalMissing, RefusalInvalid, RefusalWrongScope)
	}
	if m.requests, err = promx.Reuse(reg, m.requests); err != nil {
		log.Warn("mqhttp: register metric", slog.String("metric", "mqhttp_requests_total"), slog.Any("error", err))
	}
	if m.duration, err = promx.Reuse(reg, m.duration); err != nil {
		log.Warn("mqhttp: register metric", slog.String("metric", "mqhttp_request_duration_seconds"), slog.Any("error", err))
	}
	return m
}

func (m serverMetrics) observe(route string, status int, elapsed time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(elapsed.Seconds())
}

func (m serverMetrics) refused(reason string) {
	m.refusals.WithLabelValues(reason).Inc()
}
