package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

func TestDeadLettersEndpoint(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	h := httpapi.NewHandler(store, httpapi.Options{Logger: discardLogger()})

	empty := decode[httpapi.DeadLetterList](t, do(t, h, http.MethodGet, "/api/v1/dead-letters", nil))
	require.NotNil(t, empty.DeadLetters, "[] not null")
	require.Empty(t, empty.DeadLetters)
	require.Empty(t, empty.NextCursor)

	var written []domain.DeadLetter
	for i := range 5 {
		payload := fmt.Sprintf(`{"n":%d`, i)
		if i == 4 {
			payload = strings.Repeat("ü", 600) // 600 characters, 1200 bytes
		}
		l := domain.DeadLetter{MsgUUID: uuid.New(), Topic: domain.TelemetryTopic, Payload: []byte(payload), Reason: fmt.Sprintf("reason %d", i)}
		require.NoError(t, store.WriteDeadLetters(t.Context(), []domain.DeadLetter{l}))
		written = append(written, l)
	}
	var got []httpapi.DeadLetter
	target := "/api/v1/dead-letters?limit=2"
	for range 5 {
		page := decode[httpapi.DeadLetterList](t, do(t, h, http.MethodGet, target, nil))
		got = append(got, page.DeadLetters...)
		if page.NextCursor == "" {
			break
		}
		target = "/api/v1/dead-letters?limit=2&cursor=" + url.QueryEscape(page.NextCursor)
	}
	require.Len(t, got, 5)
	for i, d := range got {
		want := written[4-i]
		require.Equal(t, want.MsgUUID.String(), d.MsgUUID, "newest first")
		require.Equal(t, want.Reason, d.Reason)
		require.Equal(t, domain.TelemetryTopic, d.Topic)
		require.False(t, d.CreatedAt.IsZero())
		require.Equal(t, len(want.Payload), d.PayloadBytes)
	}
	require.Equal(t, strings.Repeat("ü", httpapi.DeadLetterPayloadChars), got[0].Payload)
	require.True(t, got[0].PayloadTruncated)
	require.Equal(t, `{"n":3`, got[1].Payload)
	require.False(t, got[1].PayloadTruncated)

	for _, bad := range []string{"limit=0", "limit=1001", "limit=x", "cursor=garbage", "cursor=eyJ2IjoxLCJiIjowfQ", "page=2"} {
		requireError(t, do(t, h, http.MethodGet, "/api/v1/dead-letters?"+bad, nil), http.StatusBadRequest, "bad_request", "")
	}
	rec := do(t, h, http.MethodPost, "/api/v1/dead-letters", nil)
	requireError(t, rec, http.StatusMethodNotAllowed, "method_not_allowed", "")
}

func TestPipelineEndpoint(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	store := memory.NewTelemetryStoreWith(memory.Options{Now: func() time.Time { return now }})
	require.NoError(t, store.Start(t.Context()))
	t.Cleanup(store.Close)
	_, err := store.WriteBatch(t.Context(), []domain.Record{
		sample("GPU-a0", "host-a", "H100", 0, now.Add(-10*time.Second), "DCGM_FI_DEV_GPU_TEMP", val(40)),
		sample("GPU-a1", "host-a", "H100", 1, now.Add(-20*time.Second), "DCGM_FI_DEV_GPU_TEMP", val(41)),
		sample("GPU-b0", "host-b", "H100", 0, now.Add(-10*time.Minute), "DCGM_FI_DEV_GPU_TEMP", val(42)),
	})
	require.NoError(t, err)
	require.NoError(t, store.WriteDeadLetters(t.Context(), []domain.DeadLetter{{MsgUUID: uuid.New(), Topic: "t", Payload: []byte("x"), Reason: "r"}}))
	h := httpapi.NewHandler(store, httpapi.Options{Logger: discardLogger()})

	got := decode[httpapi.PipelineStatus](t, do(t, h, http.MethodGet, "/api/v1/pipeline", nil))
	require.Equal(t, int64(3), got.SamplesInserted)
	require.Nil(t, got.QueueBacklog, "the memory store cannot see a queue")
	require.Equal(t, int64(1), got.DeadLetters)
	require.Equal(t, 120.0, got.StaleAfterSeconds)
	require.Len(t, got.Hosts, 2)
	require.Equal(t, "host-a", got.Hosts[0].Hostname)
	require.Equal(t, 2, got.Hosts[0].GPUs)
	require.InDelta(t, 10, got.Hosts[0].AgeSeconds, 0.001, "the newest GPU of the host counts")
	require.False(t, got.Hosts[0].Stale)
	require.True(t, got.Hosts[1].Stale, "silent for 10 minutes")

	relaxed := decode[httpapi.PipelineStatus](t, do(t, h, http.MethodGet, "/api/v1/pipeline?stale_after=15m", nil))
	require.False(t, relaxed.Hosts[1].Stale)
	for _, bad := range []string{"stale_after=1s", "stale_after=x", "stale_after=200h", "stale=1m"} {
		requireError(t, do(t, h, http.MethodGet, "/api/v1/pipeline?"+bad, nil), http.StatusBadRequest, "bad_request", "")
	}
}

// failingPipeline is a reader whose pipeline methods fail with err.
type failingPipeline struct {
	ports.TelemetryReader
	err error
}

func (f failingPipeline) ListDeadLetters(context.Context, ports.DeadLetterQuery) (ports.DeadLetterPage, error) {
	return ports.DeadLetterPage{}, f.err
}

func (f failingPipeline) PipelineStats(context.Context) (ports.PipelineStats, error) {
	return ports.PipelineStats{}, f.err
}

func TestPipelineEndpointsStoreErrors(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"/api/v1/dead-letters", "/api/v1/pipeline"} {
		h := httpapi.NewHandler(failingPipeline{err: fmt.Errorf("query: %w", ports.ErrUnavailable)}, httpapi.Options{Logger: discardLogger()})
		requireError(t, do(t, h, http.MethodGet, target, nil), http.StatusServiceUnavailable, "unavailable", "")
		h = httpapi.NewHandler(failingPipeline{err: fmt.Errorf(`ERROR: relation "dead_letters": SELECT`)}, httpapi.Options{Logger: discardLogger()})
		rec := do(t, h, http.MethodGet, target, nil)
		requireError(t, rec, http.StatusInternalServerError, "internal", "")
		require.NotContains(t, rec.Body.String(), "SELECT")
	}
}

func TestDashboardServed(t *testing.T) {
	t.Parallel()
	h := httpapi.NewHandler(newStore(t), httpapi.Options{Logger: discardLogger()})
	page := do(t, h, http.MethodGet, "/", nil)
	require.Equal(t, http.StatusOK, page.Code)
	require.Contains(t, page.Header().Get("Content-Type"), "text/html")
	require.Contains(t, page.Header().Get("Content-Security-Policy"), "default-src 'self'")
	body := page.Body.String()
	for _, ref := range []string{"/ui/app.js", "/ui/app.css", "/ui/vendor/uPlot.iife.min.js", "/ui/vendor/uPlot.min.css"} {
		require.Contains(t, body, ref)
		rec := do(t, h, http.MethodGet, ref, nil)
		require.Equal(t, http.StatusOK, rec.Code, ref)
		require.NotEmpty(t, rec.Body.Bytes(), ref)
	}
	require.Contains(t, do(t, h, http.MethodGet, "/ui/app.js", nil).Header().Get("Content-Type"), "javascript")
	require.NotContains(t, body, "//cdn", "no CDN: the page needs nothing but apigw")
	requireError(t, do(t, h, http.MethodGet, "/nope", nil), http.StatusNotFound, "not_found", "")
	require.Equal(t, http.StatusNotFound, do(t, h, http.MethodGet, "/ui/missing.js", nil).Code)
}

// TestDashboardMounted serves the dashboard from an outer router, as the
// apps do (platform routes plus Mount).
func TestDashboardMounted(t *testing.T) {
	t.Parallel()
	api := httpapi.New(newStore(t), httpapi.Options{Logger: discardLogger()})
	r := mux.NewRouter()
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	api.Mount(r)
	page := do(t, r, http.MethodGet, "/", nil)
	require.Equal(t, http.StatusOK, page.Code)
	require.Contains(t, page.Body.String(), "/ui/app.js")
	require.Equal(t, http.StatusOK, do(t, r, http.MethodGet, "/ui/app.css", nil).Code)
	require.Equal(t, http.StatusOK, do(t, r, http.MethodGet, "/api/v1/pipeline", nil).Code)
	require.Equal(t, http.StatusOK, do(t, r, http.MethodGet, "/healthz", nil).Code)
	requireError(t, do(t, r, http.MethodGet, "/nope", nil), http.StatusNotFound, "not_found", "")
}
