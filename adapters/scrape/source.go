package scrape

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

// Defaults of Options.
const (
	DefaultInterval     = 15 * time.Second
	DefaultTimeout      = 10 * time.Second
	DefaultMaxBodyBytes = 16 << 20
	DefaultBuffer       = 4096
)

// Options configure a Source.
type Options struct {
	// Targets says what to scrape; required.
	Targets Discoverer
	// Interval between two scrapes of one target (default 15 s).
	Interval time.Duration
	// Timeout cuts a scrape: connect, answer and body. It must be shorter
	// than Interval; zero means DefaultTimeout, or 80% of Interval when
	// that is shorter.
	Timeout time.Duration
	// MaxBodyBytes refuses a body larger than this after decompression
	// (default 16 MiB; a dcgm-exporter with 8 GPUs serves about 100 KiB).
	MaxBodyBytes int64
	// Buffer bounds the channel between the target goroutines and Next
	// (default 4096 points): enough for a few hosts' rounds, so a publisher
	// that pauses briefly does not stall scraping.
	Buffer int
	// Client makes the requests; nil means a client of this package's own
	// (keep-alive, one idle connection per target, no transparent gzip).
	Client *http.Client
	// Now is the clock that stamps scrapes; nil means time.Now.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer gets the streamer_scrape_* metrics when set.
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() (Options, error) {
	if o.Targets == nil {
		return o, errors.New("no target discoverer")
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Interval < 0 {
		return o, fmt.Errorf("interval %s: must be positive", o.Interval)
	}
	if o.Timeout == 0 {
		o.Timeout = min(DefaultTimeout, o.Interval*4/5)
	}
	if o.Timeout <= 0 || o.Timeout >= o.Interval {
		return o, fmt.Errorf("timeout %s: must be positive and shorter than the interval %s", o.Timeout, o.Interval)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConns:        0, // no global cap: one kept-alive connection per target
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     2 * o.Interval,
			// gzip is asked for and decoded here, so the body cap counts
			// decompressed bytes and a bad stream is reported as such.
			DisableCompression:    true,
			ResponseHeaderTimeout: o.Timeout,
		}}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Source is a ports.Source over live dcgm-exporter endpoints. Build it with
// New, Start it, read points with Next, and Stop it.
type Source struct {
	opts Options
	m    *metrics
	out  chan domain.Point // target goroutines → Next; bounded by Options.Buffer

	// svc runs the manager, which owns the target goroutines; its Done is
	// closed when they have all returned: Next answers ErrClosed from then on.
	svc *startstop.Service

	// discovered is set once the first target set arrived; read by Check.
	discovered atomic.Bool
}

var _ ports.Source = (*Source)(nil)

// New checks the options and builds a Source; it starts nothing.
func New(opts Options) (*Source, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("scrape source: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("scrape source: %w", err)
	}
	return &Source{opts: opts, m: m, out: make(chan domain.Point, opts.Buffer), svc: startstop.NewService()}, nil
}

// Interval is the effective scrape interval.
func (s *Source) Interval() time.Duration { return s.opts.Interval }

// Timeout is the effective scrape timeout.
func (s *Source) Timeout() time.Duration { return s.opts.Timeout }

// Start begins discovery and scraping in the background, with a context the
// Source owns (not the caller's: fx's start context times out). Calls after
// the first do nothing.
func (s *Source) Start() { s.svc.Start(s.run) }

// Stop ends scraping and waits (bounded by ctx) for every goroutine. Next
// returns ports.ErrClosed from then on.
func (s *Source) Stop(ctx context.Context) error {
	if err := s.svc.Stop(ctx); err != nil {
		return fmt.Errorf("stop scrape source: %w", err)
	}
	return nil
}

// Next returns the next scraped point, waiting for one as long as ctx lets
// it. It returns ctx's error when ctx ends (even when a point is waiting) and
// ports.ErrClosed after Stop. Safe for concurrent use.
func (s *Source) Next(ctx context.Context) (domain.Point, error) {
	if err := ctx.Err(); err != nil {
		return domain.Point{}, err
	}
	select {
	case <-s.svc.Done(): // before the buffer: points left in it are dropped with the source
		return domain.Point{}, fmt.Errorf("scrape source: %w", ports.ErrClosed)
	default:
	}
	select {
	case p := <-s.out:
		return p, nil
	case <-ctx.Done():
		return domain.Point{}, ctx.Err()
	case <-s.svc.Done():
		return domain.Point{}, fmt.Errorf("scrape source: %w", ports.ErrClosed)
	}
}

// Check reports whether the source knows what to scrape: it fails until the
// discoverer has sent its first target set (a Kubernetes discoverer that is
// not allowed to list EndpointSlices never does), for /readyz. A down
// target does not fail it: targets come and go, and each is counted.
func (s *Source) Check(context.Context) error {
	if !s.discovered.Load() {
		return fmt.Errorf("scrape source: %w: no targets discovered yet", ports.ErrUnavailable)
	}
	return nil
}

// run is the manager: it owns the set of running targets, and starts and
// stops target goroutines as the discoverer's set changes.
func (s *Source) run(ctx context.Context) {
	updates := make(chan []string)
	discovered := make(chan error, 1)
	go func() { discovered <- s.opts.Targets.Targets(ctx, updates) }()

	loops := map[string]*startstop.Loop{} // one per target; owned by run
	stopLoop := func(url string) {
		// Prompt: every wait of a target goroutine also watches its context.
		_ = loops[url].Stop(context.Background())
		delete(loops, url)
		s.m.removeTarget(url)
	}
	defer func() {
		for url := range loops {
			stopLoop(url)
		}
		s.m.targets.Set(0)
	}()
	for {
		select {
		case <-ctx.Done():
			if discovered != nil {
				<-discovered
			}
			return
		case err := <-discovered:
			if ctx.Err() == nil {
				s.opts.Logger.Error("target discovery stopped; scraping the last known targets", "err", err)
			}
			discovered = nil // nothing more comes; wait for Stop
		case urls := <-updates:
			s.discovered.Store(true)
			want := make(map[string]bool, len(urls))
			for _, u := range urls {
				want[u] = true
			}
			var added, removed int
			for url := range loops {
				if !want[url] {
					stopLoop(url)
					removed++
				}
			}
			for url := range want {
				if _, ok := loops[url]; ok {
					continue
				}
				t, err := newTarget(s, url)
				if err != nil {
					s.opts.Logger.Warn("bad scrape target skipped", "target", url, "err", err)
					continue
				}
				loops[url] = startstop.Go(t.run)
				s.m.addTarget(url)
				added++
			}
			s.m.targets.Set(float64(len(loops)))
			if added > 0 || removed > 0 {
				s.opts.Logger.Info("scrape targets changed", "targets", len(loops), "added", added, "removed", removed)
			}
		}
	}
}

// offset places a target inside the interval: a hash of its URL, so the
// same target keeps its slot across restarts and targets spread evenly.
func offset(url string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	_, _ = h.Write([]byte(url))
	return time.Duration(h.Sum64() % uint64(interval))
}
