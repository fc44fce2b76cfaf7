package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"time"

	"go.uber.org/fx"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/gpufleet/telemetry/ports"
)

// DiscoveryConfig says which dcgm-exporter endpoints to scrape.
type DiscoveryConfig struct {
	// Namespace of the exporter's Service (the GPU Operator's:
	// gpu-operator). The streamer's Role covers list/watch of
	// EndpointSlices there and nowhere else.
	Namespace string
	// Selector is a label selector on EndpointSlices. A slice carries its
	// Service's labels and kubernetes.io/service-name=<service>, so
	// "app=nvidia-dcgm-exporter" (the GPU Operator's Service label) or
	// "kubernetes.io/service-name=nvidia-dcgm-exporter" both work.
	Selector string
	// Port is the slice port to scrape, by name or number; empty means the
	// port named gpu-metrics (dcgm-exporter's) or metrics, else the first.
	Port string
	// Scheme (default http) and Path (default /metrics) of the target URLs.
	Scheme string
	Path   string
	// Resync re-lists from the cache this often, a safety net (default
	// 10 minutes).
	Resync time.Duration
}

// EndpointSliceTargets discovers scrape targets: every ready endpoint of the
// EndpointSlices that match the selector, through a client-go informer. Its
// Targets method has the shape of the scrape adapter's Discoverer (the apps
// wire one to the other; adapters do not import each other).
type EndpointSliceTargets struct {
	client   kubernetes.Interface
	cfg      DiscoveryConfig
	selector labels.Selector
	logger   *slog.Logger
}

// NewEndpointSliceTargets checks cfg (a namespace and a parsable selector
// are required) and builds the discoverer; it starts nothing.
func NewEndpointSliceTargets(client kubernetes.Interface, cfg DiscoveryConfig, logger *slog.Logger) (*EndpointSliceTargets, error) {
	if cfg.Namespace == "" {
		return nil, fmt.Errorf("endpointslice discovery: %w: namespace is required", ports.ErrInvalidArgument)
	}
	if cfg.Selector == "" {
		return nil, fmt.Errorf("endpointslice discovery: %w: selector is required", ports.ErrInvalidArgument)
	}
	sel, err := labels.Parse(cfg.Selector)
	if err != nil {
		return nil, fmt.Errorf("endpointslice discovery: %w: selector %q: %w", ports.ErrInvalidArgument, cfg.Selector, err)
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	if cfg.Path == "" {
		cfg.Path = "/metrics"
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 10 * time.Minute
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &EndpointSliceTargets{client: client, cfg: cfg, selector: sel,
		logger: logger.With("namespace", cfg.Namespace, "selector", cfg.Selector)}, nil
}

// Targets watches the matching EndpointSlices and sends the sorted target
// URLs of their ready endpoints on out: once the cache has synced, and again
// whenever the set changes. It returns ctx.Err() when ctx ends, after the
// informer has stopped.
func (d *EndpointSliceTargets) Targets(ctx context.Context, out chan<- []string) error {
	factory := informers.NewSharedInformerFactoryWithOptions(d.client, d.cfg.Resync,
		informers.WithNamespace(d.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = d.selector.String() }),
	)
	endpointSlices := factory.Discovery().V1().EndpointSlices()
	informer := endpointSlices.Informer()
	// The handler only signals; the loop below owns the target list. A
	// signal pending covers any number of events.
	changed := make(chan struct{}, 1)
	signal := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: signal, UpdateFunc: func(_, obj any) { signal(obj) }, DeleteFunc: signal,
	}); err != nil {
		return fmt.Errorf("endpointslice informer: %w", err)
	}
	defer factory.Shutdown() // waits for the informer's goroutines
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return ctx.Err()
	}
	var last []string // owned by this loop
	first := true
	for {
		list, err := endpointSlices.Lister().EndpointSlices(d.cfg.Namespace).List(d.selector)
		if err != nil {
			return fmt.Errorf("list endpointslices: %w", err)
		}
		targets := d.targets(list)
		if first || !slices.Equal(targets, last) {
			d.logger.Info("scrape targets discovered", "targets", len(targets), "slices", len(list))
			select {
			case out <- targets:
			case <-ctx.Done():
				return ctx.Err()
			}
			last, first = targets, false
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// targets returns the sorted, distinct URLs of the ready endpoints of list.
func (d *EndpointSliceTargets) targets(list []*discoveryv1.EndpointSlice) []string {
	out := []string{}
	for _, s := range list {
		if !d.selector.Matches(labels.Set(s.Labels)) {
			continue // the label selector narrows the watch; this keeps it right against servers (and fakes) that ignore it
		}
		port, ok := d.port(s.Ports)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			// nil means ready (the API's rule); terminating endpoints are
			// not ready.
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready || len(ep.Addresses) == 0 {
				continue
			}
			// Every address of an endpoint reaches the same pod.
			u := url.URL{Scheme: d.cfg.Scheme, Host: net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port))), Path: d.cfg.Path}
			out = append(out, u.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// port picks the slice port to scrape (see DiscoveryConfig.Port).
func (d *EndpointSliceTargets) port(ports []discoveryv1.EndpointPort) (int32, bool) {
	num := func(p discoveryv1.EndpointPort) (int32, bool) {
		if p.Port == nil {
			return 0, false
		}
		return *p.Port, true
	}
	name := func(p discoveryv1.EndpointPort) string {
		if p.Name == nil {
			return ""
		}
		return *p.Name
	}
	if d.cfg.Port != "" {
		for _, p := range ports {
			if n, ok := num(p); ok && (name(p) == d.cfg.Port || strconv.Itoa(int(n)) == d.cfg.Port) {
				return n, true
			}
		}
		return 0, false
	}
	for _, want := range []string{"gpu-metrics", "metrics"} {
		for _, p := range ports {
			if name(p) == want {
				return num(p)
			}
		}
	}
	if len(ports) > 0 {
		return num(ports[0])
	}
	return 0, false
}

// DiscoveryModule provides the Kubernetes client (from the ClientConfig the
// app supplies) and *EndpointSliceTargets from a DiscoveryConfig; the app
// binds it to the scrape source's Discoverer.
var DiscoveryModule = fx.Module("kube-discovery",
	fx.Provide(NewClientset, NewEndpointSliceTargets),
)
