package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/stack"
)

// STREAMER_SOURCE=scrape through the whole pipeline: the fake exporters
// serve the shipped CSV (no jitter), the streamer scrapes them, and every
// (GPU, metric) of a scrape round ends in telemetry with exactly the value
// the exporter served; the API lists the scraped GPUs by UUID.
func TestScrapeSourceThroughThePipeline(t *testing.T) {
	t.Parallel()
	csvPath, err := stack.ShippedCSVPath()
	require.NoError(t, err)
	want := csvPoints(t, csvPath)

	p := newPipeline(t)
	p.collector(nil)
	api := p.Start("apigw", map[string]string{})
	targets := filepath.Join(t.TempDir(), "targets")
	p.Start("fake-dcgm-exporter", map[string]string{"FAKE_DCGM_CSV_PATH": csvPath, "FAKE_DCGM_BASE_PORT": "0",
		"FAKE_DCGM_JITTER": "0", "FAKE_DCGM_TARGETS_FILE": targets})
	env := map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_TARGETS_FILE": targets, "SCRAPE_INTERVAL": "1s"}
	p.queueEnv(env, "MQ_WRITER_URL", p.writer)
	streamer := p.Start("streamer", env)

	// One full round of all 31 exporters: every (GPU, metric) pair.
	require.Eventually(t, func() bool {
		return p.Count(`SELECT count(*) FROM (SELECT DISTINCT s.gpu_uuid, s.metric_name FROM telemetry_samples x JOIN telemetry_series s ON s.id = x.series_id) q`) == len(want)
	}, 90*time.Second, 100*time.Millisecond)
	require.NoError(t, streamer.Stop(45*time.Second))
	p.settled(len(want))
	require.Equal(t, 0, p.Count(`SELECT count(*) FROM dead_letters`))

	type gpuList struct {
		GPUs []domain.GPU `json:"gpus"`
	}
	gpus := stack.GetJSON[gpuList](t, api.URL()+"/api/v1/gpus")
	listed := map[string]domain.GPU{}
	for _, g := range gpus.GPUs {
		listed[g.UUID] = g
	}
	wantGPUs := map[string]bool{}
	for k, pt := range want {
		wantGPUs[k.uuid] = true
		g, ok := listed[k.uuid]
		require.True(t, ok, "GPU %s not listed", k.uuid)
		require.Equal(t, pt.Hostname, g.Hostname)
		require.Equal(t, pt.GPUIndex, g.GPUIndex)
		require.Equal(t, pt.Device, g.Device)
		require.Equal(t, pt.ModelName, g.ModelName)
	}
	require.Len(t, listed, len(wantGPUs), "only the scraped GPUs")
	require.Len(t, wantGPUs, 247)

	// Every stored sample of every GPU carries the exporter's exact value.
	seen := map[key]bool{}
	for id := range wantGPUs {
		type telemetryPage struct {
			Entries []struct {
				Timestamp  time.Time `json:"timestamp"`
				MetricName string    `json:"metric_name"`
				Value      *float64  `json:"value"`
				Hostname   string    `json:"hostname"`
				LabelsRaw  string    `json:"labels_raw"`
			} `json:"entries"`
			NextCursor string `json:"next_cursor"`
		}
		page := stack.GetJSON[telemetryPage](t, api.URL()+"/api/v1/gpus/"+url.PathEscape(id)+"/telemetry?limit=10000")
		require.Empty(t, page.NextCursor)
		require.NotEmpty(t, page.Entries)
		for _, e := range page.Entries {
			k := key{uuid: id, metric: e.MetricName}
			w, ok := want[k]
			require.True(t, ok, "unexpected series %v", k)
			require.Equal(t, w.Value, e.Value, "%v", k)
			require.Equal(t, w.Hostname, e.Hostname)
			require.Contains(t, e.LabelsRaw, fmt.Sprintf(`UUID="%s"`, id))
			require.Contains(t, e.LabelsRaw, `DCGM_FI_DRIVER_VERSION="`)
			require.False(t, e.Timestamp.Before(time.Now().Add(-10*time.Minute)), "stamped with the scrape time, not the CSV's")
			seen[k] = true
		}
	}
	require.Len(t, seen, len(want), "every (GPU, metric) pair")
}

type key struct{ uuid, metric string }

// csvPoints is one pass of the CSV, by (GPU, metric).
func csvPoints(t *testing.T, path string) map[key]domain.Point {
	t.Helper()
	src, err := csv.New(path, csv.Options{Once: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	out := map[key]domain.Point{}
	for {
		p, err := src.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out[key{p.GPUUUID, p.MetricName}] = p
	}
}
