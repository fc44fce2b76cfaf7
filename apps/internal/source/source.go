// Package source chooses the streamer's ports.Source from configuration:
// STREAMER_SOURCE picks the CSV replay or the dcgm-exporter scraper, whose
// targets come from a list, a file, or Kubernetes EndpointSlices. It is a
// package of its own so that only the apps that stream (streamer, pipeline)
// link the scraper and client-go; the queue, collector and API apps do not.
package source

import (
	"fmt"
	"time"

	"go.uber.org/fx"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/adapters/kube"
	"github.com/gpufleet/telemetry/adapters/scrape"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

// Stream sources, the values of STREAMER_SOURCE.
const (
	CSV    = "csv"    // replay a DCGM CSV dump in a loop (the default)
	Scrape = "scrape" // scrape live dcgm-exporter endpoints
)

// Module provides the streamer's ports.Source, chosen by STREAMER_SOURCE:
// the CSV (STREAMER_CSV_PATH, STREAMER_ONCE) or the scraper (SCRAPE_*).
func Module(env *platform.Env) fx.Option {
	switch kind := env.OneOf("STREAMER_SOURCE", CSV, CSV, Scrape); kind {
	case CSV:
		return fx.Options(
			fx.Supply(csv.Config{Path: env.String("STREAMER_CSV_PATH", csv.DefaultPath), Once: env.Bool("STREAMER_ONCE", false)}),
			csv.Module,
		)
	case Scrape:
		return scrapeSource(env)
	default:
		return fx.Error(fmt.Errorf("STREAMER_SOURCE=%q: want csv or scrape", kind))
	}
}

// scrapeSource reads the scraper's variables: exactly one of SCRAPE_TARGETS,
// SCRAPE_TARGETS_FILE and SCRAPE_KUBERNETES_SELECTOR says what to scrape.
func scrapeSource(env *platform.Env) fx.Option {
	cfg := scrape.Config{
		TargetsFile:  env.String("SCRAPE_TARGETS_FILE", ""),
		Interval:     env.Duration("SCRAPE_INTERVAL", scrape.DefaultInterval, time.Second, 24*time.Hour),
		MaxBodyBytes: int64(env.Int("SCRAPE_MAX_BODY_BYTES", scrape.DefaultMaxBodyBytes, 1024, 1<<30)),
		Buffer:       env.Int("SCRAPE_BUFFER", scrape.DefaultBuffer, 1, 1<<20),
	}
	cfg.Timeout = env.Duration("SCRAPE_TIMEOUT", 0, time.Millisecond, 24*time.Hour)
	if cfg.Timeout != 0 && cfg.Timeout >= cfg.Interval {
		env.Fail(fmt.Errorf("SCRAPE_TIMEOUT=%s: must be shorter than SCRAPE_INTERVAL (%s)", cfg.Timeout, cfg.Interval))
	}
	if list := env.String("SCRAPE_TARGETS", ""); list != "" {
		targets, err := scrape.ParseTargets(list)
		if err != nil {
			env.Fail(fmt.Errorf("SCRAPE_TARGETS: %w", err))
		}
		cfg.Targets = targets
	}
	discovery, kubeOn := kubernetesDiscovery(env)
	given := 0
	for _, on := range []bool{len(cfg.Targets) > 0, cfg.TargetsFile != "", kubeOn} {
		if on {
			given++
		}
	}
	if given != 1 {
		env.Fail(fmt.Errorf("STREAMER_SOURCE=scrape: set exactly one of SCRAPE_TARGETS, SCRAPE_TARGETS_FILE and SCRAPE_KUBERNETES_SELECTOR (%d set)", given))
	}
	return fx.Options(fx.Supply(cfg), discovery, scrape.Module,
		fx.Provide(platform.AsCheck(func(s *scrape.Source) platform.Check { return platform.CheckOf("scrape targets", s) })))
}

// kubernetesDiscovery discovers targets from the EndpointSlices matching
// SCRAPE_KUBERNETES_SELECTOR in SCRAPE_KUBERNETES_NAMESPACE (default: the
// pod's own namespace), through the in-cluster service account or
// KUBECONFIG. It reports whether the selector is set.
func kubernetesDiscovery(env *platform.Env) (fx.Option, bool) {
	selector := env.String("SCRAPE_KUBERNETES_SELECTOR", "")
	if selector == "" {
		return fx.Options(), false
	}
	cfg := kube.DiscoveryConfig{
		Namespace: env.String("SCRAPE_KUBERNETES_NAMESPACE", kube.InClusterNamespace()),
		Selector:  selector,
		Port:      env.String("SCRAPE_KUBERNETES_PORT", ""),
		Scheme:    env.OneOf("SCRAPE_KUBERNETES_SCHEME", "http", "http", "https"),
		Path:      env.String("SCRAPE_KUBERNETES_PATH", scrape.DefaultPath),
	}
	if cfg.Namespace == "" {
		env.Fail(fmt.Errorf("SCRAPE_KUBERNETES_NAMESPACE is required outside a cluster"))
	}
	if _, err := labels.Parse(selector); err != nil {
		env.Fail(fmt.Errorf("SCRAPE_KUBERNETES_SELECTOR=%q: %w", selector, err))
	}
	return fx.Options(
		fx.Supply(cfg, kube.ClientConfig{Kubeconfig: env.String("KUBECONFIG", ""), UserAgent: "streamer"}),
		kube.DiscoveryModule,
		fx.Provide(func(d *kube.EndpointSliceTargets) scrape.Discoverer { return d }),
	), true
}
