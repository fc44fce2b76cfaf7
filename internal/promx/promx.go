// Package promx declares the project's Prometheus series one line each and
// registers them together, so every adapter and app states a series as its
// name, help and buckets rather than as a page of option structs.
//
// It lives outside adapters/ and apps/ because both use it; it imports
// nothing of the module.
package promx

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Counter is a counter named name.
func Counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// CounterVec is a counter vector named name over labels.
func CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// Gauge is a gauge named name.
func Gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

// GaugeVec is a gauge vector named name over labels.
func GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

// GaugeFunc is a gauge named name whose value f gives at every scrape.
func GaugeFunc(name, help string, f func() float64) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
}

// Histogram is a histogram named name with the given bucket upper bounds.
func Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
}

// HistogramVec is a histogram vector named name over labels, with the given
// bucket upper bounds.
func HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
}

// Zero exports the series of a one-label counter vector for each value at 0
// from the start, so rate() and absent-series alerts work before the first
// increment.
func Zero(v *prometheus.CounterVec, values ...string) {
	for _, val := range values {
		v.WithLabelValues(val)
	}
}

// Register registers every collector with reg and returns every failure,
// joined and wrapped ("register metrics: ..."; errors.As still finds a
// prometheus.AlreadyRegisteredError). A nil reg leaves them unregistered:
// tests, and several instances in one process.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	return nil
}

// Reuse registers c with reg and returns it, or, when reg already holds an
// equal collector of the same type (a second instance of a component in one
// process, each test's server on a shared registry), returns that one so
// both count into the same series. A nil reg leaves c unregistered. When
// registration fails it returns c, unregistered but usable, and the error.
func Reuse[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}
