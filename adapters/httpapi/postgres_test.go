package httpapi_test

// Integration tests: the API over the PostgreSQL telemetry store on a real,
// freshly migrated database. This file is the one place an httpapi test
// imports another adapter besides memory: the brief asks for the HTTP
// behaviour to be checked end to end on the production store.

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// pgGPUs are 2,010 rows: 1,200 + 450 + 360.
var pgGPUs = []gpuSpec{
	{"GPU-5fd4f087-86f3-7a43-b711-4771313afc50", "mtv5-dgx1-hgpu-031", 0, 400},
	{"GPU-bc7a12ab-4998-fdc5-0785-2678a929a142", "mtv5-dgx1-hgpu-031", 1, 150},
	{"GPU-2c1e5b3a-0f9d-7e6c-1a2b-3c4d5e6f7a8b", "mtv5-dgx1-hgpu-032", 0, 120},
}

func TestPostgresIntegration(t *testing.T) {
	t.Parallel()
	// An exact registry: the test compares last_seen to the microsecond.
	store := postgres.NewTelemetryStoreWith(pgtest.NewPool(t), discardLogger(), postgres.Options{})
	fx := seed(t, store, pgGPUs)
	h := httpapi.NewHandler(store, httpapi.Options{Logger: discardLogger()})

	t.Run("list GPUs", func(t *testing.T) {
		t.Parallel()
		rec := do(t, h, http.MethodGet, "/api/v1/gpus", nil)
		require.Equal(t, http.StatusOK, rec.Code)
		got := decode[httpapi.GPUList](t, rec).GPUs
		require.Len(t, got, len(fx.gpus))
		for i, g := range fx.gpus {
			require.Equal(t, g.UUID, got[i].ID)
			require.Equal(t, g.Hostname, got[i].Hostname)
			require.Equal(t, g.GPUIndex, got[i].GPUIndex)
			require.Equal(t, g.Device, got[i].Device)
			require.Equal(t, g.ModelName, got[i].ModelName)
			require.True(t, g.LastSeen.Equal(got[i].LastSeen), "last_seen %s, want %s", got[i].LastSeen, g.LastSeen)
		}
	})

	windows := []struct {
		name       string
		gpu        string
		start, end time.Time
		metric     string
	}{
		{"whole history", pgGPUs[0].uuid, time.Time{}, time.Time{}, ""},
		{"bounds on samples with fractions", pgGPUs[0].uuid, instant(101), instant(203), ""},
		{"bounds on whole seconds", pgGPUs[1].uuid, instant(20), instant(64), ""},
		{"one instant", pgGPUs[2].uuid, instant(7), instant(7), ""},
		{"one metric", pgGPUs[0].uuid, instant(50), time.Time{}, "DCGM_FI_DEV_POWER_USAGE"},
		{"nothing", pgGPUs[0].uuid, instant(1000), time.Time{}, ""},
	}
	for _, w := range windows {
		t.Run("window "+w.name, func(t *testing.T) {
			t.Parallel()
			p := url.Values{}
			if !w.start.IsZero() {
				p.Set("start_time", rfc(w.start))
			}
			if !w.end.IsZero() {
				p.Set("end_time", rfc(w.end))
			}
			if w.metric != "" {
				p.Set("metric_name", w.metric)
			}
			want := fx.want(w.gpu, w.start, w.end, w.metric)

			// One page holding everything is the store's (timestamp, id) order.
			one := url.Values{"limit": {"10000"}}
			for k, v := range p {
				one[k] = v
			}
			rec := do(t, h, http.MethodGet, telemetryURL(w.gpu, one), nil)
			require.Equal(t, http.StatusOK, rec.Code)
			page := decode[httpapi.TelemetryPage](t, rec)
			require.Empty(t, page.NextCursor)
			whole := keys(page.Entries)
			// The same rows as the fixture (ids decide ties, so compare as
			// sets), in timestamp order, inside the inclusive window.
			require.ElementsMatch(t, want, whole)
			for i, e := range page.Entries {
				require.Equal(t, w.gpu, e.GPUUUID)
				if i > 0 {
					require.False(t, e.Timestamp.Before(page.Entries[i-1].Timestamp))
				}
			}
			if !w.start.IsZero() && len(want) > 0 {
				require.True(t, page.Entries[0].Timestamp.Equal(w.start), "the start bound is inclusive")
			}
			if !w.end.IsZero() && len(want) > 0 {
				require.True(t, page.Entries[len(page.Entries)-1].Timestamp.Equal(w.end), "the end bound is inclusive")
			}

			// Walking pages of any size yields the same sequence, each row once.
			for _, limit := range []string{"7", "100", "1000"} {
				lp := url.Values{"limit": {limit}}
				for k, v := range p {
					lp[k] = v
				}
				entries, _ := walk(t, h, w.gpu, lp)
				require.Equal(t, nilIfEmpty(whole), nilIfEmpty(keys(entries)), "limit %s", limit)
			}

			// The NDJSON stream is every row, in the same order.
			rec = do(t, h, http.MethodGet, telemetryURL(w.gpu, p), hdr("Accept", "application/x-ndjson"))
			require.Equal(t, http.StatusOK, rec.Code)
			require.Equal(t, nilIfEmpty(whole), nilIfEmpty(keys(readNDJSON(t, rec.Body))))
		})
	}

	t.Run("gzipped NDJSON over a real connection", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		gpu := pgGPUs[0].uuid
		// The transport asks for gzip and decompresses transparently.
		resp, err := srv.Client().Get(srv.URL + telemetryURL(gpu, url.Values{"format": {"ndjson"}}))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.True(t, resp.Uncompressed, "the response was gzipped")
		got := keys(readNDJSON(t, resp.Body))
		require.Len(t, got, 1200)
		require.ElementsMatch(t, fx.want(gpu, time.Time{}, time.Time{}, ""), got)
	})

	t.Run("unknown GPU", func(t *testing.T) {
		t.Parallel()
		for _, header := range []http.Header{nil, hdr("Accept", "application/x-ndjson")} {
			rec := do(t, h, http.MethodGet, telemetryURL("GPU-00000000-0000-0000-0000-000000000000", nil), header)
			requireError(t, rec, http.StatusNotFound, "not_found", "not found")
		}
	})

	t.Run("a cursor continues only its own query", func(t *testing.T) {
		t.Parallel()
		gpu := pgGPUs[0].uuid
		rec := do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{"limit": {"10"}}), nil)
		cursor := decode[httpapi.TelemetryPage](t, rec).NextCursor
		require.NotEmpty(t, cursor)
		rec = do(t, h, http.MethodGet, telemetryURL(pgGPUs[1].uuid, url.Values{"cursor": {cursor}}), nil)
		requireError(t, rec, http.StatusBadRequest, "bad_request", "cursor does not match this query")
		rec = do(t, h, http.MethodGet, telemetryURL(gpu, url.Values{"cursor": {cursor}, "limit": {"5"}}), nil)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Len(t, decode[httpapi.TelemetryPage](t, rec).Entries, 5)
	})
}
