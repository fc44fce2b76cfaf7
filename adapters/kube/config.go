package kube

import (
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gpufleet/telemetry/ports"
)

// ChecksumAnnotation is the pod-template annotation of the StatefulSet whose
// value is the hex SHA-256 of the assignment JSON. The controller changes it
// exactly when the assignment changes, which rolls the readers.
const ChecksumAnnotation = "telemetry.gpufleet.io/partitions-checksum"

// ManagedByLabel marks a ConfigMap the controller created itself (the Helm
// chart normally creates it, and then its own labels are kept).
const ManagedByLabel = "app.kubernetes.io/managed-by"

// Config says which StatefulSet the Controller manages.
type Config struct {
	// Namespace of the StatefulSet, its ConfigMap and the Lease.
	Namespace string
	// StatefulSet is the mqreader StatefulSet's name (default "mqreader").
	StatefulSet string
	// ConfigMap holding the assignment; default StatefulSet + "-partitions".
	ConfigMap string
	// Resync re-runs the sync from the informers' caches this often, as a
	// safety net against a missed event (default 10 minutes).
	Resync time.Duration
}

// DefaultStatefulSet is the mqreader StatefulSet's name in the charts.
const DefaultStatefulSet = "mqreader"

// withDefaults fills unset fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	if c.StatefulSet == "" {
		c.StatefulSet = DefaultStatefulSet
	}
	if c.ConfigMap == "" {
		c.ConfigMap = c.StatefulSet + "-partitions"
	}
	if c.Resync <= 0 {
		c.Resync = 10 * time.Minute
	}
	if c.Namespace == "" {
		return c, fmt.Errorf("%w: namespace is required", ports.ErrInvalidArgument)
	}
	return c, nil
}

// ElectionConfig configures leader election over a coordination.k8s.io
// Lease in Config.Namespace. Zero durations take client-go's usual values.
type ElectionConfig struct {
	// LeaseName is the Lease object's name (LEADER_ELECTION_ID).
	LeaseName string
	// Identity names this candidate in the Lease; the pod name.
	Identity string
	// LeaseDuration is how long a standby waits before taking over a lease
	// whose holder stopped renewing (default 15s).
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps retrying a renewal before it
	// stops working (default 10s). Must be below LeaseDuration.
	RenewDeadline time.Duration
	// RetryPeriod is the pause between attempts (default 2s).
	RetryPeriod time.Duration
}

// DefaultLeaseName is the Lease the charts' Role grants.
const DefaultLeaseName = "partition-controller"

func (e ElectionConfig) withDefaults() ElectionConfig {
	if e.LeaseName == "" {
		e.LeaseName = DefaultLeaseName
	}
	if e.Identity == "" {
		e.Identity, _ = os.Hostname()
	}
	if e.LeaseDuration <= 0 {
		e.LeaseDuration = 15 * time.Second
	}
	if e.RenewDeadline <= 0 {
		e.RenewDeadline = 10 * time.Second
	}
	if e.RetryPeriod <= 0 {
		e.RetryPeriod = 2 * time.Second
	}
	return e
}

// ClientConfig says how to reach the API server.
type ClientConfig struct {
	// Kubeconfig is a kubeconfig file; empty means in-cluster (the pod's
	// service account).
	Kubeconfig string
	// UserAgent identifies the controller in the API server's logs.
	UserAgent string
}

// NewClientset builds a clientset from a kubeconfig file or, when none is
// given, from the in-cluster service account.
func NewClientset(cfg ClientConfig) (kubernetes.Interface, error) {
	var (
		rc  *rest.Config
		err error
	)
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	if cfg.UserAgent != "" {
		rc.UserAgent = cfg.UserAgent
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}

// InClusterNamespace returns the namespace of the pod's service account, or
// "" outside a cluster.
func InClusterNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
