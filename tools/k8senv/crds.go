package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	sigsyaml "sigs.k8s.io/yaml"
)

// crdSource is one project's official CRD YAML, read from its Go module at
// a pinned version through the module proxy (go mod download checks the
// zip against the checksum database; sum pins it here as well).
type crdSource struct {
	module, version, sum string
	files                []string // inside the module
}

// crdSources are the CRDs of every custom resource the charts can render:
// CloudNativePG Cluster and Pooler, prometheus-operator ServiceMonitor,
// PodMonitor and PrometheusRule, KEDA ScaledObject. The versions are the
// newest the module proxy here serves (docs/kubernetes.md).
var crdSources = []crdSource{
	{"github.com/cloudnative-pg/cloudnative-pg", "v1.30.1", "h1:d1jxp0jQi7/3zrEhsv9ycD+G5ssmkNvDvTmogaGccCw=", []string{
		"config/crd/bases/postgresql.cnpg.io_clusters.yaml",
		"config/crd/bases/postgresql.cnpg.io_poolers.yaml",
	}},
	{"github.com/prometheus-operator/prometheus-operator", "v0.85.0", "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=", []string{
		"example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
		"example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
		"example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
	}},
	{"github.com/kedacore/keda/v2", "v2.21.0", "h1:R6z2HZvstK4RLUMxroNACzBj74xGxt3kG59b5Xc+Xps=", []string{
		"config/crd/bases/keda.sh_scaledobjects.yaml",
	}},
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs downloads each pinned module, creates its CRDs (create, not
// client-side apply: the CloudNativePG ones are larger than the
// last-applied annotation allows) and waits until each is Established.
func (e *env) installCRDs(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(e.restCfg)
	if err != nil {
		return err
	}
	for _, src := range crdSources {
		dir, err := moduleDir(src)
		if err != nil {
			return err
		}
		for _, f := range src.files {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return fmt.Errorf("%s@%s: %w", src.module, src.version, err)
			}
			objs, err := splitYAML(b)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			for _, o := range objs {
				if _, err := dyn.Resource(crdGVR).Create(ctx, o, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
					return fmt.Errorf("create CRD %s from %s@%s: %w", o.GetName(), src.module, src.version, err)
				}
				if err := waitEstablished(ctx, dyn, o.GetName()); err != nil {
					return err
				}
				log.Printf("CRD %s established (%s@%s)", o.GetName(), src.module, src.version)
			}
		}
	}
	return nil
}

// moduleDir runs go mod download -json for the pinned module and returns
// its directory in the module cache, refusing a different checksum.
func moduleDir(src crdSource) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", src.module+"@"+src.version)
	cmd.Dir = os.TempDir() // outside any module: nothing is added to a go.sum
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w: %s", src.module, src.version, err, stderr.String())
	}
	var m struct{ Dir, Sum, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", src.module, src.version, err)
	}
	switch {
	case m.Error != "":
		return "", fmt.Errorf("go mod download %s@%s: %s", src.module, src.version, m.Error)
	case m.Sum != src.sum:
		return "", fmt.Errorf("%s@%s: checksum %s, pinned %s", src.module, src.version, m.Sum, src.sum)
	}
	return m.Dir, nil
}

func splitYAML(b []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var obj map[string]any
		if err := sigsyaml.Unmarshal(doc, &obj); err != nil {
			return nil, err
		}
		if len(obj) > 0 {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

func waitEstablished(ctx context.Context, dyn dynamic.Interface, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		u, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("CRD %s not established within 30s", name)
}

// requireRejected has the API server validate custom resources with the
// mistakes the CRD schemas must catch (wrong enum, a CEL rule, an unknown
// field under strict validation): each must be refused, so a passing dry
// run of the chart means the real schemas were applied.
func (e *env) requireRejected(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(e.restCfg)
	if err != nil {
		return err
	}
	cluster := schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}
	pooler := schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "poolers"}
	bad := []struct {
		why string
		gvr schema.GroupVersionResource
		obj map[string]any
	}{
		{"synchronous.number 0 (CEL: greater than zero)", cluster, map[string]any{"instances": int64(3), "storage": map[string]any{"size": "1Gi"},
			"postgresql": map[string]any{"synchronous": map[string]any{"method": "any", "number": int64(0)}}}},
		{"synchronous.method fastest (enum)", cluster, map[string]any{"instances": int64(3), "storage": map[string]any{"size": "1Gi"},
			"postgresql": map[string]any{"synchronous": map[string]any{"method": "fastest", "number": int64(1)}}}},
		{"minSyncReplica (unknown field)", cluster, map[string]any{"instances": int64(3), "storage": map[string]any{"size": "1Gi"},
			"minSyncReplica": int64(1)}},
		{"poolMode statement (enum)", pooler, map[string]any{"cluster": map[string]any{"name": "x"}, "type": "rw",
			"pgbouncer": map[string]any{"poolMode": "statement"}}},
	}
	for _, b := range bad {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": b.gvr.Group + "/" + b.gvr.Version,
			"kind":       map[string]string{"clusters": "Cluster", "poolers": "Pooler"}[b.gvr.Resource],
			"metadata":   map[string]any{"name": "bad", "namespace": ns},
			"spec":       b.obj,
		}}
		_, err := dyn.Resource(b.gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		if err == nil {
			return fmt.Errorf("API server accepted a %s with %s: the CRD schema is not applied", u.GetKind(), b.why)
		}
		log.Printf("API server refuses a %s with %s: %v", u.GetKind(), b.why, firstLine(err.Error()))
	}
	return nil
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
