package main

import (
	"testing"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	base := apptest.Start(t, options, map[string]string{"QUEUE_BACKEND": "memory", "STORE_BACKEND": "memory"})
	apptest.RequireProbesOK(t, base)
	apptest.RequireCleanMetrics(t, base,
		"collector_records_persisted_total", "collector_messages_acked_total", "collector_acks_rejected_total",
		"collector_messages_dead_lettered_total", "collector_batch_duration_seconds",
		"memory_queue_ready_messages", "go_goroutines", "process_cpu_seconds_total")
}
