package kube_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/gpufleet/telemetry/adapters/kube"
)

// election is fast enough for tests and slow enough that a loaded machine
// does not lose a renewal: a standby waits out LeaseDuration before taking a
// lease that was not released.
func election(id string) kube.ElectionConfig {
	return kube.ElectionConfig{Identity: id, LeaseDuration: 20 * time.Second, RenewDeadline: 15 * time.Second, RetryPeriod: 50 * time.Millisecond}
}

func leader(t *testing.T, f fixture) bool {
	return f.metric(t, "partition_controller_leader", "") == 1
}

// TestOnlyTheLeaderWrites runs two candidates on one API server: exactly one
// leads and writes; when it stops it releases the lease, the other takes
// over at once and is the only one writing from then on.
func TestOnlyTheLeaderWrites(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(statefulSet(1), chartConfigMap(t, 1))
	a, b := newFixture(t, client), newFixture(t, client)
	stopA := runController(t, func(ctx context.Context) error { return a.ctrl.RunElected(ctx, election("a")) })
	require.Eventually(t, func() bool { return leader(t, a) }, 10*time.Second, 10*time.Millisecond, "first candidate leads")
	require.Eventually(t, func() bool {
		return a.metric(t, "partition_controller_rollouts_total", "") == 1
	}, 10*time.Second, 10*time.Millisecond, "the leader's first sync sets the missing annotation")
	stopB := runController(t, func(ctx context.Context) error { return b.ctrl.RunElected(ctx, election("b")) })

	scale(t, client, 3)
	awaitAssigned(t, client, 3)
	require.False(t, leader(t, b))
	require.NoError(t, b.ctrl.Check(t.Context()), "a standby is ready")
	require.Zero(t, b.metric(t, "partition_controller_syncs_total", "ok"), "the standby never syncs")
	require.Zero(t, b.metric(t, "partition_controller_rollouts_total", ""))
	// The patch is visible before the controller counts it: wait for both.
	require.Eventually(t, func() bool { return a.metric(t, "partition_controller_rollouts_total", "") == 2 },
		10*time.Second, 10*time.Millisecond, "initial sync and the scale to 3")

	stopA() // releases the lease after its controller stopped
	require.False(t, leader(t, a))
	require.Eventually(t, func() bool { return leader(t, b) }, 10*time.Second, 10*time.Millisecond, "standby takes over a released lease")
	writesA := a.metric(t, "partition_controller_configmap_writes_total", "")

	scale(t, client, 2)
	awaitAssigned(t, client, 2)
	require.Eventually(t, func() bool { return b.metric(t, "partition_controller_rollouts_total", "") == 1 },
		10*time.Second, 10*time.Millisecond, "the new leader rolled the readers once")
	require.Equal(t, writesA, a.metric(t, "partition_controller_configmap_writes_total", ""), "the old leader wrote nothing after stopping")
	stopB()

	lease, err := client.CoordinationV1().Leases(ns).Get(t.Context(), kube.DefaultLeaseName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, lease.Spec.HolderIdentity, "released on stop")
}

// TestStandbyNeverWrites: while another process holds the lease, the
// controller campaigns and does nothing else (not even list or watch).
func TestStandbyNeverWrites(t *testing.T) {
	t.Parallel()
	now := metav1.NewMicroTime(time.Now())
	held := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: kube.DefaultLeaseName, Namespace: ns},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: new("someone-else"), LeaseDurationSeconds: new(int32(3600)),
			AcquireTime: &now, RenewTime: &now,
		},
	}
	client := fake.NewClientset(statefulSet(3), chartConfigMap(t, 1), held)
	f := newFixture(t, client)
	runController(t, func(ctx context.Context) error { return f.ctrl.RunElected(ctx, election("standby")) })
	require.Eventually(t, func() bool { return count(client, "get", "leases") >= 5 }, 10*time.Second, 10*time.Millisecond, "campaigns")
	for _, a := range client.Actions() {
		require.Equal(t, "leases", a.GetResource().Resource, "standby touched %s %s", a.GetVerb(), a.GetResource().Resource)
		require.Equal(t, "get", a.GetVerb())
	}
	require.NoError(t, f.ctrl.Check(t.Context()))
	require.False(t, leader(t, f))
}

// TestRolesCoverEveryRequest runs the controller through a missing
// ConfigMap, a first campaign and a scale, and checks that Rules allows
// every request it made and that it used every rule: the Role is exactly
// what the controller does.
func TestRolesCoverEveryRequest(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset(statefulSet(2))
	f := newFixture(t, client)
	ec := election("only")
	runController(t, func(ctx context.Context) error { return f.ctrl.RunElected(ctx, ec) })
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		as, _, _ := state(c, client)
		requireCovers(c, as, 2)
	}, 10*time.Second, 10*time.Millisecond)
	scale(t, client, 5)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		as, _, _ := state(c, client)
		requireCovers(c, as, 5)
	}, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return count(client, "update", "leases") > 0 }, 10*time.Second, 10*time.Millisecond, "renews")

	rules := kube.Rules(f.ctrl.Config(), ec)
	used := map[int]bool{}
	for _, a := range client.Actions() {
		name := actionName(t, a)
		key := a.GetVerb() + "/" + a.GetResource().Resource + "/" + name
		allowed := kube.Allows(rules, a.GetVerb(), a.GetResource().Group, a.GetResource().Resource, name)
		if key == "update/statefulsets/"+stsName {
			continue // the test's own scale()
		}
		require.True(t, allowed, "request %s not allowed by Rules", key)
		for i, r := range rules {
			if kube.Allows([]rbacv1.PolicyRule{r}, a.GetVerb(), a.GetResource().Group, a.GetResource().Resource, name) {
				used[i] = true
			}
		}
	}
	for i, r := range rules {
		require.True(t, used[i], "rule %d (%v %v %v) is never used", i, r.Verbs, r.Resources, r.ResourceNames)
	}
	// Finer: every verb of every rule was used.
	for _, r := range rules {
		for _, verb := range r.Verbs {
			found := false
			for _, a := range client.Actions() {
				if a.GetVerb() == verb && a.GetResource().Resource == r.Resources[0] && a.GetResource().Group == r.APIGroups[0] {
					found = true
				}
			}
			require.True(t, found, "verb %s on %s granted but never used", verb, r.Resources[0])
		}
	}
}

// actionName is the object name a request addresses: the name of a get,
// update or patch, the metadata.name field selector of a list or watch,
// and "" for a create (RBAC cannot restrict create by name).
func actionName(t *testing.T, a k8stesting.Action) string {
	t.Helper()
	switch a := a.(type) {
	case k8stesting.GetAction:
		return a.GetName()
	case k8stesting.PatchAction:
		return a.GetName()
	case k8stesting.UpdateAction:
		if m, ok := a.GetObject().(metav1.Object); ok {
			return m.GetName()
		}
	case k8stesting.ListAction:
		return nameSelector(t, a.GetListRestrictions().Fields)
	case k8stesting.WatchAction:
		return nameSelector(t, a.GetWatchRestrictions().Fields)
	case k8stesting.CreateAction:
		return ""
	}
	t.Fatalf("unexpected request %T", a)
	return ""
}

func nameSelector(t *testing.T, s fields.Selector) string {
	t.Helper()
	name, ok := s.RequiresExactMatch("metadata.name")
	require.True(t, ok, "list/watch without a metadata.name field selector cannot be limited by resourceNames: %q", s)
	return name
}
