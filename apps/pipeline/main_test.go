package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/adapters/scrape/scrapetest"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/pgtest"
)

const shipped = "../../" + DefaultCSV

func TestValidateApp(t *testing.T) {
	t.Parallel()
	for _, backends := range [][2]string{{"postgres", "postgres"}, {"memory", "memory"}, {"postgres", "memory"}, {"memory", "postgres"}} {
		env := platform.NewEnvFrom(map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x",
			"QUEUE_BACKEND": backends[0], "STORE_BACKEND": backends[1], "STREAMER_CSV_PATH": shipped})
		require.NoError(t, fx.ValidateApp(options(env)), "%v", backends)
		require.NoError(t, env.Err())
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

// STREAMER_SOURCE=scrape in one process: 31 fake dcgm-exporters serve the
// shipped CSV, and every GPU they serve is listed by the API.
func TestOneProcessScrapesFakeExporters(t *testing.T) {
	t.Parallel()
	rows, err := csv.New(shipped, csv.Options{Once: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	var points []domain.Point
	for {
		p, err := rows.Next(t.Context())
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		points = append(points, p)
	}
	fleet, err := scrapetest.StartFleet("127.0.0.1", 0, scrapetest.Hosts(points), 0)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, fleet.Stop(context.Background())) })
	require.Len(t, fleet.URLs, 31)

	vars := map[string]string{"QUEUE_BACKEND": "memory", "STORE_BACKEND": "memory", "STREAMER_SOURCE": "scrape",
		"SCRAPE_TARGETS": strings.Join(fleet.URLs, ","), "SCRAPE_INTERVAL": "1s",
		"HTTP_ADDR": "127.0.0.1:0", "POLL_INTERVAL_MS": "10", "LOG_LEVEL": "warn"}
	var srv *platform.Server
	app := fxtest.New(t, options(platform.NewEnvFrom(vars)), fx.Populate(&srv))
	app.RequireStart()
	defer app.RequireStop()
	require.Eventually(t, func() bool { return gpuCount(t, "http://"+srv.Addr()) == 247 }, 60*time.Second, 50*time.Millisecond)
}
