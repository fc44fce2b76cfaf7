package mqhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/ports"
)

// answer is one HTTP exchange's outcome.
type answer struct {
	status int
	header http.Header
	body   []byte
}

type wireError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (a answer) errorBody(t *testing.T) wireError {
	t.Helper()
	var e wireError
	require.NoError(t, json.Unmarshal(a.body, &e), "error body %s", a.body)
	return e
}

// send makes one raw request; contentType "" sends none. header adds
// name, value pairs.
func send(t *testing.T, url, method, path, contentType, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url+path, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func postJSON(t *testing.T, url, path, body string) answer {
	t.Helper()
	return send(t, url, http.MethodPost, path, "application/json", body)
}

// quietLogger drops logs of requests that fail on purpose.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newMemoryServer serves a fresh memory queue over HTTP.
func newMemoryServer(t *testing.T, opts mqhttp.ServerOptions) (*httptest.Server, *memory.Queue) {
	t.Helper()
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	srv := httptest.NewServer(mqhttp.NewServer(q, q, opts).Handler())
	t.Cleanup(srv.Close)
	return srv, q
}

const goodMsg = `{"payload":{"gpu_uuid":"GPU-1","value":1},"key":"GPU-1"}`

func TestServerRejectsBadRequests(t *testing.T) {
	t.Parallel()
	srv, _ := newMemoryServer(t, mqhttp.ServerOptions{})
	smallQ := memory.NewQueue(memory.QueueOptions{})
	require.NoError(t, smallQ.Start(t.Context()))
	t.Cleanup(smallQ.Close)
	small := httptest.NewServer(mqhttp.NewServer(smallQ, nil, mqhttp.ServerOptions{MaxBodyBytes: 1024}).Handler())
	t.Cleanup(small.Close)

	many := `{"topic":"t","messages":[` + strings.TrimSuffix(strings.Repeat(goodMsg+",", mqhttp.MaxPublishMessages+1), ",") + `]}`
	lease := func(fields string) string { return `{"topic":"t","consumer_id":"c",` + fields + `}` }
	ref := func(leaseID string) string { return `{"topic":"t","consumer_id":"c","lease_id":` + leaseID + `}` }
	tests := []struct {
		name        string
		url         string // default srv
		method      string // default POST
		path        string
		contentType string // default application/json; "-" sends none
		body        string
		status      int
		code        string
		message     string // a substring of the error message
	}{
		{name: "malformed JSON", path: mqhttp.PathPublish, body: `{"topic":`, status: 400, code: "invalid_argument", message: "malformed JSON"},
		{name: "syntax error", path: mqhttp.PathPublish, body: `{"topic" "t"}`, status: 400, code: "invalid_argument", message: "malformed JSON at byte"},
		{name: "empty body", path: mqhttp.PathPublish, body: ``, status: 400, code: "invalid_argument", message: "empty body"},
		{name: "body not an object", path: mqhttp.PathPublish, body: `[1,2]`, status: 400, code: "invalid_argument", message: "body must be a JSON object"},
		{name: "trailing data", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[` + goodMsg + `]} {"again":1}`, status: 400, code: "invalid_argument", message: "unexpected data after the JSON object"},
		{name: "trailing garbage", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[` + goodMsg + `]}x`, status: 400, code: "invalid_argument", message: "unexpected data"},
		{name: "unknown field", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[` + goodMsg + `],"extra":1}`, status: 400, code: "invalid_argument", message: `unknown field "extra"`},
		{name: "unknown message field", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[{"payload":{},"msg_uuid":"x"}]}`, status: 400, code: "invalid_argument", message: `unknown field "msg_uuid"`},
		{name: "topic wrong type", path: mqhttp.PathPublish, body: `{"topic":7,"messages":[` + goodMsg + `]}`, status: 400, code: "invalid_argument", message: "topic must be a string, got number"},
		{name: "invalid UTF-8", path: mqhttp.PathPublish, body: "{\"topic\":\"t\xff\",\"messages\":[" + goodMsg + "]}", status: 400, code: "invalid_argument", message: "not valid UTF-8"},
		{name: "missing topic", path: mqhttp.PathPublish, body: `{"messages":[` + goodMsg + `]}`, status: 400, code: "invalid_argument", message: "topic is required"},
		{name: "blank topic", path: mqhttp.PathPublish, body: `{"topic":"  ","messages":[` + goodMsg + `]}`, status: 400, code: "invalid_argument", message: "topic is required"},
		{name: "topic the queue refuses", path: mqhttp.PathPublish, body: `{"topic":"bad topic","messages":[` + goodMsg + `]}`, status: 400, code: "invalid_argument", message: "topic"},
		{name: "no messages", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[]}`, status: 400, code: "invalid_argument", message: "messages must not be empty"},
		{name: "null messages", path: mqhttp.PathPublish, body: `{"topic":"t","messages":null}`, status: 400, code: "invalid_argument", message: "messages must not be empty"},
		{name: "missing payload", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[` + goodMsg + `,{"key":"k"}]}`, status: 400, code: "invalid_argument", message: "messages[1].payload is required"},
		{name: "null payload", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[{"payload":null}]}`, status: 400, code: "invalid_argument", message: "messages[0].payload is required"},
		{name: "payload with NUL escape", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[{"payload":{"a":"x\u0000"}}]}`, status: 400, code: "invalid_argument", message: `messages[0].payload must not contain \u0000`},
		{name: "key too long", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[{"payload":{},"key":"` + strings.Repeat("k", 257) + `"}]}`, status: 400, code: "invalid_argument", message: "messages[0].key is longer than 256 bytes"},
		{name: "idempotency key wrong type", path: mqhttp.PathPublish, body: `{"topic":"t","messages":[{"payload":{},"idempotency_key":1}]}`, status: 400, code: "invalid_argument", message: "idempotency_key must be a string"},
		{name: "too many messages", path: mqhttp.PathPublish, body: many, status: 413, code: "payload_too_large", message: "10001 messages exceed the limit of 10000"},
		{name: "body over the limit", url: small.URL, path: mqhttp.PathPublish, body: `{"topic":"t","messages":[{"payload":"` + strings.Repeat("x", 2048) + `"}]}`, status: 413, code: "payload_too_large", message: "exceeds 1024 bytes"},
		{name: "no content type", path: mqhttp.PathPublish, contentType: "-", body: `{}`, status: 415, code: "unsupported_media_type", message: "application/json"},
		{name: "text content type", path: mqhttp.PathPublish, contentType: "text/plain", body: `{}`, status: 415, code: "unsupported_media_type", message: `got "text/plain"`},
		{name: "latin1 charset", path: mqhttp.PathPublish, contentType: "application/json; charset=latin1", body: `{}`, status: 415, code: "unsupported_media_type", message: "charset must be utf-8"},
		{name: "GET publish", method: http.MethodGet, path: mqhttp.PathPublish, status: 405, code: "method_not_allowed", message: "use POST"},
		{name: "PUT ack", method: http.MethodPut, path: mqhttp.PathAck, body: `{}`, status: 405, code: "method_not_allowed", message: "use POST"},
		{name: "unknown route", path: "/v1/nope", body: `{}`, status: 404, code: "not_found", message: "no such route"},
		{name: "lease without consumer", path: mqhttp.PathLease, body: `{"topic":"t","max":1,"lease_seconds":1}`, status: 400, code: "invalid_argument", message: "consumer_id is required"},
		{name: "lease without topic", path: mqhttp.PathLease, body: `{"consumer_id":"c","max":1,"lease_seconds":1}`, status: 400, code: "invalid_argument", message: "topic is required"},
		{name: "lease max 0", path: mqhttp.PathLease, body: lease(`"max":0,"lease_seconds":1`), status: 400, code: "invalid_argument", message: "max must be between 1 and 5000 (this queue's lease limit), got 0"},
		{name: "lease max missing", path: mqhttp.PathLease, body: lease(`"lease_seconds":1`), status: 400, code: "invalid_argument", message: "max must be between 1 and 5000"},
		{name: "lease max 10001", path: mqhttp.PathLease, body: lease(`"max":10001,"lease_seconds":1`), status: 400, code: "invalid_argument", message: "got 10001"},
		{name: "lease max a string", path: mqhttp.PathLease, body: lease(`"max":"10","lease_seconds":1`), status: 400, code: "invalid_argument", message: "max must be an integer, got string"},
		{name: "lease max a fraction", path: mqhttp.PathLease, body: lease(`"max":1.5,"lease_seconds":1`), status: 400, code: "invalid_argument", message: "max must be an integer, got number 1.5"},
		{name: "lease seconds 0", path: mqhttp.PathLease, body: lease(`"max":1,"lease_seconds":0`), status: 400, code: "invalid_argument", message: "lease_seconds must be between 1 and 3600, got 0"},
		{name: "lease seconds 3601", path: mqhttp.PathLease, body: lease(`"max":1,"lease_seconds":3601`), status: 400, code: "invalid_argument", message: "got 3601"},
		{name: "lease wait negative", path: mqhttp.PathLease, body: lease(`"max":1,"lease_seconds":1,"wait_ms":-1`), status: 400, code: "invalid_argument", message: "wait_ms must be between 0 and 20000, got -1"},
		{name: "lease wait 20001", path: mqhttp.PathLease, body: lease(`"max":1,"lease_seconds":1,"wait_ms":20001`), status: 400, code: "invalid_argument", message: "got 20001"},
		{name: "lease wait huge", path: mqhttp.PathLease, body: lease(`"max":1,"lease_seconds":1,"wait_ms":9223372036854775807`), status: 400, code: "invalid_argument", message: "wait_ms must be between 0 and 20000"},
		{name: "ack without lease id", path: mqhttp.PathAck, body: `{"topic":"t","consumer_id":"c"}`, status: 400, code: "invalid_argument", message: "lease_id is required"},
		{name: "ack lease id not a UUID", path: mqhttp.PathAck, body: ref(`"nope"`), status: 400, code: "invalid_argument", message: `lease_id must be a UUID, got "nope"`},
		{name: "ack lease id a number", path: mqhttp.PathAck, body: ref(`12`), status: 400, code: "invalid_argument", message: "lease_id must be a string"},
		{name: "ack without consumer", path: mqhttp.PathAck, body: `{"topic":"t","lease_id":"` + uuid.NewString() + `"}`, status: 400, code: "invalid_argument", message: "consumer_id is required"},
		{name: "release without topic", path: mqhttp.PathRelease, body: `{"consumer_id":"c","lease_id":"` + uuid.NewString() + `"}`, status: 400, code: "invalid_argument", message: "topic is required"},
		{name: "ack unknown lease", path: mqhttp.PathAck, body: ref(`"` + uuid.NewString() + `"`), status: 409, code: "lease_expired", message: "lease expired or unknown"},
		{name: "release unknown lease", path: mqhttp.PathRelease, body: ref(`"` + uuid.NewString() + `"`), status: 409, code: "lease_expired", message: "lease expired or unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, method, ct := tc.url, tc.method, tc.contentType
			if url == "" {
				url = srv.URL
			}
			if method == "" {
				method = http.MethodPost
			}
			switch ct {
			case "":
				ct = "application/json"
			case "-":
				ct = ""
			}
			a := send(t, url, method, tc.path, ct, tc.body)
			require.Equal(t, tc.status, a.status, "body %s", a.body)
			require.Equal(t, "application/json; charset=utf-8", a.header.Get("Content-Type"))
			e := a.errorBody(t)
			require.Equal(t, tc.code, e.Error.Code)
			require.Contains(t, e.Error.Message, tc.message)
			if before, _, found := strings.Cut(e.Error.Message, "invalid argument"); found {
				require.LessOrEqual(t, strings.Count(before, ": "), 1,
					"a client's mistake is told with one context at most, not every layer's: %q", e.Error.Message)
			}
			if tc.status == http.StatusMethodNotAllowed {
				require.Equal(t, http.MethodPost, a.header.Get("Allow"))
			}
		})
	}
}

// TestCompressedBodyIsRefused: the server does not decompress, so a body
// with a content coding is a 415 that says so, not a JSON error about bytes
// it misread; "identity" is no coding.
func TestCompressedBodyIsRefused(t *testing.T) {
	t.Parallel()
	srv, _ := newMemoryServer(t, mqhttp.ServerOptions{Topics: []string{"t"}})
	body := `{"topic":"t","messages":[{"payload":{"gpu_uuid":"GPU-1"}}]}`
	post := func(path, encoding string) answer {
		return send(t, srv.URL, http.MethodPost, path, "application/json", body, "Content-Encoding", encoding)
	}
	for _, path := range []string{mqhttp.PathPublish, mqhttp.PathPublishStream} {
		a := post(path, "gzip")
		require.Equal(t, http.StatusUnsupportedMediaType, a.status, "%s: body %s", path, a.body)
		e := a.errorBody(t)
		require.Equal(t, mqhttp.CodeUnsupportedMediaType, e.Error.Code)
		require.Equal(t, `Content-Encoding "gzip" is not supported; send the body uncompressed`, e.Error.Message)
	}
	a := post(mqhttp.PathPublish, "identity")
	require.Equal(t, http.StatusOK, a.status, "body %s", a.body)
}

// stubPort answers every call with err; it stands in for a backend failing
// in a given way (the database is not mocked: this only exercises mapping).
type stubPort struct{ err error }

func (s stubPort) Publish(context.Context, string, []ports.OutgoingMessage) (ports.PublishResult, error) {
	return ports.PublishResult{}, s.err
}
func (s stubPort) Lease(context.Context, ports.LeaseRequest) (domain.Lease, error) {
	return domain.Lease{}, s.err
}
func (s stubPort) Ack(context.Context, ports.LeaseRef) error     { return s.err }
func (s stubPort) Release(context.Context, ports.LeaseRef) error { return s.err }

func TestServerMapsPortErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{"invalid argument", fmt.Errorf("topic %q: %w", "x", ports.ErrInvalidArgument), 400, "invalid_argument", ""},
		{"not found", ports.ErrNotFound, 404, "not_found", ""},
		{"lease expired", fmt.Errorf("ack: %w", ports.ErrLeaseExpired), 409, "lease_expired", ""},
		{"backpressure", fmt.Errorf("publish: %w", ports.ErrBackpressure), 429, "backpressure", "1"},
		{"closed", fmt.Errorf("lease: %w", ports.ErrClosed), 503, "closed", "1"},
		{"unavailable", fmt.Errorf("lease: %w", ports.ErrUnavailable), 503, "unavailable", "1"},
		{"deadline", fmt.Errorf("publish: %w", context.DeadlineExceeded), 504, "timeout", ""},
		{"anything else", errors.New("pq: password authentication failed for secret-user"), 500, "internal", ""},
	}
	calls := []struct{ path, body string }{
		{mqhttp.PathPublish, `{"topic":"t","messages":[` + goodMsg + `]}`},
		{mqhttp.PathLease, `{"topic":"t","consumer_id":"c","max":1,"lease_seconds":30}`},
		{mqhttp.PathAck, `{"topic":"t","consumer_id":"c","lease_id":"` + uuid.NewString() + `"}`},
		{mqhttp.PathRelease, `{"topic":"t","consumer_id":"c","lease_id":"` + uuid.NewString() + `"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port := stubPort{err: tc.err}
			srv := httptest.NewServer(mqhttp.NewServer(port, port, mqhttp.ServerOptions{Logger: quietLogger()}).Handler())
			t.Cleanup(srv.Close)
			for _, c := range calls {
				a := postJSON(t, srv.URL, c.path, c.body)
				require.Equal(t, tc.status, a.status, "%s: %s", c.path, a.body)
				e := a.errorBody(t)
				require.Equal(t, tc.code, e.Error.Code, c.path)
				require.Equal(t, tc.retryAfter, a.header.Get("Retry-After"), c.path)
				if tc.status == http.StatusInternalServerError {
					require.Equal(t, "internal error", e.Error.Message, "internals leaked")
				}
			}
		})
	}
}

func TestServerServesOneSide(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	tests := []struct {
		name      string
		server    *mqhttp.Server
		served    []string
		notServed []string
	}{
		{"writer", mqhttp.NewServer(q, nil, mqhttp.ServerOptions{}),
			[]string{mqhttp.PathPublish}, []string{mqhttp.PathLease, mqhttp.PathAck, mqhttp.PathRelease}},
		{"reader", mqhttp.NewServer(nil, q, mqhttp.ServerOptions{}),
			[]string{mqhttp.PathLease, mqhttp.PathAck, mqhttp.PathRelease}, []string{mqhttp.PathPublish}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.server.Handler())
			t.Cleanup(srv.Close)
			for _, p := range tc.notServed {
				a := postJSON(t, srv.URL, p, `{}`)
				require.Equal(t, http.StatusNotFound, a.status, p)
				e := a.errorBody(t)
				require.Equal(t, "not_found", e.Error.Code)
				require.Contains(t, e.Error.Message, "not served here")
			}
			for _, p := range tc.served {
				// Served routes validate: an empty object is a 400, not a 404.
				a := postJSON(t, srv.URL, p, `{}`)
				require.Equal(t, http.StatusBadRequest, a.status, p)
			}
		})
	}
}

func TestServerHappyPath(t *testing.T) {
	t.Parallel()
	srv, _ := newMemoryServer(t, mqhttp.ServerOptions{})
	const topic = "happy"
	msgs := `[{"payload":{"gpu_uuid":"GPU-a","seq":1},"key":"GPU-a","idempotency_key":"run-1/1"},` +
		`{"payload":{"gpu_uuid":"GPU-a","seq":2},"key":"GPU-a","idempotency_key":"run-1/2"}]`

	steps := []struct {
		name, ct, body string
		want           string
	}{
		{"publish", "application/json", `{"topic":"happy","messages":` + msgs + `}`, `{"accepted":2,"duplicates":0}`},
		{"publish again with the same keys", "application/json; charset=UTF-8", `{"topic":"happy","messages":` + msgs + `}`, `{"accepted":0,"duplicates":2}`},
	}
	// Sequential: the second publish depends on the first.
	for _, st := range steps {
		a := send(t, srv.URL, http.MethodPost, mqhttp.PathPublish, st.ct, st.body)
		require.Equal(t, http.StatusOK, a.status, "%s: %s", st.name, a.body)
		require.JSONEq(t, st.want, string(a.body), st.name)
	}

	leaseBody := `{"topic":"happy","consumer_id":"c1","max":10,"lease_seconds":30}`
	a := postJSON(t, srv.URL, mqhttp.PathLease, leaseBody)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	var lease map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(a.body, &lease))
	require.ElementsMatch(t, []string{"lease_id", "topic", "consumer_id", "expires_at", "messages"}, keys(lease))
	require.JSONEq(t, `"happy"`, string(lease["topic"]))
	require.JSONEq(t, `"c1"`, string(lease["consumer_id"]))
	var expires time.Time
	require.NoError(t, json.Unmarshal(lease["expires_at"], &expires))
	require.WithinDuration(t, time.Now().Add(30*time.Second), expires, 10*time.Second)
	var got []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(lease["messages"], &got))
	require.Len(t, got, 2)
	for i, m := range got {
		require.ElementsMatch(t, []string{"msg_uuid", "partition", "payload", "created_at", "deliveries"}, keys(m))
		require.JSONEq(t, fmt.Sprintf(`{"gpu_uuid":"GPU-a","seq":%d}`, i+1), string(m["payload"]))
		require.JSONEq(t, fmt.Sprintf("%d", domain.PartitionOf("GPU-a")), string(m["partition"]))
		require.JSONEq(t, `1`, string(m["deliveries"]))
		require.JSONEq(t, `"`+domain.MessageID(topic, fmt.Sprintf("run-1/%d", i+1)).String()+`"`, string(m["msg_uuid"]))
	}
	var leaseID string
	require.NoError(t, json.Unmarshal(lease["lease_id"], &leaseID))

	// Nothing else is ready: an empty lease is a 200 with an empty list, not null.
	a = postJSON(t, srv.URL, mqhttp.PathLease, leaseBody)
	require.Equal(t, http.StatusOK, a.status)
	require.Contains(t, string(a.body), `"messages":[]`)

	refBody := `{"topic":"happy","consumer_id":"c1","lease_id":"` + leaseID + `"}`
	a = postJSON(t, srv.URL, mqhttp.PathRelease, refBody)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	require.JSONEq(t, `{"status":"released"}`, string(a.body))

	a = postJSON(t, srv.URL, mqhttp.PathLease, leaseBody)
	require.Equal(t, http.StatusOK, a.status)
	require.NoError(t, json.Unmarshal(a.body, &lease))
	require.NoError(t, json.Unmarshal(lease["messages"], &got))
	require.Len(t, got, 2, "released messages come back")
	require.JSONEq(t, `2`, string(got[0]["deliveries"]))
	require.NoError(t, json.Unmarshal(lease["lease_id"], &leaseID))

	refBody = `{"topic":"happy","consumer_id":"c1","lease_id":"` + leaseID + `"}`
	for range 2 { // ack is idempotent
		a = postJSON(t, srv.URL, mqhttp.PathAck, refBody)
		require.Equal(t, http.StatusOK, a.status, "%s", a.body)
		require.JSONEq(t, `{"status":"acked"}`, string(a.body))
	}
}

func keys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestServerMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	srv, _ := newMemoryServer(t, mqhttp.ServerOptions{Registerer: reg})
	// A second server on the same registry shares the series instead of failing.
	_ = mqhttp.NewServer(nil, nil, mqhttp.ServerOptions{Registerer: reg})

	require.Equal(t, http.StatusOK, postJSON(t, srv.URL, mqhttp.PathPublish, `{"topic":"m","messages":[`+goodMsg+`]}`).status)
	require.Equal(t, http.StatusBadRequest, postJSON(t, srv.URL, mqhttp.PathLease, `{}`).status)
	require.Equal(t, http.StatusNotFound, postJSON(t, srv.URL, "/nope", `{}`).status)

	want := `
# HELP mqhttp_requests_total Queue protocol requests answered, by route and HTTP status code.
# TYPE mqhttp_requests_total counter
mqhttp_requests_total{code="200",route="publish"} 1
mqhttp_requests_total{code="400",route="lease"} 1
mqhttp_requests_total{code="404",route="unmatched"} 1
`
	// The series are updated after the answer is written: wait for them.
	require.Eventually(t, func() bool {
		return testutil.GatherAndCompare(reg, strings.NewReader(want), "mqhttp_requests_total") == nil
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "mqhttp_requests_total"))
	require.Equal(t, 3, testutil.CollectAndCount(reg, "mqhttp_request_duration_seconds"), "one histogram per route")
	promxtest.RequireLintClean(t, reg)
}

func TestRegisterKeepsRouterHandlers(t *testing.T) {
	t.Parallel()
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "app 404", http.StatusNotFound)
	})
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mqhttp.NewServer(stubPort{}, nil, mqhttp.ServerOptions{}).Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	a := send(t, srv.URL, http.MethodGet, "/elsewhere", "", "")
	require.Equal(t, http.StatusNotFound, a.status)
	require.Equal(t, "app 404\n", string(a.body), "the app's own 404 stays")
	a = send(t, srv.URL, http.MethodGet, "/healthz", "", "")
	require.Equal(t, "ok", string(a.body))
	a = postJSON(t, srv.URL, mqhttp.PathPublish, `{"topic":"t","messages":[`+goodMsg+`]}`)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
}

// hangUp is a consumer that, once the queue behind it granted a lease,
// cancels the request: the client hung up while its lease was being made.
type hangUp struct {
	ports.Queue
	cancel context.CancelFunc
}

func (h hangUp) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	l, err := h.Queue.Lease(ctx, req)
	h.cancel()
	return l, err
}

// A lease granted to a client that hung up is released, not written to
// nobody: its messages can be leased again at once, not at its expiry.
func TestServerReleasesLeaseOfGoneClient(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	_, err := q.Publish(t.Context(), "t", []ports.OutgoingMessage{{Payload: json.RawMessage(`{"gpu_uuid":"GPU-1"}`), Key: "GPU-1"}})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(t.Context())
	h := hangUp{Queue: q, cancel: cancel}
	srv := mqhttp.NewServer(h, h, mqhttp.ServerOptions{Logger: quietLogger()}).Handler()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, mqhttp.PathLease,
		strings.NewReader(`{"topic":"t","consumer_id":"c","max":10,"lease_seconds":300}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())

	l, err := q.Lease(t.Context(), ports.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 10, LeaseDuration: 5 * time.Minute})
	require.NoError(t, err)
	require.Len(t, l.Messages, 1, "the gone client's lease was given back")
}

// A telemetry point beyond a field bound (domain/bounds.go) is refused at
// publish with a 400 naming the field, and nothing is queued; the same
// payload on another topic is only a message.
func TestServerRefusesPointBeyondBounds(t *testing.T) {
	t.Parallel()
	srv, q := newMemoryServer(t, mqhttp.ServerOptions{Logger: quietLogger()})
	point := func(field, value string) string {
		p := map[string]any{"timestamp": "2025-07-18T13:42:33Z", "metric_name": "DCGM_FI_DEV_GPU_UTIL",
			"gpu_uuid": "GPU-1", "value": 1.0}
		p[field] = value
		b, err := json.Marshal(map[string]any{"topic": domain.TelemetryTopic, "messages": []any{
			map[string]any{"payload": map[string]any{"gpu_uuid": "GPU-ok", "metric_name": "m"}}, map[string]any{"payload": p}}})
		require.NoError(t, err)
		return string(b)
	}
	for _, tc := range []struct{ field, value string }{
		{"gpu_uuid", strings.Repeat("x", 3000)},
		{"hostname", strings.Repeat("h", domain.MaxHostnameBytes+1)},
		{"labels_raw", strings.Repeat("l", domain.MaxLabelsRawBytes+1)},
		{"pod", "a\x00b"},
	} {
		a := postJSON(t, srv.URL, mqhttp.PathPublish, point(tc.field, tc.value))
		require.Equal(t, http.StatusBadRequest, a.status, "%s: %s", tc.field, a.body)
		e := a.errorBody(t)
		require.Equal(t, "invalid_argument", e.Error.Code)
		require.Contains(t, e.Error.Message, "messages[1].payload: ")
		require.Contains(t, e.Error.Message, tc.field)
	}
	st, err := q.Stats(t.Context())
	require.NoError(t, err)
	require.Zero(t, st.Ready, "nothing of a refused publish is queued")

	other := strings.Replace(point("gpu_uuid", strings.Repeat("x", 3000)), `"topic":"telemetry"`, `"topic":"other"`, 1)
	a := postJSON(t, srv.URL, mqhttp.PathPublish, other)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
}
