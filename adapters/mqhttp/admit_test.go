package mqhttp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/ports"
)

// blockingPublisher holds every publish until release is closed, and
// reports each arrival on arrived.
type blockingPublisher struct {
	arrived chan struct{}
	release chan struct{}
}

func (b blockingPublisher) Publish(ctx context.Context, _ string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	b.arrived <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return ports.PublishResult{}, ctx.Err()
	}
	return ports.PublishResult{Accepted: len(msgs)}, nil
}

// watchedBody fails the test's expectation when read: the server must
// answer before reading it.
type watchedBody struct {
	r    io.Reader
	read *atomic.Bool
}

func (w watchedBody) Read(p []byte) (int, error) { w.read.Store(true); return w.r.Read(p) }

// serve calls h directly with a body that records whether it was read;
// length -1 makes it a chunked request of unknown length.
func serve(h http.Handler, body string, length int64) (*httptest.ResponseRecorder, bool) {
	var read atomic.Bool
	req := httptest.NewRequest(http.MethodPost, mqhttp.PathPublish, watchedBody{strings.NewReader(body), &read})
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = length
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec, read.Load()
}

func publishBody(payloadBytes int) string {
	return `{"topic":"t","messages":[{"payload":"` + strings.Repeat("x", payloadBytes-2) + `"}]}`
}

// The admission limits answer before a body is read: a declared length over
// MaxBodyBytes is a 413, a request that would pass the in-flight byte budget
// or the publish slots is a 429 with Retry-After, and a chunked request
// reserves MaxBodyBytes.
func TestServerAdmission(t *testing.T) {
	t.Parallel()
	pub := blockingPublisher{arrived: make(chan struct{}, 8), release: make(chan struct{})}
	h := mqhttp.NewServer(pub, nil, mqhttp.ServerOptions{Logger: quietLogger(), MaxBodyBytes: 4096,
		MaxInflightBytes: 6000, MaxConcurrentPublishes: 2}).Handler()

	rec, read := serve(h, publishBody(100), 1<<20)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	require.False(t, read, "a declared length over the limit is refused unread")
	require.Contains(t, rec.Body.String(), "exceeds 4096 bytes")

	// One publish of 3 KB holds half the byte budget while it waits.
	first := publishBody(3000)
	done := make(chan int, 1)
	go func() { rec, _ := serve(h, first, int64(len(first))); done <- rec.Code }()
	<-pub.arrived

	body := publishBody(3500)
	rec, read = serve(h, body, int64(len(body)))
	require.Equal(t, http.StatusTooManyRequests, rec.Code, rec.Body.String())
	require.False(t, read, "refused before the body is read")
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), `"code":"backpressure"`)
	require.Contains(t, rec.Body.String(), "6000 allowed")

	rec, read = serve(h, publishBody(100), -1)
	require.Equal(t, http.StatusTooManyRequests, rec.Code, "a chunked body reserves MaxBodyBytes")
	require.False(t, read)

	// A small one still fits the bytes, and takes the second slot.
	small := publishBody(100)
	go func() { rec, _ := serve(h, small, int64(len(small))); done <- rec.Code }()
	<-pub.arrived
	rec, read = serve(h, small, int64(len(small)))
	require.Equal(t, http.StatusTooManyRequests, rec.Code, "both publish slots are taken")
	require.False(t, read)
	require.Contains(t, rec.Body.String(), "publishes are in progress")

	close(pub.release)
	require.Equal(t, http.StatusOK, <-done)
	require.Equal(t, http.StatusOK, <-done)
	rec, _ = serve(h, body, int64(len(body)))
	require.Equal(t, http.StatusOK, rec.Code, "the budget is free again")
}

// A payload over MaxPayloadBytes is a 413 naming the message and the limit.
func TestServerMaxPayloadBytes(t *testing.T) {
	t.Parallel()
	srv, _ := newMemoryServer(t, mqhttp.ServerOptions{Logger: quietLogger()})
	body := `{"topic":"t","messages":[{"payload":{}},{"payload":"` + strings.Repeat("x", mqhttp.DefaultMaxPayloadBytes) + `"}]}`
	a := postJSON(t, srv.URL, mqhttp.PathPublish, body)
	require.Equal(t, http.StatusRequestEntityTooLarge, a.status)
	e := a.errorBody(t)
	require.Equal(t, "payload_too_large", e.Error.Code)
	require.Contains(t, e.Error.Message, "messages[1].payload is 65538 bytes, over this queue's limit of 65536 bytes per payload (MQ_MAX_PAYLOAD_BYTES)")
	a = postJSON(t, srv.URL, mqhttp.PathPublish, publishBody(mqhttp.DefaultMaxPayloadBytes))
	require.Equal(t, http.StatusOK, a.status, "the limit is inclusive")

	raised, _ := newMemoryServer(t, mqhttp.ServerOptions{Logger: quietLogger(), MaxPayloadBytes: 200 << 10})
	a = postJSON(t, raised.URL, mqhttp.PathPublish, publishBody(150<<10))
	require.Equal(t, http.StatusOK, a.status)
}
