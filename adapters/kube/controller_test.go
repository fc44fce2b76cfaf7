package kube_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"

	"github.com/gpufleet/telemetry/adapters/kube"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

const (
	ns      = "telemetry"
	stsName = "mqreader"
	cmName  = "mqreader-partitions"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestMain routes client-go's klog output (leader election) to a discarding
// logger, as the app routes it to its JSON logger.
func TestMain(m *testing.M) {
	klog.SetSlogLogger(quiet)
	os.Exit(m.Run())
}

func statefulSet(replicas int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: stsName, Namespace: ns, UID: "sts-uid"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas,
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{
				Annotations: map[string]string{"prometheus.io/scrape": "true"},
			}},
		},
	}
}

// chartConfigMap is the ConfigMap as the Helm chart renders it.
func chartConfigMap(t *testing.T, replicas int) *corev1.ConfigMap {
	t.Helper()
	data, _, err := kube.AssignmentData(stsName, replicas)
	require.NoError(t, err)
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: cmName, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": "Helm"}},
		Data:       map[string]string{domain.AssignmentKey: string(data)},
	}
}

type fixture struct {
	client *fake.Clientset
	ctrl   *kube.Controller
	reg    *prometheus.Registry
}

func newFixture(t *testing.T, client *fake.Clientset) fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := kube.New(client, kube.Config{Namespace: ns}, quiet, reg)
	require.NoError(t, err)
	return fixture{client: client, ctrl: c, reg: reg}
}

// metric reads one series of the fixture's registry ("" when it has no labels).
func (f fixture) metric(t *testing.T, name, label string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || (len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() == label) {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

// count returns how many recorded requests have verb on resource.
func count(client *fake.Clientset, verb, resource string) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			n++
		}
	}
	return n
}

func writes(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete":
			if r := a.GetResource().Resource; r == "configmaps" || r == "statefulsets" {
				n++
			}
		}
	}
	return n
}

func scale(t *testing.T, client *fake.Clientset, replicas int32) {
	t.Helper()
	ctx := t.Context()
	sts, err := client.AppsV1().StatefulSets(ns).Get(ctx, stsName, metav1.GetOptions{})
	require.NoError(t, err)
	sts.Spec.Replicas = &replicas
	_, err = client.AppsV1().StatefulSets(ns).Update(ctx, sts, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// state reads the ConfigMap's assignment and the pod-template annotation.
func state(t require.TestingT, client *fake.Clientset) (domain.Assignment, string, string) {
	ctx := context.Background()
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, cmName, metav1.GetOptions{})
	require.NoError(t, err)
	var a domain.Assignment
	require.NoError(t, json.Unmarshal([]byte(cm.Data[domain.AssignmentKey]), &a))
	sts, err := client.AppsV1().StatefulSets(ns).Get(ctx, stsName, metav1.GetOptions{})
	require.NoError(t, err)
	return a, cm.Data[domain.AssignmentKey], sts.Spec.Template.Annotations[kube.ChecksumAnnotation]
}

// awaitAssigned waits until the ConfigMap assigns every partition over
// replicas pods and the pod template carries that assignment's checksum.
func awaitAssigned(t *testing.T, client *fake.Clientset, replicas int) {
	t.Helper()
	_, want, err := kube.AssignmentData(stsName, replicas)
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		a, _, sum := state(c, client)
		requireCovers(c, a, replicas)
		require.Equal(c, want, sum)
	}, 10*time.Second, 10*time.Millisecond)
}

// requireCovers checks that the assignment gives each of the replicas pods
// one range and every partition to exactly one pod.
func requireCovers(t require.TestingT, a domain.Assignment, replicas int) {
	require.Equal(t, replicas, a.Replicas)
	require.Len(t, a.Ranges, replicas)
	owners := make([]int, domain.NumPartitions)
	for i := range replicas {
		r, ok := a.For(stsName + "-" + itoa(i))
		require.True(t, ok, "pod %d has no range", i)
		for p := r.First; p <= r.Last; p++ {
			owners[p]++
		}
	}
	for p, n := range owners {
		require.Equal(t, 1, n, "partition %d owned %d times", p, n)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestAssignmentData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		replicas int
		wantErr  bool
	}{{1, false}, {2, false}, {3, false}, {7, false}, {10, false}, {256, false}, {0, true}, {257, true}, {-1, true}}
	seen := map[string]int{}
	for _, tc := range tests {
		data, sum, err := kube.AssignmentData(stsName, tc.replicas)
		if tc.wantErr {
			require.ErrorIs(t, err, ports.ErrInvalidArgument, "replicas %d", tc.replicas)
			continue
		}
		require.NoError(t, err)
		var a domain.Assignment
		require.NoError(t, json.Unmarshal(data, &a))
		requireCovers(t, a, tc.replicas)
		again, sum2, err := kube.AssignmentData(stsName, tc.replicas)
		require.NoError(t, err)
		require.Equal(t, data, again, "deterministic bytes")
		require.Equal(t, sum, sum2)
		require.Len(t, sum, 64)
		prev, dup := seen[sum]
		require.False(t, dup, "replicas %d and %d share a checksum", tc.replicas, prev)
		seen[sum] = tc.replicas
	}
}

// TestSyncScale drives Sync directly through 1 → 3 → 2 replicas, from a
// missing ConfigMap and from the chart's initial one.
func TestSyncScale(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		initial []runtime.Object
	}{
		{"configmap missing", []runtime.Object{statefulSet(1)}},
		{"configmap from the chart", []runtime.Object{statefulSet(1), chartConfigMap(t, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fake.NewClientset(tc.initial...))
			ctx := t.Context()
			sums := map[string]bool{}
			for step, replicas := range []int32{1, 3, 2} {
				if step > 0 {
					scale(t, f.client, replicas)
				}
				f.client.ClearActions()
				require.NoError(t, f.ctrl.Sync(ctx))
				a, data, sum := state(t, f.client)
				requireCovers(t, a, int(replicas))
				wantData, wantSum, err := kube.AssignmentData(stsName, int(replicas))
				require.NoError(t, err)
				require.Equal(t, string(wantData), data)
				require.Equal(t, wantSum, sum)
				require.False(t, sums[sum], "checksum reused")
				sums[sum] = true
				require.Equal(t, 1, count(f.client, "patch", "statefulsets"), "one annotation patch per change")
				cmWrites := count(f.client, "update", "configmaps") + count(f.client, "create", "configmaps")
				if step == 0 && tc.name == "configmap from the chart" {
					require.Zero(t, cmWrites, "the chart's ConfigMap is already right")
				} else {
					require.Equal(t, 1, cmWrites)
				}

				f.client.ClearActions()
				for range 3 {
					require.NoError(t, f.ctrl.Sync(ctx))
				}
				require.Zero(t, writes(f.client), "sync is idempotent")
			}
			require.Equal(t, 3.0, f.metric(t, "partition_controller_rollouts_total", ""))
			require.Equal(t, 2.0, f.metric(t, "partition_controller_reader_replicas", ""))
		})
	}
}

func TestSyncKeepsOtherData(t *testing.T) {
	t.Parallel()
	cm := chartConfigMap(t, 1)
	cm.Data["note"] = "kept"
	f := newFixture(t, fake.NewClientset(statefulSet(4), cm))
	require.NoError(t, f.ctrl.Sync(t.Context()))
	got, err := f.client.CoreV1().ConfigMaps(ns).Get(t.Context(), cmName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "kept", got.Data["note"])
	require.Equal(t, "Helm", got.Labels["app.kubernetes.io/managed-by"])
	sts, err := f.client.AppsV1().StatefulSets(ns).Get(t.Context(), stsName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "true", sts.Spec.Template.Annotations["prometheus.io/scrape"], "other annotations kept")
}

func TestSyncCreatesOwnedConfigMap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fake.NewClientset(statefulSet(2)))
	require.NoError(t, f.ctrl.Sync(t.Context()))
	cm, err := f.client.CoreV1().ConfigMaps(ns).Get(t.Context(), cmName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, kube.FieldManager, cm.Labels[kube.ManagedByLabel])
	require.Len(t, cm.OwnerReferences, 1)
	require.Equal(t, "StatefulSet", cm.OwnerReferences[0].Kind)
	require.EqualValues(t, "sts-uid", cm.OwnerReferences[0].UID)
}

func TestSyncNothingToDo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		objects []runtime.Object
		wantErr error
	}{
		{"statefulset missing", nil, nil},
		{"scaled to zero keeps the assignment", []runtime.Object{statefulSet(0), chartConfigMap(t, 3)}, nil},
		{"more replicas than partitions", []runtime.Object{statefulSet(300), chartConfigMap(t, 3)}, ports.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fake.NewClientset(tc.objects...))
			err := f.ctrl.Sync(t.Context())
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.Equal(t, 1.0, f.metric(t, "partition_controller_syncs_total", "invalid"))
			} else {
				require.NoError(t, err)
			}
			require.Zero(t, writes(f.client))
		})
	}
}

func TestSyncTranslatesErrors(t *testing.T) {
	t.Parallel()
	gr := schema.GroupResource{Resource: "configmaps"}
	tests := []struct {
		name    string
		err     error
		wantErr error
	}{
		{"server unavailable", apierrors.NewServiceUnavailable("etcd"), ports.ErrUnavailable},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), ports.ErrUnavailable},
		{"forbidden", apierrors.NewForbidden(gr, cmName, errors.New("rbac")), ports.ErrUnavailable},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, cmName, nil), ports.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := fake.NewClientset(statefulSet(2), chartConfigMap(t, 1))
			client.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, tc.err
			})
			f := newFixture(t, client)
			err := f.ctrl.Sync(t.Context())
			require.ErrorIs(t, err, tc.wantErr)
			require.ErrorContains(t, err, "update configmap "+cmName)
			require.Zero(t, count(client, "patch", "statefulsets"), "no rollout before the ConfigMap is written")
		})
	}
}

// TestRunScale runs the informers and the workqueue: each scale of the
// StatefulSet ends in the right ConfigMap and annotation, one rollout each.
func TestRunScale(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fake.NewClientset(statefulSet(1), chartConfigMap(t, 1)))
	stop := runController(t, func(ctx context.Context) error { return f.ctrl.Run(ctx) })

	require.Eventually(t, func() bool { return f.ctrl.Check(t.Context()) == nil }, 10*time.Second, 10*time.Millisecond)
	for i, replicas := range []int32{1, 3, 2} {
		if i > 0 {
			scale(t, f.client, replicas)
		}
		awaitAssigned(t, f.client, int(replicas))
		require.Eventually(t, func() bool {
			return f.metric(t, "partition_controller_rollouts_total", "") == float64(i+1)
		}, 10*time.Second, 10*time.Millisecond)
	}
	// A change of the ConfigMap by someone else is put back.
	cm, err := f.client.CoreV1().ConfigMaps(ns).Get(t.Context(), cmName, metav1.GetOptions{})
	require.NoError(t, err)
	cm.Data[domain.AssignmentKey] = `{"replicas":1,"ranges":{"mqreader-0":"0-255"}}`
	_, err = f.client.CoreV1().ConfigMaps(ns).Update(t.Context(), cm, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		a, _, _ := state(c, f.client)
		requireCovers(c, a, 2)
	}, 10*time.Second, 10*time.Millisecond)

	stop()
	require.Equal(t, 3.0, f.metric(t, "partition_controller_rollouts_total", ""), "the restore did not roll the readers again")
	require.Error(t, f.ctrl.Check(t.Context()), "not ready once stopped")
}

// TestRunRetriesConflicts: a write that loses a race is retried.
func TestRunRetriesConflicts(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(statefulSet(3), chartConfigMap(t, 1))
	var failed atomic.Int32
	client.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failed.Add(1) <= 2 {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, cmName, errors.New("stale"))
		}
		return false, nil, nil
	})
	f := newFixture(t, client)
	runController(t, func(ctx context.Context) error { return f.ctrl.Run(ctx) })
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		a, _, _ := state(c, client)
		requireCovers(c, a, 3)
	}, 10*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, f.metric(t, "partition_controller_syncs_total", "error"), 2.0)
}

// runController runs fn in a goroutine; the returned stop (also run at
// cleanup) cancels it and waits for it to return nil.
func runController(t *testing.T, fn func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("controller did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
