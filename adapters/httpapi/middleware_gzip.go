package httpapi

import (
	"compress/gzip"
	"mime"
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzhttp"
)

// compress gzips responses for clients that accept it (gzhttp; gzip only,
// no zstd: the API documents gzip), of a compressible type (JSON, NDJSON,
// HTML, JS, CSS, YAML, text) and not already encoded. Every size is
// compressed (MinSize 0), as before gzhttp: an error body is JSON too. NDJSON
// streams are compressed as they go: a flush flushes the gzip stream, then
// the connection, so every flushed line reaches the client whole. BestSpeed:
// telemetry JSON is so repetitive that level 1 gets most of the ratio for a
// fraction of the CPU. A handler that aborts (panics) leaves the chunked
// body unterminated, so a cut stream never reads as complete.
var compress = func() func(http.Handler) http.HandlerFunc {
	w, err := gzhttp.NewWrapper(
		gzhttp.MinSize(0),
		gzhttp.CompressionLevel(gzip.BestSpeed),
		gzhttp.EnableZstd(false),
		gzhttp.ContentTypeFilter(compressible),
	)
	if err != nil {
		panic(err) // constant options: a bug every test would catch
	}
	return w
}()

// compressible reports whether a response of contentType is worth gzipping.
func compressible(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"), mt == mediaJSON, mt == mediaNDJSON,
		mt == "application/javascript", mt == "application/yaml", strings.HasSuffix(mt, "+json"):
		return true
	}
	return false
}
