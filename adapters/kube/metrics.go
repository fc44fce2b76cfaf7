package kube

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's Prometheus series. They are safe for
// concurrent use (the client library synchronises them).
type metrics struct {
	syncs       *prometheus.CounterVec // result: ok | error | invalid
	syncSeconds prometheus.Histogram
	configMaps  prometheus.Counter // ConfigMap creates and updates
	rollouts    prometheus.Counter // checksum annotation patches
	replicas    prometheus.Gauge
	leader      prometheus.Gauge
}

// Values of the result label of partition_controller_syncs_total.
const (
	resultOK      = "ok"
	resultError   = "error"
	resultInvalid = "invalid"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "partition_controller_syncs_total",
			Help: "Reconciliations of the reader StatefulSet, by result (ok, error = retried, invalid = dropped).",
		}, []string{"result"}),
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "partition_controller_sync_duration_seconds",
			Help:    "Time one reconciliation took, API calls included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		configMaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "partition_controller_configmap_writes_total",
			Help: "Writes of a new partition assignment to the readers' ConfigMap.",
		}),
		rollouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "partition_controller_rollouts_total",
			Help: "Patches of the StatefulSet's partitions-checksum annotation (each starts a rolling restart of the readers).",
		}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "partition_controller_reader_replicas",
			Help: "Replica count of the reader StatefulSet at the last sync.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "partition_controller_leader",
			Help: "1 while this process holds the leader lease and runs the controller, else 0.",
		}),
	}
	for _, r := range []string{resultOK, resultError, resultInvalid} {
		m.syncs.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.syncs, m.syncSeconds, m.configMaps, m.rollouts, m.replicas, m.leader} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
