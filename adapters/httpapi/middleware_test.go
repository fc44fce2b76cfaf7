package httpapi_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/ports"
)

func TestGzipNegotiation(t *testing.T) {
	t.Parallel()
	h, fx := newMemoryAPI(t, defaultGPUs, httpapi.Options{})
	gpu := defaultGPUs[0].uuid
	all := fx.want(gpu, timeZero, timeZero, "")
	tests := []struct {
		name     string
		target   string
		encoding string
		wantGzip bool
	}{
		{"gzip accepted", telemetryURL(gpu, nil), "gzip", true},
		{"among others", telemetryURL(gpu, nil), "br;q=1.0, gzip;q=0.8, *;q=0.1", true},
		{"upper case", telemetryURL(gpu, nil), "GZIP", true},
		{"refused with q=0", telemetryURL(gpu, nil), "gzip;q=0", false},
		{"not offered", telemetryURL(gpu, nil), "", false},
		{"other codings only", telemetryURL(gpu, nil), "br, deflate", false},
		{"ndjson stream", telemetryURL(gpu, url.Values{"format": {"ndjson"}}), "gzip", true},
		{"error body", telemetryURL(gpu, url.Values{"limit": {"0"}}), "gzip", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := do(t, h, http.MethodGet, tt.target, hdr("Accept-Encoding", tt.encoding))
			require.Contains(t, rec.Header().Values("Vary"), "Accept-Encoding")
			body := rec.Body.Bytes()
			if !tt.wantGzip {
				require.Empty(t, rec.Header().Get("Content-Encoding"))
			} else {
				require.Equal(t, "gzip", rec.Header().Get("Content-Encoding"))
				require.Empty(t, rec.Header().Get("Content-Length"))
				zr, err := gzip.NewReader(bytes.NewReader(body))
				require.NoError(t, err)
				body, err = io.ReadAll(zr)
				require.NoError(t, err, "the gzip stream must be complete")
			}
			switch {
			case rec.Code != http.StatusOK:
				var e httpapi.ErrorResponse
				require.NoError(t, json.Unmarshal(body, &e))
				require.Equal(t, "bad_request", e.Error.Code)
			case strings.Contains(tt.target, "ndjson"):
				require.Equal(t, all, keys(readNDJSON(t, bytes.NewReader(body))))
			default:
				var page httpapi.TelemetryPage
				require.NoError(t, json.Unmarshal(body, &page))
				require.Equal(t, all, keys(page.Entries))
			}
		})
	}
}

// steppedReader streams rows in stages: after the first, each stage waits
// until the test, having read the rows before it, says go on.
type steppedReader struct {
	ports.TelemetryReader
	stages []int
	next   chan struct{}
}

func (s steppedReader) StreamTelemetry(ctx context.Context, q ports.TelemetryQuery, fn func(domain.Record) error) error {
	id := 0
	for i, n := range s.stages {
		if i > 0 {
			select {
			case <-s.next:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		for range n {
			id++
			v := float64(id)
			if err := fn(domain.Record{ID: int64(id), Point: domain.Point{GPUUUID: q.GPUUUID, Timestamp: instant(id),
				MetricName: "DCGM_FI_DEV_GPU_UTIL", Value: &v}}); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestGzippedNDJSONArrivesIncrementally(t *testing.T) {
	t.Parallel()
	// One row (flushed as the stream starts), 511 more (the 512th is a flush
	// by count), then the rest. The server writes a stage only after the
	// client has read the one before, so a compressor that held the stream
	// back until the end would hang here until the guard below, and fail.
	stages := []int{1, 511, 10}
	reader := steppedReader{stages: stages, next: make(chan struct{})}
	srv := httptest.NewServer(httpapi.NewHandler(reader, httpapi.Options{Logger: discardLogger()}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a deadlock guard, not a timing check
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+telemetryURL("GPU-x", url.Values{"format": {"ndjson"}}), nil)
	require.NoError(t, err)
	resp, err := srv.Client().Do(req) // the transport asks for gzip and decompresses
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, resp.Uncompressed, "the stream was gzipped")
	lines := bufio.NewReader(resp.Body)
	read := 0
	for i, n := range stages {
		if i > 0 {
			select {
			case reader.next <- struct{}{}:
			case <-ctx.Done():
				t.Fatalf("the handler stopped before stage %d", i)
			}
		}
		for range n {
			line, err := lines.ReadString('\n')
			require.NoError(t, err, "row %d must reach the client before the server writes the next stage", read+1)
			var e httpapi.TelemetryEntry
			require.NoError(t, json.Unmarshal([]byte(line), &e))
			read++
			require.EqualValues(t, read, *e.Value)
		}
	}
	_, err = lines.ReadString('\n')
	require.ErrorIs(t, err, io.EOF, "the stream ends whole")
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	h, _ := newMemoryAPI(t, nil, httpapi.Options{})
	uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	tests := []struct {
		name   string
		sent   string
		echoed bool
	}{
		{"uuid is echoed", "0b5f8f9e-3c1d-4f53-9a57-8d0b8d3f1c2a", true},
		{"opaque token is echoed", "req_01J2ABCDEF:7/x+y=", true},
		{"none: one is generated", "", false},
		{"spaces: replaced", "hello world", false},
		{"log injection: replaced", "abc\" level=ERROR msg=pwned", false},
		{"too long: replaced", strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, target := range []string{"/api/v1/gpus", "/nope"} {
				var header http.Header
				if tt.sent != "" {
					header = hdr("X-Request-Id", tt.sent)
				}
				rec := do(t, h, http.MethodGet, target, header)
				got := rec.Header().Get("X-Request-Id")
				if tt.echoed {
					require.Equal(t, tt.sent, got)
				} else {
					require.Regexp(t, uuidRE, got)
				}
				if rec.Code != http.StatusOK {
					require.Equal(t, got, decode[httpapi.ErrorResponse](t, rec).Error.RequestID)
				}
			}
		})
	}
}

func TestMetricsAndAccessLog(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer // written by the handler on the test goroutine only
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := newStore(t)
	h := httpapi.NewHandler(store, httpapi.Options{Registerer: reg, Logger: log})
	// A second API on the same registry reuses the collector.
	h2 := httpapi.NewHandler(store, httpapi.Options{Registerer: reg, Logger: log})

	gpu := "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
	require.Equal(t, http.StatusOK, do(t, h, http.MethodGet, "/api/v1/gpus", nil).Code)
	require.Equal(t, http.StatusOK, do(t, h2, http.MethodGet, "/api/v1/gpus", nil).Code)
	require.Equal(t, http.StatusNotFound, do(t, h, http.MethodGet, telemetryURL(gpu, nil), nil).Code)
	require.Equal(t, http.StatusNotFound, do(t, h, http.MethodGet, "/wp-admin/"+gpu, nil).Code)
	require.Equal(t, http.StatusMethodNotAllowed, do(t, h, "PROPFIND", "/api/v1/gpus", nil).Code)

	counts := histogramCounts(t, reg, "apigw_http_request_duration_seconds")
	require.Equal(t, map[string]uint64{
		"route=/api/v1/gpus,method=GET,code=200":                2,
		"route=/api/v1/gpus/{id}/telemetry,method=GET,code=404": 1,
		"route=unmatched,method=GET,code=404":                   1,
		"route=unmatched,method=OTHER,code=405":                 1,
	}, counts)

	promxtest.RequireLintClean(t, reg)

	var lines []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		if m["msg"] == "http request" {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 5)
	first := lines[0]
	require.Equal(t, "GET", first["method"])
	require.Equal(t, "/api/v1/gpus", first["route"])
	require.EqualValues(t, 200, first["status"])
	require.EqualValues(t, len(`{"gpus":[]}`+"\n"), first["bytes"])
	require.Contains(t, first, "duration")
	require.NotEmpty(t, first["request_id"])
	require.Equal(t, "/api/v1/gpus/{id}/telemetry", lines[2]["route"])
	require.EqualValues(t, 404, lines[2]["status"])
}

// histogramCounts maps "route=…,method=…,code=…" to observation counts.
func histogramCounts(t *testing.T, g prometheus.Gatherer, name string) map[string]uint64 {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	out := map[string]uint64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		require.Equal(t, dto.MetricType_HISTOGRAM, f.GetType())
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			key := "route=" + labels["route"] + ",method=" + labels["method"] + ",code=" + labels["code"]
			out[key] = m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

func TestSwaggerUI(t *testing.T) {
	t.Parallel()
	h, _ := newMemoryAPI(t, nil, httpapi.Options{})
	tests := []struct {
		name        string
		target      string
		status      int
		location    string
		contentType string
		contains    string
	}{
		{"bare prefix redirects", "/swagger", http.StatusMovedPermanently, "/swagger/index.html", "", ""},
		{"prefix redirects", "/swagger/", http.StatusMovedPermanently, "/swagger/index.html", "", ""},
		{"index", "/swagger/index.html", http.StatusOK, "", "text/html; charset=utf-8", "swagger-ui"},
		{"ui bundle", "/swagger/swagger-ui-bundle.js", http.StatusOK, "", "application/javascript", ""},
		{"spec", "/swagger/doc.json", http.StatusOK, "", "application/json; charset=utf-8", `"title": "GPU Telemetry API"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := do(t, h, http.MethodGet, tt.target, nil)
			require.Equal(t, tt.status, rec.Code)
			if tt.location != "" {
				require.Equal(t, tt.location, rec.Header().Get("Location"))
			}
			if tt.contentType != "" {
				require.Equal(t, tt.contentType, rec.Header().Get("Content-Type"))
			}
			require.Contains(t, rec.Body.String(), tt.contains)
		})
	}
	t.Run("spec lists the API", func(t *testing.T) {
		t.Parallel()
		var spec struct {
			Paths map[string]map[string]struct {
				Produces   []string `json:"produces"`
				Parameters []struct {
					Name    string `json:"name"`
					Default any    `json:"default"`
					Maximum *int   `json:"maximum"`
				} `json:"parameters"`
			} `json:"paths"`
			Definitions map[string]any `json:"definitions"`
		}
		rec := do(t, h, http.MethodGet, "/swagger/doc.json", nil)
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &spec))
		require.Contains(t, spec.Paths, "/api/v1/gpus")
		op := spec.Paths["/api/v1/gpus/{id}/telemetry"]["get"]
		require.ElementsMatch(t, []string{"application/json", "application/x-ndjson"}, op.Produces)
		var limitOK bool
		for _, p := range op.Parameters {
			if p.Name == "limit" {
				require.EqualValues(t, httpapi.DefaultLimit, p.Default)
				require.NotNil(t, p.Maximum)
				require.Equal(t, httpapi.MaxLimit, *p.Maximum)
				limitOK = true
			}
		}
		require.True(t, limitOK, "limit is documented")
		for _, m := range []string{"httpapi.GPUList", "httpapi.TelemetryPage", "httpapi.TelemetryEntry", "httpapi.ErrorResponse"} {
			require.Contains(t, spec.Definitions, m)
		}
	})
}
