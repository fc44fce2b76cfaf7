package mqhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// Client defaults.
const (
	DefaultMaxAttempts = 5
	DefaultBaseBackoff = 50 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
	// defaultRequestTimeout bounds one attempt of the default HTTP client.
	defaultRequestTimeout = 30 * time.Second
	// maxRetryAfter caps how long a server's Retry-After can park a call.
	maxRetryAfter = time.Minute
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
	// between attempts (defaults 50 ms and 5 s); the wait is drawn uniformly
	// from [0, min(MaxBackoff, BaseBackoff·2^(attempt-1))] (full jitter), and
	// is at least the server's Retry-After (capped at one minute).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// OnRetry, when set, is called with the operation ("publish", "lease",
	// "ack", "release") and the error before each further attempt. It runs
	// on the caller's goroutine and must not block.
	OnRetry func(op string, err error)
}

// Client implements ports.Queue over the queue protocol: Publish goes to the
// writer, Lease round-robins over the readers, and Ack and Release go back
// to the reader that served the lease. Transient failures are retried (see
// the package doc). A Client is safe for concurrent use; Close it when done.
type Client struct {
	writer      string   // immutable; base URL without trailing slash, or ""
	readers     []string // immutable; base URLs without trailing slash
	http        *http.Client
	transport   *http.Transport // the default client's transport, closed by Close; nil for a caller's client
	maxAttempts int
	baseBackoff time.Duration
	maxBackoff  time.Duration
	onRetry     func(op string, err error)
	sleep       func(ctx context.Context, d time.Duration) error // immutable; a seam for tests
	next        atomic.Uint64                                    // round-robin position of Lease
	routes      *routeTable                                      // lease id → index in readers
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
		http:        cfg.HTTPClient,
		maxAttempts: cfg.MaxAttempts,
		baseBackoff: cfg.BaseBackoff,
		maxBackoff:  cfg.MaxBackoff,
		onRetry:     cfg.OnRetry,
		sleep:       sleepCtx,
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
	if c.maxAttempts < 1 {
		c.maxAttempts = DefaultMaxAttempts
	}
	if c.baseBackoff <= 0 {
		c.baseBackoff = DefaultBaseBackoff
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = DefaultMaxBackoff
	}
	c.maxBackoff = max(c.maxBackoff, c.baseBackoff)
	c.routes = newRouteTable(time.Now, defaultMaxRoutes)
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
		if c.transport != nil {
			c.transport.CloseIdleConnections()
		}
	})
	return nil
}

func (c *Client) closed() bool {
	select {
	case <-c.routes.done:
		return true
	default:
		return false
	}
}

// Publish sends msgs to the writer in one request. See the package doc for
// why retries are safe only with idempotency keys.
func (c *Client) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	switch {
	case c.closed():
		return ports.PublishResult{}, fmt.Errorf("publish: %w", ports.ErrClosed)
	case c.writer == "":
		return ports.PublishResult{}, fmt.Errorf("publish: %w: no writer URL configured", ports.ErrInvalidArgument)
	case len(msgs) > MaxPublishMessages:
		return ports.PublishResult{}, fmt.Errorf("publish: %w: %d messages exceed the protocol's %d per request",
			ports.ErrInvalidArgument, len(msgs), MaxPublishMessages)
	}
	req := publishRequest{Topic: topic, Messages: make([]publishMessage, len(msgs))}
	for i, m := range msgs {
		req.Messages[i] = publishMessage(m)
	}
	// Encoding checks every payload (a json.RawMessage is compacted); only
	// when it fails is each one checked again, to name the culprit.
	body, err := json.Marshal(req)
	if err != nil {
		for i, m := range msgs {
			if !json.Valid(m.Payload) {
				return ports.PublishResult{}, fmt.Errorf("publish: %w: message %d: payload is not valid JSON", ports.ErrInvalidArgument, i)
			}
		}
		return ports.PublishResult{}, fmt.Errorf("publish: %w: encode request: %w", ports.ErrInvalidArgument, err)
	}
	var resp publishResponse
	if err := c.callBody(ctx, "publish", c.writer+PathPublish, body, &resp); err != nil {
		return ports.PublishResult{}, err
	}
	return ports.PublishResult(resp), nil
}

// Lease asks the readers in turn, starting at the next one in round-robin
// order, and returns the first lease with messages; when every reader that
// answered had nothing ready it returns an empty lease. A reader that fails
// transiently (down, draining) is skipped; only when every reader failed
// does the call back off and try another round. The lease duration is sent
// in whole seconds, rounded up; it must be between 1s and an hour.
func (c *Client) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	switch {
	case c.closed():
		return domain.Lease{}, fmt.Errorf("lease: %w", ports.ErrClosed)
	case len(c.readers) == 0:
		return domain.Lease{}, fmt.Errorf("lease: %w: no reader URLs configured", ports.ErrInvalidArgument)
	}
	if req.LeaseDuration < time.Second || req.LeaseDuration > MaxLeaseSeconds*time.Second {
		return domain.Lease{}, fmt.Errorf("lease: %w: duration %s out of the protocol's [1s, %ds]",
			ports.ErrInvalidArgument, req.LeaseDuration, MaxLeaseSeconds)
	}
	secs := leaseSeconds(req.LeaseDuration)
	body, err := json.Marshal(leaseRequest{Topic: req.Topic, ConsumerID: req.ConsumerID, Max: req.Max, LeaseSeconds: secs})
	if err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w: encode request: %w", ports.ErrInvalidArgument, err)
	}
	n := len(c.readers)
	start := int((c.next.Add(1) - 1) % uint64(n))
	for attempt := 1; ; attempt++ {
		var (
			empty    domain.Lease
			answered bool
			lastErr  error
		)
		for i := range n {
			idx := (start + i) % n
			var resp leaseResponse
			err := c.post(ctx, c.readers[idx]+PathLease, body, &resp)
			if err == nil {
				lease := resp.toDomain()
				if len(lease.Messages) == 0 {
					if !answered {
						empty, answered = lease, true
					}
					continue
				}
				// Expiry on our clock, not the server's: no skew to reason about.
				expires := time.Now().Add(time.Duration(secs)*time.Second + routeGrace)
				if err := c.routes.put(ctx, lease.ID, idx, expires); err != nil {
					// Unreachable unless ctx ended or Close ran; the lease
					// expires on its reader and is redelivered.
					return domain.Lease{}, fmt.Errorf("lease: %w", err)
				}
				return lease, nil
			}
			if ctx.Err() != nil {
				return domain.Lease{}, fmt.Errorf("lease: %w (last error: %v)", ctx.Err(), err)
			}
			if !retryable(err) {
				return domain.Lease{}, fmt.Errorf("lease from %s: %w", c.readers[idx], err)
			}
			lastErr = err
			if i < n-1 || (!answered && attempt < c.maxAttempts) {
				c.retrying("lease", err) // another reader or round follows
			}
		}
		if answered {
			return empty, nil
		}
		if attempt >= c.maxAttempts {
			return domain.Lease{}, fmt.Errorf("lease: every reader failed %d times: %w", attempt, lastErr)
		}
		if err := c.sleep(ctx, c.delay(attempt, lastErr)); err != nil {
			return domain.Lease{}, fmt.Errorf("lease: %w (last error: %v)", err, lastErr)
		}
	}
}

// leaseSeconds rounds d up to whole seconds, the protocol's unit.
func leaseSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func (r leaseResponse) toDomain() domain.Lease {
	l := domain.Lease{
		ID:         r.LeaseID,
		Topic:      r.Topic,
		ConsumerID: r.ConsumerID,
		ExpiresAt:  r.ExpiresAt,
		Messages:   make([]domain.Message, len(r.Messages)),
	}
	for i, m := range r.Messages {
		l.Messages[i] = domain.Message{
			ID:         m.MsgUUID,
			Topic:      r.Topic,
			Partition:  m.Partition,
			Payload:    m.Payload,
			CreatedAt:  m.CreatedAt,
			Deliveries: m.Deliveries,
		}
	}
	return l
}

// Ack acknowledges the lease at the reader that served it.
func (c *Client) Ack(ctx context.Context, ref ports.LeaseRef) error {
	return c.settle(ctx, "ack", PathAck, ref)
}

// Release returns the lease's messages to ready at the reader that served it.
func (c *Client) Release(ctx context.Context, ref ports.LeaseRef) error {
	return c.settle(ctx, "release", PathRelease, ref)
}

// settle sends an ack or release to the reader that served the lease. When
// the route is unknown (it was dropped, or another Client leased it), it
// asks every reader: only the one holding the lease can accept it, the others
// answer 409 and change nothing.
func (c *Client) settle(ctx context.Context, op, path string, ref ports.LeaseRef) error {
	if c.closed() {
		return fmt.Errorf("%s: %w", op, ports.ErrClosed)
	}
	if len(c.readers) == 0 {
		return fmt.Errorf("%s: %w: no reader URLs configured", op, ports.ErrInvalidArgument)
	}
	op = op + " lease " + ref.LeaseID.String()
	req := leaseRefRequest{Topic: ref.Topic, ConsumerID: ref.ConsumerID, LeaseID: ref.LeaseID.String()}
	idx, ok, err := c.routes.get(ctx, ref.LeaseID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if ok || len(c.readers) == 1 {
		err := c.call(ctx, op, c.readers[idx]+path, req, &statusResponse{})
		if ok && errors.Is(err, ports.ErrLeaseExpired) {
			_ = c.routes.forget(ctx, ref.LeaseID) // best effort: the route expires anyway
		}
		return err
	}
	var expired, other error
	for _, reader := range c.readers {
		err := c.call(ctx, op, reader+path, req, &statusResponse{})
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return err
		case errors.Is(err, ports.ErrLeaseExpired):
			expired = err
		case errors.Is(err, ports.ErrInvalidArgument):
			return err // every reader would say the same
		default:
			other = err
		}
	}
	if other != nil {
		// A reader we could not reach may hold the lease: do not claim it expired.
		return other
	}
	return expired
}

// call POSTs in to endpoint and decodes a 200 into out, retrying transient
// failures up to maxAttempts.
func (c *Client) call(ctx context.Context, op, endpoint string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: %w: encode request: %w", op, ports.ErrInvalidArgument, err)
	}
	return c.callBody(ctx, op, endpoint, body, out)
}

// callBody posts an encoded request body, as call does.
func (c *Client) callBody(ctx context.Context, op, endpoint string, body []byte, out any) error {
	for attempt := 1; ; attempt++ {
		err := c.post(ctx, endpoint, body, out)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w (last error: %v)", op, ctx.Err(), err)
		case !retryable(err):
			return fmt.Errorf("%s: %w", op, err)
		case attempt >= c.maxAttempts:
			return fmt.Errorf("%s: gave up after %d attempts: %w", op, attempt, err)
		}
		c.retrying(op, err)
		if serr := c.sleep(ctx, c.delay(attempt, err)); serr != nil {
			return fmt.Errorf("%s: %w (last error: %v)", op, serr, err)
		}
	}
}

func (c *Client) retrying(op string, err error) {
	if c.onRetry != nil {
		c.onRetry(strings.Fields(op)[0], err)
	}
}

// post makes one attempt. Its error is a *ResponseError for a non-200
// answer, or a transportError when no answer arrived.
func (c *Client) post(ctx context.Context, endpoint string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: build request: %w", ports.ErrInvalidArgument, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return transportError{err}
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return responseError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if _, ok := errors.AsType[*json.SyntaxError](err); ok {
			return fmt.Errorf("%w: malformed response from %s: %w", ports.ErrUnavailable, endpoint, err)
		}
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return fmt.Errorf("%w: malformed response from %s: %w", ports.ErrUnavailable, endpoint, err)
		}
		return transportError{fmt.Errorf("read response from %s: %w", endpoint, err)}
	}
	return nil
}

// transportError is a failure to get an answer (refused, reset, timeout):
// the server may be down or restarting, so it is retried.
type transportError struct{ err error }

func (e transportError) Error() string   { return ports.ErrUnavailable.Error() + ": " + e.err.Error() }
func (e transportError) Unwrap() []error { return []error{ports.ErrUnavailable, e.err} }

// ResponseError is a non-200 answer of a queue server. It unwraps to the
// ports sentinel its status stands for, so callers use errors.Is; errors.As
// gives the status, the stable code and the server's message.
type ResponseError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration // zero when the server sent none
}

func (e *ResponseError) Error() string {
	code := e.Code
	if code == "" {
		code = strings.ToLower(http.StatusText(e.Status))
	}
	return fmt.Sprintf("http %d %s: %s", e.Status, code, e.Message)
}

// Unwrap returns the ports sentinel of the status: 400, 413, 415 and other
// 4xx are ErrInvalidArgument, 404 ErrNotFound, 409 ErrLeaseExpired, 429
// ErrBackpressure, 5xx ErrUnavailable. A remote 503 "closed" (a draining
// reader) is ErrUnavailable too, not ErrClosed: this client is not closed.
func (e *ResponseError) Unwrap() error {
	switch {
	case e.Status == http.StatusNotFound:
		return ports.ErrNotFound
	case e.Status == http.StatusConflict:
		return ports.ErrLeaseExpired
	case e.Status == http.StatusTooManyRequests:
		return ports.ErrBackpressure
	case e.Status >= 400 && e.Status < 500:
		return ports.ErrInvalidArgument
	default:
		return ports.ErrUnavailable
	}
}

// responseError reads a non-200 answer.
func responseError(resp *http.Response) *ResponseError {
	e := &ResponseError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	var body errorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if json.Unmarshal(raw, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	} else {
		// Not our server (a proxy's page): keep a short excerpt.
		e.Message = truncate(strings.TrimSpace(string(raw)), 200)
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return max(0, time.Duration(secs)*time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// retryable reports whether err is transient: no answer at all, or 429,
// 502, 503 or 504. Other 4xx fail again unchanged and 500 is a bug.
func retryable(err error) bool {
	if _, ok := errors.AsType[transportError](err); ok {
		return true
	}
	if re, ok := errors.AsType[*ResponseError](err); ok {
		switch re.Status {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

// delay is the wait before attempt+1: full jitter over a capped
// exponential, but at least the server's Retry-After.
func (c *Client) delay(attempt int, err error) time.Duration {
	ceiling := c.maxBackoff
	if attempt-1 < 32 {
		ceiling = min(c.maxBackoff, c.baseBackoff<<(attempt-1))
		if ceiling <= 0 { // overflow
			ceiling = c.maxBackoff
		}
	}
	d := rand.N(ceiling + 1)
	if re, ok := errors.AsType[*ResponseError](err); ok && re.RetryAfter > 0 {
		d = max(d, min(re.RetryAfter, maxRetryAfter))
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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
