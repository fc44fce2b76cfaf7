package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

const shipped = "../../" + csv.DefaultPath

func TestLifecycle(t *testing.T) {
	t.Parallel()
	apptest.RequireLifecycle(t, options, apptest.Lifecycle{Valid: map[string]string{"STREAMER_CSV_PATH": shipped},
		Start: func(*testing.T) map[string]string {
			return map[string]string{"STREAMER_CSV_PATH": shipped, "QUEUE_BACKEND": "memory"}
		}})
}

func TestMissingCSVFailsStart(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"STREAMER_CSV_PATH": "/nonexistent.csv", "QUEUE_BACKEND": "memory", "HTTP_ADDR": "127.0.0.1:0"})
	app := fx.New(options(env))
	require.ErrorContains(t, app.Err(), "nonexistent.csv")
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	const rows = 20
	base := apptest.Start(t, options, map[string]string{"STREAMER_CSV_PATH": shipped, "QUEUE_BACKEND": "memory", "STREAMER_MAX_ROWS": "20"})
	apptest.RequireServes(t, base, nil,
		"streamer_messages_published_total", "streamer_rows_read_total", "streamer_messages_dropped_total",
		"streamer_csv_rows_skipped_total")
	require.Eventually(t, func() bool {
		_, body := apptest.Fetch(t, http.MethodGet, base+"/metrics", "")
		return strings.Contains(body, "\nstreamer_messages_published_total 20\n")
	}, 30*time.Second, 20*time.Millisecond, "the %d rows reach the queue", rows)
	apptest.RequireCleanMetrics(t, base, "streamer_publish_duration_seconds")
}

// STREAMER_SOURCE=scrape with Kubernetes discovery: the streamer finds a
// dcgm-exporter through its EndpointSlice (a fake clientset stands in for
// the API server) and publishes what it serves.
func TestScrapesExportersDiscoveredInKubernetes(t *testing.T) {
	t.Parallel()
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `DCGM_FI_DEV_GPU_TEMP{gpu="2",UUID="GPU-k8s",device="nvidia2",modelName="NVIDIA H100 80GB HBM3",Hostname="node-7"} 44`+"\n")
	}))
	t.Cleanup(exporter.Close)
	host, port, err := net.SplitHostPort(strings.TrimPrefix(exporter.URL, "http://"))
	require.NoError(t, err)
	portNum, err := strconv.Atoi(port)
	require.NoError(t, err)
	name, p32 := "gpu-metrics", int32(portNum)
	client := fake.NewClientset(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "gpu-operator", Name: "dcgm-abc", Labels: map[string]string{"app": "nvidia-dcgm-exporter"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &p32}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}}},
	})

	env := platform.NewEnvFrom(map[string]string{"QUEUE_BACKEND": "memory", "HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "warn",
		"STREAMER_SOURCE": "scrape", "SCRAPE_INTERVAL": "1s", "SCRAPE_KUBERNETES_SELECTOR": "app=nvidia-dcgm-exporter",
		"SCRAPE_KUBERNETES_NAMESPACE": "gpu-operator", "KUBECONFIG": "../internal/backend/testdata/kubeconfig"})
	var q ports.Consumer
	app := fxtest.New(t, options(env), fx.Replace(fx.Annotate(client, fx.As(new(kubernetes.Interface)))), fx.Populate(&q))
	require.NoError(t, env.Err())
	app.RequireStart()
	defer app.RequireStop()

	var got domain.Point
	require.Eventually(t, func() bool {
		l, err := q.Lease(t.Context(), ports.LeaseRequest{Topic: domain.TelemetryTopic, ConsumerID: "t", Max: 1, LeaseDuration: time.Minute})
		if err != nil || len(l.Messages) == 0 {
			return false
		}
		require.NoError(t, json.Unmarshal(l.Messages[0].Payload, &got))
		return true
	}, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, "GPU-k8s", got.GPUUUID)
	require.Equal(t, "node-7", got.Hostname)
	require.Equal(t, 44.0, *got.Value)
}

// With STREAMER_SOURCE=scrape the per-target scrape metrics are served and
// promlint-clean.
func TestScrapeMetrics(t *testing.T) {
	t.Parallel()
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "go_goroutines 3\n"+`DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-m",Hostname="h"} 7`+"\n")
	}))
	t.Cleanup(exporter.Close)
	base := apptest.Start(t, options, map[string]string{"QUEUE_BACKEND": "memory", "STREAMER_SOURCE": "scrape",
		"SCRAPE_TARGETS": exporter.URL, "SCRAPE_INTERVAL": "1s"})
	require.Eventually(t, func() bool {
		_, body := apptest.Fetch(t, http.MethodGet, base+"/metrics", "")
		return strings.Contains(body, `streamer_scrape_target_up{target="`+exporter.URL+`/metrics"} 1`) &&
			strings.Contains(body, "\nstreamer_scrape_series_ignored_total 1")
	}, 30*time.Second, 20*time.Millisecond)
	// Ready once the first scrape found the target (not before: a scrape
	// source is not ready while no target is known).
	apptest.RequireProbesOK(t, base)
	apptest.RequireCleanMetrics(t, base, "streamer_scrape_target_up", "streamer_scrape_duration_seconds",
		"streamer_scrape_request_duration_seconds", "streamer_scrape_samples_total", "streamer_scrape_errors_total",
		"streamer_scrape_rounds_skipped_total", "streamer_scrape_series_skipped_total", "streamer_scrape_series_ignored_total",
		"streamer_scrape_targets")
}
