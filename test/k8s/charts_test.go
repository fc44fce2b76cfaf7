package k8s_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	sigsyaml "sigs.k8s.io/yaml"

	csvsource "github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/adapters/kube"
	"github.com/gpufleet/telemetry/domain"
)

// appPorts are the apps' HTTP ports (HTTP_ADDR), fixed by the spec.
var appPorts = map[string]int32{
	"apigw": 8080, "mqwriter": 8081, "mqreader": 8082, "collector": 8083, "streamer": 8084, "partition-controller": 8085,
}

// bufferApps scale on their buffer utilization besides CPU.
var bufferApps = map[string]bool{"mqwriter": true, "mqreader": true}

// maxObjectBytes is the API server's limit on a ConfigMap's data.
const maxObjectBytes = 1 << 20

type release struct {
	name string
	objs []object
}

func (r release) get(kind, name string) (object, bool) {
	for _, o := range r.objs {
		if o.gvk.Kind == kind && o.meta.GetName() == name {
			return o, true
		}
	}
	return object{}, false
}

func typed[T any](r release) []*T {
	var out []*T
	for _, o := range r.objs {
		if v, ok := o.obj.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

func one[T any](r release, name string) *T {
	for _, v := range typed[T](r) {
		if any(v).(interface{ GetName() string }).GetName() == name {
			return v
		}
	}
	return nil
}

// workload is a Deployment or StatefulSet seen through its pod template.
type workload struct {
	kind, name string
	replicas   int32
	selector   map[string]string
	template   corev1.PodTemplateSpec
}

func workloads(r release) []workload {
	var out []workload
	for _, d := range typed[appsv1.Deployment](r) {
		out = append(out, workload{"Deployment", d.Name, deref(d.Spec.Replicas, 1), d.Spec.Selector.MatchLabels, d.Spec.Template})
	}
	for _, s := range typed[appsv1.StatefulSet](r) {
		out = append(out, workload{"StatefulSet", s.Name, deref(s.Spec.Replicas, 1), s.Spec.Selector.MatchLabels, s.Spec.Template})
	}
	return out
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func TestChartsRenderStrictly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		chart string
		args  []string
		// wantHPAs are the workloads that must have an autoscaler.
		wantHPAs []string
		// externalSecrets may be referenced without being rendered.
		externalSecrets []string
	}{
		{name: "umbrella defaults", chart: "telemetry-pipeline",
			wantHPAs:        []string{"mqwriter", "mqreader", "collector", "streamer"},
			externalSecrets: []string{"telemetry-database"}},
		{name: "umbrella everything on", chart: "telemetry-pipeline",
			args:            []string{"-f", "ci/everything-on-values.yaml"},
			wantHPAs:        []string{"mqwriter", "mqreader", "collector", "apigw"},
			externalSecrets: []string{"tp-pg-app"}},
		{name: "umbrella keda and database url", chart: "telemetry-pipeline",
			args:     []string{"-f", "ci/keda-values.yaml"},
			wantHPAs: []string{"mqwriter", "mqreader", "collector", "streamer"}},
		{name: "umbrella small csv chunks, fixed reader count", chart: "telemetry-pipeline",
			args: []string{"--set", "streamer.csv.chunkBytes=100000", "--set", "mqreader.autoscaling.enabled=false",
				"--set", "mqreader.replicaCount=5", "--set", "global.mqreader.maxReplicas=5"},
			wantHPAs:        []string{"mqwriter", "collector", "streamer"},
			externalSecrets: []string{"telemetry-database"}},
		{name: "umbrella streamer scraping the GPU Operator's exporters", chart: "telemetry-pipeline",
			args:            []string{"-f", "ci/scrape-values.yaml"},
			wantHPAs:        []string{"mqwriter", "mqreader", "collector"},
			externalSecrets: []string{"telemetry-database"}},
		{name: "umbrella narrowed network policies, own token Secrets", chart: "telemetry-pipeline",
			args:            []string{"-f", "ci/security-values.yaml"},
			wantHPAs:        []string{"mqwriter", "mqreader", "collector", "streamer"},
			externalSecrets: []string{"telemetry-database", "queue-publish-tokens", "queue-consume-tokens"}},
		{name: "streamer alone scraping a target list", chart: "streamer",
			args:            []string{"--set", "source=scrape", "--set", "scrape.targets={10.0.0.7:9400,https://gpu-8:9400/metrics}", "--set", "scrape.interval=30s"},
			externalSecrets: []string{"mqwriter-tokens"}},
		{name: "streamer alone discovering in its own namespace", chart: "streamer",
			args:            []string{"--set", "source=scrape", "--set", "scrape.kubernetes.namespace=", "--set", "scrape.kubernetes.port=9400"},
			externalSecrets: []string{"mqwriter-tokens"}},
		{name: "mqwriter alone", chart: "mqwriter", externalSecrets: []string{"telemetry-database"}},
		{name: "mqreader alone", chart: "mqreader", externalSecrets: []string{"telemetry-database"}},
		{name: "collector alone", chart: "collector", externalSecrets: []string{"telemetry-database", "mqreader-tokens"}},
		{name: "streamer alone", chart: "streamer", externalSecrets: []string{"mqwriter-tokens"}},
		{name: "apigw alone", chart: "apigw", externalSecrets: []string{"telemetry-database"}},
		{name: "apigw alone, GOMAXPROCS from extraEnv", chart: "apigw", args: []string{"--set", "extraEnv[0].name=GOMAXPROCS", "--set-string", "extraEnv[0].value=3"},
			externalSecrets: []string{"telemetry-database"}},
		{name: "partition-controller alone", chart: "partition-controller"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := slices.Clone(tc.args)
			for i, a := range args {
				if strings.HasPrefix(a, "ci/") {
					args[i] = repoPath(t, "deployments", "helm", tc.chart, a)
				}
			}
			r := release{name: "tp", objs: decodeAll(t, template(t, tc.chart, args...))}
			require.NotEmpty(t, r.objs)
			checkMetadata(t, r)
			checkWorkloads(t, r, tc.externalSecrets)
			checkServices(t, r)
			checkAutoscalers(t, r, tc.wantHPAs)
			checkConfigMaps(t, r)
			checkReaders(t, r)
			checkCollector(t, r)
			checkStreamer(t, r)
			checkController(t, r)
			checkMigration(t, r)
			checkNetworkPolicies(t, r)
			checkTokens(t, r)
			checkRoles(t, r)
		})
	}
}

func checkMetadata(t *testing.T, r release) {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range r.objs {
		key := o.String()
		require.False(t, seen[key], "%s rendered twice", key)
		seen[key] = true
		switch {
		case o.gvk.Kind == "ConfigMap" && o.meta.GetName() == "telemetry-prometheus-adapter-rules":
			require.Equal(t, "monitoring", o.meta.GetNamespace(), "adapter rules live in the adapter's namespace")
		case (o.gvk.Kind == "Role" || o.gvk.Kind == "RoleBinding") && o.meta.GetName() == "streamer-discovery":
			// The streamer reads EndpointSlices where the exporters are;
			// checkStreamer checks the namespace.
		default:
			require.Equal(t, namespace, o.meta.GetNamespace(), "%s namespace", key)
		}
		l := o.meta.GetLabels()
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			require.NotEmpty(t, l[k], "%s lacks label %s", key, k)
		}
		require.Equal(t, r.name, l["app.kubernetes.io/instance"], key)
		require.Equal(t, "telemetry-pipeline", l["app.kubernetes.io/part-of"], key)
	}
}

func checkWorkloads(t *testing.T, r release, externalSecrets []string) {
	t.Helper()
	for _, w := range workloads(r) {
		key := w.kind + "/" + w.name
		require.Equal(t, w.selector, pick(w.template.Labels, w.selector), "%s selector matches its pods", key)
		pod := w.template.Spec
		require.Len(t, pod.Containers, 1, key)
		c := pod.Containers[0]
		port, known := appPorts[c.Name]
		require.True(t, known, "%s runs unknown app %q", key, c.Name)
		require.Equal(t, []string{"/app/bin/" + c.Name}, c.Command, key)
		require.Len(t, c.Ports, 1, key)
		require.Equal(t, "http", c.Ports[0].Name, key)
		require.Equal(t, port, c.Ports[0].ContainerPort, "%s port", key)

		for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe, "/healthz ": c.StartupProbe} {
			require.NotNil(t, p, "%s probe %s", key, name)
			require.NotNil(t, p.HTTPGet, key)
			require.Equal(t, strings.TrimSpace(name), p.HTTPGet.Path, key)
			require.Equal(t, "http", p.HTTPGet.Port.String(), key)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			q := c.Resources.Requests[res]
			require.False(t, q.IsZero(), "%s requests %s", key, res)
		}
		lim := c.Resources.Limits[corev1.ResourceMemory]
		require.False(t, lim.IsZero(), "%s memory limit", key)

		require.NotNil(t, pod.SecurityContext, key)
		require.True(t, deref(pod.SecurityContext.RunAsNonRoot, false), "%s runAsNonRoot", key)
		require.NotNil(t, c.SecurityContext, key)
		require.True(t, deref(c.SecurityContext.ReadOnlyRootFilesystem, false), "%s read-only root", key)
		require.False(t, deref(c.SecurityContext.AllowPrivilegeEscalation, true), "%s privilege escalation", key)
		require.NotNil(t, c.SecurityContext.Capabilities, key)
		require.Contains(t, c.SecurityContext.Capabilities.Drop, corev1.Capability("ALL"), key)

		require.NotNil(t, c.Lifecycle, key)
		require.NotNil(t, c.Lifecycle.PreStop, key)
		require.NotNil(t, c.Lifecycle.PreStop.Sleep, "%s preStop sleep (the image has no shell)", key)
		grace := deref(pod.TerminationGracePeriodSeconds, 30)
		require.Greater(t, grace, c.Lifecycle.PreStop.Sleep.Seconds, key)

		env := envOf(t, r, c)
		discovers := c.Name == "streamer" && env["SCRAPE_KUBERNETES_SELECTOR"] != ""
		require.Equal(t, c.Name == "partition-controller" || discovers, deref(pod.AutomountServiceAccountToken, true),
			"%s: only the controller and a streamer discovering exporters talk to the API server", key)
		_, ok := r.get("ServiceAccount", pod.ServiceAccountName)
		require.True(t, ok, "%s service account %s rendered", key, pod.ServiceAccountName)

		require.Equal(t, fmt.Sprintf(":%d", port), env["HTTP_ADDR"], "%s HTTP_ADDR", key)
		require.NotEmpty(t, env["LOG_LEVEL"], key)
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			name := e.ValueFrom.SecretKeyRef.Name
			if s, ok := r.get("Secret", name); ok {
				require.True(t, secretHas(s.obj.(*corev1.Secret), e.ValueFrom.SecretKeyRef.Key), "%s: secret %s has key %s", key, name, e.ValueFrom.SecretKeyRef.Key)
			} else {
				require.Contains(t, externalSecrets, name, "%s references secret %s that is neither rendered nor expected", key, name)
			}
		}
		checkGOMAXPROCS(t, key, c)
		needsDB := map[string]bool{"mqwriter": true, "mqreader": true, "collector": true, "apigw": true}[c.Name]
		_, hasDB := envVar(c, "DATABASE_URL")
		require.Equal(t, needsDB, hasDB, "%s DATABASE_URL", key)

		for _, v := range pod.Volumes {
			switch {
			case v.ConfigMap != nil:
				_, ok := r.get("ConfigMap", v.ConfigMap.Name)
				require.True(t, ok, "%s mounts missing ConfigMap %s", key, v.ConfigMap.Name)
			case v.Projected != nil:
				for _, s := range v.Projected.Sources {
					require.NotNil(t, s.ConfigMap, key)
					_, ok := r.get("ConfigMap", s.ConfigMap.Name)
					require.True(t, ok, "%s mounts missing ConfigMap %s", key, s.ConfigMap.Name)
				}
			case v.Secret != nil:
				if s, ok := r.get("Secret", v.Secret.SecretName); ok {
					for _, item := range v.Secret.Items {
						require.True(t, secretHas(s.obj.(*corev1.Secret), item.Key), "%s mounts key %s that secret %s lacks", key, item.Key, v.Secret.SecretName)
					}
				} else {
					require.Contains(t, externalSecrets, v.Secret.SecretName, "%s mounts secret %s that is neither rendered nor expected", key, v.Secret.SecretName)
				}
			default:
				t.Fatalf("%s: unexpected volume %s", key, v.Name)
			}
		}
	}
	for _, p := range typed[policyv1.PodDisruptionBudget](r) {
		require.NotNil(t, p.Spec.MaxUnavailable, p.Name)
		require.NotNil(t, matching(r, p.Spec.Selector.MatchLabels), "PDB %s selects no workload", p.Name)
	}
}

// checkGOMAXPROCS: every app sizes its Go scheduler to its CPU request
// (rounded up), unless extraEnv sets GOMAXPROCS itself, once.
func checkGOMAXPROCS(t *testing.T, key string, c corev1.Container) {
	t.Helper()
	var set []corev1.EnvVar
	for _, e := range c.Env {
		if e.Name == "GOMAXPROCS" {
			set = append(set, e)
		}
	}
	require.Len(t, set, 1, "%s sets GOMAXPROCS once", key)
	e := set[0]
	if e.ValueFrom == nil {
		require.NotEmpty(t, e.Value, "%s GOMAXPROCS from extraEnv", key)
		return
	}
	ref := e.ValueFrom.ResourceFieldRef
	require.NotNil(t, ref, "%s GOMAXPROCS from the container's resources", key)
	require.Equal(t, "requests.cpu", ref.Resource, key)
	require.Equal(t, "1", ref.Divisor.String(), "%s whole CPUs, rounded up", key)
}

// envOf merges a container's envFrom ConfigMaps and plain env values.
// deployed returns Deployment name of r with its first container and that
// container's environment (envOf); d is nil when r renders no such
// Deployment.
func deployed(t *testing.T, r release, name string) (d *appsv1.Deployment, c corev1.Container, env map[string]string) {
	t.Helper()
	d = one[appsv1.Deployment](r, name)
	if d == nil {
		return nil, c, nil
	}
	c = d.Spec.Template.Spec.Containers[0]
	return d, c, envOf(t, r, c)
}

func envOf(t *testing.T, r release, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		require.NotNil(t, ef.ConfigMapRef, c.Name)
		o, ok := r.get("ConfigMap", ef.ConfigMapRef.Name)
		require.True(t, ok, "%s envFrom missing ConfigMap %s", c.Name, ef.ConfigMapRef.Name)
		for k, v := range o.obj.(*corev1.ConfigMap).Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

func envVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// secretHas reports whether a rendered Secret holds key (data or stringData).
func secretHas(s *corev1.Secret, key string) bool {
	_, inData := s.Data[key]
	_, inString := s.StringData[key]
	return inData || inString
}

func mountOf(c corev1.Container, volume string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volumeOf(pod corev1.PodSpec, name string) (corev1.Volume, bool) {
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

func pick(m, keys map[string]string) map[string]string {
	out := map[string]string{}
	for k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func matching(r release, selector map[string]string) *workload {
	for _, w := range workloads(r) {
		if labels.SelectorFromSet(selector).Matches(labels.Set(w.template.Labels)) {
			return &w
		}
	}
	return nil
}

func checkServices(t *testing.T, r release) {
	t.Helper()
	for _, s := range typed[corev1.Service](r) {
		w := matching(r, s.Spec.Selector)
		require.NotNil(t, w, "service %s selects no workload", s.Name)
		require.Len(t, s.Spec.Ports, 1, s.Name)
		require.Equal(t, "http", s.Spec.Ports[0].TargetPort.String(), s.Name)
		require.Equal(t, w.template.Spec.Containers[0].Ports[0].ContainerPort, s.Spec.Ports[0].Port, s.Name)
	}
}

func checkAutoscalers(t *testing.T, r release, want []string) {
	t.Helper()
	got := map[string]bool{}
	target := func(key, kind, name string) workload {
		for _, w := range workloads(r) {
			if w.kind == kind && w.name == name {
				return w
			}
		}
		t.Fatalf("%s targets %s/%s, which is not rendered", key, kind, name)
		return workload{}
	}
	for _, h := range typed[autoscalingv2.HorizontalPodAutoscaler](r) {
		key := "HPA/" + h.Name
		require.Equal(t, "apps/v1", h.Spec.ScaleTargetRef.APIVersion, key)
		w := target(key, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		require.False(t, got[w.name], "%s: two autoscalers for %s", key, w.name)
		got[w.name] = true
		require.LessOrEqual(t, deref(h.Spec.MinReplicas, 1), h.Spec.MaxReplicas, key)
		require.GreaterOrEqual(t, w.replicas, deref(h.Spec.MinReplicas, 1), "%s: initial replicas within bounds", key)
		var cpu, buffer bool
		for _, m := range h.Spec.Metrics {
			switch m.Type {
			case autoscalingv2.ResourceMetricSourceType:
				require.Equal(t, corev1.ResourceCPU, m.Resource.Name, key)
				require.Equal(t, autoscalingv2.UtilizationMetricType, m.Resource.Target.Type, key)
				cpu = true
			case autoscalingv2.PodsMetricSourceType:
				require.Equal(t, w.name+"_buffer_utilization_ratio", m.Pods.Metric.Name, key)
				require.Equal(t, autoscalingv2.AverageValueMetricType, m.Pods.Target.Type, key)
				require.Zero(t, m.Pods.Target.AverageValue.Cmp(resource.MustParse("850m")), "%s scales up above 0.85", key)
				buffer = true
			default:
				t.Fatalf("%s: unexpected metric %s", key, m.Type)
			}
		}
		require.True(t, cpu, "%s scales on CPU", key)
		require.Equal(t, bufferApps[w.name], buffer, "%s buffer metric", key)
		require.NotNil(t, h.Spec.Behavior, key)
		require.Positive(t, deref(h.Spec.Behavior.ScaleDown.StabilizationWindowSeconds, 0), "%s scale-down window", key)
		if buffer {
			// Down below 0.20 with a 0.85 target: tolerance 1 - 0.20/0.85.
			tol := h.Spec.Behavior.ScaleDown.Tolerance
			require.NotNil(t, tol, key)
			require.InDelta(t, 1-0.20/0.85, tol.AsApproximateFloat64(), 0.001, key)
		}
	}
	for _, s := range typed[scaledObject](r) {
		key := "ScaledObject/" + s.Name
		w := target(key, s.Spec.ScaleTargetRef.Kind, s.Spec.ScaleTargetRef.Name)
		require.False(t, got[w.name], "%s: two autoscalers for %s", key, w.name)
		got[w.name] = true
		require.LessOrEqual(t, deref(s.Spec.MinReplicaCount, 0), deref(s.Spec.MaxReplicaCount, 0), key)
		var cpu, buffer bool
		for _, tr := range s.Spec.Triggers {
			switch tr.Type {
			case "cpu":
				cpu = true
			case "prometheus":
				require.Contains(t, tr.Metadata["query"], w.name+"_buffer_utilization_ratio", key)
				require.Equal(t, "0.85", tr.Metadata["threshold"], key)
				require.NotEmpty(t, tr.Metadata["serverAddress"], key)
				buffer = true
			default:
				t.Fatalf("%s: unexpected trigger %s", key, tr.Type)
			}
		}
		require.True(t, cpu, key)
		require.Equal(t, bufferApps[w.name], buffer, "%s buffer trigger", key)
	}
	for _, name := range want {
		require.True(t, got[name], "%s has no autoscaler", name)
	}
}

func checkConfigMaps(t *testing.T, r release) {
	t.Helper()
	for _, cm := range typed[corev1.ConfigMap](r) {
		size := 0
		for k, v := range cm.Data {
			size += len(k) + len(v)
		}
		require.LessOrEqual(t, size, maxObjectBytes, "ConfigMap %s is over the API server's 1 MiB limit", cm.Name)
		if cm.Name == "telemetry-prometheus-adapter-rules" {
			var cfg struct {
				Rules []struct {
					SeriesQuery  string `json:"seriesQuery"`
					MetricsQuery string `json:"metricsQuery"`
					Name         struct {
						Matches string `json:"matches"`
						As      string `json:"as"`
					} `json:"name"`
					Resources struct {
						Overrides map[string]struct {
							Resource string `json:"resource"`
						} `json:"overrides"`
					} `json:"resources"`
				} `json:"rules"`
			}
			require.NoError(t, sigsyaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &cfg))
			var names []string
			for _, rule := range cfg.Rules {
				names = append(names, rule.Name.As)
				require.Equal(t, "pod", rule.Resources.Overrides["pod"].Resource)
				require.Equal(t, "namespace", rule.Resources.Overrides["namespace"].Resource)
				require.Contains(t, rule.SeriesQuery, rule.Name.As)
			}
			require.ElementsMatch(t, []string{"mqwriter_buffer_utilization_ratio", "mqreader_buffer_utilization_ratio"}, names)
		}
	}
}

// checkReaders: the reader StatefulSet, its headless Service and the
// initial assignment, byte for byte what the partition controller writes.
func checkReaders(t *testing.T, r release) {
	t.Helper()
	sts := one[appsv1.StatefulSet](r, "mqreader")
	if sts == nil {
		return
	}
	require.Equal(t, appsv1.ParallelPodManagement, sts.Spec.PodManagementPolicy, "new readers wait for a range: OrderedReady would stall")
	require.GreaterOrEqual(t, deref(sts.Spec.Template.Spec.TerminationGracePeriodSeconds, 30), int64(45), "readers drain")
	svc := one[corev1.Service](r, sts.Spec.ServiceName)
	require.NotNil(t, svc, "serviceName %s rendered", sts.Spec.ServiceName)
	require.Equal(t, corev1.ClusterIPNone, svc.Spec.ClusterIP)
	require.True(t, svc.Spec.PublishNotReadyAddresses, "draining readers keep their DNS name for acks")

	c := sts.Spec.Template.Spec.Containers[0]
	podName, ok := envVar(c, "POD_NAME")
	require.True(t, ok)
	require.Equal(t, "metadata.name", podName.ValueFrom.FieldRef.FieldPath)
	env := envOf(t, r, c)
	mount, ok := mountOf(c, "partitions")
	require.True(t, ok, "partitions mounted")
	require.Equal(t, mount.MountPath+"/"+domain.AssignmentKey, env["PARTITIONS_FILE"])

	cm := one[corev1.ConfigMap](r, sts.Name+"-partitions")
	require.NotNil(t, cm, "partitions ConfigMap")
	replicas := int(deref(sts.Spec.Replicas, 1))
	data, sum, err := kube.AssignmentData(sts.Name, replicas)
	require.NoError(t, err)
	require.Equal(t, string(data), cm.Data[domain.AssignmentKey], "the chart's assignment equals the controller's")
	require.Equal(t, sum, sts.Spec.Template.Annotations[kube.ChecksumAnnotation], "the chart's checksum equals the controller's: no rollout on install")
	var a domain.Assignment
	require.NoError(t, json.Unmarshal(data, &a))
	require.Len(t, a.Ranges, replicas)
}

func checkCollector(t *testing.T, r release) {
	t.Helper()
	d, _, env := deployed(t, r, "collector")
	if d == nil {
		return
	}
	urls := strings.Split(env["MQ_READER_URLS"], ",")
	want := regexp.MustCompile(`^http://mqreader-(\d+)\.mqreader-headless\.` + namespace + `\.svc:8082$`)
	for i, u := range urls {
		m := want.FindStringSubmatch(u)
		require.NotNil(t, m, "reader URL %q", u)
		require.Equal(t, strconv.Itoa(i), m[1])
	}
	if sts := one[appsv1.StatefulSet](r, "mqreader"); sts != nil {
		most := deref(sts.Spec.Replicas, 1)
		if h := one[autoscalingv2.HorizontalPodAutoscaler](r, "mqreader"); h != nil {
			most = h.Spec.MaxReplicas
		}
		if s := one[scaledObject](r, "mqreader"); s != nil {
			most = deref(s.Spec.MaxReplicaCount, 0)
		}
		require.GreaterOrEqual(t, len(urls), int(most), "collectors know every reader the autoscaler may start")
	}
	require.Equal(t, "postgres", env["QUEUE_BACKEND"])
}

// checkStreamer: the CSV ConfigMaps reassemble the shipped file exactly.
func checkStreamer(t *testing.T, r release) {
	t.Helper()
	d, c, env := deployed(t, r, "streamer")
	if d == nil {
		return
	}
	if w := one[corev1.Service](r, "mqwriter"); w != nil {
		require.Equal(t, fmt.Sprintf("http://mqwriter.%s.svc:%d", namespace, w.Spec.Ports[0].Port), env["MQ_WRITER_URL"])
	}
	if env["STREAMER_SOURCE"] == "scrape" {
		checkStreamerScrape(t, r, d, env)
		return
	}
	require.Equal(t, "csv", env["STREAMER_SOURCE"])
	require.Nil(t, one[rbacv1.Role](r, "streamer-discovery"), "the CSV source needs no API access")
	csv, mounted := volumeOf(d.Spec.Template.Spec, "csv")
	if !mounted {
		require.Empty(t, env["STREAMER_CSV_PATH"], "csv.source=image uses the image's default path")
		return
	}
	mount, ok := mountOf(c, "csv")
	require.True(t, ok, "csv mounted")
	require.Equal(t, mount.MountPath, env["STREAMER_CSV_PATH"])
	shipped, err := os.ReadFile(repoPath(t, filepath.FromSlash(csvsource.DefaultPath)))
	require.NoError(t, err)
	lines := nonEmptyLines(shipped)
	header, rows := lines[0], lines[1:]
	var got []string
	for i, src := range csv.Projected.Sources {
		cm := one[corev1.ConfigMap](r, src.ConfigMap.Name)
		require.NotNil(t, cm)
		require.Len(t, cm.Data, 1)
		part := cm.Data[fmt.Sprintf("part-%03d.csv", i)]
		require.NotEmpty(t, part, "%s holds part-%03d.csv", cm.Name, i)
		pl := nonEmptyLines([]byte(part))
		require.Equal(t, header, pl[0], "every part is a whole CSV with the header")
		got = append(got, pl[1:]...)
	}
	require.Equal(t, rows, got, "the parts are the shipped CSV's rows, in order, each once")
}

// checkStreamerScrape: a scraping streamer mounts no CSV, runs alone, and
// has API access (its token, a Role of exactly kube.DiscoveryRules in the
// exporter's namespace) only when it discovers its targets.
func checkStreamerScrape(t *testing.T, r release, d *appsv1.Deployment, env map[string]string) {
	t.Helper()
	pod := d.Spec.Template.Spec
	_, mounted := volumeOf(pod, "csv")
	require.False(t, mounted, "no CSV mounted")
	require.Empty(t, env["STREAMER_CSV_PATH"])
	require.EqualValues(t, 1, deref(d.Spec.Replicas, 1), "one scraping streamer")
	require.NotEmpty(t, env["SCRAPE_INTERVAL"])
	role := one[rbacv1.Role](r, "streamer-discovery")
	if env["SCRAPE_TARGETS"] != "" {
		require.Empty(t, env["SCRAPE_KUBERNETES_SELECTOR"], "one source of targets")
		require.Nil(t, role, "a target list needs no API access")
		require.False(t, deref(pod.AutomountServiceAccountToken, true), "no token without discovery")
		return
	}
	require.NotEmpty(t, env["SCRAPE_KUBERNETES_SELECTOR"])
	require.True(t, deref(pod.AutomountServiceAccountToken, false), "discovery needs the service account token")
	require.NotNil(t, role)
	require.Equal(t, env["SCRAPE_KUBERNETES_NAMESPACE"], role.Namespace, "the Role is where the exporters are")
	require.Equal(t, kube.DiscoveryRules(), role.Rules, "the Role is exactly what discovery does")
	rb := one[rbacv1.RoleBinding](r, "streamer-discovery")
	require.NotNil(t, rb)
	require.Equal(t, role.Namespace, rb.Namespace)
	require.Equal(t, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name}, rb.RoleRef)
	require.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: pod.ServiceAccountName, Namespace: namespace}}, rb.Subjects)
}

func nonEmptyLines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// checkController: the Role grants exactly kube.Rules, bound to the
// controller's service account, for the names the controller is given.
func checkController(t *testing.T, r release) {
	t.Helper()
	d, c, env := deployed(t, r, "partition-controller")
	if d == nil {
		return
	}
	ns, ok := envVar(c, "NAMESPACE")
	require.True(t, ok)
	require.Equal(t, "metadata.namespace", ns.ValueFrom.FieldRef.FieldPath)
	require.Equal(t, "true", env["LEADER_ELECT"])
	if sts := one[appsv1.StatefulSet](r, "mqreader"); sts != nil {
		require.Equal(t, sts.Name, env["STATEFULSET"])
		require.NotNil(t, one[corev1.ConfigMap](r, env["CONFIGMAP"]), "CONFIGMAP names the rendered partitions ConfigMap")
	}
	role := one[rbacv1.Role](r, "partition-controller")
	require.NotNil(t, role)
	want := kube.Rules(kube.Config{Namespace: namespace, StatefulSet: env["STATEFULSET"], ConfigMap: env["CONFIGMAP"]},
		kube.ElectionConfig{LeaseName: env["LEADER_ELECTION_ID"]})
	require.ElementsMatch(t, want, role.Rules, "the Role is exactly what the controller does")
	rb := one[rbacv1.RoleBinding](r, "partition-controller")
	require.NotNil(t, rb)
	require.Equal(t, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name}, rb.RoleRef)
	require.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: d.Spec.Template.Spec.ServiceAccountName, Namespace: namespace}}, rb.Subjects)
	require.Empty(t, typed[rbacv1.ClusterRole](r), "no cluster-wide permissions")
}

func checkMigration(t *testing.T, r release) {
	t.Helper()
	j := one[batchv1.Job](r, "tp-migrate")
	if j == nil {
		return
	}
	pod := j.Spec.Template.Spec
	c := pod.Containers[0]
	if len(pod.InitContainers) > 0 {
		// Own roles per app: the schema first, then the grants, both as the owner.
		require.Len(t, pod.InitContainers, 1)
		require.Equal(t, []string{"/app/bin/migrate", "exec", "/etc/telemetry/grants.sql"}, c.Command)
		m, ok := mountOf(c, "grants")
		require.True(t, ok)
		require.Equal(t, "/etc/telemetry", m.MountPath)
		v, ok := volumeOf(pod, "grants")
		require.True(t, ok)
		cm := one[corev1.ConfigMap](r, v.ConfigMap.Name)
		require.NotNil(t, cm, "grants ConfigMap rendered")
		require.Equal(t, j.Annotations["helm.sh/hook"], cm.Annotations["helm.sh/hook"], "an upgrade's Job reads the new grants")
		require.Less(t, hookWeight(t, cm.Annotations), hookWeight(t, j.Annotations))
		grants, err := os.ReadFile(repoPath(t, "deployments", "helm", "telemetry-pipeline", "files", "grants.sql"))
		require.NoError(t, err)
		require.Equal(t, string(grants), cm.Data["grants.sql"])
		require.Equal(t, c.Env, pod.InitContainers[0].Env, "both steps run as the owner")
		c = pod.InitContainers[0]
	}
	require.Equal(t, []string{"/app/bin/migrate", "up"}, c.Command)
	hook := j.Annotations["helm.sh/hook"]
	if one[cnpgCluster](r, "tp-pg") != nil {
		require.Equal(t, "post-install,pre-upgrade", hook, "the cnpg database exists only after install")
	} else {
		require.Equal(t, "pre-install,pre-upgrade", hook)
	}
	require.Equal(t, corev1.RestartPolicyNever, j.Spec.Template.Spec.RestartPolicy)
	_, ok := envVar(c, "DATABASE_URL")
	require.True(t, ok)
	if s := one[corev1.Secret](r, "tp-database"); s != nil {
		require.Contains(t, s.Annotations["helm.sh/hook"], "pre-install", "the URL Secret exists before the migration Job")
		require.Less(t, hookWeight(t, s.Annotations), hookWeight(t, j.Annotations))
	}
}

func hookWeight(t *testing.T, a map[string]string) int {
	t.Helper()
	w, err := strconv.Atoi(a["helm.sh/hook-weight"])
	require.NoError(t, err)
	return w
}

// TestPartitionAssignmentMatchesController renders the reader chart for
// several replica counts; the ConfigMap and the checksum annotation must be
// exactly what the controller computes (otherwise a fresh install would roll
// the readers at once, or worse, start them on different ranges).
func TestPartitionAssignmentMatchesController(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 7, 256} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			out := template(t, "mqreader", "--set", fmt.Sprintf("replicaCount=%d", n),
				"--show-only", "templates/configmap-partitions.yaml", "--show-only", "templates/statefulset.yaml",
				"--show-only", "templates/service.yaml", "--show-only", "templates/configmap.yaml")
			r := release{name: "tp", objs: decodeAll(t, out)}
			checkReaders(t, r)
			require.EqualValues(t, n, deref(one[appsv1.StatefulSet](r, "mqreader").Spec.Replicas, 0))
		})
	}
}

// TestValuesSchemaRejects: values.schema.json catches mistakes before
// anything reaches the cluster.
func TestValuesSchemaRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, chart, set, want string
	}{
		{"more readers than partitions", "telemetry-pipeline", "mqreader.replicaCount=300", "replicaCount"},
		{"misspelt key", "telemetry-pipeline", "mqwriter.replicaCont=3", "replicaCont"},
		{"unknown database mode", "telemetry-pipeline", "global.database.mode=sqlite", "mode"},
		{"buffer threshold above 1", "mqwriter", "autoscaling.bufferUtilization.scaleUpAbove=1.5", "scaleUpAbove"},
		{"reader grace too short to drain", "mqreader", "terminationGracePeriodSeconds=10", "terminationGracePeriodSeconds"},
		{"controller autoscaled", "partition-controller", "autoscaling.enabled=true", "autoscaling"},
		{"unknown streamer source", "streamer", "source=kafka", "source"},
		{"scrape interval not a duration", "streamer", "scrape.interval=15", "interval"},
		{"several scraping streamers", "streamer", "source=scrape,replicaCount=2", "one streamer"},
		{"autoscaled scraping streamer", "telemetry-pipeline", "streamer.source=scrape", "one streamer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := helm(t, "template", "tp", repoPath(t, "deployments", "helm", tc.chart), "--set", tc.set)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestStrictDecodingCatchesMistakes proves the decoder is strict: each
// document is valid YAML that a lenient decoder would accept.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, doc, want string }{
		{"unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {}\nimmutable: true\nsurprise: 1\n", "unknown field"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nmetadata: {name: y}\n", "already set"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n", "replicas"},
		{"misplaced probe", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n  - name: c\n    httpGet: {path: /healthz}\n", "httpGet"},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n", "unknown kind"},
		{"unknown field in a custom resource", "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {maxReplicas: 3}\n", "maxReplicas"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := decode([]byte(tc.doc))
			require.ErrorContains(t, err, tc.want)
		})
	}
}
