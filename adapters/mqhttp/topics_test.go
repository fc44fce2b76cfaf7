package mqhttp_test

import (
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
)

func TestServerServesOnlyItsTopics(t *testing.T) {
	t.Parallel()
	ackOf := func(topic string) string {
		return `{"topic":"` + topic + `","consumer_id":"c","lease_id":"` + uuid.NewString() + `"}`
	}
	tests := []struct {
		name   string
		topics []string
		path   string
		body   string
		status int
		code   string
	}{
		{name: "publish to a served topic", topics: []string{"telemetry"}, path: mqhttp.PathPublish,
			body: `{"topic":"telemetry","messages":[{"payload":1}]}`, status: http.StatusOK},
		{name: "publish to another topic", topics: []string{"telemetry"}, path: mqhttp.PathPublish,
			body: `{"topic":"other","messages":[{"payload":1}]}`, status: http.StatusNotFound, code: mqhttp.CodeNotFound},
		{name: "lease of another topic", topics: []string{"telemetry", "audit"}, path: mqhttp.PathLease,
			body: `{"topic":"other","consumer_id":"c","max":1,"lease_seconds":1}`, status: http.StatusNotFound, code: mqhttp.CodeNotFound},
		{name: "lease of a served topic", topics: []string{"telemetry", "audit"}, path: mqhttp.PathLease,
			body: `{"topic":"audit","consumer_id":"c","max":1,"lease_seconds":1}`, status: http.StatusOK},
		{name: "ack of another topic", topics: []string{"telemetry"}, path: mqhttp.PathAck,
			body: ackOf("other"), status: http.StatusNotFound, code: mqhttp.CodeNotFound},
		{name: "ack of a served topic, unknown lease", topics: []string{"telemetry"}, path: mqhttp.PathAck,
			body: ackOf("telemetry"), status: http.StatusConflict, code: mqhttp.CodeLeaseExpired},
		{name: "release of another topic", topics: []string{"telemetry"}, path: mqhttp.PathRelease,
			body: ackOf("other"), status: http.StatusNotFound, code: mqhttp.CodeNotFound},
		{name: "no list serves any topic", path: mqhttp.PathPublish,
			body: `{"topic":"other","messages":[{"payload":1}]}`, status: http.StatusOK},
		{name: "a malformed topic is still a 400", topics: []string{"telemetry"}, path: mqhttp.PathPublish,
			body: `{"topic":"","messages":[{"payload":1}]}`, status: http.StatusBadRequest, code: mqhttp.CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := newMemoryServer(t, mqhttp.ServerOptions{Logger: quietLogger(), Topics: tt.topics})
			a := postJSON(t, srv.URL, tt.path, tt.body)
			require.Equal(t, tt.status, a.status, "%s", a.body)
			if tt.code != "" {
				e := a.errorBody(t)
				require.Equal(t, tt.code, e.Error.Code)
				if tt.status == http.StatusNotFound {
					require.Contains(t, e.Error.Message, `unknown topic "other"`)
				}
			}
		})
	}
}
