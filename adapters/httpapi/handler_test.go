package httpapi_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

func TestListGPUs(t *testing.T) {
	t.Parallel()
	t.Run("empty registry is an empty list, not null", func(t *testing.T) {
		t.Parallel()
		h, _ := newMemoryAPI(t, nil, httpapi.Options{})
		rec := do(t, h, http.MethodGet, "/api/v1/gpus", nil)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"))
		require.JSONEq(t, `{"gpus":[]}`, rec.Body.String())
	})
	t.Run("every GPU with its attributes, in registry order", func(t *testing.T) {
		t.Parallel()
		h, fx := newMemoryAPI(t, defaultGPUs, httpapi.Options{})
		rec := do(t, h, http.MethodGet, "/api/v1/gpus", nil)
		require.Equal(t, http.StatusOK, rec.Code)
		got := decode[httpapi.GPUList](t, rec)
		require.Len(t, got.GPUs, len(fx.gpus))
		for i, g := range fx.gpus {
			require.Equal(t, httpapi.GPU{ID: g.UUID, Hostname: g.Hostname, GPUIndex: g.GPUIndex,
				Device: g.Device, ModelName: g.ModelName, LastSeen: g.LastSeen}, got.GPUs[i])
		}
		require.Contains(t, rec.Body.String(), `"last_seen":"2025-07-18T20:43:13.2505Z"`)
	})
}

func TestTelemetryWindow(t *testing.T) {
	t.Parallel()
	h, fx := newMemoryAPI(t, defaultGPUs, httpapi.Options{})
	gpu := defaultGPUs[0].uuid
	tests := []struct {
		name       string
		start, end string
		metric     string
		wantStart  time.Time
		wantEnd    time.Time
	}{
		{name: "no bounds"},
		{name: "both bounds exactly on samples are inclusive", start: rfc(instant(3)), end: rfc(instant(9)),
			wantStart: instant(3), wantEnd: instant(9)},
		{name: "a zero-width window on a sample", start: rfc(instant(5)), end: rfc(instant(5)),
			wantStart: instant(5), wantEnd: instant(5)},
		{name: "bounds without fractional seconds", start: "2025-07-18T20:42:36Z", end: "2025-07-18T20:42:40Z",
			wantStart: instant(2), wantEnd: instant(6)},
		{name: "bounds in other zones", start: "2025-07-18T22:42:37.2505+02:00", end: "2025-07-18T16:42:39-04:00",
			wantStart: instant(3), wantEnd: base.Add(5 * time.Second)},
		{name: "only a start", start: rfc(instant(37)), wantStart: instant(37)},
		{name: "only an end", end: rfc(instant(1)), wantEnd: instant(1)},
		{name: "metric filter", metric: "DCGM_FI_DEV_POWER_USAGE", start: rfc(instant(10)), end: rfc(instant(20)),
			wantStart: instant(10), wantEnd: instant(20)},
		{name: "window with nothing in it", start: "2030-01-01T00:00:00Z", wantStart: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := url.Values{}
			if tt.start != "" {
				p.Set("start_time", tt.start)
			}
			if tt.end != "" {
				p.Set("end_time", tt.end)
			}
			if tt.metric != "" {
				p.Set("metric_name", tt.metric)
			}
			want := fx.want(gpu, tt.wantStart, tt.wantEnd, tt.metric)
			rec := do(t, h, http.MethodGet, telemetryURL(gpu, p), nil)
			require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
			page := decode[httpapi.TelemetryPage](t, rec)
			require.Equal(t, gpu, page.GPUID)
			require.Empty(t, page.NextCursor, "the whole window fits the default limit")
			require.Equal(t, len(want), len(page.Entries))
			if len(want) > 0 {
				require.Equal(t, want, keys(page.Entries))
			} else {
				require.Contains(t, rec.Body.String(), `"entries":[]`)
			}
			for i, e := range page.Entries {
				require.Equal(t, gpu, e.GPUUUID)
				require.Equal(t, time.UTC, e.Timestamp.Location())
				if i > 0 {
					require.False(t, e.Timestamp.Before(page.Entries[i-1].Timestamp), "entries out of order")
				}
			}
		})
	}
}

func TestTelemetryEntryShape(t *testing.T) {
	t.Parallel()
	h, _ := newMemoryAPI(t, defaultGPUs, httpapi.Options{})
	gpu := defaultGPUs[0].uuid
	rec := do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{"limit": {"6"}}), nil)
	require.Equal(t, http.StatusOK, rec.Code)
	var raw struct {
		Entries []map[string]any `json:"entries"`
	}
	require.NoError(t, decodeInto(rec.Body.String(), &raw))
	require.Len(t, raw.Entries, 6)
	fields := []string{"timestamp", "metric_name", "value", "gpu_uuid", "hostname", "gpu_index", "device",
		"model_name", "container", "pod", "namespace", "labels_raw"}
	for _, e := range raw.Entries {
		for _, f := range fields {
			require.Contains(t, e, f)
		}
	}
	// Row seq=0 (first instant) is blank and must be served as null; the
	// others carry their value.
	nulls := 0
	for _, e := range raw.Entries[:3] {
		if e["labels_raw"] == "seq=0" {
			require.Nil(t, e["value"])
			nulls++
		} else {
			require.IsType(t, float64(0), e["value"])
		}
	}
	require.Equal(t, 1, nulls)
	// Whole seconds are served without a fraction, fractions in full, in UTC.
	require.Equal(t, "2025-07-18T20:42:34Z", raw.Entries[0]["timestamp"])
	require.Equal(t, "2025-07-18T20:42:35.2505Z", raw.Entries[3]["timestamp"])
}

func TestPaginationWalksEveryRowOnce(t *testing.T) {
	t.Parallel()
	h, fx := newMemoryAPI(t, defaultGPUs, httpapi.Options{})
	gpu := defaultGPUs[0].uuid
	all := fx.want(gpu, time.Time{}, time.Time{}, "")
	tests := []struct {
		name      string
		params    url.Values
		want      []string
		wantPages int
	}{
		{"limit 1", url.Values{"limit": {"1"}}, all, len(all)},
		{"limit 7 (pages end mid-timestamp)", url.Values{"limit": {"7"}}, all, (len(all) + 6) / 7},
		{"limit equal to the row count", url.Values{"limit": {fmt.Sprint(len(all))}}, all, 1},
		{"default limit", nil, all, 1},
		{"window and metric", url.Values{"limit": {"4"}, "start_time": {rfc(instant(5))},
			"end_time": {rfc(instant(30))}, "metric_name": {"DCGM_FI_DEV_FB_USED"}},
			fx.want(gpu, instant(5), instant(30), "DCGM_FI_DEV_FB_USED"), 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			entries, pages := walk(t, h, gpu, tt.params)
			require.Equal(t, tt.want, keys(entries))
			// A page may end exactly at the last row and still say "more may
			// follow"; then one empty page ends the walk.
			require.Contains(t, []int{tt.wantPages, tt.wantPages + 1}, pages)
		})
	}
	t.Run("a smaller default limit and a changing limit mid-walk", func(t *testing.T) {
		t.Parallel()
		store := memory.NewTelemetryStore()
		require.NoError(t, store.Start(t.Context()))
		t.Cleanup(store.Close)
		fx := seed(t, store, defaultGPUs[:1])
		h := httpapi.NewHandler(store, httpapi.Options{DefaultLimit: 10, MaxLimit: 50})
		rec := do(t, h, http.MethodGet, telemetryURL(gpu, nil), nil)
		page := decode[httpapi.TelemetryPage](t, rec)
		require.Len(t, page.Entries, 10)
		require.NotEmpty(t, page.NextCursor)
		rec = do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{"limit": {"51"}}), nil)
		requireError(t, rec, http.StatusBadRequest, "bad_request", "from 1 to 50")

		got := keys(page.Entries)
		cursor := page.NextCursor
		for i := 0; cursor != ""; i++ {
			rec := do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{"cursor": {cursor}, "limit": {fmt.Sprint(3 + i%5)}}), nil)
			require.Equal(t, http.StatusOK, rec.Code)
			page := decode[httpapi.TelemetryPage](t, rec)
			got = append(got, keys(page.Entries)...)
			cursor = page.NextCursor
		}
		require.Equal(t, fx.want(gpu, time.Time{}, time.Time{}, ""), got)
	})
}

func TestNDJSON(t *testing.T) {
	t.Parallel()
	h, fx := newMemoryAPI(t, defaultGPUs, httpapi.Options{MaxLimit: 5})
	gpu := defaultGPUs[0].uuid
	all := fx.want(gpu, time.Time{}, time.Time{}, "")
	require.Greater(t, len(all), 5, "the stream must return more than a page")
	tests := []struct {
		name   string
		params url.Values
		header http.Header
		want   []string
	}{
		{"Accept header", nil, hdr("Accept", "application/x-ndjson"), all},
		{"format parameter", url.Values{"format": {"ndjson"}}, nil, all},
		{"limit is ignored", url.Values{"format": {"ndjson"}, "limit": {"2"}}, nil, all},
		{"Accept preferring ndjson", nil, hdr("Accept", "application/json;q=0.5, application/x-ndjson"), all},
		{"window and metric", url.Values{"start_time": {rfc(instant(2))}, "end_time": {rfc(instant(7))},
			"metric_name": {"DCGM_FI_DEV_GPU_UTIL"}}, hdr("Accept", "application/x-ndjson"),
			fx.want(gpu, instant(2), instant(7), "DCGM_FI_DEV_GPU_UTIL")},
		{"empty window", url.Values{"start_time": {"2030-01-01T00:00:00Z"}}, hdr("Accept", "application/x-ndjson"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := do(t, h, http.MethodGet, telemetryURL(gpu, tt.params), tt.header)
			require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
			require.Equal(t, "application/x-ndjson", rec.Header().Get("Content-Type"))
			require.Equal(t, len(tt.want), ndjsonLines(rec.Body.String()))
			entries := readNDJSON(t, rec.Body)
			require.Equal(t, tt.want, nilIfEmpty(keys(entries)))
		})
	}
	t.Run("format=json wins over Accept", func(t *testing.T) {
		t.Parallel()
		rec := do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{"format": {"json"}}), hdr("Accept", "application/x-ndjson"))
		require.Equal(t, http.StatusOK, rec.Code)
		require.Len(t, decode[httpapi.TelemetryPage](t, rec).Entries, 5)
	})
	t.Run("a stream resumes after a page's cursor", func(t *testing.T) {
		t.Parallel()
		rec := do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{"limit": {"5"}}), nil)
		page := decode[httpapi.TelemetryPage](t, rec)
		rec = do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{"cursor": {page.NextCursor}, "format": {"ndjson"}}), nil)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Equal(t, all[5:], keys(readNDJSON(t, rec.Body)))
	})
	t.Run("unknown GPU is a JSON 404", func(t *testing.T) {
		t.Parallel()
		rec := do(t, h, http.MethodGet, telemetryURL("GPU-00000000-0000-0000-0000-000000000000", nil), hdr("Accept", "application/x-ndjson"))
		requireError(t, rec, http.StatusNotFound, "not_found", "GPU-00000000-0000-0000-0000-000000000000")
	})
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	h, _ := newMemoryAPI(t, defaultGPUs, httpapi.Options{})
	gpu := defaultGPUs[0].uuid
	other := defaultGPUs[1].uuid

	// A genuine cursor of one query, to replay against others.
	rec := do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{"limit": {"2"}, "metric_name": {"DCGM_FI_DEV_GPU_UTIL"},
		"start_time": {rfc(instant(1))}}), nil)
	require.Equal(t, http.StatusOK, rec.Code)
	cursor := decode[httpapi.TelemetryPage](t, rec).NextCursor
	require.NotEmpty(t, cursor)
	sameQuery := url.Values{"metric_name": {"DCGM_FI_DEV_GPU_UTIL"}, "start_time": {rfc(instant(1))}}
	with := func(extra ...string) url.Values {
		p := url.Values{}
		for k, v := range sameQuery {
			p[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			p.Set(extra[i], extra[i+1])
		}
		return p
	}
	b64 := base64.RawURLEncoding.EncodeToString
	tampered := []byte(cursor)
	tampered[len(tampered)/2] ^= 0x01

	tests := []struct {
		name     string
		method   string
		target   string
		status   int
		code     string
		contains string
	}{
		{"date only start", "", telemetryURL(gpu, url.Values{"start_time": {"2025-07-18"}}), 400, "bad_request", "start_time"},
		{"no zone", "", telemetryURL(gpu, url.Values{"start_time": {"2025-07-18T20:42:34"}}), 400, "bad_request", "RFC 3339"},
		{"space separator", "", telemetryURL(gpu, url.Values{"end_time": {"2025-07-18 20:42:34Z"}}), 400, "bad_request", "end_time"},
		{"unix seconds", "", telemetryURL(gpu, url.Values{"end_time": {"1752871354"}}), 400, "bad_request", "end_time"},
		{"empty time", "", telemetryURL(gpu, url.Values{"start_time": {""}}), 400, "bad_request", "start_time"},
		{"inverted window", "", telemetryURL(gpu, url.Values{"start_time": {rfc(instant(5))}, "end_time": {rfc(instant(4))}}),
			400, "bad_request", "before start_time"},
		{"limit 0", "", telemetryURL(gpu, url.Values{"limit": {"0"}}), 400, "bad_request", "limit"},
		{"limit -1", "", telemetryURL(gpu, url.Values{"limit": {"-1"}}), 400, "bad_request", "limit"},
		{"limit abc", "", telemetryURL(gpu, url.Values{"limit": {"abc"}}), 400, "bad_request", "limit"},
		{"limit 1.5", "", telemetryURL(gpu, url.Values{"limit": {"1.5"}}), 400, "bad_request", "limit"},
		{"limit 10001", "", telemetryURL(gpu, url.Values{"limit": {"10001"}}), 400, "bad_request", "from 1 to 10000"},
		{"limit huge", "", telemetryURL(gpu, url.Values{"limit": {"99999999999999999999"}}), 400, "bad_request", "limit"},
		{"garbled cursor", "", telemetryURL(gpu, with("cursor", "not a cursor!")), 400, "bad_request", "cursor"},
		{"cursor of valid base64 but not JSON", "", telemetryURL(gpu, with("cursor", b64([]byte("hello")))), 400, "bad_request", "cursor"},
		{"forged cursor, wrong version", "", telemetryURL(gpu, with("cursor", b64([]byte(`{"v":2,"ts":"2025-07-18T20:42:34Z","id":1,"q":"x"}`)))),
			400, "bad_request", "cursor"},
		{"forged cursor, extra field", "", telemetryURL(gpu, with("cursor", b64([]byte(`{"v":1,"ts":"2025-07-18T20:42:34Z","id":1,"q":"x","x":1}`)))),
			400, "bad_request", "cursor"},
		{"forged cursor, wrong fingerprint", "", telemetryURL(gpu, with("cursor", b64([]byte(`{"v":1,"ts":"2025-07-18T20:42:34Z","id":1,"q":"AAAAAAAAAAAAAAAA"}`)))),
			400, "bad_request", "does not match this query"},
		{"tampered cursor", "", telemetryURL(gpu, with("cursor", string(tampered))), 400, "bad_request", "cursor"},
		{"oversized cursor", "", telemetryURL(gpu, with("cursor", strings.Repeat("A", 4096))), 400, "bad_request", "cursor"},
		{"cursor of another metric", "", telemetryURL(gpu, with("cursor", cursor, "metric_name", "DCGM_FI_DEV_FB_USED")),
			400, "bad_request", "cursor does not match this query"},
		{"cursor of another window", "", telemetryURL(gpu, with("cursor", cursor, "start_time", rfc(instant(0)))),
			400, "bad_request", "cursor does not match this query"},
		{"cursor with an added end", "", telemetryURL(gpu, with("cursor", cursor, "end_time", rfc(instant(30)))),
			400, "bad_request", "cursor does not match this query"},
		{"cursor of another GPU", "", telemetryURL(other, with("cursor", cursor)), 400, "bad_request", "cursor does not match this query"},
		{"metric name with a space", "", telemetryURL(gpu, url.Values{"metric_name": {"DCGM FI"}}), 400, "bad_request", "metric_name"},
		{"metric name with a quote", "", telemetryURL(gpu, url.Values{"metric_name": {"x'; DROP TABLE telemetry;--"}}), 400, "bad_request", "metric_name"},
		{"empty metric name", "", telemetryURL(gpu, url.Values{"metric_name": {""}}), 400, "bad_request", "metric_name"},
		{"metric name too long", "", telemetryURL(gpu, url.Values{"metric_name": {strings.Repeat("M", 129)}}), 400, "bad_request", "metric_name"},
		{"gpu id too long", "", telemetryURL(strings.Repeat("G", 129), nil), 400, "bad_request", "at most 128"},
		{"gpu id with a control character", "", "/api/v1/gpus/GPU-%01abc/telemetry", 400, "bad_request", "control"},
		{"unknown parameter", "", telemetryURL(gpu, url.Values{"start": {rfc(instant(1))}}), 400, "bad_request", `unknown query parameter "start"`},
		{"repeated parameter", "", telemetryURL(gpu, url.Values{"limit": {"1", "2"}}), 400, "bad_request", "limit: given 2 times"},
		{"bad escape in the query", "", telemetryURL(gpu, nil) + "?limit=5&cursor=%zz", 400, "bad_request", `query string: invalid URL escape "%zz"`},
		{"semicolon in the query", "", telemetryURL(gpu, nil) + "?limit=5;cursor=x", 400, "bad_request", "query string: invalid semicolon separator"},
		{"unknown format", "", telemetryURL(gpu, url.Values{"format": {"csv"}}), 400, "bad_request", "format"},
		{"unknown GPU", "", telemetryURL("GPU-00000000-0000-0000-0000-000000000000", nil), 404, "not_found", "not found"},
		{"unknown route", "", "/api/v2/gpus", 404, "not_found", "no route"},
		{"GPU without telemetry suffix", "", "/api/v1/gpus/" + gpu, 404, "not_found", "no route"},
		{"trailing slash", "", "/api/v1/gpus/", 404, "not_found", "no route"},
		{"POST the list", http.MethodPost, "/api/v1/gpus", 405, "method_not_allowed", "allowed: GET"},
		{"DELETE telemetry", http.MethodDelete, telemetryURL(gpu, nil), 405, "method_not_allowed", "allowed: GET"},
		{"POST the spec", http.MethodPost, "/swagger/doc.json", 405, "method_not_allowed", "allowed: GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			rec := do(t, h, method, tt.target, nil)
			requireError(t, rec, tt.status, tt.code, tt.contains)
			if tt.status == http.StatusMethodNotAllowed {
				require.Equal(t, "GET", rec.Header().Get("Allow"))
			}
		})
	}
}

// faultyReader fails the way a broken store does.
type faultyReader struct {
	err      error
	streamed int // rows a stream yields before failing
	ports.TelemetryReader
}

func (f faultyReader) ListGPUs(context.Context) ([]domain.GPU, error) { return nil, f.err }

func (f faultyReader) QueryGPUs(context.Context, ports.GPUQuery) (ports.GPUPage, error) {
	return ports.GPUPage{}, f.err
}

func (f faultyReader) ListMetrics(context.Context) ([]domain.MetricSeen, error) { return nil, f.err }

func (f faultyReader) LatestValues(context.Context, string) ([]domain.LatestValue, error) {
	return nil, f.err
}

func (f faultyReader) QuerySeries(context.Context, ports.SeriesQuery) (domain.Series, error) {
	return domain.Series{}, f.err
}

func (f faultyReader) FleetSummary(context.Context, string, int) (domain.FleetSummary, error) {
	return domain.FleetSummary{}, f.err
}

func (f faultyReader) QueryTelemetry(context.Context, ports.TelemetryQuery) (ports.TelemetryPage, error) {
	return ports.TelemetryPage{}, f.err
}

func (f faultyReader) StreamTelemetry(_ context.Context, q ports.TelemetryQuery, fn func(domain.Record) error) error {
	for i := range f.streamed {
		v := float64(i)
		if err := fn(domain.Record{ID: int64(i + 1), Point: domain.Point{GPUUUID: q.GPUUUID, Timestamp: instant(i),
			MetricName: "DCGM_FI_DEV_GPU_UTIL", Value: &v}}); err != nil {
			return err
		}
	}
	return f.err
}

func TestStoreErrors(t *testing.T) {
	t.Parallel()
	const leak = `ERROR: relation "telemetry" does not exist: SELECT id FROM telemetry WHERE gpu_uuid = $1`
	gpu := defaultGPUs[0].uuid
	tests := []struct {
		name     string
		err      error
		status   int
		code     string
		contains string
	}{
		{"unavailable", fmt.Errorf("query: %w", ports.ErrUnavailable), 503, "unavailable", "retry"},
		{"closed", fmt.Errorf("store: %w", ports.ErrClosed), 503, "unavailable", "retry"},
		{"timeout", fmt.Errorf("query: %w", context.DeadlineExceeded), 504, "timeout", "narrow the window"},
		{"reader rejects", fmt.Errorf("%s: %w", leak, ports.ErrInvalidArgument), 400, "bad_request", "invalid query"},
		{"anything else", errors.New(leak), 500, "internal", "internal error"},
	}
	for _, tt := range tests {
		for _, target := range []string{"/api/v1/gpus", telemetryURL(gpu, nil), telemetryURL(gpu, url.Values{"format": {"ndjson"}}),
			"/api/v1/metrics", "/api/v1/gpus/" + gpu + "/latest", "/api/v1/fleet/summary?metric_name=DCGM_FI_DEV_GPU_TEMP",
			"/api/v1/gpus/" + gpu + "/series?metric_name=DCGM_FI_DEV_GPU_TEMP&start_time=2025-07-18T20:00:00Z&end_time=2025-07-18T21:00:00Z"} {
			t.Run(tt.name+" "+target, func(t *testing.T) {
				t.Parallel()
				h := httpapi.NewHandler(faultyReader{err: tt.err}, httpapi.Options{Logger: discardLogger()})
				rec := do(t, h, http.MethodGet, target, nil)
				requireError(t, rec, tt.status, tt.code, tt.contains)
				require.NotContains(t, rec.Body.String(), "SELECT")
				require.NotContains(t, rec.Body.String(), "relation")
				if tt.status == http.StatusServiceUnavailable {
					require.NotEmpty(t, rec.Header().Get("Retry-After"))
				}
			})
		}
	}
}

func TestNDJSONFailureMidStreamAbortsTheConnection(t *testing.T) {
	t.Parallel()
	reader := faultyReader{err: fmt.Errorf("stream: %w", ports.ErrUnavailable), streamed: 3}
	srv := httptest.NewServer(httpapi.NewHandler(reader, httpapi.Options{Logger: discardLogger()}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name string
		gzip bool
	}{{"identity", false}, {"gzip", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodGet, srv.URL+telemetryURL("GPU-x", url.Values{"format": {"ndjson"}}), nil)
			require.NoError(t, err)
			if tt.gzip {
				// Set by hand, the transport leaves decompression to us.
				req.Header.Set("Accept-Encoding", "gzip")
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var body io.Reader = resp.Body
			if tt.gzip {
				require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
				body, err = gzipReader(resp.Body)
				require.NoError(t, err)
			}
			_, err = io.ReadAll(body)
			require.Error(t, err, "a stream cut by a store failure must not read as complete")
		})
	}
}

func TestQueryReachesTheReader(t *testing.T) {
	t.Parallel()
	gpu := defaultGPUs[0].uuid
	var got ports.TelemetryQuery
	reader := recordingReader{got: &got}
	h := httpapi.NewHandler(reader, httpapi.Options{})
	rec := do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{
		"start_time": {"2025-07-18T22:42:34.5+02:00"}, "end_time": {"2025-07-18T20:43:00Z"},
		"metric_name": {"DCGM_FI_DEV_GPU_TEMP"}, "limit": {"25"},
	}), nil)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, ports.TelemetryQuery{
		GPUUUID: gpu, MetricName: "DCGM_FI_DEV_GPU_TEMP", Limit: 25,
		Start: time.Date(2025, 7, 18, 20, 42, 34, 500000000, time.UTC),
		End:   time.Date(2025, 7, 18, 20, 43, 0, 0, time.UTC),
	}, got)
	page := decode[httpapi.TelemetryPage](t, rec)
	require.NotEmpty(t, page.NextCursor, "a reader saying more may follow yields a cursor")
}

// recordingReader keeps the query it got (tests call it from one goroutine).
type recordingReader struct {
	got *ports.TelemetryQuery
	ports.TelemetryReader
}

func (r recordingReader) QueryTelemetry(_ context.Context, q ports.TelemetryQuery) (ports.TelemetryPage, error) {
	*r.got = q
	return ports.TelemetryPage{Next: &ports.Cursor{Timestamp: q.Start, ID: 1}}, nil
}
