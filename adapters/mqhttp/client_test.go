package mqhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/ports"
)

// reply is one scripted answer of a fake queue server.
type reply struct {
	status     int
	retryAfter string
	body       string // default: an error body with the status's code, or a success body
}

// scriptedServer answers the i-th request with script[i] (the last one
// repeats) and counts requests.
type scriptedServer struct {
	*httptest.Server
	requests atomic.Int32
}

func newScriptedServer(t *testing.T, ok string, script ...reply) *scriptedServer {
	t.Helper()
	s := &scriptedServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n := int(s.requests.Add(1)) - 1
		rp := script[min(n, len(script)-1)]
		if rp.retryAfter != "" {
			w.Header().Set("Retry-After", rp.retryAfter)
		}
		body := rp.body
		if body == "" && rp.status == http.StatusOK {
			body = ok
		} else if body == "" {
			body = fmt.Sprintf(`{"error":{"code":"scripted","message":"scripted %d"}}`, rp.status)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rp.status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

// sleeps records the client's backoff waits instead of sleeping.
type sleeps struct {
	got chan time.Duration
}

func newSleeps() *sleeps { return &sleeps{got: make(chan time.Duration, 64)} }

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.got <- d
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	var out []time.Duration
	for {
		select {
		case d := <-s.got:
			out = append(out, d)
		default:
			return out
		}
	}
}

func newTestClient(t *testing.T, cfg ClientConfig, sl *sleeps) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	require.NoError(t, err)
	if sl != nil {
		c.policy.Sleep = sl.sleep
	}
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

// retriesByLabel reads mqhttp_client_retries_total from reg, summed by op
// and by reason.
func retriesByLabel(t *testing.T, reg *prometheus.Registry) (byOp, byReason map[string]int) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	byOp, byReason = map[string]int{}, map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "mqhttp_client_retries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			byOp[labels["op"]] += int(m.GetCounter().GetValue())
			byReason[labels["reason"]] += int(m.GetCounter().GetValue())
		}
	}
	return byOp, byReason
}

func total(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

const (
	okPublish = `{"accepted":1,"duplicates":0}`
	okStatus  = `{"status":"acked"}`
)

func TestClientRetries(t *testing.T) {
	t.Parallel()
	ref := ports.LeaseRef{Topic: "t", ConsumerID: "c", LeaseID: uuid.New()}
	publish := func(ctx context.Context, c *Client) error {
		_, err := c.Publish(ctx, "t", []ports.OutgoingMessage{{Payload: []byte(`{}`), IdempotencyKey: "k"}})
		return err
	}
	ack := func(ctx context.Context, c *Client) error { return c.Ack(ctx, ref) }
	tests := []struct {
		name      string
		ok        string
		script    []reply
		call      func(context.Context, *Client) error
		attempts  int32
		wantErr   error // nil: success
		wantMsg   string
		minSleeps []time.Duration // lower bounds of the recorded waits
	}{
		{name: "503 twice then success", ok: okPublish, call: publish, attempts: 3,
			script:    []reply{{status: 503}, {status: 503}, {status: 200}},
			minSleeps: []time.Duration{0, 0}},
		{name: "429 honours Retry-After", ok: okPublish, call: publish, attempts: 2,
			script:    []reply{{status: 429, retryAfter: "1"}, {status: 200}},
			minSleeps: []time.Duration{time.Second}},
		{name: "absurd Retry-After is capped", ok: okPublish, call: publish, attempts: 2,
			script:    []reply{{status: 503, retryAfter: "86400"}, {status: 200}},
			minSleeps: []time.Duration{retry.DefaultMaxRetryAfter}},
		{name: "502 and 504 are transient", ok: okStatus, call: ack, attempts: 3,
			script:    []reply{{status: 502, body: "<html>bad gateway</html>"}, {status: 504}, {status: 200}},
			minSleeps: []time.Duration{0, 0}},
		{name: "gives up after MaxAttempts", ok: okPublish, call: publish, attempts: 4,
			script: []reply{{status: 503}}, wantErr: ports.ErrUnavailable, wantMsg: "gave up after 4 attempts"},
		{name: "backpressure exhausted", ok: okPublish, call: publish, attempts: 4,
			script: []reply{{status: 429}}, wantErr: ports.ErrBackpressure},
		{name: "400 is not retried", ok: okPublish, call: publish, attempts: 1,
			script:  []reply{{status: 400, body: `{"error":{"code":"invalid_argument","message":"topic is required"}}`}},
			wantErr: ports.ErrInvalidArgument, wantMsg: "http 400 invalid_argument: topic is required"},
		{name: "413 is invalid argument", ok: okPublish, call: publish, attempts: 1,
			script: []reply{{status: 413}}, wantErr: ports.ErrInvalidArgument},
		{name: "409 is lease expired", ok: okStatus, call: ack, attempts: 1,
			script: []reply{{status: 409}}, wantErr: ports.ErrLeaseExpired},
		{name: "404 is not found", ok: okStatus, call: ack, attempts: 1,
			script: []reply{{status: 404}}, wantErr: ports.ErrNotFound},
		{name: "500 is not retried", ok: okPublish, call: publish, attempts: 1,
			script: []reply{{status: 500}}, wantErr: ports.ErrUnavailable},
		{name: "remote closed is unavailable, not closed", ok: okStatus, call: ack, attempts: 4,
			script:  []reply{{status: 503, body: `{"error":{"code":"closed","message":"draining"}}`}},
			wantErr: ports.ErrUnavailable, wantMsg: "http 503 closed: draining"},
		{name: "malformed success body", ok: `{"accepted":x}`, call: publish, attempts: 1,
			script: []reply{{status: 200}}, wantErr: ports.ErrUnavailable, wantMsg: "malformed response"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newScriptedServer(t, tc.ok, tc.script...)
			reg := prometheus.NewRegistry()
			sl := newSleeps()
			c := newTestClient(t, ClientConfig{
				WriterURL: srv.URL, ReaderURLs: []string{srv.URL}, MaxAttempts: 4, Metrics: reg,
			}, sl)
			err := tc.call(t.Context(), c)
			if tc.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.wantErr)
				require.Contains(t, err.Error(), tc.wantMsg)
			}
			require.Equal(t, tc.attempts, srv.requests.Load(), "attempts")
			byOp, byReason := retriesByLabel(t, reg)
			require.Equal(t, int(tc.attempts-1), total(byOp), "retries counted")
			for op := range byOp {
				require.Contains(t, []string{"publish", "ack"}, op)
			}
			for reason := range byReason {
				require.Contains(t, []string{"http_429", "http_502", "http_503", "http_504"}, reason)
			}
			waits := sl.all()
			require.Len(t, waits, int(tc.attempts-1))
			for i, lo := range tc.minSleeps {
				require.GreaterOrEqual(t, waits[i], lo, "wait %d", i)
			}
			for _, w := range waits {
				require.LessOrEqual(t, w, max(DefaultMaxBackoff, retry.DefaultMaxRetryAfter))
			}
		})
	}
}

func TestClientPolicyFromConfig(t *testing.T) {
	t.Parallel()
	// The backoff's shape (capped, jittered) is tested in internal/retry;
	// here, that the client hands it its configuration and defaults.
	c := newTestClient(t, ClientConfig{WriterURL: "http://127.0.0.1:1", BaseBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond, MaxAttempts: 7}, nil)
	require.Equal(t, retry.Policy{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, MaxTries: 7}, c.policy)
	d := newTestClient(t, ClientConfig{WriterURL: "http://127.0.0.1:1"}, nil)
	require.Equal(t, retry.Policy{Initial: DefaultBaseBackoff, Max: DefaultMaxBackoff, MaxTries: DefaultMaxAttempts}, d.policy)
}

func TestClientPublishOnce(t *testing.T) {
	t.Parallel()
	// The streamer retries its publishes itself: its client must not retry
	// inside that loop (the nested loop multiplied the attempts by five).
	srv := newScriptedServer(t, okPublish, reply{status: 503, retryAfter: "7"})
	reg := prometheus.NewRegistry()
	c := newTestClient(t, ClientConfig{WriterURL: srv.URL, PublishOnce: true, Metrics: reg}, newSleeps())
	_, err := c.Publish(t.Context(), "t", []ports.OutgoingMessage{{Payload: []byte(`{}`)}})
	require.ErrorIs(t, err, ports.ErrUnavailable)
	require.Equal(t, int32(1), srv.requests.Load(), "one attempt")
	byOp, _ := retriesByLabel(t, reg)
	require.Zero(t, total(byOp))
	h, ok := errors.AsType[retry.Hinter](err)
	require.True(t, ok, "the caller's policy sees the server's Retry-After")
	require.Equal(t, 7*time.Second, h.RetryDelay())
}

func TestClientConnectionRefused(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // nothing listens there any more
	sl := newSleeps()
	c := newTestClient(t, ClientConfig{WriterURL: dead.URL, ReaderURLs: []string{dead.URL}, MaxAttempts: 3}, sl)
	_, err := c.Publish(t.Context(), "t", []ports.OutgoingMessage{{Payload: []byte(`{}`)}})
	require.ErrorIs(t, err, ports.ErrUnavailable)
	require.Len(t, sl.all(), 2, "retried")
	_, err = c.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: time.Second})
	require.ErrorIs(t, err, ports.ErrUnavailable)
	require.Len(t, sl.all(), 2, "lease rounds retried")
}

func TestClientCancelStopsRetries(t *testing.T) {
	t.Parallel()
	srv := newScriptedServer(t, okPublish, reply{status: 503})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := newTestClient(t, ClientConfig{WriterURL: srv.URL, MaxAttempts: 100, BaseBackoff: time.Hour, MaxBackoff: time.Hour}, nil)
	c.policy.Sleep = func(ctx context.Context, d time.Duration) error {
		require.GreaterOrEqual(t, d, 30*time.Minute, "the configured hour of backoff")
		cancel()
		<-ctx.Done() // only the cancellation ends the wait
		return ctx.Err()
	}
	_, err := c.Publish(ctx, "t", []ports.OutgoingMessage{{Payload: []byte(`{}`)}})
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), "scripted 503", "the last error is kept in the message")
	require.Equal(t, int32(1), srv.requests.Load())
}

func TestClientValidatesBeforeSending(t *testing.T) {
	t.Parallel()
	srv := newScriptedServer(t, okPublish, reply{status: 200})
	c := newTestClient(t, ClientConfig{WriterURL: srv.URL, ReaderURLs: []string{srv.URL}}, nil)
	tests := []struct {
		name string
		call func() error
		msg  string
	}{
		{"payload not JSON", func() error {
			_, err := c.Publish(t.Context(), "t", []ports.OutgoingMessage{{Payload: []byte(`{}`)}, {Payload: []byte(`{`)}})
			return err
		}, "message 1: payload is not valid JSON"},
		{"too many messages", func() error {
			_, err := c.Publish(t.Context(), "t", make([]ports.OutgoingMessage, MaxPublishMessages+1))
			return err
		}, "exceed the protocol's"},
		{"lease below a second", func() error {
			_, err := c.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: 999 * time.Millisecond})
			return err
		}, "out of the protocol's [1s"},
		{"lease over an hour", func() error {
			_, err := c.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: time.Hour + time.Second})
			return err
		}, "out of the protocol's [1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.call()
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			require.ErrorContains(t, err, tc.msg)
		})
	}
	t.Run("nothing sent", func(t *testing.T) {
		require.Zero(t, srv.requests.Load())
	})
}

func TestLeaseSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want int
	}{
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{30 * time.Second, 30},
		{time.Hour, 3600},
	}
	for _, tc := range tests {
		t.Run(tc.d.String(), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, leaseSeconds(tc.d))
		})
	}
}

func TestNewClientConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  ClientConfig
		ok   bool
	}{
		{"writer only", ClientConfig{WriterURL: "http://mqwriter:8081"}, true},
		{"readers only", ClientConfig{ReaderURLs: []string{"http://r-0:8082/", "https://r-1:8082/prefix"}}, true},
		{"nothing", ClientConfig{}, false},
		{"relative writer", ClientConfig{WriterURL: "mqwriter:8081"}, false},
		{"ftp reader", ClientConfig{ReaderURLs: []string{"ftp://r-0"}}, false},
		{"reader with query", ClientConfig{ReaderURLs: []string{"http://r-0:8082/?x=1"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := NewClient(tc.cfg)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.NoError(t, c.Close())
			require.NoError(t, c.Close(), "Close is idempotent")
			_, err = c.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 1, LeaseDuration: time.Second})
			require.ErrorIs(t, err, ports.ErrClosed)
		})
	}
}

// reader is one mqreader stand-in: a memory queue behind the protocol,
// counting the acks and releases it receives.
type reader struct {
	q      *memory.Queue
	srv    *httptest.Server
	acks   atomic.Int32
	leases atomic.Int32
}

func newReader(t *testing.T) *reader {
	t.Helper()
	r := &reader{q: memory.NewQueue(memory.QueueOptions{MinLease: time.Second})}
	require.NoError(t, r.q.Start(t.Context()))
	t.Cleanup(r.q.Close)
	h := NewServer(nil, r.q, ServerOptions{}).Handler()
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case PathAck, PathRelease:
			r.acks.Add(1)
		case PathLease:
			r.leases.Add(1)
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *reader) put(t *testing.T, topic string, seqs ...int) {
	t.Helper()
	msgs := make([]ports.OutgoingMessage, len(seqs))
	for i, s := range seqs {
		msgs[i] = ports.OutgoingMessage{Payload: []byte(fmt.Sprintf(`{"seq":%d}`, s)), Key: "GPU-x"}
	}
	_, err := r.q.Publish(t.Context(), topic, msgs)
	require.NoError(t, err)
}

func leaseReq(topic string) ports.LeaseRequest {
	return ports.LeaseRequest{Topic: topic, ConsumerID: "c", Max: 10, LeaseDuration: time.Minute}
}

func refOf(l domain.Lease) ports.LeaseRef {
	return ports.LeaseRef{Topic: l.Topic, ConsumerID: l.ConsumerID, LeaseID: l.ID}
}

func TestClientRoutesAckToTheServingReader(t *testing.T) {
	t.Parallel()
	const topic = "routing"
	a, b := newReader(t), newReader(t)
	a.put(t, topic, 1)
	b.put(t, topic, 2)
	c := newTestClient(t, ClientConfig{ReaderURLs: []string{a.srv.URL, b.srv.URL}}, nil)

	// Round-robin: the first call starts at a, the second at b.
	first, err := c.Lease(t.Context(), leaseReq(topic))
	require.NoError(t, err)
	second, err := c.Lease(t.Context(), leaseReq(topic))
	require.NoError(t, err)
	require.Len(t, first.Messages, 1)
	require.Len(t, second.Messages, 1)
	require.JSONEq(t, `{"seq":1}`, string(first.Messages[0].Payload))
	require.JSONEq(t, `{"seq":2}`, string(second.Messages[0].Payload))

	// Each reader only knows its own lease: a misrouted ack would be a 409.
	require.NoError(t, c.Ack(t.Context(), refOf(second)))
	require.NoError(t, c.Release(t.Context(), refOf(first)))
	require.Equal(t, int32(1), a.acks.Load(), "a got the release of its lease, nothing else")
	require.Equal(t, int32(1), b.acks.Load(), "b got the ack of its lease, nothing else")

	// The released message is back on a; b is empty and acked for good.
	again, err := c.Lease(t.Context(), leaseReq(topic))
	require.NoError(t, err)
	require.Len(t, again.Messages, 1)
	require.JSONEq(t, `{"seq":1}`, string(again.Messages[0].Payload))
	require.NoError(t, c.Ack(t.Context(), refOf(again)))
	require.NoError(t, c.Ack(t.Context(), refOf(again)), "ack is idempotent")
	require.Equal(t, int32(3), a.acks.Load())
	require.Equal(t, int32(1), b.acks.Load())
}

func TestClientSkipsEmptyAndDownReaders(t *testing.T) {
	t.Parallel()
	const topic = "skip"
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	empty, full := newReader(t), newReader(t)
	full.put(t, topic, 1, 2, 3)
	reg := prometheus.NewRegistry()
	c := newTestClient(t, ClientConfig{ReaderURLs: []string{empty.srv.URL, dead.URL, full.srv.URL}, Metrics: reg}, newSleeps())

	// Whatever reader the round starts at, one call finds full's messages.
	one := ports.LeaseRequest{Topic: topic, ConsumerID: "c", Max: 1, LeaseDuration: time.Minute}
	for i := range 3 {
		l, err := c.Lease(t.Context(), one)
		require.NoError(t, err)
		require.Len(t, l.Messages, 1, "call %d", i)
		require.NoError(t, c.Release(t.Context(), refOf(l)))
	}
	byOp, byReason := retriesByLabel(t, reg)
	require.Positive(t, byOp["lease"], "the dead reader was counted")
	require.Equal(t, byOp["lease"], byReason["transport"])

	// Nothing ready anywhere: an empty lease, not an error, in one round.
	drained, err := c.Lease(t.Context(), ports.LeaseRequest{Topic: topic, ConsumerID: "c", Max: 10, LeaseDuration: time.Minute})
	require.NoError(t, err)
	require.Len(t, drained.Messages, 3)
	before := empty.leases.Load() + full.leases.Load()
	l, err := c.Lease(t.Context(), leaseReq(topic))
	require.NoError(t, err)
	require.Empty(t, l.Messages)
	require.Equal(t, int32(2), empty.leases.Load()+full.leases.Load()-before, "each live reader asked once")
	require.NoError(t, c.Ack(t.Context(), refOf(drained)))
}

func TestClientSettleWithoutRoute(t *testing.T) {
	t.Parallel()
	const topic = "noroute"
	a, b := newReader(t), newReader(t)
	b.put(t, topic, 1)
	urls := []string{a.srv.URL, b.srv.URL}
	leaser := newTestClient(t, ClientConfig{ReaderURLs: urls}, nil)
	other := newTestClient(t, ClientConfig{ReaderURLs: urls}, nil) // never saw the lease

	l, err := leaser.Lease(t.Context(), leaseReq(topic))
	require.NoError(t, err)
	require.Len(t, l.Messages, 1)
	require.NoError(t, other.Ack(t.Context(), refOf(l)), "asks every reader; b accepts")
	require.Positive(t, b.acks.Load())

	err = other.Ack(t.Context(), ports.LeaseRef{Topic: topic, ConsumerID: "c", LeaseID: uuid.New()})
	require.ErrorIs(t, err, ports.ErrLeaseExpired, "no reader knows it")
}

func TestClientCheck(t *testing.T) {
	t.Parallel()
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PathReady {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ready.Close)
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no partitions assigned", http.StatusServiceUnavailable)
	}))
	t.Cleanup(notReady.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	tests := []struct {
		name    string
		cfg     ClientConfig
		wantErr string
	}{
		{"all ready", ClientConfig{WriterURL: ready.URL, ReaderURLs: []string{ready.URL, ready.URL}}, ""},
		{"one reader of two ready", ClientConfig{WriterURL: ready.URL, ReaderURLs: []string{dead.URL, ready.URL}}, ""},
		{"writer only", ClientConfig{WriterURL: ready.URL}, ""},
		{"writer not ready", ClientConfig{WriterURL: notReady.URL, ReaderURLs: []string{ready.URL}}, "queue writer"},
		{"no reader ready", ClientConfig{ReaderURLs: []string{notReady.URL, dead.URL}}, "queue readers: none ready"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, tc.cfg, nil)
			err := c.Check(t.Context())
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ports.ErrUnavailable)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// A waiting lease over several readers asks each once without waiting,
// then waits on one of them only (the round's first, rotating between
// calls): two waiting readers would both grant at the next commit, and the
// lease given back would count a delivery nobody made use of. A message
// published on that reader during the wait is delivered; the other readers
// never held a parked lease.
func TestClientWaitsOnOneReader(t *testing.T) {
	t.Parallel()
	const topic = "waiting"
	a, b, last := newReader(t), newReader(t), newReader(t)
	c := newTestClient(t, ClientConfig{ReaderURLs: []string{a.srv.URL, b.srv.URL, last.srv.URL}}, nil)
	req := leaseReq(topic)
	req.Wait = domain.MaxLeaseWait
	ctx, cancel := context.WithTimeout(t.Context(), domain.MaxLeaseWait/2)
	defer cancel()

	got := make(chan domain.Lease, 1)
	go func() {
		l, err := c.Lease(ctx, req)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	// The first call's round starts at a: it alone gets the waiting lease.
	require.Eventually(t, func() bool { return a.leases.Load() >= 2 },
		10*time.Second, time.Millisecond, "the waiting request was not sent to the round's first reader")
	a.put(t, topic, 1)
	l := <-got
	require.Len(t, l.Messages, 1)
	require.NoError(t, c.Ack(t.Context(), refOf(l)))
	require.EqualValues(t, 1, b.leases.Load(), "b was asked once, without a wait")
	require.EqualValues(t, 1, last.leases.Load(), "last was asked once, without a wait")
}
