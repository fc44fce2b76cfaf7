package httpapi_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/gpufleet/telemetry/adapters/httpapi"
)

// BenchmarkTelemetry measures the API's own cost (parsing, encoding, gzip)
// over the memory store: a 1,000-entry JSON page and a 1,200-entry stream.
func BenchmarkTelemetry(b *testing.B) {
	specs := []gpuSpec{{"GPU-5fd4f087-86f3-7a43-b711-4771313afc50", "mtv5-dgx1-hgpu-031", 0, 400}}
	store := newStore(b)
	seed(b, store, specs)
	h := httpapi.NewHandler(store, httpapi.Options{Logger: discardLogger()})
	gpu := specs[0].uuid
	cases := []struct {
		name   string
		target string
		header http.Header
	}{
		{"page json", telemetryURL(gpu, url.Values{"limit": {"1000"}}), nil},
		{"page gzip", telemetryURL(gpu, url.Values{"limit": {"1000"}}), hdr("Accept-Encoding", "gzip")},
		{"stream ndjson", telemetryURL(gpu, url.Values{"format": {"ndjson"}}), nil},
		{"list gpus", "/api/v1/gpus", nil},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rec := do(b, h, http.MethodGet, c.target, c.header)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				b.SetBytes(int64(rec.Body.Len()))
			}
		})
	}
}
