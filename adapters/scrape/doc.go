// Package scrape is the live source adapter: it implements ports.Source by
// scraping NVIDIA dcgm-exporter endpoints (Prometheus text format or
// OpenMetrics, parsed with prometheus/common/expfmt) instead of replaying a
// CSV dump.
//
// Every series whose name starts with DCGM_ becomes one domain.Point, the
// same point the CSV source makes of the same sample: metric name, GPU UUID
// (label UUID), GPU index (gpu), device, model (modelName), host (Hostname),
// container/pod/namespace, the value (DCGM blank sentinels, NaN and ±Inf
// become nil, as for the CSV), and labels_raw rebuilt from the series' labels
// in the CSV's form (name="value" pairs sorted by name, __name__ and the
// target's instance="host:port" included). A point is stamped with the time
// of its scrape, or with the sample's own timestamp when the exporter sent
// one. A DCGM series without a UUID or with an unusable gpu label is counted
// in streamer_scrape_series_skipped_total and skipped; any other series
// (go_*, process_*) is counted in streamer_scrape_series_ignored_total.
//
// Targets come from a Discoverer: a fixed list (SCRAPE_TARGETS), a file
// re-read when it changes (SCRAPE_TARGETS_FILE), or Kubernetes EndpointSlices
// (adapters/kube, wired by the apps). Each target has its own goroutine that
// scrapes every Interval at a fixed offset inside the interval (a hash of its
// URL), so a thousand targets do not all hit the network at the same
// instant, and a slow or dead target only ever delays itself: its scrape is
// cut at Timeout, counted by reason, its up gauge drops to 0, and it is tried
// again at its next slot.
//
// The port hands out points one at a time, so the target goroutines feed one
// bounded channel that Next reads. Backpressure: a target hands out its whole
// round (a consistent snapshot of its GPUs, stamped with the scrape time)
// before it scrapes again. When the publisher is slower than the interval, the
// rounds that would have started while the previous one was still being
// handed out are skipped, not queued, and counted in
// streamer_scrape_rounds_skipped_total{target}: memory stays bounded by one
// round per target plus the channel, and the data sent is never staler than
// one round.
//
// No mutex: the manager goroutine owns the set of targets (started and
// stopped as the Discoverer's set changes), each target goroutine owns its
// buffers and schedule, and counters are Prometheus collectors.
package scrape
