package streamer

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
)

// TestOneRetryLoopOverTheHTTPClient runs the streamer over the real queue
// client as the streamer app builds it (PublishOnce): every attempt the
// writer sees is one of the streamer's, counted by the streamer, and none is
// a retry hidden inside the client (the nested loop this replaced multiplied
// the attempts by the client's five).
func TestOneRetryLoopOverTheHTTPClient(t *testing.T) {
	t.Parallel()
	const failures = 2
	var requests atomic.Int32
	writer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if requests.Add(1) <= failures {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"restarting"}}`)
			return
		}
		_, _ = io.WriteString(w, `{"accepted":1,"duplicates":0}`)
	}))
	t.Cleanup(writer.Close)
	clientRetries := prometheus.NewRegistry()
	client, err := mqhttp.NewClient(mqhttp.ClientConfig{WriterURL: writer.URL, PublishOnce: true, Metrics: clientRetries})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, client.Close()) })

	s, _ := newStreamer(newSource(1), client, Config{})
	require.NoError(t, s.Run(t.Context()))
	require.EqualValues(t, failures+1, requests.Load(), "one request per attempt")
	require.Equal(t, float64(failures), testutil.ToFloat64(s.m.retried.WithLabelValues("unavailable")), "every retry is the streamer's")
	require.Equal(t, 1.0, testutil.ToFloat64(s.m.published))
	n, err := testutil.GatherAndCount(clientRetries, "mqhttp_client_retries_total")
	require.NoError(t, err)
	require.Zero(t, n, "the client retried nothing itself")
}
