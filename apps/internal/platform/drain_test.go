package platform_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/gorilla/mux"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

// Drainers run when the server stops, while it still answers requests: a
// reader waiting for acks gets them. After Stop, the server is gone.
func TestStopRunsDrainersWhileServing(t *testing.T) {
	t.Parallel()
	reg, _ := platform.NewRegistry()
	var url string
	served := make(chan int, 1)
	s := platform.NewServer(platform.ServerParams{
		Config:   platform.ServerConfig{Addr: "127.0.0.1:0"},
		Logger:   quiet,
		Registry: reg,
		Routes: []platform.Routes{platform.RoutesFunc(func(r *mux.Router) {
			r.HandleFunc("/v1/ack", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "acked") })
		})},
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
