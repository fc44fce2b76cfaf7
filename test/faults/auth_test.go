//go:build faults

package faults

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/test/stack"
)

// forgedToken is a token nobody configured.
const forgedToken = "forged-token-0123456789abcdefghijklmnop"

// Scenario 7b: calls without a token, with a forged token and with the
// other scope's token on every queue endpoint (mqhttp.Routes: a new route
// is covered when it is added) of mqwriter and mqreader, while no collector
// runs: each is a 401 or 403 with a JSON error and a Bearer challenge,
// counted by reason, and nothing is published, leased or deleted —
// queue_messages holds exactly the rows it held before, also after a
// genuine lease whose id the refused acks name. Then collectors start and
// drain everything, exactly once.
func unauthenticated(t *testing.T, s *system, rng *rand.Rand) (history, expectations, func(figures)) {
	w := s.writer(nil)
	r := s.reader("mqreader", "0-255", nil)
	p := startPublisher(t, w, defaultLoad("s7b", rng.Uint64()))
	progress(t, p, 300)
	h := p.stop()

	const rows = `SELECT count(*) FROM queue_messages`
	before := s.count(rows)
	require.Positive(t, before, "nothing queued to protect")
	client := &http.Client{Timeout: 30 * time.Second}

	// A genuine lease, so the refused acks and releases name a live lease id.
	var lease struct {
		LeaseID  string            `json:"lease_id"`
		Messages []json.RawMessage `json:"messages"`
	}
	leaseBody := `{"topic":"telemetry","consumer_id":"owner","max":10,"lease_seconds":60}`
	// The reader loads the queued rows in the background: lease until it has.
	require.Eventually(t, func() bool {
		status, body, _ := authCall(t, client, r, mqhttp.PathLease, stack.ConsumeToken, leaseBody)
		require.Equal(t, http.StatusOK, status, "%s", body)
		require.NoError(t, json.Unmarshal(body, &lease))
		return len(lease.Messages) > 0
	}, 30*time.Second, 50*time.Millisecond, "the reader leases nothing")

	serving := map[mqhttp.Scope]*service{mqhttp.ScopePublish: w, mqhttp.ScopeConsume: r}
	other := map[mqhttp.Scope]string{mqhttp.ScopePublish: stack.ConsumeToken, mqhttp.ScopeConsume: stack.PublishToken}
	bodyOf := map[string]string{
		mqhttp.PathPublish: `{"topic":"telemetry","messages":[{"payload":{"gpu_uuid":"GPU-intruder"}}]}`,
		mqhttp.PathLease:   `{"topic":"telemetry","consumer_id":"intruder","max":100,"lease_seconds":3600}`,
		mqhttp.PathAck:     `{"topic":"telemetry","consumer_id":"owner","lease_id":"` + lease.LeaseID + `"}`,
		mqhttp.PathRelease: `{"topic":"telemetry","consumer_id":"owner","lease_id":"` + lease.LeaseID + `"}`,
	}
	refusals := map[*service]float64{}
	for _, rt := range mqhttp.Routes() {
		svc := serving[rt.Scope]
		b, ok := bodyOf[rt.Path]
		if !ok {
			b = `{"topic":"telemetry"}` // a route added later: refused before its body is read
		}
		for _, bad := range []struct {
			name, token, code, challenge string
			status                       int
		}{
			{"no token", "", "unauthenticated", `Bearer realm="telemetry-queue"`, http.StatusUnauthorized},
			{"forged token", forgedToken, "unauthenticated", `error="invalid_token"`, http.StatusUnauthorized},
			{"other scope's token", other[rt.Scope], "forbidden", `error="insufficient_scope"`, http.StatusForbidden},
		} {
			status, body, header := authCall(t, client, svc, rt.Path, bad.token, b)
			require.Equal(t, bad.status, status, "%s %s with %s: %s", svc.name, rt.Path, bad.name, body)
			require.Contains(t, header.Get("WWW-Authenticate"), bad.challenge, "%s %s with %s", svc.name, rt.Path, bad.name)
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			require.NoError(t, json.Unmarshal(body, &e), "%s %s: error body is not JSON: %s", svc.name, rt.Path, body)
			require.Equal(t, bad.code, e.Error.Code)
			if bad.token != "" {
				require.NotContains(t, string(body), bad.token, "the answer echoes no token")
			}
			refusals[svc]++
		}
	}
	require.Equal(t, before, s.count(rows), "a refused call published or deleted messages")
	for svc, n := range refusals {
		require.Equal(t, n, s.counter(svc, "mqhttp_auth_refusals_total"), "%s counts its refusals", svc.name)
	}

	// The owner gives its lease back; the collectors take everything.
	status, body, _ := authCall(t, client, r, mqhttp.PathRelease, stack.ConsumeToken, bodyOf[mqhttp.PathRelease])
	require.Equal(t, http.StatusOK, status, "%s", body)
	for _, name := range []string{"collector-1", "collector-2"} {
		s.collector(name, []*service{r}, nil)
	}
	return h, expectations{drainWithin: 30 * time.Second, maxRedelivered: 0.05}, func(f figures) {
		t.Logf("%d queued messages survived %d refused calls", before, int(refusals[w]+refusals[r]))
	}
}

// authCall POSTs body to path on svc with token ("" sends none) and returns
// the status, body and headers.
func authCall(t *testing.T, client *http.Client, svc *service, path, token, body string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+svc.addr+path, bytes.NewReader([]byte(body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	require.NoError(t, err, "%s did not answer", svc.name)
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(t, err)
	require.Contains(t, strings.ToLower(resp.Header.Get("Content-Type")), "application/json")
	return resp.StatusCode, b, resp.Header
}
