package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/ports"
)

const hostMetric = "apigw_gpu_host_last_seen_timestamp_seconds"

// hostLastSeen gathers the host gauge: newest-sample Unix time by hostname.
func hostLastSeen(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != hostMetric {
			continue
		}
		for _, m := range f.GetMetric() {
			require.Len(t, m.GetLabel(), 1)
			require.Equal(t, "hostname", m.GetLabel()[0].GetName())
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestHostLastSeenIsTheNewestSampleOfAnyGPUOfTheHost: one series per host,
// valued at the newest LastSeen among its GPUs, read at each scrape.
func TestHostLastSeenIsTheNewestSampleOfAnyGPUOfTheHost(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	reg := prometheus.NewRegistry()
	httpapi.NewHandler(store, httpapi.Options{Registerer: reg})
	require.Empty(t, hostLastSeen(t, reg), "an empty registry exports no host")

	fx := seed(t, store, defaultGPUs)
	want := map[string]float64{}
	for _, g := range fx.gpus {
		v := float64(g.LastSeen.UnixNano()) / 1e9
		want[g.Hostname] = max(want[g.Hostname], v)
	}
	require.Len(t, want, 2)
	require.Equal(t, want, hostLastSeen(t, reg))
	// The first host's newest GPU is its first (40 instants), not the last listed.
	require.Equal(t, float64(instant(39).UnixNano())/1e9, want["mtv5-dgx1-hgpu-031"])

	// A newer sample moves the host's time at the next scrape.
	later := instant(39).Add(time.Hour)
	_, err := store.WriteBatch(t.Context(), []domain.Record{{MsgUUID: uuid.New(), Point: domain.Point{
		Timestamp: later, MetricName: metrics[0], GPUUUID: defaultGPUs[2].uuid, Hostname: defaultGPUs[2].host, GPUIndex: 0}}})
	require.NoError(t, err)
	require.Equal(t, float64(later.UnixNano())/1e9, hostLastSeen(t, reg)["mtv5-dgx1-hgpu-032"])

	promxtest.RequireLintClean(t, reg, hostMetric)
}

// failingReader fails ListGPUs, as a store whose database is down.
type failingReader struct{ ports.TelemetryReader }

func (failingReader) ListGPUs(context.Context) ([]domain.GPU, error) {
	return nil, errors.New("database unreachable")
}

// TestHostLastSeenOmittedWhenTheRegistryIsUnreadable: the scrape still
// succeeds with the other metrics; only the hosts are missing.
func TestHostLastSeenOmittedWhenTheRegistryIsUnreadable(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := httpapi.NewHandler(failingReader{newStore(t)}, httpapi.Options{Registerer: reg})
	require.Equal(t, http.StatusNotFound, do(t, h, http.MethodGet, "/nope", nil).Code)
	require.Empty(t, hostLastSeen(t, reg))
	n, err := testutil.GatherAndCount(reg, "apigw_http_request_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 1, n)
}
