package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/internal/startstop"
)

// Authentication modes of MQ_AUTH.
const (
	AuthToken = "token" // the default: bearer tokens on every queue route
	AuthNone  = "none"  // no authentication (a warning is logged at start)
)

// tokenReloadInterval is how often the token files are read again, so a
// rotated Secret (the kubelet rewrites the mounted file) applies without a
// restart.
const tokenReloadInterval = 10 * time.Second

// tokenSource is where one scope's accepted tokens come from: a
// comma-separated variable and a file of one token per line. Both may be
// set; the tokens of both are accepted.
type tokenSource struct {
	scope    mqhttp.Scope
	listVar  string // e.g. MQ_PUBLISH_TOKENS
	fileVar  string // e.g. MQ_PUBLISH_TOKENS_FILE
	list     []string
	file     string
	required bool // the app serves this scope: no token refuses the start
}

// tokens reads the source: the list and the file's lines.
func (s tokenSource) tokens() ([]string, error) {
	out := slices.Clone(s.list)
	if s.file != "" {
		b, err := os.ReadFile(s.file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.fileVar, err)
		}
		out = append(out, platform.SecretLines(b)...)
	}
	for _, t := range out {
		if len(t) < mqhttp.MinTokenLength {
			return nil, fmt.Errorf("%s/%s: a token is shorter than %d characters (make run generates 43)", s.listVar, s.fileVar, mqhttp.MinTokenLength)
		}
	}
	return out, nil
}

// serverTokens reads the queue server's token sources (MQ_AUTH,
// MQ_PUBLISH_TOKENS[_FILE], MQ_CONSUME_TOKENS[_FILE]) and returns the Auth
// for mqhttp.ServerOptions (nil with MQ_AUTH=none) and the fx option that
// logs the MQ_AUTH=none warning or re-reads the token files. The scopes in
// serves must have a token or the app refuses to start; the other scope's
// tokens are optional and only turn its tokens' 401 into a 403.
func serverTokens(env *platform.Env, serves ...mqhttp.Scope) (*mqhttp.Auth, fx.Option) {
	if env.OneOf("MQ_AUTH", AuthToken, AuthToken, AuthNone) == AuthNone {
		return nil, fx.Invoke(func(l *slog.Logger) {
			l.Warn("MQ_AUTH=none: the queue protocol is served without authentication; anyone who can reach this port can publish, lease and delete messages")
		})
	}
	sources := []tokenSource{
		{scope: mqhttp.ScopePublish, listVar: "MQ_PUBLISH_TOKENS", fileVar: "MQ_PUBLISH_TOKENS_FILE",
			list: env.List("MQ_PUBLISH_TOKENS", nil), file: env.String("MQ_PUBLISH_TOKENS_FILE", "")},
		{scope: mqhttp.ScopeConsume, listVar: "MQ_CONSUME_TOKENS", fileVar: "MQ_CONSUME_TOKENS_FILE",
			list: env.List("MQ_CONSUME_TOKENS", nil), file: env.String("MQ_CONSUME_TOKENS_FILE", "")},
	}
	for i := range sources {
		sources[i].required = slices.Contains(serves, sources[i].scope)
	}
	tokens, err := readTokens(sources)
	if err != nil {
		env.Fail(err)
		return nil, fx.Options()
	}
	auth := mqhttp.NewAuth(tokens)
	var files []string
	for _, s := range sources {
		if s.file != "" {
			files = append(files, s.file)
		}
	}
	if len(files) == 0 {
		return auth, fx.Options()
	}
	return auth, fx.Invoke(func(lc fx.Lifecycle, l *slog.Logger) {
		w := &tokenWatcher{sources: sources, files: files, auth: auth, log: l}
		start, stop := startstop.Hooks("token watcher", w.run)
		lc.Append(fx.Hook{OnStart: start, OnStop: stop})
	})
}

// readTokens reads every source, checking that each required scope has a
// token and that no token is listed in two scopes.
func readTokens(sources []tokenSource) (map[mqhttp.Scope][]string, error) {
	out := map[mqhttp.Scope][]string{}
	seen := map[string]mqhttp.Scope{}
	var errs []error
	for _, s := range sources {
		list, err := s.tokens()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s.required && len(list) == 0 {
			errs = append(errs, fmt.Errorf("%s or %s must list the %s tokens this app accepts (or set MQ_AUTH=none to serve the queue without authentication)",
				s.listVar, s.fileVar, s.scope))
		}
		for _, t := range list {
			if other, ok := seen[t]; ok && other != s.scope {
				errs = append(errs, fmt.Errorf("%s/%s: a token is also a %s token; each scope needs its own", s.listVar, s.fileVar, other))
			}
			seen[t] = s.scope
		}
		out[s.scope] = list
	}
	return out, errors.Join(errs...)
}

// tokenWatcher re-reads the token files every tokenReloadInterval and
// replaces the accepted tokens when they changed. A file that became
// unreadable, empty or invalid keeps the tokens in use (and is logged), so a
// half-written Secret never locks every client out.
type tokenWatcher struct {
	sources []tokenSource // immutable
	files   []string      // immutable
	auth    *mqhttp.Auth
	log     *slog.Logger
}

// run watches until ctx ends (the app's OnStop).
func (w *tokenWatcher) run(ctx context.Context) {
	last := w.snapshot() // owned by run
	t := time.NewTicker(tokenReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := w.snapshot()
		if bytes.Equal(now, last) {
			continue
		}
		tokens, err := readTokens(w.sources)
		if err != nil {
			w.log.Warn("queue token files changed but are not usable; keeping the tokens in use", "err", err)
			continue
		}
		last = now
		w.auth.SetTokens(tokens)
		w.log.Info("queue tokens reloaded", "publish_tokens", len(tokens[mqhttp.ScopePublish]), "consume_tokens", len(tokens[mqhttp.ScopeConsume]))
	}
}

// snapshot is the files' contents, to notice a change.
func (w *tokenWatcher) snapshot() []byte {
	var b bytes.Buffer
	for _, f := range w.files {
		c, _ := os.ReadFile(f) // an unreadable file is reported when read for use
		b.Write(c)
		b.WriteByte(0)
	}
	return b.Bytes()
}
