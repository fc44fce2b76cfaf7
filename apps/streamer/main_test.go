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

	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

const shipped = "../../" + DefaultCSV

func TestValidateApp(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"STREAMER_CSV_PATH": shipped})
	require.NoError(t, fx.ValidateApp(options(env)))
	require.NoError(t, env.Err())
}

func TestMissingCSVFailsStart(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"STREAMER_CSV_PATH": "/nonexistent.csv", "QUEUE_BACKEND": "memory", "HTTP_ADDR": "127.0.0.1:0"})
	app := fx.New(options(env))
	require.ErrorContains(t, app.Err(), "nonexistent.csv")
}

func TestStartStopInMemory(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"STREAMER_CSV_PATH": shipped, "QUEUE_BACKEND": "memory", "HTTP_ADDR": "127.0.0.1:0"})
	fxtest.New(t, options(env)).RequireStart().RequireStop()
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
