package mqhttp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/freeport"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// streamMsgOf is a valid message with an idempotency key.
func streamMsgOf(i int) ports.OutgoingMessage {
	return ports.OutgoingMessage{
		Payload:        json.RawMessage(fmt.Sprintf(`{"gpu_uuid":"GPU-%d","seq":%d}`, i%7, i)),
		Key:            fmt.Sprintf("GPU-%d", i%7),
		IdempotencyKey: fmt.Sprintf("run/%d", i),
	}
}

// rawStream opens a stream by hand and returns its request body writer and
// a reader of its answer lines.
func rawStream(t *testing.T, url, contentType string) (io.WriteCloser, *http.Response) {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+PathPublishStream, pr)
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pw.Close(); _ = resp.Body.Close() })
	return pw, resp
}

func readAnswer(t *testing.T, sc *bufio.Scanner) streamAnswer {
	t.Helper()
	require.True(t, sc.Scan(), "an answer frame: %v", sc.Err())
	var a streamAnswer
	require.NoError(t, json.Unmarshal(sc.Bytes(), &a), sc.Text())
	return a
}

func TestStreamProtocol(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	srv := httptest.NewServer(NewServer(q, nil, ServerOptions{Logger: quiet(), Topics: []string{"t"}}).Handler())
	t.Cleanup(srv.Close)

	t.Run("wrong media type is a JSON 415", func(t *testing.T) {
		_, resp := rawStream(t, srv.URL, "text/plain")
		require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
		var body errorBody
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Equal(t, CodeUnsupportedMediaType, body.Error.Code)
	})

	t.Run("answers per message, the stream goes on after a refused one", func(t *testing.T) {
		w, resp := rawStream(t, srv.URL, ContentTypeNDJSON)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, ContentTypeNDJSON, resp.Header.Get("Content-Type"))
		sc := bufio.NewScanner(resp.Body)
		frames := []struct {
			line       string
			status     string
			code       string
			retryAfter bool
		}{
			{line: `{"seq":1,"topic":"t","payload":{"gpu_uuid":"GPU-1"},"idempotency_key":"a"}`, status: StreamAccepted},
			{line: `{"seq":2,"topic":"t","payload":{"gpu_uuid":"GPU-1"},"idempotency_key":"a"}`, status: StreamDuplicate},
			{line: `{"seq":3,"topic":"other","payload":{"gpu_uuid":"GPU-1"}}`, status: StreamError, code: CodeNotFound},
			{line: `{"seq":4,"topic":"t","payload":null}`, status: StreamError, code: CodeInvalidArgument},
			{line: `{"seq":5,"topic":"t","payload":{"x":1},"key":"k"}`, status: StreamAccepted},
		}
		// One at a time, so the answers come in order.
		for _, f := range frames {
			_, err := io.WriteString(w, f.line+"\n")
			require.NoError(t, err)
			a := readAnswer(t, sc)
			require.Equal(t, f.status, a.Status, f.line)
			if f.code != "" {
				require.NotNil(t, a.Error)
				require.Equal(t, f.code, a.Error.Code)
			}
		}
		require.NoError(t, w.Close())
		require.False(t, sc.Scan(), "the stream ends after the request body: %q", sc.Text())
	})

	// Frames of one seq sent back to back: each waits for the answer of
	// the one before, so the answers come in the order of the frames. Each
	// idempotency key is sent twice in a row; had the frames been
	// published at once, which of the two was accepted would be a race.
	t.Run("a seq sent again while unanswered is answered in frame order", func(t *testing.T) {
		w, resp := rawStream(t, srv.URL, ContentTypeNDJSON)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		const pairs = 25
		var frames strings.Builder
		for i := range 2 * pairs {
			fmt.Fprintf(&frames, `{"seq":7,"topic":"t","payload":{"gpu_uuid":"GPU-1"},"idempotency_key":"again/%d"}`+"\n", i/2)
		}
		_, err := io.WriteString(w, frames.String())
		require.NoError(t, err)
		require.NoError(t, w.Close())
		sc := bufio.NewScanner(resp.Body)
		var got []string
		for sc.Scan() {
			var a streamAnswer
			require.NoError(t, json.Unmarshal(sc.Bytes(), &a), sc.Text())
			require.Equal(t, uint64(7), a.Seq, sc.Text())
			got = append(got, a.Status)
		}
		want := make([]string, 0, 2*pairs)
		for range pairs {
			want = append(want, StreamAccepted, StreamDuplicate)
		}
		require.Equal(t, want, got)
	})

	t.Run("a malformed frame ends the stream with a reason", func(t *testing.T) {
		tests := []struct{ name, line, message string }{
			{"not JSON", `{"seq":1,`, "malformed JSON"},
			{"no seq", `{"topic":"t","payload":1}`, "seq must be a positive integer"},
			{"unknown field", `{"seq":1,"topic":"t","payload":1,"extra":2}`, "unknown field"},
			{"two values", `{"seq":1,"topic":"t","payload":1} {}`, "unexpected data"},
			{"too long", `{"seq":1,"topic":"t","payload":"` + strings.Repeat("x", maxFrameBytes) + `"}`, "exceeds"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				w, resp := rawStream(t, srv.URL, ContentTypeNDJSON)
				sc := bufio.NewScanner(resp.Body)
				_, err := io.WriteString(w, tt.line+"\n")
				require.NoError(t, err)
				a := readAnswer(t, sc)
				require.Equal(t, uint64(0), a.Seq)
				require.Equal(t, StreamError, a.Status)
				require.Contains(t, a.Error.Message, tt.message)
				require.False(t, sc.Scan(), "nothing after the last word")
			})
		}
	})
}

// gatedPublisher holds every publish until release is closed, recording
// the most it held at once.
type gatedPublisher struct {
	release chan struct{}
	now     atomic.Int64
	peak    atomic.Int64
	calls   atomic.Int64
}

func (g *gatedPublisher) Publish(ctx context.Context, _ string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	g.calls.Add(1)
	n := g.now.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	defer g.now.Add(-1)
	select {
	case <-g.release:
		return ports.PublishResult{Accepted: len(msgs)}, nil
	case <-ctx.Done():
		return ports.PublishResult{}, ctx.Err()
	}
}

// The window bounds the messages in flight; a producer past it waits (it
// is not refused), and every message is answered once room comes back.
func TestStreamWindowSlowsTheProducer(t *testing.T) {
	t.Parallel()
	const window, producers = 4, 20
	g := &gatedPublisher{release: make(chan struct{})}
	srv := httptest.NewServer(NewServer(g, nil, ServerOptions{Logger: quiet()}).Handler())
	t.Cleanup(srv.Close)
	c := newTestClient(t, ClientConfig{WriterURL: srv.URL, Stream: true, StreamWindow: window}, nil)

	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for i := range producers {
		wg.Go(func() {
			_, err := c.Publish(t.Context(), "t", []ports.OutgoingMessage{streamMsgOf(i)})
			errs <- err
		})
	}
	require.Eventually(t, func() bool { return g.now.Load() == window }, 10*time.Second, time.Millisecond,
		"the window fills")
	require.Len(t, errs, 0, "no producer is answered while the queue holds the window")
	close(g.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(producers), g.calls.Load())
	require.LessOrEqual(t, g.peak.Load(), int64(window), "never more in flight than the window")
}

// scriptedPublisher fails the first fails calls with err, then accepts.
type scriptedPublisher struct {
	fails atomic.Int64
	err   error
	inner ports.Publisher
}

func (s *scriptedPublisher) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	if s.fails.Add(-1) >= 0 {
		return ports.PublishResult{}, s.err
	}
	return s.inner.Publish(ctx, topic, msgs)
}

func TestStreamBackpressureIsRetriedWithItsHint(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	pub := &scriptedPublisher{err: fmt.Errorf("full: %w", ports.ErrBackpressure), inner: q}
	pub.fails.Store(2)
	srv := httptest.NewServer(NewServer(pub, nil, ServerOptions{Logger: quiet()}).Handler())
	t.Cleanup(srv.Close)

	t.Run("retried by the client", func(t *testing.T) {
		sl := newSleeps()
		c := newTestClient(t, ClientConfig{WriterURL: srv.URL, Stream: true}, sl)
		res, err := c.Publish(t.Context(), "t", []ports.OutgoingMessage{streamMsgOf(1)})
		require.NoError(t, err)
		require.Equal(t, ports.PublishResult{Accepted: 1}, res)
		waits := sl.all()
		require.Len(t, waits, 2)
		for _, w := range waits {
			require.GreaterOrEqual(t, w, time.Duration(retryAfterMillis)*time.Millisecond, "the server's retry_after_ms is honoured")
		}
	})
	t.Run("once: the caller gets ErrBackpressure", func(t *testing.T) {
		pub.fails.Store(1)
		c := newTestClient(t, ClientConfig{WriterURL: srv.URL, Stream: true, PublishOnce: true}, nil)
		_, err := c.Publish(t.Context(), "t", []ports.OutgoingMessage{streamMsgOf(2)})
		require.ErrorIs(t, err, ports.ErrBackpressure)
	})
}

// Connections dropped mid-stream lose nothing and store nothing twice: the
// unanswered messages are sent again with their idempotency keys, and the
// ones already stored come back as duplicates.
func TestStreamSurvivesDroppedConnections(t *testing.T) {
	t.Parallel()
	const n = 2000
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	srv := httptest.NewServer(NewServer(q, nil, ServerOptions{Logger: quiet()}).Handler())
	t.Cleanup(srv.Close)
	sl := newSleeps()
	sl.got = make(chan time.Duration, n*DefaultMaxAttempts)
	c := newTestClient(t, ClientConfig{WriterURL: srv.URL, Stream: true, MaxAttempts: 50}, sl)

	var (
		wg                   sync.WaitGroup
		accepted, duplicates atomic.Int64
		published            atomic.Int64
		errs                 = make(chan error, n)
	)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				res, err := c.Publish(t.Context(), "t", []ports.OutgoingMessage{streamMsgOf(i)})
				if err != nil {
					errs <- err
					continue
				}
				accepted.Add(int64(res.Accepted))
				duplicates.Add(int64(res.Duplicates))
				published.Add(1)
			}
		})
	}
	// Drop every connection a few times while the producers run.
	for range 5 {
		before := published.Load()
		require.Eventually(t, func() bool { return published.Load() > before+50 || published.Load() == n }, 10*time.Second, time.Millisecond)
		srv.CloseClientConnections()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// A message stored just before its connection dropped is answered
	// "duplicate" when sent again: counted, not stored twice.
	require.Equal(t, int64(n), accepted.Load()+duplicates.Load(), "every message answered once")

	l, err := q.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: domain.MaxLeaseMessages, LeaseDuration: time.Minute})
	require.NoError(t, err)
	seen := map[uuid.UUID]bool{}
	for _, m := range l.Messages {
		require.False(t, seen[m.ID], "stored twice")
		seen[m.ID] = true
	}
	require.Len(t, l.Messages, n, "nothing lost, nothing stored twice")
}

func TestStreamDrain(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	s := NewServer(q, nil, ServerOptions{Logger: quiet()})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	w, resp := rawStream(t, srv.URL, ContentTypeNDJSON)
	sc := bufio.NewScanner(resp.Body)
	_, err := io.WriteString(w, `{"seq":1,"topic":"t","payload":{"a":1}}`+"\n")
	require.NoError(t, err)
	require.Equal(t, StreamAccepted, readAnswer(t, sc).Status)

	require.NoError(t, s.DrainStreams(t.Context()))
	a := readAnswer(t, sc)
	require.Equal(t, uint64(0), a.Seq, "the open stream ends with its reason")
	require.Equal(t, CodeClosed, a.Error.Code)
	require.False(t, sc.Scan())

	_, resp2 := rawStream(t, srv.URL, ContentTypeNDJSON)
	require.Equal(t, http.StatusServiceUnavailable, resp2.StatusCode, "no new stream while draining")

	c := newTestClient(t, ClientConfig{WriterURL: srv.URL, Stream: true, PublishOnce: true}, nil)
	_, err = c.Publish(t.Context(), "t", []ports.OutgoingMessage{streamMsgOf(1)})
	require.ErrorIs(t, err, ports.ErrUnavailable, "a draining writer is unavailable to its clients, not closed")
}

func TestStreamClientClose(t *testing.T) {
	t.Parallel()
	g := &gatedPublisher{release: make(chan struct{})}
	srv := httptest.NewServer(NewServer(g, nil, ServerOptions{Logger: quiet()}).Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(g.release) })
	c, err := NewClient(ClientConfig{WriterURL: srv.URL, Stream: true, PublishOnce: true})
	require.NoError(t, err)
	errs := make(chan error, 1)
	go func() {
		_, err := c.Publish(t.Context(), "t", []ports.OutgoingMessage{streamMsgOf(1)})
		errs <- err
	}()
	require.Eventually(t, func() bool { return g.now.Load() == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, c.Close())
	require.ErrorIs(t, <-errs, ports.ErrClosed, "a message in flight at Close fails with ErrClosed")
	_, err = c.Publish(t.Context(), "t", []ports.OutgoingMessage{streamMsgOf(2)})
	require.ErrorIs(t, err, ports.ErrClosed)
}

// A writer that goes away and comes back on the same address (kill -9 and
// restart) delays the stream's publishes; it does not strand them.
func TestStreamSurvivesWriterRestart(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	handler := NewServer(q, nil, ServerOptions{Logger: quiet()}).Handler()
	addr, err := freeport.Addr() // free again for the restart: no connection's source port takes it meanwhile
	require.NoError(t, err)
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: handler}}
	srv.Start()
	c := newTestClient(t, ClientConfig{WriterURL: srv.URL, Stream: true, PublishOnce: true}, nil)

	var (
		wg   sync.WaitGroup
		acks atomic.Int64
		stop = make(chan struct{})
	)
	for w := range 8 {
		wg.Go(func() {
			for i := w; ; i += 8 {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Publish(t.Context(), "t", []ports.OutgoingMessage{streamMsgOf(i)}); err == nil {
					acks.Add(1)
				} else {
					i -= 8 // the same message again, as a retry loop would
				}
			}
		})
	}
	require.Eventually(t, func() bool { return acks.Load() > 100 }, 10*time.Second, time.Millisecond)
	// The listener first: a worker that reconnected between the drop and
	// Close would hold an active stream, and Close waits for those.
	_ = srv.Listener.Close()
	srv.CloseClientConnections()
	srv.Close()
	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	srv2 := &httptest.Server{Listener: ln, Config: &http.Server{Handler: handler}}
	srv2.Start()
	t.Cleanup(srv2.Close)
	before := acks.Load()
	require.Eventually(t, func() bool { return acks.Load() > before+100 }, 20*time.Second, time.Millisecond, "publishes resume on the new writer")
	close(stop)
	wg.Wait()
	require.NoError(t, c.Close()) // before srv2's Close, which waits for the stream to end
}

// A writer address that accepts connections and drops them at once (a
// proxy whose backend is down) fails the dial with ErrUnavailable rather
// than hanging it: Go's transport waits for a request body read to return
// even after the connection failed, and the dial's blank lines end it.
func TestStreamDialToADroppingPeerFails(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Take the request's head, so the client is reading its body,
			// then drop the connection without an answer.
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			_ = c.Close()
		}
	}()
	c := newTestClient(t, ClientConfig{WriterURL: "http://" + ln.Addr().String(), Stream: true, PublishOnce: true}, nil)
	// Well inside the dial timeout: a hung dial would end with the context.
	ctx, cancel := context.WithTimeout(t.Context(), streamDialTimeout/2)
	defer cancel()
	_, err = c.Publish(ctx, "t", []ports.OutgoingMessage{streamMsgOf(1)})
	require.ErrorIs(t, err, ports.ErrUnavailable)
}

// A stream outlives the server's per-request timeouts: the apps run with
// a 60 s WriteTimeout (HTTP_WRITE_TIMEOUT_MS), and a stream that answered
// nothing after it stalled its producer until the idle timeout, then ended
// with the whole window unacknowledged. The wait here is the scenario (the
// deadline has to pass), not a synchronisation.
func TestStreamOutlivesTheServersTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 150 * time.Millisecond
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	srv := httptest.NewUnstartedServer(NewServer(q, nil, ServerOptions{Logger: quiet()}).Handler())
	srv.Config.WriteTimeout, srv.Config.ReadTimeout = timeout, timeout
	srv.Start()
	t.Cleanup(srv.Close)
	c := newTestClient(t, ClientConfig{WriterURL: srv.URL, Stream: true, MaxAttempts: 1}, newSleeps())

	for i := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		res, err := c.Publish(ctx, "t", []ports.OutgoingMessage{streamMsgOf(i)})
		cancel()
		require.NoError(t, err, "message %d, %s after the stream opened", i, time.Duration(i)*3*timeout)
		require.Equal(t, 1, res.Accepted)
		time.Sleep(3 * timeout)
	}
}

// A stream whose server stops answering (a bug, or a peer gone without a
// word, as when its node is lost) is given up after StreamStallTimeout and
// its messages fail as unavailable, so the one retry loop sends them again
// on a new connection, instead of waiting for TCP to give up.
func TestStreamGivesUpAStalledConnection(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dials.Add(1)
		rc := http.NewResponseController(w)
		require.NoError(t, rc.EnableFullDuplex())
		w.Header().Set("Content-Type", ContentTypeNDJSON)
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
		_, _ = io.Copy(io.Discard, r.Body) // reads every frame, answers none
	}))
	t.Cleanup(srv.Close)
	c := newTestClient(t, ClientConfig{WriterURL: srv.URL, Stream: true, MaxAttempts: 2, StreamStallTimeout: 200 * time.Millisecond}, newSleeps())

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := c.Publish(ctx, "t", []ports.OutgoingMessage{streamMsgOf(1)})
	require.ErrorIs(t, err, ports.ErrUnavailable)
	require.ErrorContains(t, err, "no answer for 200ms")
	require.Equal(t, int64(2), dials.Load(), "each attempt on a new connection")
}
