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
		Bad: map[string]string{"WRITER_BUFFER_SIZE": "lots"}, BadNames: []string{"WRITER_BUFFER_SIZE", "DATABASE_URL is required"},
		Start: func(t *testing.T) map[string]string {
			return apptest.WithTokens(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)})
		}})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	apptest.RequireQueueAuth(t, options, apptest.QueueAuth{
		Env:     func(t *testing.T) map[string]string { return map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)} },
		Path:    "/v1/publish",
		Body:    `{"topic":"telemetry","messages":[{"payload":{"n":1}}]}`,
		Token:   apptest.PublishToken,
		Other:   apptest.ConsumeToken,
		Missing: []string{"MQ_PUBLISH_TOKENS or MQ_PUBLISH_TOKENS_FILE"},
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	base := apptest.Start(t, options, apptest.WithTokens(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)}))
	publish := &apptest.Request{Method: http.MethodPost, Path: "/v1/publish", Token: apptest.PublishToken,
		Body: `{"topic":"telemetry","messages":[{"payload":{"gpu_uuid":"GPU-1"},"key":"GPU-1","idempotency_key":"metrics-test/1"}]}`}
	scrape := apptest.RequireServes(t, base, publish,
		"mqwriter_buffer_utilization_ratio", "mqwriter_messages_published_total", "mqhttp_requests_total", "mqhttp_auth_refusals_total")
	require.Contains(t, scrape, "\nmqwriter_messages_published_total 1\n")
}

// TestServesOnlyQueueTopics: a publish to a topic outside QUEUE_TOPICS
// (default: telemetry) is a 404 and stores nothing nobody would consume.
func TestServesOnlyQueueTopics(t *testing.T) {
	t.Parallel()
	apptest.RequireServesOnlyQueueTopics(t, options,
		func(t *testing.T) map[string]string {
			return apptest.WithTokens(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)})
		},
		"/v1/publish", apptest.PublishToken, func(topic string) string { return `{"topic":"` + topic + `","messages":[{"payload":{"n":1}}]}` },
		[]apptest.TopicCase{
			{Name: "default serves telemetry", Topic: "telemetry", Status: http.StatusOK},
			{Name: "default refuses others", Topic: "no-such-topic", Status: http.StatusNotFound},
			{Name: "a configured topic", Env: map[string]string{"QUEUE_TOPICS": "telemetry, audit"}, Topic: "audit", Status: http.StatusOK},
			{Name: "configured list refuses others", Env: map[string]string{"QUEUE_TOPICS": "audit"}, Topic: "telemetry", Status: http.StatusNotFound},
		})
}
