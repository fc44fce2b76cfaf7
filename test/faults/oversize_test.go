//go:build faults

package faults

import (
	"context"
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/stack"
)

// leasePeriod is the collectors' lease (LEASE_SECONDS in system.collector).
const leasePeriod = 5 * time.Second

// Scenario 10: telemetry points beyond a field bound (domain/bounds.go) —
// a 3,000-character incompressible gpu_uuid (its index row would exceed
// PostgreSQL's limit: SQLSTATE 54000) and a 1 MiB label — while the
// pipeline runs. Published to mqwriter they are refused naming the problem
// (the gpu_uuid a 400 naming the field; the label's payload, over
// MQ_MAX_PAYLOAD_BYTES, a 413) and nothing is queued; injected straight
// into queue_messages (as a
// writer of another version, or a hand-made row, could) each is
// dead-lettered within one lease period while the persisted count keeps
// rising: nothing is released again and again.
func oversizedFields(t *testing.T, s *system, rng *rand.Rand) (history, expectations, func(figures)) {
	w, _, _ := pipeline(s, nil, nil)
	p := startPublisher(t, w, defaultLoad("s10", rng.Uint64()))
	progress(t, p, 300)

	pt := p.points[rng.IntN(len(p.points))]
	pt.Timestamp = time.Now().UTC()
	longUUID := pt
	longUUID.GPUUUID = incompressible(rng, 3000)
	hugeLabel := pt
	hugeLabel.LabelsRaw = incompressible(rng, 1<<20)
	cases := []struct {
		name    string
		point   domain.Point
		status  int    // 400 for a field over its bound; 413 for a payload over MQ_MAX_PAYLOAD_BYTES
		mention string // what the refusal must name
	}{
		{"3000-character gpu_uuid", longUUID, http.StatusBadRequest, "gpu_uuid"},
		{"1 MiB label", hugeLabel, http.StatusRequestEntityTooLarge, "payload"},
	}

	for _, c := range cases {
		body := mustJSON(map[string]any{"topic": domain.TelemetryTopic, "messages": []any{map[string]any{"payload": c.point}}})
		status, answer := send(t, s.http, hostileCase{name: c.name, svc: w, method: http.MethodPost, path: "/v1/publish",
			ctype: "application/json", body: func() []byte { return body }, token: stack.PublishToken})
		require.Equal(t, c.status, status, "%s published to mqwriter: %s", c.name, clip(string(answer)))
		require.Contains(t, string(answer), c.mention, "%s: the refusal names the problem", c.name)
		t.Logf("%s published to mqwriter: %d %s", c.name, status, clip(string(answer)))
	}
	require.Zero(t, s.count(`SELECT count(*) FROM queue_messages
		WHERE length(payload->>'gpu_uuid') > $1 OR length(payload->>'labels_raw') > $2`,
		domain.MaxGPUUUIDBytes, domain.MaxLabelsRawBytes), "a refused publish queued nothing")

	before := s.count(`SELECT count(*) FROM telemetry_samples`)
	var (
		injected []msgRecord
		ids      []uuid.UUID
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, c := range cases {
		payload := mustJSON(c.point)
		id := uuid.New()
		part := domain.PartitionOf(domain.PartitionKey(domain.OutgoingMessage{Payload: payload}, id))
		_, err := s.pool.Exec(ctx, `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key) VALUES ($1, $2, $3, $4)`,
			domain.TelemetryTopic, id, string(payload), part)
		require.NoError(t, err, "inject %s", c.name)
		injected = append(injected, msgRecord{key: "s10/injected/" + strings.Fields(c.name)[0] + "/" + string(rune('a'+i)), id: id, poison: true})
		ids = append(ids, id)
	}
	start := time.Now()
	require.Eventually(t, func() bool {
		return s.count(`SELECT count(*) FROM dead_letters WHERE msg_uuid = ANY($1)`, ids) == len(ids)
	}, leasePeriod, 20*time.Millisecond, "injected points not dead-lettered within one lease period (%s)", leasePeriod)
	t.Logf("injected points dead-lettered %s after injection", time.Since(start).Round(time.Millisecond))
	progress(t, p, 300)
	after := s.count(`SELECT count(*) FROM telemetry_samples`)
	require.Greater(t, after, before, "the persisted count keeps rising meanwhile")
	t.Logf("persisted samples %d → %d meanwhile", before, after)

	var reasons []string
	rows, err := s.pool.Query(ctx, `SELECT reason FROM dead_letters WHERE msg_uuid = ANY($1) ORDER BY reason`, ids)
	require.NoError(t, err)
	for rows.Next() {
		var r string
		require.NoError(t, rows.Scan(&r))
		reasons = append(reasons, r)
	}
	require.NoError(t, rows.Err())
	require.Len(t, reasons, 2)
	require.Contains(t, strings.Join(reasons, "\n"), "gpu_uuid is 3000 bytes")
	require.Contains(t, strings.Join(reasons, "\n"), "labels_raw is")

	h := p.stop()
	h = append(h, publishRecord{msgs: injected, acked: true, attempts: 1, accepted: len(injected)})
	return h, expectations{drainWithin: 30 * time.Second, maxRedelivered: 0}, func(f figures) {
		require.Equal(t, len(injected), f.deadLettered, "dead letters of the scenario")
		require.Zero(t, s.sum("collector", "collector_leases_released_total"), "a lease was released")
	}
}

// incompressible returns n random characters of the base64 alphabet.
func incompressible(rng *rand.Rand, n int) string {
	raw := make([]byte, n)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	return base64.RawURLEncoding.EncodeToString(raw)[:n]
}
