package helmlookup

import (
	"bytes"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/fake"
	sigsyaml "sigs.k8s.io/yaml"
)

const namespace = "telemetry"

// cluster is a fake API server for lookup: the objects of the last install.
type cluster struct{ client *fake.FakeDynamicClient }

var resources = map[string]schema.GroupVersionResource{
	"v1/Secret":           {Version: "v1", Resource: "secrets"},
	"v1/ConfigMap":        {Version: "v1", Resource: "configmaps"},
	"apps/v1/StatefulSet": {Group: "apps", Version: "v1", Resource: "statefulsets"},
	"apps/v1/Deployment":  {Group: "apps", Version: "v1", Resource: "deployments"},
}

func newCluster(objs ...runtime.Object) cluster {
	lists := map[schema.GroupVersionResource]string{}
	for key, gvr := range resources {
		lists[gvr] = key[strings.LastIndex(key, "/")+1:] + "List"
	}
	return cluster{fake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists, objs...)}
}

// GetClientFor implements engine.ClientProvider.
func (c cluster) GetClientFor(apiVersion, kind string) (dynamic.NamespaceableResourceInterface, bool, error) {
	gvr, ok := resources[apiVersion+"/"+kind]
	if !ok {
		gvr = schema.GroupVersionResource{Resource: strings.ToLower(kind) + "s"}
	}
	return c.client.Resource(gvr), true, nil
}

// render renders the umbrella chart as helm install/upgrade would, with
// lookup answered by c.
func render(t *testing.T, c cluster, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	files := renderFiles(t, c, vals)
	var out []*unstructured.Unstructured
	for name, content := range files {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range bytes.Split([]byte(content), []byte("\n---")) {
			var m map[string]any
			require.NoError(t, sigsyaml.Unmarshal(doc, &m), name)
			if len(m) == 0 {
				continue
			}
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
	return out
}

// renderFiles is the engine's output: file name -> rendered text.
func renderFiles(t *testing.T, c cluster, vals map[string]any) map[string]string {
	t.Helper()
	chrt, err := loader.Load(filepath.Join("..", "..", "deployments", "helm", "telemetry-pipeline"))
	require.NoError(t, err)
	require.NoError(t, chartutil.ProcessDependenciesWithMerge(chrt, vals))
	values, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{Name: "tp", Namespace: namespace, IsUpgrade: true}, chartutil.DefaultCapabilities)
	require.NoError(t, err)
	files, err := engine.RenderWithClientProvider(chrt, values, c)
	require.NoError(t, err)
	return files
}

// TestNotesShowTheTokens: the install notes say how to read the tokens,
// and warn loudly when authentication is off.
func TestNotesShowTheTokens(t *testing.T) {
	notes := renderFiles(t, newCluster(), map[string]any{})["telemetry-pipeline/templates/NOTES.txt"]
	require.Contains(t, notes, "get secret mqwriter-tokens -o jsonpath='{.data.token}'")
	require.Contains(t, notes, "get secret mqreader-tokens -o jsonpath='{.data.token}'")
	require.Contains(t, notes, "NetworkPolicies isolate every pod")
	off := renderFiles(t, newCluster(), map[string]any{"global": map[string]any{"auth": map[string]any{"enabled": false}}})["telemetry-pipeline/templates/NOTES.txt"]
	require.Contains(t, off, "WITHOUT authentication")
	require.NotContains(t, off, "mqwriter-tokens")
}

func secrets(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if o.GetKind() == "Secret" {
			out[o.GetName()] = o
		}
	}
	return out
}

func data(t *testing.T, s *unstructured.Unstructured, key string) string {
	t.Helper()
	v, ok, err := unstructured.NestedString(s.Object, "data", key)
	require.NoError(t, err)
	require.True(t, ok, "%s has %s", s.GetName(), key)
	b, err := base64.StdEncoding.DecodeString(v)
	require.NoError(t, err)
	return string(b)
}

func setData(t *testing.T, s *unstructured.Unstructured, key, value string) {
	t.Helper()
	require.NoError(t, unstructured.SetNestedField(s.Object, base64.StdEncoding.EncodeToString([]byte(value)), "data", key))
}

func objects(m map[string]*unstructured.Unstructured) []runtime.Object {
	var out []runtime.Object
	for _, s := range m {
		out = append(out, s.DeepCopy())
	}
	return out
}

// TestGeneratedSecretsSurviveUpgrades: the first render (install) generates
// the queue tokens and the PostgreSQL role passwords; rendered again against
// a cluster holding them (upgrade), every Secret is the same; a rotation
// edited into the live Secrets is what the next upgrade renders.
func TestGeneratedSecretsSurviveUpgrades(t *testing.T) {
	vals := map[string]any{"global": map[string]any{"database": map[string]any{"mode": "cnpg"}}}
	installed := secrets(render(t, newCluster(), vals))
	for _, name := range []string{"mqwriter-tokens", "mqreader-tokens", "tp-pg-mqwriter", "tp-pg-mqreader", "tp-pg-collector", "tp-pg-apigw"} {
		require.Contains(t, installed, name)
	}
	fresh := secrets(render(t, newCluster(), vals))
	require.NotEqual(t, data(t, installed["mqwriter-tokens"], "token"), data(t, fresh["mqwriter-tokens"], "token"), "each install generates its own")
	require.NotEqual(t, data(t, installed["tp-pg-apigw"], "password"), data(t, fresh["tp-pg-apigw"], "password"))

	upgraded := secrets(render(t, newCluster(objects(installed)...), vals))
	for name, s := range installed {
		require.Equal(t, s.Object["data"], upgraded[name].Object["data"], "%s is kept on upgrade", name)
	}

	// Rotation, step 1: the servers accept old and new, the clients send the new.
	live := map[string]*unstructured.Unstructured{}
	for name, s := range installed {
		live[name] = s.DeepCopy()
	}
	old := data(t, live["mqwriter-tokens"], "token")
	setData(t, live["mqwriter-tokens"], "tokens", old+"\nnew-publish-token\n")
	setData(t, live["mqwriter-tokens"], "token", "new-publish-token")
	setData(t, live["tp-pg-apigw"], "password", "rotated-password")
	rotated := secrets(render(t, newCluster(objects(live)...), vals))
	require.Equal(t, old+"\nnew-publish-token\n", data(t, rotated["mqwriter-tokens"], "tokens"), "an upgrade keeps a rotation in progress")
	require.Equal(t, "new-publish-token", data(t, rotated["mqwriter-tokens"], "token"))
	require.Contains(t, data(t, rotated["tp-pg-apigw"], "uri"), ":rotated-password@", "the app's URL follows its role's password")
	require.Equal(t, installed["mqreader-tokens"].Object["data"], rotated["mqreader-tokens"].Object["data"])
}
