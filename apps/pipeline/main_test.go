package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/test/pgtest"
)

const shipped = "../../" + DefaultCSV

func TestValidateApp(t *testing.T) {
	t.Parallel()
	for _, backends := range [][2]string{{"postgres", "postgres"}, {"memory", "memory"}, {"postgres", "memory"}, {"memory", "postgres"}} {
		apptest.RequireValid(t, options, map[string]string{"DATABASE_URL": apptest.UnreachableDB,
			"QUEUE_BACKEND": backends[0], "STORE_BACKEND": backends[1], "STREAMER_CSV_PATH": shipped})
	}
}

// gpuCount asks the app's own API how many GPUs it has seen.
func gpuCount(t *testing.T, base string) int {
	resp, err := http.Get(base + "/api/v1/gpus")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var body struct {
		GPUs []json.RawMessage `json:"gpus"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return -1
	}
	return len(body.GPUs)
}

// The whole pipeline in one process lists every GPU of one pass of the CSV.
func TestOneProcessStreamsTheCSV(t *testing.T) {
	t.Parallel()
	for _, backends := range [][2]string{{"memory", "memory"}, {"postgres", "postgres"}} {
		t.Run(backends[0]+"-queue/"+backends[1]+"-store", func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{"QUEUE_BACKEND": backends[0], "STORE_BACKEND": backends[1],
				"STREAMER_CSV_PATH": shipped, "STREAMER_MAX_ROWS": "2470", "HTTP_ADDR": "127.0.0.1:0", "POLL_INTERVAL_MS": "10", "LOG_LEVEL": "warn"}
			if backends[0] == "postgres" || backends[1] == "postgres" {
				vars["DATABASE_URL"] = pgtest.NewDatabase(t)
			}
			var srv *platform.Server
			app := fxtest.New(t, options(platform.NewEnvFrom(vars)), fx.Populate(&srv))
			app.RequireStart()
			defer app.RequireStop()
			base := "http://" + srv.Addr()
			require.Eventually(t, func() bool { return gpuCount(t, base) == 247 }, 60*time.Second, 50*time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}
