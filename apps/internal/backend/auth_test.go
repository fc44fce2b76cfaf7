package backend

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

const (
	tokA = "token-a-0123456789abcdef"
	tokB = "token-b-0123456789abcdef"
	tokC = "token-c-0123456789abcdef"
)

type okPublisher struct{}

func (okPublisher) Publish(context.Context, string, []ports.OutgoingMessage) (ports.PublishResult, error) {
	return ports.PublishResult{}, nil
}

// publishStatus is the status of a publish with token through a server
// guarded by auth (no network: it runs inside synctest bubbles too).
func publishStatus(t *testing.T, auth *mqhttp.Auth, token string) int {
	t.Helper()
	h := mqhttp.NewServer(okPublisher{}, nil, mqhttp.ServerOptions{Auth: auth, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).Handler()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, mqhttp.PathPublish,
		strings.NewReader(`{"topic":"telemetry","messages":[{"payload":{}}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	// Write then rename, as the kubelet swaps a Secret's files.
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(body), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func TestServerTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "publish")
	writeFile(t, file, "# rotated 2026-12-03\n\n  "+tokB+"  \n"+tokC+"\n")
	short := filepath.Join(dir, "short")
	writeFile(t, short, "short\n")
	tests := []struct {
		name    string
		env     map[string]string
		serves  []mqhttp.Scope
		accepts []string // publish tokens
		refuses []string
		errs    []string
	}{
		{name: "list", env: map[string]string{"MQ_PUBLISH_TOKENS": tokA + " , " + tokB}, serves: []mqhttp.Scope{mqhttp.ScopePublish},
			accepts: []string{tokA, tokB}, refuses: []string{tokC}},
		{name: "file, comments and blanks ignored", env: map[string]string{"MQ_PUBLISH_TOKENS_FILE": file}, serves: []mqhttp.Scope{mqhttp.ScopePublish},
			accepts: []string{tokB, tokC}, refuses: []string{tokA, "# rotated 2026-12-03"}},
		{name: "list and file", env: map[string]string{"MQ_PUBLISH_TOKENS": tokA, "MQ_PUBLISH_TOKENS_FILE": file}, serves: []mqhttp.Scope{mqhttp.ScopePublish},
			accepts: []string{tokA, tokB, tokC}},
		{name: "none", env: map[string]string{}, serves: []mqhttp.Scope{mqhttp.ScopePublish},
			errs: []string{"MQ_PUBLISH_TOKENS or MQ_PUBLISH_TOKENS_FILE must list the publish tokens", "MQ_AUTH=none"}},
		{name: "both scopes required", env: map[string]string{}, serves: []mqhttp.Scope{mqhttp.ScopePublish, mqhttp.ScopeConsume},
			errs: []string{"MQ_PUBLISH_TOKENS or", "MQ_CONSUME_TOKENS or"}},
		{name: "other scope optional", env: map[string]string{"MQ_CONSUME_TOKENS": tokA}, serves: []mqhttp.Scope{mqhttp.ScopeConsume}},
		{name: "missing file", env: map[string]string{"MQ_PUBLISH_TOKENS_FILE": filepath.Join(dir, "nope")}, serves: []mqhttp.Scope{mqhttp.ScopePublish},
			errs: []string{"MQ_PUBLISH_TOKENS_FILE", "no such file"}},
		{name: "short token", env: map[string]string{"MQ_PUBLISH_TOKENS_FILE": short}, serves: []mqhttp.Scope{mqhttp.ScopePublish},
			errs: []string{"shorter than 16 characters"}},
		{name: "one token in two scopes", env: map[string]string{"MQ_PUBLISH_TOKENS": tokA, "MQ_CONSUME_TOKENS": tokA}, serves: []mqhttp.Scope{mqhttp.ScopePublish},
			errs: []string{"MQ_CONSUME_TOKENS/MQ_CONSUME_TOKENS_FILE: a token is also a publish token"}},
		{name: "bad MQ_AUTH", env: map[string]string{"MQ_AUTH": "basic", "MQ_PUBLISH_TOKENS": tokA}, serves: []mqhttp.Scope{mqhttp.ScopePublish},
			errs: []string{`MQ_AUTH="basic": want one of token, none`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			auth, _ := serverTokens(env, tt.serves...)
			if len(tt.errs) > 0 {
				require.Error(t, env.Err())
				for _, e := range tt.errs {
					require.ErrorContains(t, env.Err(), e)
				}
				return
			}
			require.NoError(t, env.Err())
			require.NotNil(t, auth)
			for _, tok := range tt.accepts {
				require.Equal(t, http.StatusOK, publishStatus(t, auth, tok), tok)
			}
			for _, tok := range tt.refuses {
				require.Equal(t, http.StatusUnauthorized, publishStatus(t, auth, tok), tok)
			}
		})
	}
}

func TestServerTokensAuthNone(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"MQ_AUTH": "none"})
	auth, opt := serverTokens(env, mqhttp.ScopePublish, mqhttp.ScopeConsume)
	require.NoError(t, env.Err())
	require.Nil(t, auth, "no authentication")
	require.NotNil(t, opt, "logs the warning")
}

// TestTokenFilesReloaded: a rotated token file applies without a restart;
// an emptied one keeps the tokens in use.
func TestTokenFilesReloaded(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "publish")
	writeFile(t, file, tokA+"\n")
	synctest.Test(t, func(t *testing.T) {
		env := platform.NewEnvFrom(map[string]string{"MQ_PUBLISH_TOKENS_FILE": file})
		auth, _ := serverTokens(env, mqhttp.ScopePublish)
		require.NoError(t, env.Err())
		var logs bytes.Buffer
		w := &tokenWatcher{
			sources: []tokenSource{{scope: mqhttp.ScopePublish, listVar: "MQ_PUBLISH_TOKENS", fileVar: "MQ_PUBLISH_TOKENS_FILE", file: file, required: true}},
			files:   []string{file}, auth: auth, log: slog.New(slog.NewTextHandler(&logs, nil)),
		}
		loop := startstop.Go(w.run)
		defer func() { require.NoError(t, loop.Stop(t.Context())) }()
		synctest.Wait()
		require.Equal(t, http.StatusOK, publishStatus(t, auth, tokA))

		writeFile(t, file, tokA+"\n"+tokB+"\n") // rotation: old and new
		time.Sleep(tokenReloadInterval)
		synctest.Wait()
		require.Equal(t, http.StatusOK, publishStatus(t, auth, tokA))
		require.Equal(t, http.StatusOK, publishStatus(t, auth, tokB))

		writeFile(t, file, tokB+"\n") // the old one dropped
		time.Sleep(tokenReloadInterval)
		synctest.Wait()
		require.Equal(t, http.StatusUnauthorized, publishStatus(t, auth, tokA))
		require.Equal(t, http.StatusOK, publishStatus(t, auth, tokB))

		writeFile(t, file, "# nothing yet\n") // half-written: keep what works
		time.Sleep(tokenReloadInterval)
		synctest.Wait()
		require.Equal(t, http.StatusOK, publishStatus(t, auth, tokB))
		require.Contains(t, logs.String(), "keeping the tokens in use")
		require.Contains(t, logs.String(), "queue tokens reloaded")
		for _, tok := range []string{tokA, tokB} {
			require.NotContains(t, logs.String(), tok, "a token reached the log")
		}
	})
}

func TestClientTokens(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, "# the streamer's token\n"+tokA+"\n")
	two := filepath.Join(t.TempDir(), "two")
	writeFile(t, two, tokA+"\n"+tokB+"\n")
	tests := []struct {
		name      string
		env       map[string]string
		publish   string
		consume   string
		errSubstr string
	}{
		{name: "variables", env: map[string]string{"MQ_PUBLISH_TOKEN": tokA, "MQ_CONSUME_TOKEN": tokB}, publish: tokA, consume: tokB},
		{name: "file", env: map[string]string{"MQ_PUBLISH_TOKEN_FILE": file, "MQ_CONSUME_TOKEN_FILE": file}, publish: tokA, consume: tokA},
		{name: "both set", env: map[string]string{"MQ_PUBLISH_TOKEN": tokA, "MQ_PUBLISH_TOKEN_FILE": file},
			errSubstr: "MQ_PUBLISH_TOKEN and MQ_PUBLISH_TOKEN_FILE are both set"},
		{name: "two tokens in the file", env: map[string]string{"MQ_CONSUME_TOKEN_FILE": two},
			errSubstr: "want exactly one secret, found 2"},
		{name: "none: sends none", env: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			pub := env.Secret("MQ_PUBLISH_TOKEN", env.String("MQ_PUBLISH_TOKEN", ""), "MQ_PUBLISH_TOKEN_FILE", env.String("MQ_PUBLISH_TOKEN_FILE", ""))
			cons := env.Secret("MQ_CONSUME_TOKEN", env.String("MQ_CONSUME_TOKEN", ""), "MQ_CONSUME_TOKEN_FILE", env.String("MQ_CONSUME_TOKEN_FILE", ""))
			if tt.errSubstr != "" {
				require.ErrorContains(t, env.Err(), tt.errSubstr)
				return
			}
			require.NoError(t, env.Err())
			require.Equal(t, tt.publish, pub)
			require.Equal(t, tt.consume, cons)
		})
	}
}
