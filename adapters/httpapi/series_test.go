package httpapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func sample(gpu, host, model string, index int, ts time.Time, metric string, v *float64) domain.Record {
	return domain.Record{MsgUUID: uuid.New(), Point: domain.Point{Timestamp: ts, MetricName: metric, GPUUUID: gpu,
		Hostname: host, ModelName: model, GPUIndex: index, Device: fmt.Sprintf("nvidia%d", index), Value: v}}
}

func val(v float64) *float64 { return &v }

// seriesAPI serves a memory store with three GPUs on two hosts: temperature
// every 10 s for 10 minutes, utilisation once.
func seriesAPI(t *testing.T) http.Handler {
	t.Helper()
	store := memory.NewTelemetryStore()
	require.NoError(t, store.Start(t.Context()))
	t.Cleanup(store.Close)
	var batch []domain.Record
	gpus := []struct {
		id, host, model string
		index           int
	}{{"GPU-a0", "host-a", "H100", 0}, {"GPU-a1", "host-a", "A100", 1}, {"GPU-b0", "host-b", "H100", 0}}
	for g, spec := range gpus {
		for i := range 60 {
			batch = append(batch, sample(spec.id, spec.host, spec.model, spec.index, base.Truncate(time.Minute).Add(time.Duration(i)*10*time.Second),
				"DCGM_FI_DEV_GPU_TEMP", val(float64(40+g*10+i%6))))
		}
		batch = append(batch, sample(spec.id, spec.host, spec.model, spec.index, base, "MY_CUSTOM_METRIC", nil))
	}
	_, err := store.WriteBatch(t.Context(), batch)
	require.NoError(t, err)
	return httpapi.NewHandler(store, httpapi.Options{Logger: discardLogger()})
}

func TestGPUFiltersAndPages(t *testing.T) {
	t.Parallel()
	h := seriesAPI(t)
	ids := func(l httpapi.GPUList) []string {
		var out []string
		for _, g := range l.GPUs {
			out = append(out, g.ID)
		}
		return out
	}
	all := decode[httpapi.GPUList](t, do(t, h, http.MethodGet, "/api/v1/gpus", nil))
	require.Equal(t, []string{"GPU-a0", "GPU-a1", "GPU-b0"}, ids(all))
	require.Empty(t, all.NextCursor, "the default page holds a whole fleet")
	require.Equal(t, []string{"GPU-a0", "GPU-a1"}, ids(decode[httpapi.GPUList](t, do(t, h, http.MethodGet, "/api/v1/gpus?hostname=host-a", nil))))
	require.Equal(t, []string{"GPU-a0", "GPU-b0"}, ids(decode[httpapi.GPUList](t, do(t, h, http.MethodGet, "/api/v1/gpus?model_name=H100", nil))))

	var walked []string
	target := "/api/v1/gpus?limit=1&model_name=H100"
	for range 5 {
		page := decode[httpapi.GPUList](t, do(t, h, http.MethodGet, target, nil))
		walked = append(walked, ids(page)...)
		if page.NextCursor == "" {
			break
		}
		target = "/api/v1/gpus?limit=1&model_name=H100&cursor=" + url.QueryEscape(page.NextCursor)
	}
	require.Equal(t, []string{"GPU-a0", "GPU-b0"}, walked)

	first := decode[httpapi.GPUList](t, do(t, h, http.MethodGet, "/api/v1/gpus?limit=1", nil))
	require.NotEmpty(t, first.NextCursor)
	for _, bad := range []string{"limit=0", "limit=10001", "cursor=garbage", "hostname=host-a&cursor=" + first.NextCursor, "host=a"} {
		rec := do(t, h, http.MethodGet, "/api/v1/gpus?"+bad, nil)
		requireError(t, rec, http.StatusBadRequest, "bad_request", "")
	}
	// Filters no stored value can match are refused by name, before the store.
	for query, want := range map[string]string{
		"hostname=host%00a":                      "hostname contains a NUL byte or invalid UTF-8",
		"model_name=%ff%fe":                      "model_name contains a NUL byte or invalid UTF-8",
		"hostname=" + strings.Repeat("h", 254):   "hostname is 254 bytes long, want at most 253",
		"model_name=" + strings.Repeat("m", 257): "model_name is 257 bytes long, want at most 256",
	} {
		requireError(t, do(t, h, http.MethodGet, "/api/v1/gpus?"+query, nil), http.StatusBadRequest, "bad_request", want)
	}
	require.Empty(t, ids(decode[httpapi.GPUList](t, do(t, h, http.MethodGet, "/api/v1/gpus?hostname="+strings.Repeat("h", 253), nil))),
		"a filter at its bound is a question, answered with no GPUs")
	require.Empty(t, ids(decode[httpapi.GPUList](t, do(t, h, http.MethodGet, "/api/v1/gpus?hostname=tab%09host", nil))),
		"a control character other than NUL can be stored, so it can be asked for")
}

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	got := decode[httpapi.MetricList](t, do(t, seriesAPI(t), http.MethodGet, "/api/v1/metrics", nil))
	require.Equal(t, []httpapi.MetricInfo{
		{Name: "DCGM_FI_DEV_GPU_TEMP", GPUs: 3, Unit: "°C", Description: "GPU temperature"},
		{Name: "MY_CUSTOM_METRIC", GPUs: 3},
	}, got.Metrics)
}

func TestLatestEndpoint(t *testing.T) {
	t.Parallel()
	h := seriesAPI(t)
	got := decode[httpapi.LatestValues](t, do(t, h, http.MethodGet, "/api/v1/gpus/GPU-a1/latest", nil))
	require.Equal(t, "GPU-a1", got.GPUID)
	require.Len(t, got.Metrics, 2)
	require.Equal(t, "DCGM_FI_DEV_GPU_TEMP", got.Metrics[0].MetricName)
	require.Equal(t, 50.0+59%6, *got.Metrics[0].Value)
	require.Equal(t, "°C", got.Metrics[0].Unit)
	require.True(t, base.Truncate(time.Minute).Add(590*time.Second).Equal(got.Metrics[0].Timestamp))
	require.Nil(t, got.Metrics[1].Value, "a blank latest sample is null")
	requireError(t, do(t, h, http.MethodGet, "/api/v1/gpus/GPU-nope/latest", nil), http.StatusNotFound, "not_found", "GPU-nope")
	requireError(t, do(t, h, http.MethodGet, "/api/v1/gpus/GPU-a1/latest?metric_name=DCGM_FI_DEV_GPU_TEMP", nil),
		http.StatusBadRequest, "bad_request", `unknown query parameter "metric_name" (this endpoint takes none)`)
}

func TestSeriesEndpoint(t *testing.T) {
	t.Parallel()
	h := seriesAPI(t)
	start := base.Truncate(time.Minute)
	get := func(params string) httpapi.Series {
		return decode[httpapi.Series](t, do(t, h, http.MethodGet, "/api/v1/gpus/GPU-a0/series?metric_name=DCGM_FI_DEV_GPU_TEMP&"+params, nil))
	}
	raw := get("start_time=" + rfc(start.Add(5*time.Second)) + "&end_time=" + rfc(start.Add(64*time.Second)) + "&step=30s")
	require.Equal(t, "raw", raw.Source)
	require.Equal(t, 30.0, raw.StepSeconds)
	require.Len(t, raw.Buckets, 2)
	require.Equal(t, 3, raw.Buckets[0].Count, "samples at 10, 20, 30 s")
	require.Equal(t, 3, raw.Buckets[1].Count, "samples at 40, 50, 60 s: the end is inclusive")

	rolled := get("start_time=" + rfc(start) + "&end_time=" + rfc(start.Add(12*time.Minute)) + "&step=5m")
	require.Equal(t, "rollup", rolled.Source)
	require.Len(t, rolled.Buckets, 3)
	require.Equal(t, 30, rolled.Buckets[0].Count)
	require.Equal(t, 40.0, *rolled.Buckets[0].Min)
	require.Equal(t, 45.0, *rolled.Buckets[0].Max)
	require.Equal(t, 42.5, *rolled.Buckets[0].Avg)
	require.Equal(t, 45.0, *rolled.Buckets[1].Last)
	require.Zero(t, rolled.Buckets[2].Count, "an empty bucket")
	require.Nil(t, rolled.Buckets[2].Min)

	for _, bad := range []string{
		"step=1ms", "step=abc", "start_time=2025-07-18&end_time=" + rfc(start),
		"start_time=" + rfc(start) + "&end_time=" + rfc(start.Add(-time.Second)),
		"start_time=" + rfc(start) + "&end_time=" + rfc(start.Add(10001*time.Second)) + "&step=1s",
		"start_time=" + rfc(start) + "&limit=3",
	} {
		requireError(t, do(t, h, http.MethodGet, "/api/v1/gpus/GPU-a0/series?metric_name=DCGM_FI_DEV_GPU_TEMP&"+bad, nil), http.StatusBadRequest, "bad_request", "")
	}
	requireError(t, do(t, h, http.MethodGet, "/api/v1/gpus/GPU-a0/series", nil), http.StatusBadRequest, "bad_request", "metric_name is required")
	requireError(t, do(t, h, http.MethodGet, "/api/v1/gpus/GPU-x/series?metric_name=DCGM_FI_DEV_GPU_TEMP", nil), http.StatusNotFound, "not_found", "")
}

func TestFleetSummaryEndpoint(t *testing.T) {
	t.Parallel()
	h := seriesAPI(t)
	got := decode[httpapi.FleetSummary](t, do(t, h, http.MethodGet, "/api/v1/fleet/summary?metric_name=DCGM_FI_DEV_GPU_TEMP&top=2", nil))
	// Latest values: 45, 55, 65.
	require.Equal(t, 3, got.Count)
	require.Equal(t, 45.0, *got.Min)
	require.Equal(t, 55.0, *got.Avg)
	require.Equal(t, 55.0, *got.P50)
	require.InDelta(t, 64.0, *got.P95, 1e-9)
	require.Equal(t, 65.0, *got.Max)
	require.Equal(t, "°C", got.Unit)
	require.Len(t, got.Top, 2)
	require.Equal(t, "GPU-b0", got.Top[0].GPUID)
	require.Equal(t, "host-b", got.Top[0].Hostname)
	require.Equal(t, 65.0, got.Top[0].Value)

	none := decode[httpapi.FleetSummary](t, do(t, h, http.MethodGet, "/api/v1/fleet/summary?metric_name=MY_CUSTOM_METRIC", nil))
	require.Zero(t, none.Count, "blank latest samples are left out")
	require.Nil(t, none.P50)
	require.Empty(t, none.Top)
	for _, bad := range []string{"", "metric_name=a%20b", "metric_name=X&top=-1", "metric_name=X&top=101"} {
		requireError(t, do(t, h, http.MethodGet, "/api/v1/fleet/summary?"+bad, nil), http.StatusBadRequest, "bad_request", "")
	}
}

// TestRetentionServedFromRollups drives the PostgreSQL store's retention with
// an injected clock: after maintenance dropped the raw days past the
// retention, the raw endpoint has nothing there, while a series over the
// whole window still answers every day from rollups.
func TestRetentionServedFromRollups(t *testing.T) {
	t.Parallel()
	day0 := time.Date(2025, 7, 14, 0, 0, 0, 0, time.UTC)
	var clock atomic.Pointer[time.Time]
	clock.Store(&day0)
	store := postgres.NewTelemetryStoreWith(pgtest.NewPool(t), discardLogger(), postgres.Options{
		Retention: 48 * time.Hour, RollupRetention: 90 * 24 * time.Hour, Now: func() time.Time { return *clock.Load() }})
	for d := range 4 {
		var batch []domain.Record
		for h := range 24 {
			batch = append(batch, sample("GPU-r", "host-r", "H100", 0, day0.Add(time.Duration(d*24+h)*time.Hour), "DCGM_FI_DEV_GPU_TEMP", val(float64(d))))
		}
		now := day0.Add(time.Duration(d*24+23) * time.Hour)
		clock.Store(&now)
		_, err := store.WriteBatch(t.Context(), batch)
		require.NoError(t, err)
	}
	now := day0.Add(3*24*time.Hour + 12*time.Hour)
	rep, err := store.Maintain(t.Context(), now)
	require.NoError(t, err)
	require.Equal(t, 1, rep.PartitionsDropped, "day 0 ended more than 48 h before day 3 noon")
	h := httpapi.NewHandler(store, httpapi.Options{Logger: discardLogger()})

	page := decode[httpapi.TelemetryPage](t, do(t, h, http.MethodGet, telemetryURL("GPU-r", url.Values{
		"start_time": {rfc(day0)}, "end_time": {rfc(day0.Add(24*time.Hour - time.Second))}}), nil))
	require.Empty(t, page.Entries, "raw samples of day 0 are gone")

	got := decode[httpapi.Series](t, do(t, h, http.MethodGet, "/api/v1/gpus/GPU-r/series?metric_name=DCGM_FI_DEV_GPU_TEMP&step=24h&start_time="+
		rfc(day0)+"&end_time="+rfc(day0.Add(4*24*time.Hour-time.Minute)), nil))
	require.Equal(t, "rollup", got.Source)
	require.Len(t, got.Buckets, 4)
	for d, b := range got.Buckets {
		require.Equal(t, 24, b.Count, "day %d", d)
		require.Equal(t, float64(d), *b.Avg, "day %d", d)
	}
	var _ ports.TelemetryMaintainer = store
}
