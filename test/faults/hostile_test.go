//go:build faults

package faults

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/test/stack"
)

// rssLimitKiB bounds each service's resident memory after the barrage.
const rssLimitKiB = 300 << 10

// hostileCase is one request and the answer it must get: a specific 4xx
// (or, for a valid but extreme request, a bounded 200) with a JSON body
// whose error code is code.
type hostileCase struct {
	name   string
	svc    *service
	method string
	path   string // raw: sent as is, so it may hold bytes url.Parse would refuse
	ctype  string // Content-Type; "" sends none
	body   func() []byte
	status int
	code   string // error.code of the JSON body; "" for a 200
	repeat int    // send it this many times (memory must not grow with them)
	// token is sent as Authorization: Bearer; "" sends none. The cases of
	// a queue service get its scope's token unless noToken.
	token   string
	noToken bool
	// page, for a 200 telemetry page, is the most entries it may hold.
	page int
	// plain: answered by net/http itself before any handler (431), so not
	// in JSON.
	plain bool
}

// Scenario 7: hostile input to every endpoint of mqwriter, mqreader and
// apigw while the pipeline runs. Each request gets its specific 4xx with a
// JSON error body, every service stays alive and its memory bounded, and
// the pipeline's invariants still hold afterwards.
func hostileInput(t *testing.T, s *system, rng *rand.Rand) (history, expectations, func(figures)) {
	s.bins = plainDir // memory is bounded here; the race detector multiplies it
	w, r, _ := pipeline(s, nil, nil)
	api := s.apigw()
	p := startPublisher(t, w, defaultLoad("s7", rng.Uint64()))
	progress(t, p, 300)
	// Two GPUs with a few rows each: one to query, one whose cursor to misuse.
	const perGPU = `(SELECT s.gpu_uuid FROM telemetry_samples x JOIN telemetry_series s ON s.id = x.series_id
		GROUP BY s.gpu_uuid HAVING count(*) > 2) g`
	const twoGPUs = `SELECT count(*) FROM ` + perGPU
	require.Eventually(t, func() bool { return s.count(twoGPUs) >= 2 }, 30*time.Second, 50*time.Millisecond)
	var gpu, otherGPU string
	ctx := context.Background()
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT min(gpu_uuid), max(gpu_uuid) FROM `+perGPU).Scan(&gpu, &otherGPU))
	cursor := realCursor(t, s, api, otherGPU)

	svcs := []*service{w, r, api}
	before := map[string]int{}
	for _, svc := range svcs {
		before[svc.name] = rssKiB(t, svc)
	}
	cases := append(append(writerCases(w), readerCases(r)...), apiCases(api, gpu, cursor)...)
	client := &http.Client{Timeout: 30 * time.Second}
	sent := 0
	for _, c := range cases {
		for range max(c.repeat, 1) {
			sent++
			// assert, not require: one run reports every wrong answer.
			status, body := send(t, client, c)
			if assert.Equal(t, c.status, status, "%s: %s %s answered %s", c.name, c.method, clip(c.path), clip(string(body))) {
				checkErrorBody(t, c, body)
				checkPage(t, c, body)
			}
		}
	}
	// A burst of oversized publishes at once: the body limit must hold
	// under concurrency too.
	burst := make(chan error, 8) // buffered: every sender finishes without waiting for the reader
	for range cap(burst) {
		go func() {
			status, body, err := do(client, hostileCase{svc: w, method: http.MethodPost, path: "/v1/publish",
				ctype: "application/json", body: tenMiBPublish, token: stack.PublishToken})
			if err == nil && status != http.StatusRequestEntityTooLarge {
				err = fmt.Errorf("answered %d %s", status, clip(string(body)))
			}
			burst <- err
		}()
	}
	for range cap(burst) {
		require.NoError(t, <-burst, "concurrent 10 MiB publish")
	}
	sent += cap(burst)

	for _, svc := range svcs {
		require.Equal(t, http.StatusOK, s.status(svc, "/healthz"), "%s not alive after the barrage", svc.name)
		after := rssKiB(t, svc)
		t.Logf("%s RSS %d MiB before, %d MiB after the barrage (%d cases, %d requests in all)",
			svc.name, before[svc.name]>>10, after>>10, len(cases), sent)
		require.Less(t, after, rssLimitKiB, "%s uses too much memory after the barrage", svc.name)
	}
	var tables int
	require.NoError(t, s.pool.QueryRow(ctx,
		`SELECT count(*) FROM pg_tables WHERE tablename IN ('queue_messages', 'telemetry_series', 'telemetry_samples', 'gpus', 'dead_letters')`).Scan(&tables))
	require.Equal(t, 5, tables, "a table is gone")
	progress(t, p, 300) // the pipeline still works
	h := p.stop()
	return h, expectations{drainWithin: 30 * time.Second, maxRedelivered: 0.05}, nil
}

// send makes c's request and checks an error answer is JSON.
func send(t *testing.T, client *http.Client, c hostileCase) (int, []byte) {
	t.Helper()
	status, body, ctype, err := doRaw(client, c)
	require.NoError(t, err, "%s: the service did not answer", c.name)
	if c.status >= 400 && !c.plain {
		assert.Contains(t, ctype, "application/json", "%s: error is not JSON: %s", c.name, clip(string(body)))
	}
	return status, body
}

// do makes c's request; safe from any goroutine.
func do(client *http.Client, c hostileCase) (int, []byte, error) {
	status, body, _, err := doRaw(client, c)
	return status, body, err
}

func doRaw(client *http.Client, c hostileCase) (status int, body []byte, ctype string, err error) {
	var in io.Reader
	if c.body != nil {
		in = bytes.NewReader(c.body())
	}
	req, err := http.NewRequest(c.method, "http://"+c.svc.addr+"/", in)
	if err != nil {
		return 0, nil, "", err
	}
	// Opaque keeps the raw path and query exactly as written.
	req.URL.Opaque = "//" + c.svc.addr + c.path
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, resp.Header.Get("Content-Type"), err
}

func checkErrorBody(t *testing.T, c hostileCase, body []byte) {
	t.Helper()
	if c.code == "" {
		return
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if assert.NoError(t, json.Unmarshal(body, &e), "%s: error body is not JSON: %s", c.name, body) {
		assert.Equal(t, c.code, e.Error.Code, "%s: %s", c.name, body)
		assert.NotEmpty(t, e.Error.Message, "%s: error without a message", c.name)
	}
}

// checkPage checks a 200 telemetry page is bounded by c.page entries.
func checkPage(t *testing.T, c hostileCase, body []byte) {
	t.Helper()
	if c.page == 0 {
		return
	}
	var page struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if assert.NoError(t, json.Unmarshal(body, &page), "%s: %s", c.name, clip(string(body))) {
		assert.NotEmpty(t, page.Entries, "%s: the window holds the GPU's rows", c.name)
		assert.LessOrEqual(t, len(page.Entries), c.page, "%s: page not bounded by its limit", c.name)
	}
}

// realCursor gets a genuine next_cursor for gpu, to forge with.
func realCursor(t *testing.T, s *system, api *service, gpu string) string {
	t.Helper()
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	resp, err := s.http.Get("http://" + api.addr + "/api/v1/gpus/" + url.PathEscape(gpu) + "/telemetry?limit=1")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
	return page.NextCursor
}

func raw(s string) func() []byte { return func() []byte { return []byte(s) } }

func jsonBody(v any) func() []byte { return func() []byte { return mustJSON(v) } }

// tenMiBPublish is a publish whose one payload makes the body 10 MiB.
func tenMiBPublish() []byte {
	return []byte(`{"topic":"telemetry","messages":[{"payload":"` + strings.Repeat("A", 10<<20) + `"}]}`)
}

// manyMessages is a publish of n tiny messages.
func manyMessages(n int) func() []byte {
	return func() []byte {
		var b bytes.Buffer
		b.WriteString(`{"topic":"telemetry","messages":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"payload":1}`)
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
}

const sqlInjection = `telemetry'; DROP TABLE queue_messages; --`

func writerCases(w *service) []hostileCase {
	const ct = "application/json"
	pub := func(name string, body func() []byte, status int, code string) hostileCase {
		return hostileCase{name: "mqwriter " + name, svc: w, method: http.MethodPost, path: "/v1/publish", ctype: ct, body: body, status: status, code: code}
	}
	msg := func(payload string) func() []byte {
		return raw(`{"topic":"telemetry","messages":[{"payload":` + payload + `}]}`)
	}
	cases := []hostileCase{
		pub("malformed JSON", raw(`{"topic":"telemetry","messages":[`), 400, "invalid_argument"),
		pub("not an object", raw(`[1,2,3]`), 400, "invalid_argument"),
		pub("empty body", raw(``), 400, "invalid_argument"),
		pub("topic of the wrong type", raw(`{"topic":5,"messages":[{"payload":{}}]}`), 400, "invalid_argument"),
		pub("messages of the wrong type", raw(`{"topic":"telemetry","messages":"all of them"}`), 400, "invalid_argument"),
		pub("key of the wrong type", raw(`{"topic":"telemetry","messages":[{"payload":{},"key":7}]}`), 400, "invalid_argument"),
		pub("no payload", raw(`{"topic":"telemetry","messages":[{}]}`), 400, "invalid_argument"),
		pub("null payload", msg(`null`), 400, "invalid_argument"),
		pub("no messages", raw(`{"topic":"telemetry","messages":[]}`), 400, "invalid_argument"),
		pub("unknown field", raw(`{"topic":"telemetry","messages":[{"payload":{}}],"priority":"high"}`), 400, "invalid_argument"),
		pub("trailing data", raw(`{"topic":"telemetry","messages":[{"payload":{}}]}{}`), 400, "invalid_argument"),
		pub("invalid UTF-8", raw("{\"topic\":\"tele\xffmetry\",\"messages\":[{\"payload\":{}}]}"), 400, "invalid_argument"),
		pub("invalid UTF-8 in a payload", msg("\"\xc3\x28\""), 400, "invalid_argument"),
		pub(`payload with \u0000`, msg(`{"a":"x\u0000y"}`), 400, "invalid_argument"),
		pub("payload nested 100000 deep", msg(strings.Repeat("[", 100000)+strings.Repeat("]", 100000)), 400, "invalid_argument"),
		// MQ_MAX_PAYLOAD_BYTES (64 KiB) is checked before the domain's 1 MiB.
		pub("payload over 1 MiB", msg(`"`+strings.Repeat("B", 1<<20+10)+`"`), 413, "payload_too_large"),
		pub("payload over MQ_MAX_PAYLOAD_BYTES", msg(`"`+strings.Repeat("B", 64<<10)+`"`), 413, "payload_too_large"),
		// Not one of QUEUE_TOPICS: refused before it gets anywhere near SQL.
		pub("SQL injection topic", jsonBody(map[string]any{"topic": sqlInjection, "messages": []any{map[string]any{"payload": 1}}}), 400, "invalid_argument"), // malformed: refused by the topic rule before the served check
		pub("topic of 300 bytes", jsonBody(map[string]any{"topic": strings.Repeat("t", 300), "messages": []any{map[string]any{"payload": 1}}}), 400, "invalid_argument"),
		pub("idempotency key of 300 bytes", jsonBody(map[string]any{"topic": "telemetry",
			"messages": []any{map[string]any{"payload": 1, "idempotency_key": strings.Repeat("k", 300)}}}), 400, "invalid_argument"),
		pub("unknown topic", jsonBody(map[string]any{"topic": "no-such-topic", "messages": []any{map[string]any{"payload": 1}}}), 404, "not_found"),
		pub("10 MiB body", tenMiBPublish, 413, "payload_too_large"),
		pub("100000 messages", manyMessages(100000), 413, "payload_too_large"),
		{name: "mqwriter text/plain", svc: w, method: http.MethodPost, path: "/v1/publish", ctype: "text/plain", body: msg(`{}`), status: 415, code: "unsupported_media_type"},
		{name: "mqwriter no content type", svc: w, method: http.MethodPost, path: "/v1/publish", body: msg(`{}`), status: 415, code: "unsupported_media_type"},
		{name: "mqwriter latin1", svc: w, method: http.MethodPost, path: "/v1/publish", ctype: "application/json; charset=latin1", body: msg(`{}`), status: 415, code: "unsupported_media_type"},
		{name: "mqwriter GET publish", svc: w, method: http.MethodGet, path: "/v1/publish", status: 405, code: "method_not_allowed"},
		{name: "mqwriter PUT publish", svc: w, method: http.MethodPut, path: "/v1/publish", ctype: ct, body: msg(`{}`), status: 405, code: "method_not_allowed"},
		{name: "mqwriter lease (not served)", svc: w, method: http.MethodPost, path: "/v1/lease", ctype: ct, body: raw(`{}`), status: 404, code: "not_found"},
		{name: "mqwriter unknown route", svc: w, method: http.MethodPost, path: "/v1/publish/../../etc/passwd%00", ctype: ct, body: raw(`{}`), status: 404, code: "not_found"},
		{name: "mqwriter POST healthz", svc: w, method: http.MethodPost, path: "/healthz", ctype: ct, body: raw(`{}`), status: 405, code: "method_not_allowed"},
	}
	for i := range cases {
		if cases[i].status == 413 {
			cases[i].repeat = 5
		}
	}
	return withToken(cases, stack.PublishToken)
}

// withToken gives every case without one token, unless it asks for none.
func withToken(cases []hostileCase, token string) []hostileCase {
	for i := range cases {
		if cases[i].token == "" && !cases[i].noToken {
			cases[i].token = token
		}
	}
	return cases
}

func readerCases(r *service) []hostileCase {
	const ct = "application/json"
	lease := func(name string, body func() []byte, status int, code string) hostileCase {
		return hostileCase{name: "mqreader lease " + name, svc: r, method: http.MethodPost, path: "/v1/lease", ctype: ct, body: body, status: status, code: code}
	}
	leaseWith := func(max, seconds string) func() []byte {
		return raw(`{"topic":"telemetry","consumer_id":"hostile","max":` + max + `,"lease_seconds":` + seconds + `}`)
	}
	settle := func(op, name string, body func() []byte, status int, code string) hostileCase {
		return hostileCase{name: "mqreader " + op + " " + name, svc: r, method: http.MethodPost, path: "/v1/" + op, ctype: ct, body: body, status: status, code: code}
	}
	ref := func(topic, id string) func() []byte {
		return jsonBody(map[string]any{"topic": topic, "consumer_id": "hostile", "lease_id": id})
	}
	cases := []hostileCase{
		lease("max -1", leaseWith("-1", "30"), 400, "invalid_argument"),
		lease("max 0", leaseWith("0", "30"), 400, "invalid_argument"),
		lease("max 10001", leaseWith("10001", "30"), 400, "invalid_argument"),
		lease("max over MQ_LEASE_MAX_MESSAGES", leaseWith("5001", "30"), 400, "invalid_argument"),
		lease("lease_seconds over MQ_LEASE_MAX_SECONDS", leaseWith("10", "301"), 400, "invalid_argument"),
		lease("max 1e30", leaseWith("1e30", "30"), 400, "invalid_argument"),
		lease("max 2^63", leaseWith("9223372036854775808", "30"), 400, "invalid_argument"),
		lease("max 1.5", leaseWith("1.5", "30"), 400, "invalid_argument"),
		lease("max as a string", leaseWith(`"10"`, "30"), 400, "invalid_argument"),
		lease("lease_seconds -1", leaseWith("10", "-1"), 400, "invalid_argument"),
		lease("lease_seconds 0", leaseWith("10", "0"), 400, "invalid_argument"),
		lease("lease_seconds 3601", leaseWith("10", "3601"), 400, "invalid_argument"),
		lease("lease_seconds huge", leaseWith("10", "99999999999999999999"), 400, "invalid_argument"),
		lease("no consumer_id", raw(`{"topic":"telemetry","max":1,"lease_seconds":1}`), 400, "invalid_argument"),
		lease("consumer_id of 300 bytes", jsonBody(map[string]any{"topic": "telemetry", "consumer_id": strings.Repeat("c", 300), "max": 1, "lease_seconds": 1}), 400, "invalid_argument"),
		lease("SQL injection topic", jsonBody(map[string]any{"topic": sqlInjection, "consumer_id": "hostile", "max": 1, "lease_seconds": 1}), 400, "invalid_argument"),
		lease("SQL injection consumer_id", jsonBody(map[string]any{"topic": "telemetry", "consumer_id": sqlInjection, "max": 1, "lease_seconds": 1}), 200, ""),
		lease("unknown topic", jsonBody(map[string]any{"topic": "no-such-topic", "consumer_id": "hostile", "max": 1, "lease_seconds": 1}), 404, "not_found"),
		lease("malformed JSON", raw(`{"topic":`), 400, "invalid_argument"),
		lease("invalid UTF-8", raw("{\"topic\":\"telemetry\",\"consumer_id\":\"\xfe\xff\",\"max\":1,\"lease_seconds\":1}"), 400, "invalid_argument"),
		lease("10 MiB body", func() []byte {
			return []byte(`{"topic":"telemetry","consumer_id":"` + strings.Repeat("c", 10<<20) + `","max":1,"lease_seconds":1}`)
		}, 413, "payload_too_large"),
		{name: "mqreader lease text/xml", svc: r, method: http.MethodPost, path: "/v1/lease", ctype: "text/xml", body: leaseWith("1", "1"), status: 415, code: "unsupported_media_type"},
		{name: "mqreader GET lease", svc: r, method: http.MethodGet, path: "/v1/lease", status: 405, code: "method_not_allowed"},
		{name: "mqreader publish (not served)", svc: r, method: http.MethodPost, path: "/v1/publish", ctype: ct, body: raw(`{}`), status: 404, code: "not_found"},
		settle("ack", "lease_id not a UUID", ref("telemetry", "not-a-uuid"), 400, "invalid_argument"),
		settle("ack", "SQL injection lease_id", ref("telemetry", `' OR 1=1; DELETE FROM queue_messages; --`), 400, "invalid_argument"),
		settle("ack", "no lease_id", raw(`{"topic":"telemetry","consumer_id":"hostile"}`), 400, "invalid_argument"),
		settle("ack", "unknown lease", ref("telemetry", uuid.NewString()), 409, "lease_expired"),
		settle("ack", "unknown topic", ref("no-such-topic", uuid.NewString()), 404, "not_found"),
		settle("ack", "lease_id of the wrong type", raw(`{"topic":"telemetry","consumer_id":"hostile","lease_id":12}`), 400, "invalid_argument"),
		settle("release", "unknown lease", ref("telemetry", uuid.NewString()), 409, "lease_expired"),
		settle("release", "malformed JSON", raw(`{"topic":"telemetry",`), 400, "invalid_argument"),
		{name: "mqreader unknown route", svc: r, method: http.MethodGet, path: "/v2/lease?topic=telemetry%27--", status: 404, code: "not_found"},
		{name: "mqreader GET release", svc: r, method: http.MethodGet, path: "/v1/release", status: 405, code: "method_not_allowed"},
		{name: "mqreader POST metrics", svc: r, method: http.MethodPost, path: "/metrics", ctype: ct, body: raw(`{}`), status: 405, code: "method_not_allowed"},
	}
	for i := range cases {
		if cases[i].status == 413 {
			cases[i].repeat = 5
		}
	}
	return withToken(cases, stack.ConsumeToken)
}

func apiCases(api *service, gpu, cursor string) []hostileCase {
	tel := "/api/v1/gpus/" + url.PathEscape(gpu) + "/telemetry"
	get := func(name, path string, status int, code string) hostileCase {
		return hostileCase{name: "apigw " + name, svc: api, method: http.MethodGet, path: path, status: status, code: code}
	}
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"t":"2025-01-01T00:00:00Z","id":1}`))
	// A real cursor with one byte changed, and one from another GPU's query.
	tampered := []byte(cursor)
	tampered[len(tampered)/2] ^= 1
	return []hostileCase{
		get("bad start_time", tel+"?start_time=yesterday", 400, "bad_request"),
		get("bad end_time", tel+"?end_time=2025-13-45T99:00:00Z", 400, "bad_request"),
		get("inverted window", tel+"?start_time=2025-07-18T21:00:00Z&end_time=2025-07-18T20:00:00Z", 400, "bad_request"),
		get("year 10000", tel+"?start_time=10000-01-01T00:00:00Z", 400, "bad_request"),
		get("negative year", tel+"?start_time=-0001-01-01T00:00:00Z", 400, "bad_request"),
		{name: "apigw whole calendar window", svc: api, method: http.MethodGet, page: 2, status: 200,
			path: tel + "?start_time=0001-01-01T00:00:00Z&end_time=9999-12-31T23:59:59.999999999Z&limit=2"},
		get("limit -1", tel+"?limit=-1", 400, "bad_request"),
		get("limit 0", tel+"?limit=0", 400, "bad_request"),
		get("limit 10001", tel+"?limit=10001", 400, "bad_request"),
		get("limit huge", tel+"?limit=99999999999999999999999", 400, "bad_request"),
		get("limit not a number", tel+"?limit=ten", 400, "bad_request"),
		get("forged cursor", tel+"?cursor="+forged, 400, "bad_request"),
		get("garbage cursor", tel+"?cursor=%27%20OR%201%3D1--", 400, "bad_request"),
		get("tampered cursor", tel+"?cursor="+url.QueryEscape(string(tampered)), 400, "bad_request"),
		get("cursor of another query", tel+"?cursor="+url.QueryEscape(cursor), 400, "bad_request"),
		get("SQL injection metric_name", tel+"?metric_name="+url.QueryEscape(`x' OR '1'='1`), 400, "bad_request"),
		get("invalid UTF-8 metric_name", tel+"?metric_name=%FF%FE", 400, "bad_request"),
		get("unknown parameter", tel+"?start=2025-07-18T20:00:00Z", 400, "bad_request"),
		get("repeated parameter", tel+"?limit=1&limit=2", 400, "bad_request"),
		get("unknown format", tel+"?format=xml", 400, "bad_request"),
		get("SQL injection GPU id", "/api/v1/gpus/"+url.PathEscape(`GPU-1' OR '1'='1`)+"/telemetry", 404, "not_found"),
		get("unknown GPU", "/api/v1/gpus/GPU-00000000-0000-0000-0000-000000000000/telemetry", 404, "not_found"),
		get("GPU id of 200 bytes", "/api/v1/gpus/"+strings.Repeat("G", 200)+"/telemetry", 400, "bad_request"),
		get("invalid UTF-8 GPU id", "/api/v1/gpus/GPU-%FF%FE/telemetry", 400, "bad_request"),
		get("control character in GPU id", "/api/v1/gpus/GPU-%0A%0D/telemetry", 400, "bad_request"),
		get("unknown route", "/api/v1/nope", 404, "not_found"),
		get("query of 60 KB", tel+"?metric_name="+strings.Repeat("M", 60_000), 400, "bad_request"),
		// Past HTTP_MAX_HEADER_BYTES (64 KiB, the request line included):
		// net/http answers before any handler, in plain text.
		{name: "apigw query of 100 KB", svc: api, method: http.MethodGet, path: tel + "?metric_name=" + strings.Repeat("M", 100_000),
			status: http.StatusRequestHeaderFieldsTooLarge, plain: true},
		{name: "apigw POST gpus", svc: api, method: http.MethodPost, path: "/api/v1/gpus", ctype: "application/json", body: raw(`{}`), status: 405, code: "method_not_allowed"},
		{name: "apigw DELETE telemetry", svc: api, method: http.MethodDelete, path: tel, status: 405, code: "method_not_allowed"},
		{name: "apigw POST 10 MiB", svc: api, method: http.MethodPost, path: "/api/v1/gpus", ctype: "application/xml", body: tenMiBPublish, status: 405, code: "method_not_allowed", repeat: 3},
		{name: "apigw POST healthz", svc: api, method: http.MethodPost, path: "/healthz", ctype: "application/json", body: raw(`{}`), status: 405, code: "method_not_allowed"},
	}
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}
