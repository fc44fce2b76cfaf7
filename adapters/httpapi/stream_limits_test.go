package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// stallingReader streams two rows, reports that on started, then waits for
// its context: a client's stream that never ends by itself. Other calls go
// to the embedded store.
type stallingReader struct {
	*memory.TelemetryStore
	started chan struct{}
}

func (s stallingReader) StreamTelemetry(ctx context.Context, q ports.TelemetryQuery, fn func(domain.Record) error) error {
	for i := range 2 {
		v := float64(i)
		if err := fn(domain.Record{ID: int64(i + 1), Point: domain.Point{GPUUUID: q.GPUUUID, Timestamp: instant(i),
			MetricName: "DCGM_FI_DEV_GPU_UTIL", Value: &v}}); err != nil {
			return err
		}
	}
	s.started <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// streamLines reads an NDJSON stream: its lines, and the error that ended
// the body (nil when it ended cleanly).
func streamLines(t *testing.T, srv *httptest.Server, target string) (int, []string, error) {
	t.Helper()
	resp, err := srv.Client().Do(ndjsonRequest(t, t.Context(), srv, target))
	require.NoError(t, err)
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return resp.StatusCode, lines, sc.Err()
}

// A stream stops at StreamMaxRows with a last line naming the limit and a
// cursor that pages continue from, and an aborted connection.
func TestNDJSONRowLimit(t *testing.T) {
	t.Parallel()
	h, fx := newMemoryAPI(t, defaultGPUs, httpapi.Options{StreamMaxRows: 7})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	gpu := defaultGPUs[0].uuid
	all := fx.want(gpu, time.Time{}, time.Time{}, "")
	require.Greater(t, len(all), 7)

	status, lines, err := streamLines(t, srv, telemetryURL(gpu, nil))
	require.Equal(t, http.StatusOK, status)
	require.Error(t, err, "a stream stopped by a limit must not read as complete")
	require.Len(t, lines, 8, "7 entries and the limit line")
	var last httpapi.StreamLimitLine
	require.NoError(t, json.Unmarshal([]byte(lines[7]), &last))
	require.Equal(t, "stream_limit", last.Error.Code)
	require.Contains(t, last.Error.Message, "after 7 entries")
	require.NotEmpty(t, last.NextCursor)

	var got []string
	for _, l := range lines[:7] {
		var e httpapi.TelemetryEntry
		require.NoError(t, json.Unmarshal([]byte(l), &e))
		got = append(got, e.LabelsRaw)
	}
	rest, _ := walk(t, h, gpu, url.Values{"cursor": {last.NextCursor}})
	require.Equal(t, all, append(got, keys(rest)...), "the cursor continues exactly where the stream stopped")
}

// stallingServer serves the API with opts over a stallingReader of the
// default GPUs, whose started has room for a few streams.
func stallingServer(t *testing.T, opts httpapi.Options) (*httptest.Server, stallingReader) {
	t.Helper()
	store := memory.NewTelemetryStore()
	require.NoError(t, store.Start(t.Context()))
	t.Cleanup(store.Close)
	seed(t, store, defaultGPUs)
	reader := stallingReader{TelemetryStore: store, started: make(chan struct{}, 4)}
	opts.Logger = discardLogger()
	srv := httptest.NewServer(httpapi.NewHandler(reader, opts))
	t.Cleanup(srv.Close)
	return srv, reader
}

// ndjsonRequest is a GET of target asking for NDJSON.
func ndjsonRequest(t *testing.T, ctx context.Context, srv *httptest.Server, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+target, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/x-ndjson")
	return req
}

// streamStatus opens a stream and answers its status, leaving the body
// unread until ctx ends: a client holding a stream open.
func streamStatus(t *testing.T, ctx context.Context, srv *httptest.Server, target string) int {
	t.Helper()
	resp, err := srv.Client().Do(ndjsonRequest(t, ctx, srv, target))
	require.NoError(t, err)
	context.AfterFunc(ctx, func() { resp.Body.Close() })
	return resp.StatusCode
}

// Past MaxStreams a stream is refused with a JSON 429 while the others run,
// pages and /api/v1/gpus still answer, and a slot is free again once its
// client hangs up.
func TestNDJSONStreamCap(t *testing.T) {
	t.Parallel()
	srv, reader := stallingServer(t, httpapi.Options{MaxStreams: 2})
	target := telemetryURL(defaultGPUs[0].uuid, nil)

	held, hangUp := context.WithCancel(t.Context())
	defer hangUp()
	for range 2 {
		require.Equal(t, http.StatusOK, streamStatus(t, held, srv, target))
	}
	<-reader.started
	<-reader.started
	refused, err := srv.Client().Do(ndjsonRequest(t, t.Context(), srv, target))
	require.NoError(t, err)
	defer refused.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, refused.StatusCode)
	body, err := io.ReadAll(refused.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), `"code":"too_many_streams"`)
	rec := do(t, srv.Config.Handler, http.MethodGet, "/api/v1/gpus", nil)
	require.Equal(t, http.StatusOK, rec.Code, "the API keeps answering while the streams are taken")

	hangUp()
	// The server sees the hang-ups in its own time: ask until a slot is free.
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		return streamStatus(t, ctx, srv, target) == http.StatusOK
	}, 10*time.Second, 10*time.Millisecond, "the slots are free again")
}

// A stream that outlives StreamMaxDuration ends with the limit line and an
// aborted body.
func TestNDJSONStreamMaxDuration(t *testing.T) {
	t.Parallel()
	srv, reader := stallingServer(t, httpapi.Options{StreamMaxDuration: 300 * time.Millisecond})

	status, lines, err := streamLines(t, srv, telemetryURL(defaultGPUs[0].uuid, nil))
	require.Equal(t, http.StatusOK, status)
	require.Error(t, err, "a stream stopped by a limit must not read as complete")
	require.Len(t, lines, 3, "2 entries and the limit line")
	require.Contains(t, lines[2], "its time limit (API_STREAM_MAX_DURATION)")
	<-reader.started
}
