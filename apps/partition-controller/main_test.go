package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gpufleet/telemetry/adapters/kube"
	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
)

func TestValidateApp(t *testing.T) {
	t.Parallel()
	apptest.RequireValid(t, options, map[string]string{"NAMESPACE": "telemetry"})
}

func TestConfig(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	require.NoError(t, err)
	type loaded struct {
		Config  kube.Config
		Options kube.Options
	}
	apptest.RunEnvCases(t, []apptest.EnvCase[loaded]{
		{Name: "defaults", Env: map[string]string{}, Want: loaded{
			kube.Config{Namespace: "default", StatefulSet: "mqreader", Resync: 10 * time.Minute},
			kube.Options{Elect: true, Election: kube.ElectionConfig{LeaseName: "partition-controller", Identity: host,
				LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}}}},
		{Name: "everything set", Env: map[string]string{
			"NAMESPACE": "tp", "STATEFULSET": "readers", "CONFIGMAP": "ranges", "LEADER_ELECT": "false",
			"LEADER_ELECTION_ID": "pc", "POD_NAME": "pc-0", "LEASE_DURATION_SECONDS": "30",
			"RENEW_DEADLINE_SECONDS": "20", "RETRY_PERIOD_SECONDS": "5", "RESYNC_SECONDS": "60",
		}, Want: loaded{
			kube.Config{Namespace: "tp", StatefulSet: "readers", ConfigMap: "ranges", Resync: time.Minute},
			kube.Options{Election: kube.ElectionConfig{LeaseName: "pc", Identity: "pc-0", LeaseDuration: 30 * time.Second,
				RenewDeadline: 20 * time.Second, RetryPeriod: 5 * time.Second}}}},
		{Name: "renew deadline too long", Env: map[string]string{"RENEW_DEADLINE_SECONDS": "15"}, WantErr: "RENEW_DEADLINE_SECONDS=15"},
		{Name: "retry period too long", Env: map[string]string{"RETRY_PERIOD_SECONDS": "9"}, WantErr: "RETRY_PERIOD_SECONDS=9"},
		{Name: "not a number", Env: map[string]string{"RESYNC_SECONDS": "often"}, WantErr: "RESYNC_SECONDS"},
		{Name: "bad flag", Env: map[string]string{"LEADER_ELECT": "maybe"}, WantErr: "LEADER_ELECT"},
	}, func(env *platform.Env) loaded {
		cfg, opts, _ := load(env)
		return loaded{cfg, opts}
	})
}

// TestStartStop runs the whole app against a fake API server: it elects
// itself, writes the assignment, and stops cleanly (releasing the lease).
func TestStartStop(t *testing.T) {
	t.Parallel()
	replicas := int32(3)
	client := fake.NewClientset(&appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "mqreader", Namespace: "telemetry"},
		Spec:       appsv1.StatefulSetSpec{Replicas: &replicas},
	})
	env := platform.NewEnvFrom(map[string]string{"NAMESPACE": "telemetry", "HTTP_ADDR": "127.0.0.1:0", "POD_NAME": "pc-0"})
	var ctrl *kube.Controller
	app := fxtest.New(t, options(env),
		fx.Replace(fx.Annotate(client, fx.As(new(kubernetes.Interface)))),
		fx.Populate(&ctrl),
	)
	require.NoError(t, env.Err())
	app.RequireStart()
	require.Eventually(t, func() bool {
		cm, err := client.CoreV1().ConfigMaps("telemetry").Get(t.Context(), "mqreader-partitions", metav1.GetOptions{})
		return err == nil && cm.Data[domain.AssignmentKey] != ""
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, ctrl.Check(t.Context()))
	app.RequireStop()
	lease, err := client.CoordinationV1().Leases("telemetry").Get(t.Context(), "partition-controller", metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, lease.Spec.HolderIdentity)
}
