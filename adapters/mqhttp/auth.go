package mqhttp

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync/atomic"
)

// Scope is what a bearer token allows on the queue protocol. Every route of
// the protocol has exactly one (see Routes).
type Scope string

// The scopes of the protocol.
const (
	// ScopePublish allows POST /v1/publish (mqwriter; the streamer's token).
	ScopePublish Scope = "publish"
	// ScopeConsume allows POST /v1/lease, /v1/ack and /v1/release
	// (mqreader; the collector's token).
	ScopeConsume Scope = "consume"
)

// AuthRealm is the realm of the server's WWW-Authenticate challenge.
const AuthRealm = "telemetry-queue"

// MinTokenLength is the shortest token the apps accept in their
// configuration: a short token can be guessed. `make run` generates 32
// random bytes, base64url-encoded (43 characters).
const MinTokenLength = 16

// Reasons of mqhttp_auth_refusals_total.
const (
	RefusalMissing    = "missing"     // no Authorization: Bearer header (401)
	RefusalInvalid    = "invalid"     // a token no scope lists (401)
	RefusalWrongScope = "wrong_scope" // a token of another scope (403)
)

// Auth holds the bearer tokens a Server accepts, by scope. Several tokens
// per scope are accepted at once so a token rotates without downtime: list
// the old and the new, move the clients to the new, drop the old. SetTokens
// replaces the set while the server runs (the apps call it when a token
// file changes). An Auth is safe for concurrent use.
//
// A token is compared with every configured token, of every scope, in
// constant time over SHA-256 digests, so neither the time of a refusal nor
// its length reveals which token came close. Tokens are never logged.
type Auth struct {
	set atomic.Pointer[tokenSet]
}

// tokenSet is an immutable snapshot of the accepted tokens.
type tokenSet struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest [sha256.Size]byte
	scope  Scope
}

// NewAuth returns an Auth accepting tokens (scope → tokens). Empty tokens
// are ignored; an Auth with no token refuses every request.
func NewAuth(tokens map[Scope][]string) *Auth {
	a := &Auth{}
	a.SetTokens(tokens)
	return a
}

// SetTokens replaces the accepted tokens; requests already past the check
// are not affected.
func (a *Auth) SetTokens(tokens map[Scope][]string) {
	set := &tokenSet{}
	for scope, list := range tokens {
		for _, t := range list {
			if t == "" {
				continue
			}
			set.entries = append(set.entries, tokenEntry{digest: sha256.Sum256([]byte(t)), scope: scope})
		}
	}
	a.set.Store(set)
}

// authorize returns "" when header carries a token of scope, else the
// reason of the refusal.
func (a *Auth) authorize(header string, scope Scope) string {
	token, ok := bearerToken(header)
	if !ok {
		return RefusalMissing
	}
	d := sha256.Sum256([]byte(token))
	inScope, other := 0, 0
	// No early exit: every configured token is compared, whatever matched.
	for _, e := range a.set.Load().entries {
		eq := subtle.ConstantTimeCompare(d[:], e.digest[:])
		if e.scope == scope {
			inScope |= eq
		} else {
			other |= eq
		}
	}
	switch {
	case inScope == 1:
		return ""
	case other == 1:
		return RefusalWrongScope
	default:
		return RefusalInvalid
	}
}

// bearerToken reads "Bearer <token>" (the scheme is case-insensitive, RFC
// 7235); false when the header is absent or another scheme. "Bearer" with
// no token is an (empty, so invalid) token.
func bearerToken(header string) (string, bool) {
	scheme, token, _ := strings.Cut(strings.TrimSpace(header), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// guard wraps e so it runs only for a request with a token of scope (see
// check). With no Auth the route is open.
func (s *Server) guard(scope Scope, e endpoint) endpoint {
	if s.auth == nil {
		return e
	}
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		if err := s.check(w, r, scope); err != nil {
			return nil, err
		}
		return e(w, r)
	}
}

// check is the one authentication check of every route: nil when r
// carries a token of scope (or the server has no Auth), else the refusal
// for writeError — a 401 (missing or unknown token) or a 403 (a token of
// another scope) — with its WWW-Authenticate challenge (RFC 6750) set on w
// and counted by reason. A route that does not fit endpoint (a streaming
// one) calls it before it reads the body.
func (s *Server) check(w http.ResponseWriter, r *http.Request, scope Scope) error {
	if s.auth == nil {
		return nil
	}
	reason := s.auth.authorize(r.Header.Get("Authorization"), scope)
	if reason == "" {
		return nil
	}
	s.metrics.refused(reason)
	challenge := `Bearer realm="` + AuthRealm + `"`
	switch reason {
	case RefusalMissing:
		w.Header().Set("WWW-Authenticate", challenge)
		return &protocolError{status: http.StatusUnauthorized, code: CodeUnauthenticated,
			message: "missing bearer token: send Authorization: Bearer <token> with a " + string(scope) + " token"}
	case RefusalInvalid:
		w.Header().Set("WWW-Authenticate", challenge+`, error="invalid_token"`)
		return &protocolError{status: http.StatusUnauthorized, code: CodeUnauthenticated,
			message: "invalid bearer token"}
	default:
		w.Header().Set("WWW-Authenticate", challenge+`, error="insufficient_scope", scope="`+string(scope)+`"`)
		return &protocolError{status: http.StatusForbidden, code: CodeForbidden,
			message: "this token may not " + string(scope) + "; " + r.URL.Path + " needs a " + string(scope) + " token"}
	}
}

// routeAuth is the Authorization header a client sends to one route.
type routeAuth struct {
	path, header string
}

// routeAuths is, for every route whose scope has a token, its header.
func routeAuths(tokens map[Scope]string) []routeAuth {
	var out []routeAuth
	for _, rt := range Routes() {
		if t := tokens[rt.Scope]; t != "" {
			out = append(out, routeAuth{path: rt.Path, header: "Bearer " + t})
		}
	}
	return out
}

// authHeader is the Authorization header of a call to endpoint (a base URL
// and a route's path), or "" when its scope has no token.
func (c *Client) authHeader(endpoint string) string {
	for _, a := range c.auth {
		if strings.HasSuffix(endpoint, a.path) {
			return a.header
		}
	}
	return ""
}
