package k8s_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsyaml "sigs.k8s.io/yaml"
)

// The Prometheus Operator kinds the umbrella chart renders with
// monitoring.*.enabled, decoded strictly with the operator's own Go types.
var (
	serviceMonitorGVK = monitoringv1.SchemeGroupVersion.WithKind(monitoringv1.ServiceMonitorsKind)
	podMonitorGVK     = monitoringv1.SchemeGroupVersion.WithKind(monitoringv1.PodMonitorsKind)
	prometheusRuleGVK = monitoringv1.SchemeGroupVersion.WithKind(monitoringv1.PrometheusRuleKind)
)

// decodeMonitoring decodes a Prometheus Operator object; ok is false for
// any other kind.
func decodeMonitoring(gvk schema.GroupVersionKind, js []byte) (obj any, ok bool, err error) {
	switch gvk {
	case serviceMonitorGVK:
		obj, err = decodeStrictJSON[monitoringv1.ServiceMonitor](js)
	case podMonitorGVK:
		obj, err = decodeStrictJSON[monitoringv1.PodMonitor](js)
	case prometheusRuleGVK:
		obj, err = decodeStrictJSON[monitoringv1.PrometheusRule](js)
	default:
		return nil, false, nil
	}
	return obj, true, err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// TestMonitoringRendersDashboardsMonitorsAndRules: with monitoring on, every
// enabled app gets a ServiceMonitor and a PodMonitor on its Service's or
// pods' labels and the named port "http"; each dashboard becomes a labelled
// ConfigMap holding the file; the PrometheusRule holds exactly the groups
// of deployments/prometheus/alerts.yaml. Off by default.
func TestMonitoringRendersDashboardsMonitorsAndRules(t *testing.T) {
	t.Parallel()
	ci := func(file string) string { return repoPath(t, "deployments", "helm", "telemetry-pipeline", "ci", file) }
	r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", "-f", ci("monitoring-values.yaml"), "--set", "streamer.enabled=false"))}
	pods := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", "-f", ci("monitoring-podmonitors-values.yaml"), "--set", "streamer.enabled=false"))}
	apps := []string{"mqwriter", "mqreader", "collector", "apigw", "partition-controller"}

	services := map[string]*corev1.Service{}
	for _, o := range r.objs {
		if s, ok := o.obj.(*corev1.Service); ok {
			services[s.Name] = s
		}
	}
	var sms, pms []string
	for _, o := range append(slices.Clone(r.objs), pods.objs...) {
		switch m := o.obj.(type) {
		case *monitoringv1.ServiceMonitor:
			sms = append(sms, m.Name)
			require.Equal(t, "kube-prometheus-stack", m.Labels["release"], "the operator's selector label")
			svc := services[m.Name]
			require.NotNil(t, svc, "ServiceMonitor %s: no Service of that name", m.Name)
			require.Equal(t, svc.Spec.Selector, m.Spec.Selector.MatchLabels, "ServiceMonitor %s selects its Service's labels", m.Name)
			require.Len(t, m.Spec.Endpoints, 1)
			ep := m.Spec.Endpoints[0]
			require.Equal(t, "http", ep.Port)
			require.Equal(t, "/metrics", ep.Path)
			require.Len(t, ep.RelabelConfigs, 1, "keeps only the app's own Service (not mqreader-headless)")
			require.Equal(t, m.Name, ep.RelabelConfigs[0].Regex)
			require.Equal(t, "keep", strings.ToLower(ep.RelabelConfigs[0].Action))
		case *monitoringv1.PodMonitor:
			pms = append(pms, m.Name)
			require.Len(t, m.Spec.PodMetricsEndpoints, 1)
			require.Equal(t, "http", deref(m.Spec.PodMetricsEndpoints[0].Port, ""))
			require.EqualValues(t, "15s", m.Spec.PodMetricsEndpoints[0].Interval)
			var w *workload
			for _, x := range workloads(pods) {
				if x.name == m.Name {
					w = &x
				}
			}
			require.NotNil(t, w, "PodMonitor %s: no workload of that name", m.Name)
			require.Equal(t, m.Spec.Selector.MatchLabels, pick(w.template.Labels, m.Spec.Selector.MatchLabels), "PodMonitor %s selects its pods", m.Name)
		}
	}
	require.ElementsMatch(t, apps, sms, "a ServiceMonitor per enabled app (streamer disabled)")
	require.ElementsMatch(t, apps, pms, "a PodMonitor per enabled app")
	for _, o := range r.objs {
		require.NotEqual(t, podMonitorGVK, o.gvk, "ServiceMonitors only")
	}
	_, err := helm(t, "template", "tp", repoPath(t, "deployments", "helm", "telemetry-pipeline"),
		"--set", "monitoring.serviceMonitors.enabled=true", "--set", "monitoring.podMonitors.enabled=true")
	require.ErrorContains(t, err, "not both")

	dashboards, err := filepath.Glob(repoPath(t, "deployments", "grafana", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, dashboards)
	found := 0
	for _, o := range r.objs {
		cm, ok := o.obj.(*corev1.ConfigMap)
		if !ok || cm.Labels["grafana_dashboard"] == "" {
			continue
		}
		found++
		require.Equal(t, "1", cm.Labels["grafana_dashboard"])
		require.Equal(t, "GPU telemetry", cm.Annotations["grafana_folder"])
		require.Len(t, cm.Data, 1, cm.Name)
		for file, content := range cm.Data {
			want := readFile(t, repoPath(t, "deployments", "grafana", file))
			require.JSONEq(t, want, content, "ConfigMap %s holds %s", cm.Name, file)
		}
	}
	require.Equal(t, len(dashboards), found, "a ConfigMap per dashboard")

	rule := one[monitoringv1.PrometheusRule](r, "tp-alerts")
	var file struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	require.NoError(t, sigsyaml.UnmarshalStrict([]byte(readFile(t, repoPath(t, "deployments", "prometheus", "alerts.yaml"))), &file))
	want, err := json.Marshal(file.Groups)
	require.NoError(t, err)
	got, err := json.Marshal(rule.Spec.Groups)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(got), "the PrometheusRule is the rules file")
	require.Equal(t, "kube-prometheus-stack", rule.Labels["release"])

	// Off by default: no operator kinds, no dashboards.
	for _, o := range decodeAll(t, template(t, "telemetry-pipeline")) {
		_, isMonitoring, _ := decodeMonitoring(o.gvk, []byte("{}"))
		require.False(t, isMonitoring, "%s rendered by default", o)
		require.Empty(t, o.meta.GetLabels()["grafana_dashboard"], "%s rendered by default", o)
	}
}
