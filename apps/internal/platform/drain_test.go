package platform_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

// Drainers run when the server stops, while it still answers requests: a
// reader waiting for acks gets them. After Stop, the server is gone.
func TestStopRunsDrainersWhileServing(t *testing.T) {
	t.Parallel()
	var url string
	served := make(chan int, 1)
	s, _ := newServerWith(platform.ServerParams{
		Routes: []platform.Routes{answer("/v1/ack", "acked")},
		Drainers: []platform.Drainer{{Name: "reader", Fn: func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/ack", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			served <- resp.StatusCode
			return nil
		}}},
	})
	require.NoError(t, s.Start())
	url = "http://" + s.Addr()
	require.NoError(t, s.Stop(t.Context()))
	require.Equal(t, http.StatusOK, <-served, "the drainer's request was served during the stop")
	_, err := http.Get(url + "/healthz")
	require.Error(t, err, "the server is stopped after the drainers")
}
