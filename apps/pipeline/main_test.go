package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	csvsource "github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/adapters/scrape/scrapetest"
	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/apps/internal/streamer"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

const shipped = "../../" + csvsource.DefaultPath

func TestValidateApp(t *testing.T) {
	t.Parallel()
	for _, backends := range [][2]string{{"postgres", "postgres"}, {"memory", "memory"}, {"postgres", "memory"}, {"memory", "postgres"}} {
		apptest.RequireValid(t, options, apptest.WithTokens(map[string]string{"DATABASE_URL": apptest.UnreachableDB,
			"QUEUE_BACKEND": backends[0], "STORE_BACKEND": backends[1], "STREAMER_CSV_PATH": shipped}))
	}
	// The queue listener needs tokens of both scopes, unless it is off.
	e := platform.NewEnvFrom(map[string]string{"QUEUE_BACKEND": "memory", "STORE_BACKEND": "memory"})
	_ = options(e)
	require.ErrorContains(t, e.Err(), "MQ_PUBLISH_TOKENS or MQ_PUBLISH_TOKENS_FILE")
	require.ErrorContains(t, e.Err(), "MQ_CONSUME_TOKENS or MQ_CONSUME_TOKENS_FILE")
	apptest.RequireValid(t, options, map[string]string{"QUEUE_BACKEND": "memory", "STORE_BACKEND": "memory", "QUEUE_HTTP_ADDR": "off"})
}

// TestQueueProtocolHasItsOwnListener: the queue protocol is not on the API
// port; its listener asks for tokens of each route's scope.
func TestQueueProtocolHasItsOwnListener(t *testing.T) {
	t.Parallel()
	vars := apptest.WithTokens(map[string]string{"QUEUE_BACKEND": "memory", "STORE_BACKEND": "memory", "STREAMER_CSV_PATH": shipped,
		"STREAMER_ONCE": "true", "HTTP_ADDR": "127.0.0.1:0", "QUEUE_HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "warn"})
	var (
		srv   *platform.Server
		queue *backend.QueueListener
	)
	app := fxtest.New(t, options(platform.NewEnvFrom(vars)), fx.Populate(&srv, &queue))
	app.RequireStart()
	defer app.RequireStop()
	api, mq := "http://"+srv.Addr(), "http://"+queue.Addr()
	require.NotEqual(t, api, mq)
	host, _, err := net.SplitHostPort(queue.Addr())
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)

	publish := `{"topic":"telemetry","messages":[{"payload":{"gpu_uuid":"GPU-1"}}]}`
	lease := `{"topic":"telemetry","consumer_id":"outside","max":1,"lease_seconds":1}`
	code, body := apptest.FetchAuth(t, http.MethodPost, api+"/v1/publish", apptest.PublishToken, publish)
	require.Equal(t, http.StatusNotFound, code, "the API port serves no queue protocol: %s", body)
	code, body = apptest.FetchAuth(t, http.MethodPost, mq+"/v1/publish", "", publish)
	require.Equal(t, http.StatusUnauthorized, code, body)
	code, body = apptest.FetchAuth(t, http.MethodPost, mq+"/v1/lease", apptest.PublishToken, lease)
	require.Equal(t, http.StatusForbidden, code, body)
	code, body = apptest.FetchAuth(t, http.MethodPost, mq+"/v1/lease", apptest.ConsumeToken, lease)
	require.Equal(t, http.StatusOK, code, body)
	apptest.RequireProbesOK(t, mq)
}

// The whole pipeline in one process stores every row of one pass of the CSV
// exactly once: each (GPU, metric) pair of the file, which has one row per
// pair, once in the store.
func TestOneProcessStreamsTheCSV(t *testing.T) {
	t.Parallel()
	want := csvPairs(t, shipped)
	for _, backends := range [][2]string{{"memory", "memory"}, {"postgres", "postgres"}} {
		t.Run(backends[0]+"-queue/"+backends[1]+"-store", func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{"QUEUE_BACKEND": backends[0], "STORE_BACKEND": backends[1],
				"STREAMER_CSV_PATH": shipped, "STREAMER_ONCE": "true", "HTTP_ADDR": "127.0.0.1:0", "POLL_INTERVAL_MS": "10", "LOG_LEVEL": "warn",
				"QUEUE_HTTP_ADDR": "off"}
			if backends[0] == "postgres" || backends[1] == "postgres" {
				vars["DATABASE_URL"] = pgtest.NewDatabase(t)
			}
			var (
				srv    *platform.Server
				store  ports.TelemetryReader
				stream *streamer.Streamer
			)
			app := fxtest.New(t, options(platform.NewEnvFrom(vars)), fx.Populate(&srv, &store, &stream))
			app.RequireStart()
			defer app.RequireStop()

			// One pass: the streamer stops at the end of the file.
			require.Eventually(t, func() bool {
				select {
				case <-stream.Done():
					return true
				default:
					return false
				}
			}, 60*time.Second, 10*time.Millisecond, "the streamer did not finish its one pass")
			got := storedPairs(t, store)
			for deadline := time.Now().Add(60 * time.Second); rowCount(got) < len(want); got = storedPairs(t, store) {
				require.True(t, time.Now().Before(deadline), "stored %d of %d rows within 60s", rowCount(got), len(want))
				select {
				case <-t.Context().Done():
					t.FailNow()
				case <-time.After(50 * time.Millisecond): // poll interval
				}
			}
			missing, repeated := comparePairs(want, got)
			require.Empty(t, head(repeated), "%d of %d rows stored more than once (%d stored in all)", len(repeated), len(want), rowCount(got))
			require.Empty(t, head(missing), "%d of %d rows never stored", len(missing), len(want))

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.Addr()+"/readyz", nil)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}

// pair identifies a row of the CSV: a GPU's metric.
type pair struct{ gpu, metric string }

// csvPairs reads the (GPU UUID, metric) pair of every row of the CSV at path.
func csvPairs(t *testing.T, path string) map[pair]int {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	require.NoError(t, err)
	gpuCol, metricCol := slices.Index(header, "uuid"), slices.Index(header, "metric_name")
	require.True(t, gpuCol >= 0 && metricCol >= 0, "CSV header %v", header)
	out := make(map[pair]int)
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out[pair{rec[gpuCol], rec[metricCol]}]++
	}
}

// storedPairs counts the stored rows of every GPU by (GPU, metric).
func storedPairs(t *testing.T, store ports.TelemetryReader) map[pair]int {
	ctx := t.Context()
	gpus, err := store.ListGPUs(ctx)
	require.NoError(t, err)
	out := make(map[pair]int)
	for _, g := range gpus {
		require.NoError(t, store.StreamTelemetry(ctx, ports.TelemetryQuery{GPUUUID: g.UUID}, func(r domain.Record) error {
			out[pair{r.GPUUUID, r.MetricName}]++
			return nil
		}))
	}
	return out
}

// head is the first few of list, for a readable failure.
func head(list []string) []string { return list[:min(len(list), 5)] }

func rowCount(m map[pair]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// comparePairs lists the rows of want (each once) missing from got and
// those got holds more than once, a few of each.
func comparePairs(want, got map[pair]int) (missing, repeated []string) {
	for p := range want {
		switch n := got[p]; {
		case n == 0:
			missing = append(missing, fmt.Sprintf("%s/%s", p.gpu, p.metric))
		case n > 1:
			repeated = append(repeated, fmt.Sprintf("%s/%s ×%d", p.gpu, p.metric, n))
		}
	}
	for p, n := range got {
		if want[p] == 0 {
			repeated = append(repeated, fmt.Sprintf("%s/%s ×%d (not in the CSV)", p.gpu, p.metric, n))
		}
	}
	slices.Sort(missing)
	slices.Sort(repeated)
	return missing, repeated
}

// STREAMER_SOURCE=scrape in one process: 31 fake dcgm-exporters serve the
// shipped CSV, and every GPU they serve is listed by the API.
func TestOneProcessScrapesFakeExporters(t *testing.T) {
	t.Parallel()
	rows, err := csvsource.New(shipped, csvsource.Options{Once: true, Logger: slog.New(slog.DiscardHandler)})
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
		"HTTP_ADDR": "127.0.0.1:0", "POLL_INTERVAL_MS": "10", "LOG_LEVEL": "warn", "QUEUE_HTTP_ADDR": "off"}
	var srv *platform.Server
	app := fxtest.New(t, options(platform.NewEnvFrom(vars)), fx.Populate(&srv))
	app.RequireStart()
	defer app.RequireStop()
	require.Eventually(t, func() bool { return gpuCount(t, "http://"+srv.Addr()) == 247 }, 60*time.Second, 50*time.Millisecond)
}

// gpuCount is the number of GPUs base's API lists, or -1 while it cannot say.
func gpuCount(t *testing.T, base string) int {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/api/v1/gpus", nil)
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
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
