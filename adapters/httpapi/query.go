package httpapi

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gpufleet/telemetry/ports"
)

// Limits and formats of the telemetry query parameters.
const (
	// DefaultLimit is the page size when the client gives none.
	DefaultLimit = 1000
	// MaxLimit is the largest page a client may ask for.
	MaxLimit = 10000
	// maxGPUIDLen bounds the {id} path segment (real UUIDs are 40 bytes).
	maxGPUIDLen = 128

	mediaJSON   = "application/json"
	mediaNDJSON = "application/x-ndjson"
)

var metricNamePattern = regexp.MustCompile(`^[A-Za-z0-9_:.-]{1,128}$`)

// telemetryParams lists every query parameter the telemetry route knows;
// anything else is rejected so that a typo (start=, end_date=) cannot
// silently widen the window.
var telemetryParams = []string{"start_time", "end_time", "metric_name", "limit", "cursor", "format"}

// telemetryRequest is a validated telemetry request.
type telemetryRequest struct {
	query  ports.TelemetryQuery
	ndjson bool
}

// parseTelemetryRequest validates everything the client sent, so that the
// reader only sees well-formed queries and no bad input can become a 500.
func (s *Server) parseTelemetryRequest(r *http.Request, gpuID string) (telemetryRequest, error) {
	var req telemetryRequest
	if err := checkGPUID(gpuID); err != nil {
		return req, err
	}
	vals, err := queryParams(r, telemetryParams)
	if err != nil {
		return req, err
	}
	q := ports.TelemetryQuery{GPUUUID: gpuID, Limit: s.defaultLimit}

	var ndjson bool
	ndjson, err = wantsNDJSON(vals.Get("format"), r.Header.Values("Accept"))
	if err != nil {
		return req, err
	}
	if q.Start, err = parseTime(vals, "start_time"); err != nil {
		return req, err
	}
	if q.End, err = parseTime(vals, "end_time"); err != nil {
		return req, err
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.End.Before(q.Start) {
		return req, badRequest("end_time (%s) is before start_time (%s); the window is inclusive at both ends",
			vals.Get("end_time"), vals.Get("start_time"))
	}
	if q.MetricName, err = parseMetricName(vals, false); err != nil {
		return req, err
	}
	if q.Limit, err = parseLimit(vals, s.defaultLimit, s.maxLimit); err != nil {
		return req, err
	}
	if vals.Has("cursor") {
		c, err := decodeCursor(q, vals.Get("cursor"))
		switch {
		case errors.Is(err, errCursorMismatch):
			return req, badRequest("cursor does not match this query: a cursor only continues the query (gpu, start_time, end_time, metric_name) that returned it")
		case err != nil:
			return req, badRequest("cursor: not a cursor issued by this API; pass next_cursor from a previous page unchanged")
		}
		q.After = &c
	}
	return telemetryRequest{query: q, ndjson: ndjson}, nil
}

// queryParams returns the query, rejecting one that does not parse (a bad
// %-escape or a ';', which url.Values.Query would drop silently, so a
// mangled cursor would restart the listing at its first page), a parameter
// not in known (so a typo cannot silently widen a question) or one given
// more than once.
func queryParams(r *http.Request, known []string) (url.Values, error) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("query string: %s", clip(err.Error()))
	}
	for name, vs := range vals {
		if !slices.Contains(known, name) {
			if len(known) == 0 {
				return nil, badRequest("unknown query parameter %q (this endpoint takes none)", clip(name))
			}
			return nil, badRequest("unknown query parameter %q (known: %s)", clip(name), strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return nil, badRequest("%s: given %d times, want at most once", name, len(vs))
		}
	}
	return vals, nil
}

// parseLimit reads an optional limit in [1, maxLimit].
func parseLimit(vals url.Values, def, maxLimit int) (int, error) {
	if !vals.Has("limit") {
		return def, nil
	}
	raw := vals.Get("limit")
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > maxLimit {
		return 0, badRequest("limit: %q is not an integer from 1 to %d", clip(raw), maxLimit)
	}
	return n, nil
}

// parseMetricName reads a metric name parameter; required makes it mandatory.
func parseMetricName(vals url.Values, required bool) (string, error) {
	if !vals.Has("metric_name") {
		if required {
			return "", badRequest("metric_name is required (e.g. DCGM_FI_DEV_GPU_TEMP; GET /api/v1/metrics lists them)")
		}
		return "", nil
	}
	m := vals.Get("metric_name")
	if !metricNamePattern.MatchString(m) {
		return "", badRequest("metric_name: %q is not a metric name (want 1-128 of A-Z a-z 0-9 _ : . -, e.g. DCGM_FI_DEV_GPU_UTIL)", clip(m))
	}
	return m, nil
}

// checkGPUID rejects ids no GPU can have, so they are a 400 rather than a 404.
func checkGPUID(id string) error {
	if len(id) > maxGPUIDLen {
		return badRequest("gpu id is %d bytes long, want at most %d (a GPU UUID such as GPU-5fd4f087-86f3-7a43-b711-4771313afc50)",
			len(id), maxGPUIDLen)
	}
	if !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl) {
		return badRequest("gpu id contains control characters or invalid UTF-8")
	}
	return nil
}

// parseFilter reads an optional text filter (hostname, model_name) that
// matches a stored field exactly. One no stored value can equal (longer
// than the field's bound, invalid UTF-8, a NUL: domain refuses those at
// publish) is a 400 naming the parameter, not a query the store refuses.
func parseFilter(vals url.Values, name string, maxBytes int) (string, error) {
	v := vals.Get(name)
	if len(v) > maxBytes {
		return "", badRequest("%s is %d bytes long, want at most %d", name, len(v), maxBytes)
	}
	if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
		return "", badRequest("%s contains a NUL byte or invalid UTF-8", name)
	}
	return v, nil
}

// parseTime reads an optional RFC 3339 bound; absent means unbounded.
func parseTime(vals url.Values, name string) (time.Time, error) {
	if !vals.Has(name) {
		return time.Time{}, nil
	}
	raw := vals.Get(name)
	// RFC3339Nano parses with and without fractional seconds.
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, badRequest("%s: %q is not an RFC 3339 timestamp (want e.g. 2025-07-18T20:42:34Z or 2025-07-18T20:42:34.5+02:00)",
			name, clip(raw))
	}
	return t.UTC(), nil
}

// wantsNDJSON decides between a JSON page and an NDJSON stream: format=
// wins; otherwise NDJSON when the Accept header ranks application/x-ndjson
// at least as high as anything else it accepts.
func wantsNDJSON(format string, accept []string) (bool, error) {
	switch format {
	case "ndjson":
		return true, nil
	case "json":
		return false, nil
	case "":
	default:
		return false, badRequest("format: %q is not a format (want json or ndjson)", clip(format))
	}
	ndjsonQ, otherQ := -1.0, -1.0
	for _, header := range accept {
		for part := range strings.SplitSeq(header, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
			if mt == mediaNDJSON {
				ndjsonQ = max(ndjsonQ, q)
			} else {
				otherQ = max(otherQ, q)
			}
		}
	}
	return ndjsonQ > 0 && ndjsonQ >= otherQ, nil
}

// clip shortens client input echoed in an error message.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	for i := n; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}
