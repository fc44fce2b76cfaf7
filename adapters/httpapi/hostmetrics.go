package httpapi

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/ports"
)

// hostLastSeenTimeout bounds the registry read of one scrape; a scrape that
// cannot read it in time reports no host rather than hang the scraper.
const hostLastSeenTimeout = 5 * time.Second

// hostLastSeen exports apigw_gpu_host_last_seen_timestamp_seconds{hostname}:
// the newest sample time of any GPU of each host, read from the GPU
// registry (ports.TelemetryReader.ListGPUs, never a scan of samples) at
// scrape time. It is what the TelemetryGPUHostSilent alert watches: the
// registry survives restarts of every app, so a host that falls silent
// stays visible until it is silent for longer than the alert's horizon.
// One series per host (not per GPU: 8× fewer, and a host is what goes
// silent); a fleet of 5,000 hosts is 5,000 series per apigw replica.
type hostLastSeen struct {
	reader ports.TelemetryReader
	log    *slog.Logger
	desc   *prometheus.Desc
}

func newHostLastSeen(reader ports.TelemetryReader, log *slog.Logger) *hostLastSeen {
	return &hostLastSeen{reader: reader, log: log, desc: prometheus.NewDesc(
		"apigw_gpu_host_last_seen_timestamp_seconds",
		"Unix time of the newest stored sample of any GPU of the host (from the GPU registry, read at scrape time).",
		[]string{"hostname"}, nil)}
}

// Describe implements prometheus.Collector.
func (h *hostLastSeen) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect implements prometheus.Collector. A failed registry read is logged
// and leaves the hosts out of this scrape: an invalid metric would fail the
// whole /metrics answer (promhttp's default) and hide the other metrics
// while the database is down, which other alerts already report.
func (h *hostLastSeen) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), hostLastSeenTimeout)
	defer cancel()
	gpus, err := h.reader.ListGPUs(ctx)
	if err != nil {
		h.log.Warn("gpu host metrics: list gpus", "err", err)
		return
	}
	newest := make(map[string]time.Time)
	for _, g := range gpus {
		if g.LastSeen.After(newest[g.Hostname]) {
			newest[g.Hostname] = g.LastSeen
		}
	}
	for host, t := range newest {
		ch <- prometheus.MustNewConstMetric(h.desc, prometheus.GaugeValue, float64(t.UnixNano())/1e9, host)
	}
}
