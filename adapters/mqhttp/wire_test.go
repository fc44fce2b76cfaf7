package mqhttp

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hand-written lease encoder must say exactly what encoding/json says
// for the same lease whenever the payloads are already compact, and decode
// to the same lease when they are not.
func TestLeaseResponseAppendJSONMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 2, 3, 450_000_000, time.UTC)
	cases := map[string]leaseResponse{
		"no messages": {LeaseID: uuid.New(), Topic: "telemetry", ConsumerID: "c-1", ExpiresAt: at, Messages: []leaseMessage{}},
		"messages": {LeaseID: uuid.New(), Topic: "t.x_y-z", ConsumerID: `odd "id" <&> ü \ tab	`, ExpiresAt: at.Add(time.Nanosecond),
			Messages: []leaseMessage{
				{MsgUUID: uuid.New(), Partition: 255, Payload: json.RawMessage(`{"gpu_uuid":"GPU-1","value":1.5,"labels":{"a":[1,2,null]}}`), CreatedAt: at, Deliveries: 1},
				{MsgUUID: uuid.New(), Partition: 0, Payload: json.RawMessage(`"just a string"`), CreatedAt: at.Truncate(time.Second), Deliveries: 7},
				{MsgUUID: uuid.New(), Partition: 3, Payload: json.RawMessage(`42`), CreatedAt: at.Add(-time.Hour), Deliveries: 2},
			}},
	}
	for name, lr := range cases {
		t.Run(name, func(t *testing.T) {
			var want bytes.Buffer
			require.NoError(t, json.NewEncoder(&want).Encode(lr))
			assert.Equal(t, want.String(), string(lr.appendJSON(nil)))
		})
	}

	t.Run("payload as the queue stores it", func(t *testing.T) {
		// jsonb prints a space after each colon and comma; the lease carries
		// it as it is, and a client decodes the same value.
		lr := leaseResponse{LeaseID: uuid.New(), Topic: "telemetry", ConsumerID: "c", ExpiresAt: at,
			Messages: []leaseMessage{{MsgUUID: uuid.New(), Payload: json.RawMessage(`{"a": 1, "b": [true, "<x>"]}`), CreatedAt: at}}}
		got := lr.appendJSON(nil)
		require.True(t, json.Valid(got), "%s", got)
		var back leaseResponse
		require.NoError(t, json.Unmarshal(got, &back))
		assert.Equal(t, lr.LeaseID, back.LeaseID)
		assert.JSONEq(t, string(lr.Messages[0].Payload), string(back.Messages[0].Payload))
	})
}

func BenchmarkLeaseResponseEncode(b *testing.B) {
	lr := leaseResponse{LeaseID: uuid.New(), Topic: "telemetry", ConsumerID: "collector-1", ExpiresAt: time.Now().UTC(),
		Messages: make([]leaseMessage, 100)}
	payload := json.RawMessage(`{"timestamp": "2025-07-18T13:42:33Z", "metric_name": "DCGM_FI_DEV_GPU_UTIL", "gpu_id": 0, "device": "nvidia0", "gpu_uuid": "GPU-5fd4f087-86f3-7a43-b711-4771313afc50", "model_name": "NVIDIA H100 80GB HBM3", "hostname": "mtv5-dgx1-hgpu-031", "container": "", "pod": "", "namespace": "", "value": 0, "labels_raw": "DCGM_FI_DRIVER_VERSION=\"535.129.03\""}`)
	for i := range lr.Messages {
		lr.Messages[i] = leaseMessage{MsgUUID: uuid.New(), Partition: i, Payload: payload, CreatedAt: time.Now().UTC(), Deliveries: 1}
	}
	b.Run("encoding/json", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			_ = json.NewEncoder(&buf).Encode(lr)
		}
	})
	b.Run("appendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = lr.appendJSON(buf[:0])
		}
	})
}

func TestLeaseResponseSizeHintHoldsTheEncoding(t *testing.T) {
	at := time.Date(2026, 12, 6, 1, 2, 3, 123_456_789, time.FixedZone("x", 3600))
	lr := leaseResponse{LeaseID: uuid.New(), Topic: "telemetry", ConsumerID: "c", ExpiresAt: at}
	for i := range 50 {
		lr.Messages = append(lr.Messages, leaseMessage{MsgUUID: uuid.New(), Partition: 1 << 30, Payload: json.RawMessage(`{"i":1}`),
			CreatedAt: at, Deliveries: 1 << 30 * (i + 1)})
	}
	assert.LessOrEqual(t, len(lr.appendJSON(nil)), lr.encodedSizeHint())
}
