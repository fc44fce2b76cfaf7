package mqhttp

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/ports"
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

// frameBody is a frame without seq as encoding/json writes it: what
// encodeFrameBody is held to.
type frameBody struct {
	Topic          string          `json:"topic"`
	Payload        json.RawMessage `json:"payload"`
	Key            string          `json:"key,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// A stream frame written by hand says what encoding/json says for a
// compact payload, stays on one line for a payload that spans several, and
// reads back (decodeFrame) as the message that was sent.
func TestEncodeFrameBody(t *testing.T) {
	cases := map[string]ports.OutgoingMessage{
		"compact, every field": {Payload: json.RawMessage(`{"gpu_uuid":"GPU-1","v":[1,2.5,null,true],"o":{}}`), Key: `GPU-"1"`, IdempotencyKey: "run-1/42"},
		"no keys":              {Payload: json.RawMessage(`"a string"`)},
		"a number":             {Payload: json.RawMessage(`-1.5e3`), Key: "ü\\"},
		"spans lines":          {Payload: json.RawMessage("{\n  \"a\": 1,\r\n  \"b\": \"x y\"\n}\n"), Key: "k"},
		"spaces, one line":     {Payload: json.RawMessage(`{"a": 1, "b": ["<&>"]}`), IdempotencyKey: "i"},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := encodeFrameBody("telemetry", m)
			require.NoError(t, err)
			assert.NotContains(t, string(got), "\n")
			assert.NotContains(t, string(got), "\r")
			want, err := json.Marshal(frameBody{Topic: "telemetry", Payload: m.Payload, Key: m.Key, IdempotencyKey: m.IdempotencyKey})
			require.NoError(t, err)
			if !bytes.ContainsAny(m.Payload, " \n\r<>&") {
				assert.Equal(t, string(want), string(got))
			}
			f, err := decodeFrame(append([]byte(`{"seq":7,`), got[1:]...))
			require.NoError(t, err)
			assert.Equal(t, uint64(7), f.Seq)
			assert.Equal(t, "telemetry", f.Topic)
			assert.Equal(t, m.Key, f.Key)
			assert.Equal(t, m.IdempotencyKey, f.IdempotencyKey)
			assert.JSONEq(t, string(m.Payload), string(f.Payload))
		})
	}
	_, err := encodeFrameBody("telemetry", ports.OutgoingMessage{Payload: json.RawMessage("{\n")})
	assert.Error(t, err, "a multi-line payload that is not JSON cannot be compacted")
}

func BenchmarkFrameBodyEncode(b *testing.B) {
	m := ports.OutgoingMessage{Payload: json.RawMessage(`{"timestamp":"2025-07-18T13:42:33Z","metric_name":"DCGM_FI_DEV_GPU_UTIL","gpu_id":0,"device":"nvidia0","gpu_uuid":"GPU-5fd4f087-86f3-7a43-b711-4771313afc50","model_name":"NVIDIA H100 80GB HBM3","hostname":"mtv5-dgx1-hgpu-031","container":"","pod":"","namespace":"","value":0,"labels_raw":"DCGM_FI_DRIVER_VERSION=\"535.129.03\""}`),
		Key: "GPU-5fd4f087-86f3-7a43-b711-4771313afc50", IdempotencyKey: "6b1c2f3a-1111-2222-3333-444455556666/123456"}
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(frameBody{Topic: "telemetry", Payload: m.Payload, Key: m.Key, IdempotencyKey: m.IdempotencyKey})
		}
	})
	b.Run("encodeFrameBody", func(b *testing.B) {
		for b.Loop() {
			_, _ = encodeFrameBody("telemetry", m)
		}
	})
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain-ASCII_1.2/3 with spaces", `q"uote`, `back\slash`, "tab\t", "nl\n", "\x00", "\x7f",
		"<tag>", "a&b", "ü", "\u2028", "\xff invalid UTF-8", "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"} {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(appendString(nil, s)), "%q", s)
	}
}
