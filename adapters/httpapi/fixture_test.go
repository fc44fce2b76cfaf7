package httpapi_test

import (
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// base is the shipped DCGM dump's first timestamp.
var base = time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC)

var metrics = []string{"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED"}

// gpuSpec describes one seeded GPU.
type gpuSpec struct {
	uuid, host string
	index      int
	instants   int // distinct timestamps; every one carries every metric
}

// fixture is what a seeded store holds, in the order the API must return it.
type fixture struct {
	gpus []domain.GPU
	// rows per GPU UUID in (timestamp, id) order. LabelsRaw is unique per
	// row ("seq=N"), so tests compare sequences of it.
	rows map[string][]domain.Record
}

// defaultGPUs is a small cluster: two GPUs on one host, one on another,
// listed in the order ListGPUs must return them.
var defaultGPUs = []gpuSpec{
	{"GPU-5fd4f087-86f3-7a43-b711-4771313afc50", "mtv5-dgx1-hgpu-031", 0, 40},
	{"GPU-bc7a12ab-4998-fdc5-0785-2678a929a142", "mtv5-dgx1-hgpu-031", 1, 8},
	{"GPU-2c1e5b3a-0f9d-7e6c-1a2b-3c4d5e6f7a8b", "mtv5-dgx1-hgpu-032", 0, 5},
}

// instant is the i-th sample time of a GPU: one second apart, every odd one
// with a fractional part, so both bound formats get exercised.
func instant(i int) time.Time {
	t := base.Add(time.Duration(i) * time.Second)
	if i%2 == 1 {
		t = t.Add(250500 * time.Microsecond)
	}
	return t
}

// seed writes every row of specs into w in shuffled order and small batches
// (so ids do not follow timestamps), and returns what the API must serve.
func seed(t testing.TB, w ports.TelemetryWriter, specs []gpuSpec) fixture {
	t.Helper()
	type row struct {
		rec domain.Record
		seq int
	}
	var all []row
	fx := fixture{rows: map[string][]domain.Record{}}
	for _, g := range specs {
		for i := range g.instants {
			for _, m := range metrics {
				seq := len(all)
				v := float64(seq) + 0.5
				val := &v
				if seq%17 == 0 {
					val = nil // a blank sample must come back as null
				}
				all = append(all, row{seq: seq, rec: domain.Record{
					MsgUUID: uuid.New(),
					Point: domain.Point{
						Timestamp: instant(i), MetricName: m, GPUIndex: g.index,
						Device: fmt.Sprintf("nvidia%d", g.index), GPUUUID: g.uuid,
						ModelName: "NVIDIA H100 80GB HBM3", Hostname: g.host, Value: val,
						LabelsRaw: fmt.Sprintf("seq=%d", seq),
					},
				}})
			}
		}
		fx.gpus = append(fx.gpus, domain.GPU{UUID: g.uuid, Hostname: g.host, GPUIndex: g.index,
			Device: fmt.Sprintf("nvidia%d", g.index), ModelName: "NVIDIA H100 80GB HBM3",
			LastSeen: instant(g.instants - 1)})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	// Ids are assigned in write order, so the insert position is the tiebreak.
	ctx := context.Background()
	for start := 0; start < len(all); start += 97 {
		batch := make([]domain.Record, 0, 97)
		for k, r := range all[start:min(start+97, len(all))] {
			all[start+k].seq = start + k
			batch = append(batch, r.rec)
		}
		_, err := w.WriteBatch(ctx, batch)
		require.NoError(t, err)
	}
	slices.SortFunc(all, func(a, b row) int {
		return cmp.Or(a.rec.Timestamp.Compare(b.rec.Timestamp), cmp.Compare(a.seq, b.seq))
	})
	for _, r := range all {
		fx.rows[r.rec.GPUUUID] = append(fx.rows[r.rec.GPUUUID], r.rec)
	}
	return fx
}

// want filters a GPU's rows like the API should.
func (f fixture) want(gpu string, start, end time.Time, metric string) []string {
	var out []string
	for _, r := range f.rows[gpu] {
		if (!start.IsZero() && r.Timestamp.Before(start)) || (!end.IsZero() && r.Timestamp.After(end)) {
			continue
		}
		if metric != "" && r.MetricName != metric {
			continue
		}
		out = append(out, r.LabelsRaw)
	}
	return out
}

func keys(entries []httpapi.TelemetryEntry) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.LabelsRaw)
	}
	return out
}

// newMemoryAPI serves a seeded memory store.
func newMemoryAPI(t *testing.T, specs []gpuSpec, opts httpapi.Options) (http.Handler, fixture) {
	t.Helper()
	store := memory.NewTelemetryStore()
	require.NoError(t, store.Start(t.Context()))
	t.Cleanup(store.Close)
	fx := seed(t, store, specs)
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	return httpapi.NewHandler(store, opts), fx
}

// do serves one request in-process.
func do(t testing.TB, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	body := rec.Body.Bytes()
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(rec.Body)
		require.NoError(t, err)
		body, err = io.ReadAll(zr)
		require.NoError(t, err)
	}
	require.NoError(t, json.Unmarshal(body, &v), "body: %s", body)
	return v
}

// requireError checks a JSON error response.
func requireError(t *testing.T, rec *httptest.ResponseRecorder, status int, code, contains string) {
	t.Helper()
	require.Equal(t, status, rec.Code, "body: %s", rec.Body)
	require.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"))
	body := decode[httpapi.ErrorResponse](t, rec)
	require.Equal(t, code, body.Error.Code)
	require.Contains(t, body.Error.Message, contains)
	require.NotEmpty(t, body.Error.RequestID)
}

// telemetryURL builds a telemetry request URL.
func telemetryURL(gpu string, params url.Values) string {
	u := "/api/v1/gpus/" + url.PathEscape(gpu) + "/telemetry"
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	return u
}

// walk follows next_cursor to the end and returns every entry and the
// number of pages.
func walk(t *testing.T, h http.Handler, gpu string, params url.Values) ([]httpapi.TelemetryEntry, int) {
	t.Helper()
	var (
		all   []httpapi.TelemetryEntry
		pages int
	)
	p := url.Values{}
	for k, v := range params {
		p[k] = slices.Clone(v)
	}
	for {
		rec := do(t, h, http.MethodGet, telemetryURL(gpu, p), nil)
		require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
		page := decode[httpapi.TelemetryPage](t, rec)
		require.Equal(t, gpu, page.GPUID)
		pages++
		require.Less(t, pages, 100000, "pagination does not end")
		all = append(all, page.Entries...)
		if page.NextCursor == "" {
			return all, pages
		}
		p.Set("cursor", page.NextCursor)
	}
}

// readNDJSON parses an NDJSON body.
func readNDJSON(t *testing.T, r io.Reader) []httpapi.TelemetryEntry {
	t.Helper()
	dec := json.NewDecoder(r)
	var out []httpapi.TelemetryEntry
	for {
		var e httpapi.TelemetryEntry
		err := dec.Decode(&e)
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out = append(out, e)
	}
}

func rfc(t time.Time) string { return t.Format(time.RFC3339Nano) }

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func ndjsonLines(body string) int { return strings.Count(body, "\n") }

func decodeInto(body string, v any) error { return json.Unmarshal([]byte(body), v) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func gzipReader(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }

var timeZero time.Time

// newStore is an empty memory store closed at cleanup.
func newStore(t testing.TB) *memory.TelemetryStore {
	t.Helper()
	s := memory.NewTelemetryStore()
	require.NoError(t, s.Start(t.Context()))
	t.Cleanup(s.Close)
	return s
}
