package mqhttp_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/ports"
)

const (
	publishToken    = "publish-token-aaaaaaaaaaaaaaaaaaaa"
	publishTokenNew = "publish-token-bbbbbbbbbbbbbbbbbbbb"
	consumeToken    = "consume-token-cccccccccccccccccccc"
)

// authRequest makes one request with authorization as the Authorization
// header ("" sends none).
func authRequest(t *testing.T, url, path, authorization, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	require.NoError(t, err)
	return answer{status: resp.StatusCode, header: resp.Header, body: b.Bytes()}
}

// authServer serves a memory queue, both sides, behind auth; logs go to
// logs so a test can check that no token is written.
func authServer(t *testing.T, auth *mqhttp.Auth, reg prometheus.Registerer, logs *bytes.Buffer) (*httptest.Server, *memory.Queue) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	srv := httptest.NewServer(mqhttp.NewServer(q, q, mqhttp.ServerOptions{Logger: log, Registerer: reg, Auth: auth}).Handler())
	t.Cleanup(srv.Close)
	return srv, q
}

// bodyFor is a valid request body for path: a right token gets past the
// check to the endpoint (200 for publish and lease, 400 or 409 for an
// ack/release of an unknown lease).
func bodyFor(path string) string {
	switch path {
	case mqhttp.PathPublish:
		return `{"topic":"auth","messages":[{"payload":{"n":1}}]}`
	case mqhttp.PathLease:
		return `{"topic":"auth","consumer_id":"c","max":10,"lease_seconds":30}`
	default:
		return `{"topic":"auth","consumer_id":"c","lease_id":"00000000-0000-4000-8000-000000000000"}`
	}
}

func TestAuthRefusesByRoute(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	var logs bytes.Buffer
	auth := mqhttp.NewAuth(map[mqhttp.Scope][]string{mqhttp.ScopePublish: {publishToken}, mqhttp.ScopeConsume: {consumeToken}})
	srv, _ := authServer(t, auth, reg, &logs)
	tokenOf := map[mqhttp.Scope]string{mqhttp.ScopePublish: publishToken, mqhttp.ScopeConsume: consumeToken}
	otherOf := map[mqhttp.Scope]string{mqhttp.ScopePublish: consumeToken, mqhttp.ScopeConsume: publishToken}

	routes := mqhttp.Routes()
	require.Len(t, routes, 5, "every route of the protocol has a scope (the publish stream's too)")
	var refusals int
	for _, rt := range routes {
		cases := []struct {
			name, authorization string
			status              int
			code, challenge     string
		}{
			{"missing", "", 401, "unauthenticated", `Bearer realm="telemetry-queue"`},
			{"basic scheme", "Basic dXNlcjpwYXNz", 401, "unauthenticated", `Bearer realm="telemetry-queue"`},
			{"empty bearer", "Bearer ", 401, "unauthenticated", `Bearer realm="telemetry-queue", error="invalid_token"`},
			{"wrong token", "Bearer not-a-token-0000000000000000", 401, "unauthenticated", `Bearer realm="telemetry-queue", error="invalid_token"`},
			{"prefix of the right token", "Bearer " + tokenOf[rt.Scope][:10], 401, "unauthenticated", `Bearer realm="telemetry-queue", error="invalid_token"`},
			{"other scope", "Bearer " + otherOf[rt.Scope], 403, "forbidden",
				`Bearer realm="telemetry-queue", error="insufficient_scope", scope="` + string(rt.Scope) + `"`},
		}
		for _, tc := range cases {
			t.Run(rt.Path+"/"+tc.name, func(t *testing.T) {
				a := authRequest(t, srv.URL, rt.Path, tc.authorization, bodyFor(rt.Path))
				require.Equal(t, tc.status, a.status, "%s", a.body)
				require.Equal(t, tc.code, a.errorBody(t).Error.Code)
				require.Equal(t, tc.challenge, a.header.Get("WWW-Authenticate"))
				require.Contains(t, a.header.Get("Content-Type"), "application/json")
			})
			refusals++
		}
		t.Run(rt.Path+"/right scope", func(t *testing.T) {
			a := authRequest(t, srv.URL, rt.Path, "bearer "+tokenOf[rt.Scope], bodyFor(rt.Path))
			require.NotContains(t, []int{401, 403}, a.status, "%s", a.body)
			require.Empty(t, a.header.Get("WWW-Authenticate"))
		})
	}

	want := `
# HELP mqhttp_auth_refusals_total Queue protocol requests refused by authentication, by reason: missing or invalid token (401), token of the wrong scope (403).
# TYPE mqhttp_auth_refusals_total counter
mqhttp_auth_refusals_total{reason="invalid"} 15
mqhttp_auth_refusals_total{reason="missing"} 10
mqhttp_auth_refusals_total{reason="wrong_scope"} 5
`
	require.Equal(t, 30, refusals)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "mqhttp_auth_refusals_total"))
	promxtest.RequireLintClean(t, reg)
	for _, tok := range []string{publishToken, consumeToken, tokenOf[mqhttp.ScopePublish][:10]} {
		require.NotContains(t, logs.String(), tok, "a token reached the log")
	}
	require.Contains(t, logs.String(), "status=401", "refusals are logged, without their tokens")
}

// TestAuthRefusalDeletesNothing: a lease and an ack without the consume
// token leave the message queued for the collector.
func TestAuthRefusalDeletesNothing(t *testing.T) {
	t.Parallel()
	auth := mqhttp.NewAuth(map[mqhttp.Scope][]string{mqhttp.ScopePublish: {publishToken}, mqhttp.ScopeConsume: {consumeToken}})
	srv, _ := authServer(t, auth, nil, &bytes.Buffer{})
	require.Equal(t, 200, authRequest(t, srv.URL, mqhttp.PathPublish, "Bearer "+publishToken, bodyFor(mqhttp.PathPublish)).status)
	for _, authorization := range []string{"", "Bearer " + publishToken, "Bearer guess-guess-guess-guess"} {
		require.Contains(t, []int{401, 403}, authRequest(t, srv.URL, mqhttp.PathLease, authorization, bodyFor(mqhttp.PathLease)).status)
	}
	c, err := mqhttp.NewClient(mqhttp.ClientConfig{ReaderURLs: []string{srv.URL}, ConsumeToken: consumeToken})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	lease, err := c.Lease(t.Context(), ports.LeaseRequest{Topic: "auth", ConsumerID: "c", Max: 10, LeaseDuration: 30 * time.Second})
	require.NoError(t, err)
	require.Len(t, lease.Messages, 1, "the refused leases took nothing")
}

// TestAuthRotation: two tokens of a scope both work; after SetTokens drops
// the old one, only the new one does.
func TestAuthRotation(t *testing.T) {
	t.Parallel()
	auth := mqhttp.NewAuth(map[mqhttp.Scope][]string{mqhttp.ScopePublish: {publishToken, publishTokenNew}})
	srv, _ := authServer(t, auth, nil, &bytes.Buffer{})
	publish := func(token string) int {
		return authRequest(t, srv.URL, mqhttp.PathPublish, "Bearer "+token, bodyFor(mqhttp.PathPublish)).status
	}
	require.Equal(t, 200, publish(publishToken))
	require.Equal(t, 200, publish(publishTokenNew))

	auth.SetTokens(map[mqhttp.Scope][]string{mqhttp.ScopePublish: {publishTokenNew}})
	require.Equal(t, 401, publish(publishToken), "the dropped token")
	require.Equal(t, 200, publish(publishTokenNew))

	auth.SetTokens(nil)
	require.Equal(t, 401, publish(publishTokenNew), "no token configured refuses everything")
}

// TestAuthLeavesUnservedRoutesAndUnknownPathsAlone: a side the server does
// not serve, an unknown route and a wrong method answer as before, without
// a token (they touch no message).
func TestAuthLeavesUnservedRoutesAndUnknownPathsAlone(t *testing.T) {
	t.Parallel()
	auth := mqhttp.NewAuth(map[mqhttp.Scope][]string{mqhttp.ScopePublish: {publishToken}})
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	writer := httptest.NewServer(mqhttp.NewServer(q, nil, mqhttp.ServerOptions{Logger: quietLogger(), Auth: auth}).Handler())
	t.Cleanup(writer.Close)

	require.Equal(t, 404, authRequest(t, writer.URL, mqhttp.PathLease, "", bodyFor(mqhttp.PathLease)).status)
	require.Equal(t, 404, authRequest(t, writer.URL, "/v1/nope", "", `{}`).status)
	require.Equal(t, 405, send(t, writer.URL, http.MethodGet, mqhttp.PathPublish, "", "").status)
	require.Equal(t, 401, authRequest(t, writer.URL, mqhttp.PathPublish, "", bodyFor(mqhttp.PathPublish)).status)
}

// TestClientSendsToken: the client's token reaches the server on every
// call, and a refusal is not retried.
func TestClientSendsToken(t *testing.T) {
	t.Parallel()
	auth := mqhttp.NewAuth(map[mqhttp.Scope][]string{mqhttp.ScopePublish: {publishToken}, mqhttp.ScopeConsume: {consumeToken}})
	reg := prometheus.NewPedanticRegistry()
	srv, _ := authServer(t, auth, reg, &bytes.Buffer{})

	pub, err := mqhttp.NewClient(mqhttp.ClientConfig{WriterURL: srv.URL, ReaderURLs: []string{srv.URL}, PublishToken: publishToken, Metrics: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })
	_, err = pub.Publish(t.Context(), "auth", []ports.OutgoingMessage{{Payload: []byte(`{"n":1}`)}})
	require.NoError(t, err)
	_, err = pub.Lease(t.Context(), ports.LeaseRequest{Topic: "auth", ConsumerID: "c", Max: 1, LeaseDuration: time.Second})
	require.ErrorIs(t, err, ports.ErrInvalidArgument, "a client without a consume token may not lease")
	require.ErrorContains(t, err, "401 unauthenticated")

	wrong, err := mqhttp.NewClient(mqhttp.ClientConfig{ReaderURLs: []string{srv.URL}, ConsumeToken: publishToken, Metrics: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = wrong.Close() })
	_, err = wrong.Lease(t.Context(), ports.LeaseRequest{Topic: "auth", ConsumerID: "c", Max: 1, LeaseDuration: time.Second})
	require.ErrorIs(t, err, ports.ErrInvalidArgument, "a publish token may not lease")
	require.ErrorContains(t, err, "403 forbidden")
	require.NotContains(t, err.Error(), publishToken)
	require.Zero(t, testutil.CollectAndCount(reg, "mqhttp_client_retries_total"), "a refusal is not retried")

	cons, err := mqhttp.NewClient(mqhttp.ClientConfig{ReaderURLs: []string{srv.URL}, ConsumeToken: consumeToken})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cons.Close() })
	lease, err := cons.Lease(t.Context(), ports.LeaseRequest{Topic: "auth", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
	require.NoError(t, err)
	require.Len(t, lease.Messages, 1)
	require.NoError(t, cons.Ack(t.Context(), ports.LeaseRef{Topic: "auth", ConsumerID: "c", LeaseID: lease.ID}))

	// One client with both tokens sends each with its own routes.
	both, err := mqhttp.NewClient(mqhttp.ClientConfig{WriterURL: srv.URL, ReaderURLs: []string{srv.URL},
		PublishToken: publishToken, ConsumeToken: consumeToken})
	require.NoError(t, err)
	t.Cleanup(func() { _ = both.Close() })
	_, err = both.Publish(t.Context(), "auth", []ports.OutgoingMessage{{Payload: []byte(`{"n":2}`)}})
	require.NoError(t, err)
	lease, err = both.Lease(t.Context(), ports.LeaseRequest{Topic: "auth", ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
	require.NoError(t, err)
	require.Len(t, lease.Messages, 1)
	require.NoError(t, both.Release(t.Context(), ports.LeaseRef{Topic: "auth", ConsumerID: "c", LeaseID: lease.ID}))
}
