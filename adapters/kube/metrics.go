package kube

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/internal/promx"
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
		syncs: promx.CounterVec("partition_controller_syncs_total",
			"Reconciliations of the reader StatefulSet, by result (ok, error = retried, invalid = dropped).", "result"),
		syncSeconds: promx.Histogram("partition_controller_sync_duration_seconds",
			"Time one reconciliation took, API calls included.", prometheus.ExponentialBuckets(0.001, 4, 8)),
		configMaps: promx.Counter("partition_controller_configmap_writes_total",
			"Writes of a new partition assignment to the readers' ConfigMap."),
		rollouts: promx.Counter("partition_controller_rollouts_total",
			"Patches of the StatefulSet's partitions-checksum annotation (each starts a rolling restart of the readers)."),
		replicas: promx.Gauge("partition_controller_reader_replicas", "Replica count of the reader StatefulSet at the last sync."),
		leader:   promx.Gauge("partition_controller_leader", "1 while this process holds the leader lease and runs the controller, else 0."),
	}
	promx.Zero(m.syncs, resultOK, resultError, resultInvalid)
	if err := promx.Register(reg, m.syncs, m.syncSeconds, m.configMaps, m.rollouts, m.replicas, m.leader); err != nil {
		return nil, err
	}
	return m, nil
}
