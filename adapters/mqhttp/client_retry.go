package mqhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/internal/promx"
	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/ports"
)

// call POSTs in to endpoint and decodes a 200 into out, retrying transient
// failures as the client's retry policy says.
func (c *Client) call(ctx context.Context, op, endpoint string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: %w: encode request: %w", op, ports.ErrInvalidArgument, err)
	}
	return c.callBody(ctx, op, endpoint, body, out)
}

// callBody posts an encoded request body, as call does. Publish passes
// a single attempt when the caller retries it (PublishOnce).
func (c *Client) callBody(ctx context.Context, op, endpoint string, body []byte, out any) error {
	p := c.callPolicy(op)
	if c.publishOnce && op == "publish" {
		p.MaxTries = 1
	}
	attempts := 0
	_, err := retry.Do(ctx, p, func() (struct{}, error) {
		attempts++
		err := c.post(ctx, endpoint, body, out)
		if err != nil && !retryable(err) {
			return struct{}{}, retry.Permanent(err)
		}
		return struct{}{}, err
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil || !retryable(err) || attempts == 1:
		return fmt.Errorf("%s: %w", op, err)
	default:
		return fmt.Errorf("%s: gave up after %d attempts: %w", op, attempts, err)
	}
}

// callPolicy is the client's policy with every retry of op counted.
func (c *Client) callPolicy(op string) retry.Policy {
	p := c.policy
	p.Notify = func(err error, _ time.Duration) { c.retried(op, err) }
	return p
}

// retried counts one retry of op (its first word: "ack lease <id>" is "ack").
func (c *Client) retried(op string, err error) {
	op, _, _ = strings.Cut(op, " ")
	c.retries.WithLabelValues(op, retryReason(err)).Inc()
}

// newClientRetries returns mqhttp_client_retries_total, registered in reg
// when it is set (shared with another client of the same registry).
func newClientRetries(reg prometheus.Registerer) *prometheus.CounterVec {
	v := promx.CounterVec("mqhttp_client_retries_total",
		"Queue client calls retried after a transient failure (a Lease's move to the next reader included), by operation and reason.", "op", "reason")
	if reg == nil {
		return v
	}
	if got, err := promx.Reuse(reg, v); err == nil {
		return got
	}
	return v // a different collector under our name: count unexported rather than fail the client
}

// retryReason is the reason label of a transient error: "transport" when no
// answer came, else the HTTP status ("http_503").
func retryReason(err error) string {
	if re, ok := errors.AsType[*ResponseError](err); ok {
		return "http_" + strconv.Itoa(re.Status)
	}
	return "transport"
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
	if h := c.authHeader(endpoint); h != "" {
		req.Header.Set("Authorization", h)
	}
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

// RetryDelay is the server's Retry-After: the retry policy waits at least
// that long (capped) before the next attempt.
func (e *ResponseError) RetryDelay() time.Duration { return e.RetryAfter }

func (e *ResponseError) Error() string {
	code := e.Code
	if code == "" {
		code = strings.ToLower(http.StatusText(e.Status))
	}
	return fmt.Sprintf("http %d %s: %s", e.Status, code, e.Message)
}

// Unwrap returns the ports sentinel of the status: 400, 401, 403, 413, 415
// and other 4xx are ErrInvalidArgument (a wrong token is not retried), 404 ErrNotFound, 409 ErrLeaseExpired, 429
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
