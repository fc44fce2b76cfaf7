// Command partition-controller keeps the mqreader StatefulSet's partition
// ranges in step with its replica count (see adapters/kube): when the readers
// scale, it rewrites the <statefulset>-partitions ConfigMap and rolls the
// readers by changing a pod-template annotation. Several replicas may run;
// a Lease elects the one that works.
//
// Configuration (environment):
//
//	NAMESPACE               namespace of the StatefulSet, ConfigMap and Lease (default: the pod's, else "default")
//	STATEFULSET             reader StatefulSet name (default mqreader)
//	CONFIGMAP               assignment ConfigMap (default <STATEFULSET>-partitions)
//	KUBECONFIG              kubeconfig file; unset means in-cluster
//	LEADER_ELECT            run under leader election (default true)
//	LEADER_ELECTION_ID      Lease name (default partition-controller)
//	POD_NAME                identity in the Lease (default: the hostname)
//	LEASE_DURATION_SECONDS  15; RENEW_DEADLINE_SECONDS 10; RETRY_PERIOD_SECONDS 2
//	RESYNC_SECONDS          600
//	HTTP_ADDR               :8085 (/healthz, /readyz, /metrics)
//	LOG_LEVEL               info
package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.uber.org/fx"
	"k8s.io/klog/v2"

	"github.com/gpufleet/telemetry/adapters/kube"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	common := platform.LoadCommon(env, "partition-controller", ":8085")
	cfg, opts, client := load(env)
	return fx.Options(
		platform.Module(common),
		fx.Supply(cfg, opts, client),
		kube.Module,
		fx.Provide(platform.AsCheck(func(c *kube.Controller) platform.Check {
			return platform.CheckOf("controller", c)
		})),
		// client-go logs through klog; send it to the app's JSON logger.
		fx.Invoke(func(l *slog.Logger) { klog.SetSlogLogger(l) }),
	)
}

func load(env *platform.Env) (kube.Config, kube.Options, kube.ClientConfig) {
	ns := env.String("NAMESPACE", kube.InClusterNamespace())
	if ns == "" {
		ns = "default"
	}
	host, _ := os.Hostname()
	cfg := kube.Config{
		Namespace:   ns,
		StatefulSet: env.String("STATEFULSET", kube.DefaultStatefulSet),
		ConfigMap:   env.String("CONFIGMAP", ""),
		Resync:      env.Seconds("RESYNC_SECONDS", 10*time.Minute, 10, 86_400),
	}
	el := kube.ElectionConfig{
		LeaseName:     env.String("LEADER_ELECTION_ID", kube.DefaultLeaseName),
		Identity:      env.String("POD_NAME", host),
		LeaseDuration: env.Seconds("LEASE_DURATION_SECONDS", 15*time.Second, 2, 600),
		RenewDeadline: env.Seconds("RENEW_DEADLINE_SECONDS", 10*time.Second, 1, 600),
		RetryPeriod:   env.Seconds("RETRY_PERIOD_SECONDS", 2*time.Second, 1, 60),
	}
	if el.RenewDeadline >= el.LeaseDuration {
		env.Fail(fmt.Errorf("RENEW_DEADLINE_SECONDS=%d: want below LEASE_DURATION_SECONDS=%d",
			int(el.RenewDeadline/time.Second), int(el.LeaseDuration/time.Second)))
	}
	if float64(el.RenewDeadline) <= 1.2*float64(el.RetryPeriod) {
		env.Fail(fmt.Errorf("RETRY_PERIOD_SECONDS=%d: want below RENEW_DEADLINE_SECONDS/1.2", int(el.RetryPeriod/time.Second)))
	}
	opts := kube.Options{Elect: env.Bool("LEADER_ELECT", true), Election: el}
	client := kube.ClientConfig{Kubeconfig: env.String("KUBECONFIG", ""), UserAgent: "partition-controller"}
	return cfg, opts, client
}
