package mqhttp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/ports"
)

// Client defaults.
const (
	DefaultMaxAttempts = 5
	DefaultBaseBackoff = 50 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
	// defaultRequestTimeout bounds one attempt of the default HTTP client.
	defaultRequestTimeout = 30 * time.Second
	// checkTimeout bounds one readiness probe in Check.
	checkTimeout = 3 * time.Second
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// WriterURL is the base URL of mqwriter (e.g. "http://mqwriter:8081");
	// Publish fails with ErrInvalidArgument when it is empty.
	WriterURL string
	// ReaderURLs are the base URLs of the mqreaders; Lease round-robins over
	// them. Lease, Ack and Release fail with ErrInvalidArgument when empty.
	ReaderURLs []string
	// HTTPClient, when nil, is a keep-alive client with 64 idle connections
	// per host and a 30 s timeout per attempt.
	HTTPClient *http.Client
	// MaxAttempts bounds the attempts of one call (default 5); for Lease one
	// attempt is a round over every reader.
	MaxAttempts int
	// BaseBackoff and MaxBackoff shape the capped exponential backoff
	// between attempts (defaults 50 ms and 5 s): the module's one retry
	// policy (internal/retry), whose wait is the interval ± 50 % and at
	// least the server's Retry-After (capped at one minute).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// PublishOnce makes Publish a single attempt, for a caller that runs the
	// retry loop of its publishes itself (the streamer, over every queue
	// backend): a loop in here as well would multiply its attempts.
	PublishOnce bool
	// Metrics, when set, receives mqhttp_client_retries_total{op,reason}:
	// every retry, including a Lease's move to the next reader.
	Metrics prometheus.Registerer
	// PublishToken and ConsumeToken, when set, are sent as Authorization:
	// Bearer on every call of their scope: PublishToken with a publish,
	// ConsumeToken with a lease, ack or release (the scope of each route is
	// in Routes). The /readyz probes of Check are open and carry none.
	// Tokens are never logged.
	PublishToken string
	ConsumeToken string
	// Stream makes Publish use the streaming path (PathPublishStream, one
	// long-lived connection, one frame per message) instead of a request
	// per call; StreamWindow bounds its messages in flight (default
	// DefaultStreamWindow). StreamStallTimeout (default
	// DefaultStreamStallTimeout) gives up a connection on which messages
	// are in flight and no answer came for that long. See stream_client.go.
	Stream             bool
	StreamWindow       int
	StreamStallTimeout time.Duration
}

// Client implements ports.Queue over the queue protocol: Publish goes to the
// writer, Lease round-robins over the readers, and Ack and Release go back
// to the reader that served the lease. Transient failures are retried (see
// the package doc). A Client is safe for concurrent use; Close it when done.
type Client struct {
	writer      string   // immutable; base URL without trailing slash, or ""
	readers     []string // immutable; base URLs without trailing slash
	http        *http.Client
	transport   *http.Transport        // the default client's transport, closed by Close; nil for a caller's client
	policy      retry.Policy           // immutable (tests set Sleep before use); Notify is set per call
	publishOnce bool                   // immutable
	auth        []routeAuth            // immutable; the Authorization header of each route
	retries     *prometheus.CounterVec // mqhttp_client_retries_total{op,reason}
	next        atomic.Uint64          // round-robin position of Lease
	routes      *routeTable            // lease id → index in readers
	stream      *publishStream         // the streaming publish path; nil when Publish makes requests
	closeOnce   sync.Once
}

var (
	_ ports.Queue   = (*Client)(nil)
	_ ports.Checker = (*Client)(nil)
)

// NewClient returns a Client for cfg. It fails when no URL is given or one
// is not an absolute http(s) URL.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.WriterURL == "" && len(cfg.ReaderURLs) == 0 {
		return nil, errors.New("mqhttp client: no writer or reader URL configured")
	}
	c := &Client{
		http: cfg.HTTPClient,
		policy: retry.Policy{
			Initial:  cmp.Or(max(cfg.BaseBackoff, 0), DefaultBaseBackoff),
			Max:      cmp.Or(max(cfg.MaxBackoff, 0), DefaultMaxBackoff),
			MaxTries: cmp.Or(max(cfg.MaxAttempts, 0), DefaultMaxAttempts),
		},
		publishOnce: cfg.PublishOnce,
		auth:        routeAuths(map[Scope]string{ScopePublish: cfg.PublishToken, ScopeConsume: cfg.ConsumeToken}),
		retries:     newClientRetries(cfg.Metrics),
	}
	if cfg.WriterURL != "" {
		u, err := baseURL(cfg.WriterURL)
		if err != nil {
			return nil, fmt.Errorf("mqhttp client: writer url: %w", err)
		}
		c.writer = u
	}
	for i, raw := range cfg.ReaderURLs {
		u, err := baseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("mqhttp client: reader url %d: %w", i, err)
		}
		c.readers = append(c.readers, u)
	}
	if c.http == nil {
		c.transport = http.DefaultTransport.(*http.Transport).Clone()
		c.transport.MaxIdleConns = 256
		c.transport.MaxIdleConnsPerHost = 64
		c.transport.IdleConnTimeout = 90 * time.Second
		c.http = &http.Client{Transport: c.transport, Timeout: defaultRequestTimeout}
	}
	c.routes = newRouteTable(time.Now, defaultMaxRoutes)
	if cfg.Stream && c.writer != "" {
		c.stream = newPublishStream(c.writer+PathPublishStream, c.authHeader(c.writer+PathPublishStream), c.http,
			cmp.Or(max(cfg.StreamWindow, 0), DefaultStreamWindow), cmp.Or(max(cfg.StreamStallTimeout, 0), DefaultStreamStallTimeout))
	}
	return c, nil
}

func baseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q: a base URL has no query or fragment", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Close stops the client's lease-route goroutine and closes idle
// connections. Calls after Close fail with ports.ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.routes.close()
		if c.stream != nil {
			c.stream.close()
		}
		if c.transport != nil {
			c.transport.CloseIdleConnections()
		}
	})
	return nil
}

func (c *Client) closed() bool {
	select {
	case <-c.routes.done():
		return true
	default:
		return false
	}
}

// Check reports whether the queue is reachable: the writer (when
// configured) must answer GET /readyz with 2xx, and so must at least one
// reader, since Lease skips readers that are down or draining.
func (c *Client) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var (
		wg        sync.WaitGroup
		writerErr error
		readerErr = make([]error, len(c.readers)) // each goroutine writes only its own slot
	)
	if c.writer != "" {
		wg.Go(func() { writerErr = c.ready(ctx, c.writer) })
	}
	for i, r := range c.readers {
		wg.Go(func() { readerErr[i] = c.ready(ctx, r) })
	}
	wg.Wait()
	if writerErr != nil {
		return fmt.Errorf("queue writer: %w", writerErr)
	}
	if len(c.readers) > 0 {
		for _, err := range readerErr {
			if err == nil {
				return nil
			}
		}
		return fmt.Errorf("queue readers: none ready: %w", errors.Join(readerErr...))
	}
	return nil
}

func (c *Client) ready(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+PathReady, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", base, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", base, transportError{err})
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s%s: %w: http %d", base, PathReady, ports.ErrUnavailable, resp.StatusCode)
	}
	return nil
}
