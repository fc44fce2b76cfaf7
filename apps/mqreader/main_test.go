package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func TestLifecycle(t *testing.T) {
	t.Parallel()
	apptest.RequireLifecycle(t, options, apptest.Lifecycle{Valid: apptest.WithTokens(map[string]string{"DATABASE_URL": apptest.UnreachableDB}),
		Bad: map[string]string{"PARTITIONS": "7-3"}, BadNames: []string{"PARTITIONS", "DATABASE_URL is required"},
		Start: func(t *testing.T) map[string]string {
			return apptest.WithTokens(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "PARTITIONS": "0-255"})
		}})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	apptest.RequireQueueAuth(t, options, apptest.QueueAuth{
		Env: func(t *testing.T) map[string]string {
			return map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "PARTITIONS": "0-255"}
		},
		Path:    "/v1/lease",
		Body:    `{"topic":"telemetry","consumer_id":"c","max":1,"lease_seconds":1}`,
		Token:   apptest.ConsumeToken,
		Other:   apptest.PublishToken,
		Missing: []string{"MQ_CONSUME_TOKENS or MQ_CONSUME_TOKENS_FILE"},
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	base := apptest.Start(t, options, apptest.WithTokens(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "PARTITIONS": "0-255"}))
	lease := &apptest.Request{Method: http.MethodPost, Path: "/v1/lease", Token: apptest.ConsumeToken, Body: `{"topic":"telemetry","consumer_id":"metrics-test","max":10,"lease_seconds":30}`}
	apptest.RequireServes(t, base, lease,
		"mqreader_buffer_utilization_ratio", "mqreader_backlog_messages", "mqhttp_requests_total")
}

func TestReadyzWithoutPartitions(t *testing.T) {
	t.Parallel()
	base := apptest.Start(t, options, apptest.WithTokens(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)}))
	code, _ := apptest.Fetch(t, http.MethodGet, base+"/healthz", "")
	require.Equal(t, http.StatusOK, code)
	code, body := apptest.Fetch(t, http.MethodGet, base+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, code, "a reader without a range says so")
	require.Contains(t, body, `"reader"`)
}

// TestServesOnlyQueueTopics: a lease of a topic outside QUEUE_TOPICS
// (default: telemetry) is a 404, so no client can make the reader start
// serving (and polling PostgreSQL for) topics that do not exist.
func TestServesOnlyQueueTopics(t *testing.T) {
	t.Parallel()
	apptest.RequireServesOnlyQueueTopics(t, options,
		func(t *testing.T) map[string]string {
			return apptest.WithTokens(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "PARTITIONS": "0-255"})
		},
		"/v1/lease", apptest.ConsumeToken, func(topic string) string {
			return `{"topic":"` + topic + `","consumer_id":"c","max":1,"lease_seconds":1}`
		},
		[]apptest.TopicCase{
			{Name: "default serves telemetry", Topic: "telemetry", Status: http.StatusOK},
			{Name: "default refuses others", Topic: "no-such-topic", Status: http.StatusNotFound},
			{Name: "configured list refuses others", Env: map[string]string{"QUEUE_TOPICS": "audit"}, Topic: "telemetry", Status: http.StatusNotFound},
		})
}
