package k8s_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"
)

const namespace = "telemetry"

// inRepo is the absolute path of elem below the repository root.
func inRepo(elem ...string) (string, error) {
	return filepath.Abs(filepath.Join(append([]string{"..", ".."}, elem...)...))
}

func repoPath(t *testing.T, elem ...string) string {
	t.Helper()
	p, err := inRepo(elem...)
	require.NoError(t, err)
	return p
}

// helm runs helm ($HELM when set, else the tools module's) in a private
// HELM_*_HOME.
func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("renders the charts with helm (make helm-lint); skipped in -short mode")
	}
	bin, err := helmBinary()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, quietStderr(stderr.String()))
	}
	return out, nil
}

// helmBinary is the helm executable: $HELM, or the tools module's helm as
// the go command caches it. `go tool -n` builds it on first use and prints
// its path, so the renders exec it directly: through `go tool` each of the
// package's renders (46 today) paid about a second of module loading.
var helmBinary = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv("HELM"); bin != "" {
		return bin, nil
	}
	root, err := inRepo("tools")
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(goCommand(), "-C", root, "tool", "-n", "helm")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n helm: %w: %s", err, stderr.String())
	}
	bin := strings.TrimSpace(string(out))
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("go tool -n helm printed %q: %w", bin, err)
	}
	return bin, nil
})

// quietStderr drops helm's notes about following the charts' symlinks.
func quietStderr(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.Contains(l, "found symbolic link in path") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// template renders chart (a directory under deployments/helm) into
// namespace with the given extra helm arguments.
func template(t *testing.T, chart string, args ...string) []byte {
	t.Helper()
	out, err := helm(t, append([]string{"template", "tp", repoPath(t, "deployments", "helm", chart), "--namespace", namespace}, args...)...)
	require.NoError(t, err)
	return out
}

// object is one rendered object, decoded into its API type.
type object struct {
	gvk  schema.GroupVersionKind
	meta metav1.Object
	obj  any
}

func (o object) String() string { return o.gvk.Kind + "/" + o.meta.GetName() }

// The custom resources the charts render, as subsets of their upstream API
// types (CloudNativePG postgresql.cnpg.io/v1 Cluster, KEDA keda.sh/v1alpha1
// ScaledObject) holding exactly the fields the charts may set: decoding is
// strict, so a misspelt or misplaced field fails here as it would in the
// API server's structural schema.
var (
	cnpgClusterGVK  = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}
	scaledObjectGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}
	cnpgPoolerGVK   = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Pooler"}
)

type cnpgPooler struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Cluster struct {
			Name string `json:"name"`
		} `json:"cluster"`
		Instances int    `json:"instances"`
		Type      string `json:"type"`
		PgBouncer struct {
			PoolMode   string            `json:"poolMode"`
			Parameters map[string]string `json:"parameters"`
		} `json:"pgbouncer"`
	} `json:"spec"`
}

type cnpgCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Instances             int    `json:"instances"`
		ImageName             string `json:"imageName,omitempty"`
		PrimaryUpdateStrategy string `json:"primaryUpdateStrategy,omitempty"`
		EnablePDB             *bool  `json:"enablePDB,omitempty"`
		Bootstrap             struct {
			InitDB struct {
				Database               string   `json:"database"`
				Owner                  string   `json:"owner"`
				PostInitApplicationSQL []string `json:"postInitApplicationSQL,omitempty"`
			} `json:"initdb"`
		} `json:"bootstrap"`
		Storage struct {
			Size         string `json:"size"`
			StorageClass string `json:"storageClass,omitempty"`
		} `json:"storage"`
		PostgreSQL struct {
			Parameters  map[string]string `json:"parameters,omitempty"`
			Synchronous *struct {
				Method         string `json:"method"`
				Number         int    `json:"number"`
				DataDurability string `json:"dataDurability,omitempty"`
			} `json:"synchronous,omitempty"`
		} `json:"postgresql"`
		Resources corev1.ResourceRequirements `json:"resources"`
		Managed   *struct {
			Roles []cnpgRole `json:"roles,omitempty"`
		} `json:"managed,omitempty"`
	} `json:"spec"`
}

// cnpgRole is CloudNativePG's RoleConfiguration (spec.managed.roles[]).
type cnpgRole struct {
	Name           string `json:"name"`
	Ensure         string `json:"ensure,omitempty"`
	Comment        string `json:"comment,omitempty"`
	Login          bool   `json:"login,omitempty"`
	Inherit        *bool  `json:"inherit,omitempty"`
	PasswordSecret *struct {
		Name string `json:"name"`
	} `json:"passwordSecret,omitempty"`
	InRoles []string `json:"inRoles,omitempty"`
}

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		Advanced        struct {
			HorizontalPodAutoscalerConfig struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig"`
		} `json:"advanced"`
		Triggers []struct {
			Type       string            `json:"type"`
			MetricType string            `json:"metricType,omitempty"`
			Metadata   map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeAll splits a multi-document YAML stream and decodes each document
// strictly: unknown fields, duplicate keys, wrong types and unknown kinds are
// errors.
func decodeAll(t *testing.T, out []byte) []object {
	t.Helper()
	var objs []object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		o, err := decodeOnce(doc)
		require.NoError(t, err, "document:\n%s", head(doc))
		objs = append(objs, o)
	}
	return objs
}

// decoded holds the built-in objects already decoded, by the sha256 of their
// document. Most renders repeat most documents (the umbrella's 1.26 MB CSV
// ConfigMap took a second to decode under -race, in each of 30 renders), so
// each distinct document is decoded once and handed out as a deep copy.
var decoded sync.Map

func decodeOnce(doc []byte) (object, error) {
	key := sha256.Sum256(doc)
	if o, ok := decoded.Load(key); ok {
		return copyObject(o.(object)), nil
	}
	o, err := decode(doc)
	if err != nil {
		return o, err
	}
	if _, ok := o.obj.(k8sruntime.Object); ok {
		decoded.Store(key, o)
		return copyObject(o), nil
	}
	return o, nil
}

// copyObject deep-copies a decoded built-in object, so that no two tests
// share one.
func copyObject(o object) object {
	c := o.obj.(k8sruntime.Object).DeepCopyObject()
	return object{gvk: o.gvk, meta: c.(metav1.Object), obj: c}
}

func decode(doc []byte) (object, error) {
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("yaml: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return object{}, fmt.Errorf("type meta: %w", err)
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return object{}, fmt.Errorf("apiVersion %q: %w", tm.APIVersion, err)
	}
	gvk := gv.WithKind(tm.Kind)
	var obj any
	switch {
	case scheme.Scheme.Recognizes(gvk):
		o, _, err := strict.Decode(js, nil, nil)
		if err != nil {
			return object{}, fmt.Errorf("%s: %w", gvk, err)
		}
		obj = o
	case gvk == cnpgClusterGVK:
		obj, err = decodeStrictJSON[cnpgCluster](js)
	case gvk == scaledObjectGVK:
		obj, err = decodeStrictJSON[scaledObject](js)
	case gvk == cnpgPoolerGVK:
		obj, err = decodeStrictJSON[cnpgPooler](js)
	default:
		var known bool
		if obj, known, err = decodeMonitoring(gvk, js); !known {
			return object{}, fmt.Errorf("unknown kind %s", gvk)
		}
	}
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", gvk, err)
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return object{}, fmt.Errorf("%s has no object metadata", gvk)
	}
	return object{gvk: gvk, meta: m, obj: obj}, nil
}

func decodeStrictJSON[T any](js []byte) (*T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return &v, nil
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func head(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}
