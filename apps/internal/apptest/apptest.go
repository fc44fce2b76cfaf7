// Package apptest starts an app's fx options in a test and checks what every
// app must serve: /healthz, /readyz and a promlint-clean /metrics. Only tests
// import it.
package apptest

import (
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

// Start builds the app's options from env (HTTP_ADDR forced to
// 127.0.0.1:0), starts it, stops it when the test ends, and returns the base
// URL of its server.
func Start(t *testing.T, build func(*platform.Env) fx.Option, env map[string]string) string {
	t.Helper()
	env["HTTP_ADDR"] = "127.0.0.1:0"
	e := platform.NewEnvFrom(env)
	var srv *platform.Server
	app := fxtest.New(t, build(e), fx.Populate(&srv))
	require.NoError(t, e.Err())
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	return "http://" + srv.Addr()
}

// The queue tokens the app tests configure (WithTokens) and send.
const (
	PublishToken = "apptest-publish-token-0123456789"
	ConsumeToken = "apptest-consume-token-0123456789"
)

// WithTokens adds the queue servers' token lists (MQ_PUBLISH_TOKENS and
// MQ_CONSUME_TOKENS, PublishToken and ConsumeToken) to env and returns it.
func WithTokens(env map[string]string) map[string]string {
	env["MQ_PUBLISH_TOKENS"] = PublishToken
	env["MQ_CONSUME_TOKENS"] = ConsumeToken
	return env
}

// Fetch makes one request (a JSON body when body is not empty) and returns
// the status and body.
func Fetch(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	return FetchAuth(t, method, url, "", body)
}

// FetchAuth is Fetch with Authorization: Bearer token (none when token is
// empty).
func FetchAuth(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// RequireProbesOK checks /healthz and /readyz answer 200.
func RequireProbesOK(t *testing.T, base string) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz"} {
		code, body := Fetch(t, http.MethodGet, base+path, "")
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
	}
}

// RequireCleanMetrics scrapes /metrics, requires promlint to find no
// problem and each name to be exposed, and returns the scrape. The Go and
// process collectors every app registers are always required.
func RequireCleanMetrics(t *testing.T, base string, names ...string) string {
	t.Helper()
	names = append(names, "go_goroutines", "process_cpu_seconds_total")
	code, body := Fetch(t, http.MethodGet, base+"/metrics", "")
	require.Equal(t, http.StatusOK, code)
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	require.NoError(t, err)
	require.Empty(t, problems, "promlint")
	for _, name := range names {
		require.Contains(t, body, "\n# TYPE "+name+" ", "metric %s is exposed", name)
	}
	return body
}

// UnreachableDB is a well-formed DATABASE_URL nothing listens on:
// fx.ValidateApp never connects.
const UnreachableDB = "postgres://x@127.0.0.1:1/x"

// Lifecycle is what every app's main_test checks, given its options.
type Lifecycle struct {
	// Valid is an environment fx.ValidateApp accepts (no connection is
	// made); nil skips the check.
	Valid map[string]string
	// Bad is an environment with mistakes, and BadNames what the
	// configuration error must contain (the variables it names).
	Bad      map[string]string
	BadNames []string
	// Start returns an environment to start and stop the app with
	// (HTTP_ADDR is forced to 127.0.0.1:0); nil skips it.
	Start func(t *testing.T) map[string]string
}

// RequireLifecycle runs l's checks as parallel subtests.
func RequireLifecycle(t *testing.T, build func(*platform.Env) fx.Option, l Lifecycle) {
	t.Helper()
	if l.Valid != nil {
		t.Run("validate", func(t *testing.T) {
			t.Parallel()
			RequireValid(t, build, l.Valid)
		})
	}
	if l.Bad != nil {
		t.Run("bad config names the variable", func(t *testing.T) {
			t.Parallel()
			e := platform.NewEnvFrom(l.Bad)
			_ = build(e)
			for _, want := range l.BadNames {
				require.ErrorContains(t, e.Err(), want)
			}
		})
	}
	if l.Start != nil {
		t.Run("start stop", func(t *testing.T) {
			t.Parallel()
			env := l.Start(t)
			env["HTTP_ADDR"] = "127.0.0.1:0"
			e := platform.NewEnvFrom(env)
			app := fxtest.New(t, build(e))
			require.NoError(t, e.Err())
			app.RequireStart().RequireStop()
		})
	}
}

// RequireValid checks that the app's options build a valid fx graph from
// env, and that env holds no configuration error.
func RequireValid(t *testing.T, build func(*platform.Env) fx.Option, env map[string]string) {
	t.Helper()
	e := platform.NewEnvFrom(env)
	require.NoError(t, fx.ValidateApp(build(e)), "env %v", env)
	require.NoError(t, e.Err())
}

// RequireEnvErr checks env's configuration error: none when want is empty,
// else one containing want.
func RequireEnvErr(t *testing.T, env *platform.Env, want string) {
	t.Helper()
	if want == "" {
		require.NoError(t, env.Err())
		return
	}
	require.ErrorContains(t, env.Err(), want)
}

// EnvCase is one row of a configuration table: the variables set, and
// either the value read from them (WantErr empty) or a part of the
// configuration error they must cause.
type EnvCase[T any] struct {
	Name    string
	Env     map[string]string
	Want    T
	WantErr string
}

// RunEnvCases runs each case as a parallel subtest: read reads an Env of
// the case's variables alone; then the Env must hold the case's error, or
// none and read's value must equal Want. (What a read returns beside an
// error is Env's own rule, tested once in package platform.)
func RunEnvCases[T any](t *testing.T, cases []EnvCase[T], read func(*platform.Env) T) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(c.Env)
			got := read(env)
			RequireEnvErr(t, env, c.WantErr)
			if c.WantErr == "" {
				require.Equal(t, c.Want, got)
			}
		})
	}
}

// Request is one call an app must answer with 200 before its metrics are
// scraped (so labelled series exist and are linted too), sent with Token
// when it is set.
type Request struct{ Method, Path, Body, Token string }

// RequireServes checks the probes, makes req (when set), and requires a
// clean /metrics exposing names; it returns the scrape.
func RequireServes(t *testing.T, base string, req *Request, names ...string) string {
	t.Helper()
	RequireProbesOK(t, base)
	if req != nil {
		code, body := FetchAuth(t, req.Method, base+req.Path, req.Token, req.Body)
		require.Equal(t, http.StatusOK, code, body)
	}
	return RequireCleanMetrics(t, base, names...)
}

// TopicCase is one request of RequireServesOnlyQueueTopics: to Topic, from
// an app started with Env, answered with Status.
type TopicCase struct {
	Name   string
	Env    map[string]string
	Topic  string
	Status int
}

// RequireServesOnlyQueueTopics starts the app once per case (with env's
// variables added to the case's) and POSTs body(topic) to path with token:
// a topic outside QUEUE_TOPICS must be a 404 with the not_found code.
func RequireServesOnlyQueueTopics(t *testing.T, build func(*platform.Env) fx.Option, env func(t *testing.T) map[string]string,
	path, token string, body func(topic string) string, cases []TopicCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			vars := env(t)
			maps.Copy(vars, tc.Env)
			base := Start(t, build, vars)
			code, resp := FetchAuth(t, http.MethodPost, base+path, token, body(tc.Topic))
			require.Equal(t, tc.Status, code, resp)
			if tc.Status == http.StatusNotFound {
				require.Contains(t, resp, `"not_found"`)
			}
		})
	}
}

// QueueAuth describes a queue server app for RequireQueueAuth.
type QueueAuth struct {
	// Env is the app's environment without tokens (a database, a range).
	Env func(t *testing.T) map[string]string
	// Path and Body are a call of the app's scope, Token its token and
	// Other a token of the other scope.
	Path, Body, Token, Other string
	// Missing are the variables the refusal to start without tokens names.
	Missing []string
}

// RequireQueueAuth checks a queue server app's authentication: without
// tokens it refuses to start, naming the variables; MQ_AUTH=none starts
// it; with tokens, /healthz, /readyz and /metrics stay open while the
// protocol answers 401 without a token, 403 with the other scope's and 200
// with its own.
func RequireQueueAuth(t *testing.T, build func(*platform.Env) fx.Option, q QueueAuth) {
	t.Helper()
	t.Run("refuses to start without tokens", func(t *testing.T) {
		t.Parallel()
		e := platform.NewEnvFrom(map[string]string{"DATABASE_URL": UnreachableDB})
		_ = build(e)
		require.Error(t, e.Err())
		for _, name := range q.Missing {
			require.ErrorContains(t, e.Err(), name)
		}
		require.ErrorContains(t, e.Err(), "MQ_AUTH=none")
	})
	t.Run("MQ_AUTH=none needs no token", func(t *testing.T) {
		t.Parallel()
		RequireValid(t, build, map[string]string{"DATABASE_URL": UnreachableDB, "MQ_AUTH": "none"})
	})
	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		base := Start(t, build, WithTokens(q.Env(t)))
		for _, path := range []string{"/healthz", "/metrics"} {
			code, body := Fetch(t, http.MethodGet, base+path, "")
			require.Equal(t, http.StatusOK, code, "%s is open: %s", path, body)
		}
		code, body := Fetch(t, http.MethodGet, base+"/readyz", "")
		require.NotEqual(t, http.StatusUnauthorized, code, "/readyz is open: %s", body)
		code, body = FetchAuth(t, http.MethodPost, base+q.Path, "", q.Body)
		require.Equal(t, http.StatusUnauthorized, code, body)
		code, body = FetchAuth(t, http.MethodPost, base+q.Path, q.Other, q.Body)
		require.Equal(t, http.StatusForbidden, code, body)
		code, body = FetchAuth(t, http.MethodPost, base+q.Path, q.Token, q.Body)
		require.Equal(t, http.StatusOK, code, body)
	})
}
