package kube_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gpufleet/telemetry/adapters/kube"
	"github.com/gpufleet/telemetry/ports"
)

func ptr[T any](v T) *T { return &v }

// slice is an EndpointSlice of the dcgm-exporter Service as the
// EndpointSlice controller makes it: the Service's labels, one port named
// gpu-metrics, one endpoint per exporter pod.
func slice(ns, name string, lbls map[string]string, port string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("other"), Port: ptr[int32](8080)}, {Name: ptr(port), Port: ptr[int32](9400)}},
		Endpoints:   eps,
	}
}

func endpoint(ip string, ready *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

var exporterLabels = map[string]string{"app": "nvidia-dcgm-exporter", "kubernetes.io/service-name": "nvidia-dcgm-exporter"}

// receive waits for the next target set.
func receive(t *testing.T, out <-chan []string) []string {
	t.Helper()
	select {
	case got := <-out:
		return got
	case <-time.After(30 * time.Second):
		t.Fatal("no target set sent")
		return nil
	}
}

// Every ready endpoint of the matching slices is a target; not-ready ones,
// other namespaces and other Services are not; changes are sent as they
// happen.
func TestEndpointSliceTargets(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(
		slice("gpu-operator", "dcgm-a", exporterLabels, "gpu-metrics",
			endpoint("10.0.0.1", ptr(true)), endpoint("10.0.0.2", nil), endpoint("10.0.0.3", ptr(false))),
		slice("gpu-operator", "other-svc", map[string]string{"app": "something-else"}, "gpu-metrics", endpoint("10.0.9.9", nil)),
		slice("elsewhere", "dcgm-x", exporterLabels, "gpu-metrics", endpoint("10.0.8.8", nil)),
	)
	d, err := kube.NewEndpointSliceTargets(client, kube.DiscoveryConfig{Namespace: "gpu-operator", Selector: "app=nvidia-dcgm-exporter"},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan []string)
	done := make(chan error, 1)
	go func() { done <- d.Targets(ctx, out) }()

	require.Equal(t, []string{"http://10.0.0.1:9400/metrics", "http://10.0.0.2:9400/metrics"}, receive(t, out))

	// The third exporter becomes ready; a second slice of the Service appears.
	es := client.DiscoveryV1().EndpointSlices("gpu-operator")
	a, err := es.Get(t.Context(), "dcgm-a", metav1.GetOptions{})
	require.NoError(t, err)
	a.Endpoints[2].Conditions.Ready = ptr(true)
	_, err = es.Update(t.Context(), a, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"http://10.0.0.1:9400/metrics", "http://10.0.0.2:9400/metrics", "http://10.0.0.3:9400/metrics"}, receive(t, out))

	_, err = es.Create(t.Context(), slice("gpu-operator", "dcgm-b", exporterLabels, "gpu-metrics", endpoint("10.0.1.1", nil)), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Contains(t, receive(t, out), "http://10.0.1.1:9400/metrics")

	// The first slice goes away (the Service was re-created, a node left).
	require.NoError(t, es.Delete(t.Context(), "dcgm-a", metav1.DeleteOptions{}))
	require.Equal(t, []string{"http://10.0.1.1:9400/metrics"}, receive(t, out))

	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	// Discovery itself only listed and watched EndpointSlices in its
	// namespace: exactly what DiscoveryRules (the chart's Role) grants.
	rule := kube.DiscoveryRules()[0]
	for _, a := range client.Actions() {
		if a.GetVerb() == "list" || a.GetVerb() == "watch" {
			require.Equal(t, "gpu-operator", a.GetNamespace(), "%v", a)
			require.Contains(t, rule.Resources, a.GetResource().Resource)
			require.Contains(t, rule.APIGroups, a.GetResource().Group)
		}
	}
}

func TestEndpointSliceTargetsPortAndConfig(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name    string
		cfg     kube.DiscoveryConfig
		port    string // the exporter port's name in the slice
		want    []string
		wantErr string
	}{
		{name: "gpu-metrics by default", cfg: kube.DiscoveryConfig{Selector: "app=nvidia-dcgm-exporter"}, port: "gpu-metrics",
			want: []string{"http://10.1.0.1:9400/metrics"}},
		{name: "metrics by default", cfg: kube.DiscoveryConfig{Selector: "app=nvidia-dcgm-exporter"}, port: "metrics",
			want: []string{"http://10.1.0.1:9400/metrics"}},
		{name: "first port otherwise", cfg: kube.DiscoveryConfig{Selector: "app=nvidia-dcgm-exporter"}, port: "prom",
			want: []string{"http://10.1.0.1:8080/metrics"}},
		{name: "named port, scheme, path", cfg: kube.DiscoveryConfig{Selector: "app=nvidia-dcgm-exporter", Port: "prom", Scheme: "https", Path: "/m"}, port: "prom",
			want: []string{"https://10.1.0.1:9400/m"}},
		{name: "port by number", cfg: kube.DiscoveryConfig{Selector: "app=nvidia-dcgm-exporter", Port: "9400"}, port: "x",
			want: []string{"http://10.1.0.1:9400/metrics"}},
		{name: "port absent", cfg: kube.DiscoveryConfig{Selector: "app=nvidia-dcgm-exporter", Port: "nope"}, port: "x", want: []string{}},
		{name: "no selector", cfg: kube.DiscoveryConfig{}, wantErr: "selector is required"},
		{name: "bad selector", cfg: kube.DiscoveryConfig{Selector: "app in (("}, wantErr: "selector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset(slice("ns", "s", exporterLabels, tt.port, endpoint("10.1.0.1", nil)))
			tt.cfg.Namespace = "ns"
			d, err := kube.NewEndpointSliceTargets(client, tt.cfg, quiet)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ports.ErrInvalidArgument)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			out := make(chan []string)
			go func() { _ = d.Targets(t.Context(), out) }()
			require.Equal(t, tt.want, receive(t, out))
		})
	}
	_, err := kube.NewEndpointSliceTargets(fake.NewClientset(), kube.DiscoveryConfig{Selector: "a=b"}, quiet)
	require.ErrorContains(t, err, "namespace is required")
}
