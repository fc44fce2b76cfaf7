package scrape

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/internal/promx"
)

// Reasons a scrape fails: the values of the reason label of
// streamer_scrape_errors_total.
const (
	ErrTimeout      = "timeout"        // no complete answer within Timeout
	ErrConnection   = "connection"     // refused, reset, DNS, TLS
	ErrHTTPStatus   = "http_status"    // an answer other than 200
	ErrBodyTooLarge = "body_too_large" // more than MaxBodyBytes after decompression
	ErrRead         = "read"           // the body broke off, or bad gzip
)

var errorReasons = []string{ErrTimeout, ErrConnection, ErrHTTPStatus, ErrBodyTooLarge, ErrRead}

// Reasons a DCGM series is skipped: the values of the reason label of
// streamer_scrape_series_skipped_total.
const (
	SkipMissingUUID     = "missing_uuid"     // no UUID label, or an empty one
	SkipBadGPUIndex     = "bad_gpu_index"    // no gpu label, or not a non-negative integer
	SkipParse           = "parse"            // a line the exposition parser refused
	SkipUnsupportedType = "unsupported_type" // a DCGM summary or histogram: no single value
)

var skipReasons = []string{SkipMissingUUID, SkipBadGPUIndex, SkipParse, SkipUnsupportedType}

type metrics struct {
	up            *prometheus.GaugeVec
	duration      *prometheus.GaugeVec
	durations     prometheus.Histogram
	samples       *prometheus.CounterVec
	errors        *prometheus.CounterVec
	roundsSkipped *prometheus.CounterVec
	skipped       *prometheus.CounterVec
	ignored       prometheus.Counter
	targets       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		up: promx.GaugeVec("streamer_scrape_target_up", "1 when the target's last scrape succeeded, 0 when it failed.", "target"),
		duration: promx.GaugeVec("streamer_scrape_duration_seconds",
			"Duration of the target's last scrape, request to parsed body.", "target"),
		durations: promx.Histogram("streamer_scrape_request_duration_seconds",
			"Duration of every scrape, all targets together.", prometheus.ExponentialBuckets(0.001, 2, 15)),
		samples: promx.CounterVec("streamer_scrape_samples_total", "DCGM samples a target produced as telemetry points.", "target"),
		errors:  promx.CounterVec("streamer_scrape_errors_total", "Failed scrapes, by target and reason.", "target", "reason"),
		roundsSkipped: promx.CounterVec("streamer_scrape_rounds_skipped_total",
			"Scrapes not made because the target's previous round was still being published.", "target"),
		skipped: promx.CounterVec("streamer_scrape_series_skipped_total",
			"DCGM series that could not become a telemetry point, by reason.", "reason"),
		ignored: promx.Counter("streamer_scrape_series_ignored_total", "Scraped series that are not DCGM fields (go_*, process_*, ...)."),
		targets: promx.Gauge("streamer_scrape_targets", "Targets currently scraped."),
	}
	promx.Zero(m.skipped, skipReasons...) // every reason at 0 from the start, so rate() works
	err := promx.Register(reg, m.up, m.duration, m.durations, m.samples, m.errors, m.roundsSkipped, m.skipped, m.ignored, m.targets)
	if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
		return nil, fmt.Errorf("one scrape source per registry: %w", err)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// addTarget exports a new target's series at their starting values.
func (m *metrics) addTarget(target string) {
	m.up.WithLabelValues(target).Set(0)
	m.samples.WithLabelValues(target)
	m.roundsSkipped.WithLabelValues(target)
	for _, r := range errorReasons {
		m.errors.WithLabelValues(target, r)
	}
}

// removeTarget drops a removed target's series, so a fleet that changes over
// months does not grow the streamer's /metrics forever.
func (m *metrics) removeTarget(target string) {
	m.up.DeleteLabelValues(target)
	m.duration.DeleteLabelValues(target)
	m.samples.DeleteLabelValues(target)
	m.roundsSkipped.DeleteLabelValues(target)
	m.errors.DeletePartialMatch(prometheus.Labels{"target": target})
}
