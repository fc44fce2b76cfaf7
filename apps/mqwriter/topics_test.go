package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// TestServesOnlyQueueTopics: a publish to a topic outside QUEUE_TOPICS
// (default: telemetry) is a 404 and stores nothing nobody would consume.
func TestServesOnlyQueueTopics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		env    map[string]string
		topic  string
		status int
	}{
		{name: "default serves telemetry", env: map[string]string{}, topic: "telemetry", status: http.StatusOK},
		{name: "default refuses others", env: map[string]string{}, topic: "no-such-topic", status: http.StatusNotFound},
		{name: "a configured topic", env: map[string]string{"QUEUE_TOPICS": "telemetry, audit"}, topic: "audit", status: http.StatusOK},
		{name: "configured list refuses others", env: map[string]string{"QUEUE_TOPICS": "audit"}, topic: "telemetry", status: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.env["DATABASE_URL"] = pgtest.NewDatabase(t)
			base := apptest.Start(t, options, tt.env)
			code, body := apptest.Fetch(t, http.MethodPost, base+"/v1/publish",
				`{"topic":"`+tt.topic+`","messages":[{"payload":{"n":1}}]}`)
			require.Equal(t, tt.status, code, body)
			if tt.status == http.StatusNotFound {
				require.Contains(t, body, `"not_found"`)
			}
		})
	}
}
