package main

import (
	"testing"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
)

func TestLifecycle(t *testing.T) {
	t.Parallel()
	apptest.RequireLifecycle(t, options, apptest.Lifecycle{
		Bad: map[string]string{"QUEUE_BACKEND": "kafka", "STORE_BACKEND": "memory", "LEASE_MAX": "0"}, BadNames: []string{"QUEUE_BACKEND", "LEASE_MAX"},
		Start: func(*testing.T) map[string]string {
			return map[string]string{"QUEUE_BACKEND": "memory", "STORE_BACKEND": "memory"}
		}})
	for _, queue := range []string{"postgres", "memory"} {
		for _, store := range []string{"postgres", "memory"} {
			apptest.RequireValid(t, options, map[string]string{"DATABASE_URL": apptest.UnreachableDB, "QUEUE_BACKEND": queue, "STORE_BACKEND": store})
		}
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	base := apptest.Start(t, options, map[string]string{"QUEUE_BACKEND": "memory", "STORE_BACKEND": "memory"})
	apptest.RequireServes(t, base, nil,
		"collector_records_persisted_total", "collector_messages_acked_total", "collector_acks_rejected_total",
		"collector_messages_dead_lettered_total", "collector_batch_duration_seconds",
		"memory_queue_ready_messages")
}
