package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// TestServesOnlyQueueTopics: a lease of a topic outside QUEUE_TOPICS
// (default: telemetry) is a 404, so no client can make the reader start
// serving (and polling PostgreSQL for) topics that do not exist.
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
		{name: "configured list refuses others", env: map[string]string{"QUEUE_TOPICS": "audit"}, topic: "telemetry", status: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.env["DATABASE_URL"] = pgtest.NewDatabase(t)
			tt.env["PARTITIONS"] = "0-255"
			base := apptest.Start(t, options, tt.env)
			code, body := apptest.Fetch(t, http.MethodPost, base+"/v1/lease",
				`{"topic":"`+tt.topic+`","consumer_id":"c","max":1,"lease_seconds":1}`)
			require.Equal(t, tt.status, code, body)
		})
	}
}
