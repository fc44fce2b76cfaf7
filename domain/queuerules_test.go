package domain_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

func TestValidatePublish(t *testing.T) {
	t.Parallel()
	msg := func(p string) domain.OutgoingMessage { return domain.OutgoingMessage{Payload: json.RawMessage(p)} }
	big := `"` + strings.Repeat("x", domain.MaxPayloadBytes) + `"`
	tests := []struct {
		name  string
		topic string
		msgs  []domain.OutgoingMessage
		err   string // substring of the error; "" means valid
	}{
		{"valid object", "t", []domain.OutgoingMessage{msg(`{"a":1}`)}, ""},
		{"valid array, string, number", "t.1_x-y", []domain.OutgoingMessage{msg(`[1,2]`), msg(`"s"`), msg(`3`)}, ""},
		{"escaped backslash before u0000 is fine", "t", []domain.OutgoingMessage{msg(`{"a":"\\u0000"}`)}, ""},
		{"key of 256 bytes", "t", []domain.OutgoingMessage{{Payload: json.RawMessage(`1`), Key: strings.Repeat("k", 256)}}, ""},
		{"empty topic", "", []domain.OutgoingMessage{msg(`1`)}, "topic is required"},
		{"topic with slash", "a/b", []domain.OutgoingMessage{msg(`1`)}, "topic"},
		{"topic with an empty part", "a..b", []domain.OutgoingMessage{msg(`1`)}, "empty dot-separated part"},
		{"topic ending in a dot", "a.", []domain.OutgoingMessage{msg(`1`)}, "empty dot-separated part"},
		{"topic starting with _", "_INBOX", []domain.OutgoingMessage{msg(`1`)}, "starts with '_'"},
		{"topic of 65 chars", strings.Repeat("a", 65), []domain.OutgoingMessage{msg(`1`)}, "topic"},
		{"topic of 64 chars, every class", "AZaz09-_." + strings.Repeat("x", 55), []domain.OutgoingMessage{msg(`1`)}, ""},
		{"topic with a space", "a b", []domain.OutgoingMessage{msg(`1`)}, "must be 1-64 characters"},
		{"topic with a non-ASCII letter", "gpué", []domain.OutgoingMessage{msg(`1`)}, "must be 1-64 characters"},
		{"topic with a byte past z", "a{b", []domain.OutgoingMessage{msg(`1`)}, "must be 1-64 characters"},
		{"no messages", "t", nil, "messages must not be empty"},
		{"too many messages", "t", make([]domain.OutgoingMessage, domain.MaxMessagesPerPublish+1), "at most 10000 messages, got 10001"},
		{"empty payload", "t", []domain.OutgoingMessage{{}}, "payload is required"},
		{"null payload", "t", []domain.OutgoingMessage{msg(` null `)}, "payload is required"},
		{"not JSON", "t", []domain.OutgoingMessage{msg(`{x`)}, "not valid JSON"},
		{"NUL escape", "t", []domain.OutgoingMessage{msg(`{"a":"x\u0000"}`)}, `\u0000`},
		{"invalid UTF-8", "t", []domain.OutgoingMessage{msg("\"\xff\"")}, "UTF-8"},
		{"payload over 1 MiB", "t", []domain.OutgoingMessage{msg(big)}, "byte limit"},
		{"key too long", "t", []domain.OutgoingMessage{{Payload: json.RawMessage(`1`), Key: strings.Repeat("k", 257)}}, "messages[0].key is longer than 256 bytes"},
		{"idempotency key with NUL", "t", []domain.OutgoingMessage{{Payload: json.RawMessage(`1`), IdempotencyKey: "a\x00"}}, "messages[0].idempotency_key must not contain NUL"},
		{"bad message among good", "t", []domain.OutgoingMessage{msg(`1`), msg(`nope`)}, "messages[1].payload is not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := domain.ValidatePublish(tc.topic, tc.msgs)
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, domain.ErrInvalidArgument)
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestLeaseRequestValidate(t *testing.T) {
	t.Parallel()
	ok := domain.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 10, LeaseDuration: time.Minute}
	with := func(f func(*domain.LeaseRequest)) domain.LeaseRequest { r := ok; f(&r); return r }
	tests := []struct {
		name string
		req  domain.LeaseRequest
		err  string
	}{
		{"valid", ok, ""},
		{"bounds are inclusive", with(func(r *domain.LeaseRequest) {
			r.Max, r.LeaseDuration, r.Wait = domain.MaxLeaseMessages, domain.MaxLeaseDuration, domain.MaxLeaseWait
		}), ""},
		{"bad topic", with(func(r *domain.LeaseRequest) { r.Topic = "a b" }), "topic"},
		{"no consumer id", with(func(r *domain.LeaseRequest) { r.ConsumerID = " " }), "consumer_id is required"},
		{"consumer id too long", with(func(r *domain.LeaseRequest) { r.ConsumerID = strings.Repeat("c", 257) }), "consumer_id is longer than 256 bytes"},
		{"max 0", with(func(r *domain.LeaseRequest) { r.Max = 0 }), "max must be between 1 and 5000 (this queue's lease limit), got 0"},
		{"max too large", with(func(r *domain.LeaseRequest) { r.Max = domain.MaxLeaseMessages + 1 }), "got 5001"},
		{"lease below the backend's minimum", with(func(r *domain.LeaseRequest) { r.LeaseDuration = time.Second / 2 }), "lease duration"},
		{"lease over five minutes", with(func(r *domain.LeaseRequest) { r.LeaseDuration = domain.MaxLeaseDuration + 1 }), "lease duration"},
		{"negative wait", with(func(r *domain.LeaseRequest) { r.Wait = -time.Millisecond }), "lease wait must be between 0 and 20s, got -1ms"},
		{"wait over the maximum", with(func(r *domain.LeaseRequest) { r.Wait = domain.MaxLeaseWait + 1 }), "lease wait must be between 0 and 20s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.req.Validate(time.Second)
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, domain.ErrInvalidArgument)
			require.ErrorContains(t, err, tc.err)
		})
	}
}

func TestLeaseRefValidateAndOwner(t *testing.T) {
	t.Parallel()
	ref := domain.LeaseRef{Topic: "t", ConsumerID: "c", LeaseID: uuid.New()}
	require.NoError(t, ref.Validate())
	require.NoError(t, domain.CheckOwner(ref, "c"))
	require.ErrorIs(t, domain.CheckOwner(ref, "d"), domain.ErrInvalidArgument)
	require.ErrorContains(t, domain.CheckOwner(ref, "d"), `belongs to consumer "d", not "c"`)

	for name, bad := range map[string]domain.LeaseRef{
		"bad topic":   {Topic: "", ConsumerID: "c", LeaseID: ref.LeaseID},
		"no consumer": {Topic: "t", LeaseID: ref.LeaseID},
		"nil lease":   {Topic: "t", ConsumerID: "c"},
	} {
		require.ErrorIs(t, bad.Validate(), domain.ErrInvalidArgument, name)
		require.ErrorIs(t, domain.CheckSettle(t.Context(), "ack", bad), domain.ErrInvalidArgument, name)
	}

	require.NoError(t, domain.CheckSettle(t.Context(), "ack", ref))
	require.ErrorContains(t, domain.CheckSettle(t.Context(), "release", domain.LeaseRef{Topic: "t", ConsumerID: "c"}),
		"release lease 00000000-0000-0000-0000-000000000000: invalid argument")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := domain.CheckSettle(ctx, "ack", ref)
	require.ErrorIs(t, err, context.Canceled, "a cancelled call settles nothing, even a valid one")
	require.ErrorContains(t, err, "ack: ")
}

func TestPartitionKey(t *testing.T) {
	t.Parallel()
	id := uuid.MustParse("0b7c1c4e-0000-4000-8000-000000000001")
	tests := []struct {
		name string
		msg  domain.OutgoingMessage
		want string
	}{
		{"key wins", domain.OutgoingMessage{Key: "GPU-a", Payload: json.RawMessage(`{"gpu_uuid":"GPU-b"}`)}, "GPU-a"},
		{"payload gpu_uuid", domain.OutgoingMessage{Payload: json.RawMessage(` {"x":[1,{"gpu_uuid":"no"}],"gpu_uuid":"GPU-b"}`)}, "GPU-b"},
		{"gpu_uuid not a string", domain.OutgoingMessage{Payload: json.RawMessage(`{"gpu_uuid":7}`)}, id.String()},
		{"empty gpu_uuid", domain.OutgoingMessage{Payload: json.RawMessage(`{"gpu_uuid":""}`)}, id.String()},
		{"array payload", domain.OutgoingMessage{Payload: json.RawMessage(`["gpu_uuid"]`)}, id.String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, domain.PartitionKey(tc.msg, id))
		})
	}
}

func TestMaxDeliveriesOf(t *testing.T) {
	t.Parallel()
	n, err := domain.MaxDeliveriesOf(0)
	require.NoError(t, err)
	require.Equal(t, domain.DefaultMaxDeliveries, n)
	for _, ok := range []int{1, 5, domain.MaxMaxDeliveries} {
		n, err := domain.MaxDeliveriesOf(ok)
		require.NoError(t, err)
		require.Equal(t, ok, n)
	}
	for _, bad := range []int{-1, domain.MaxMaxDeliveries + 1} {
		_, err := domain.MaxDeliveriesOf(bad)
		require.ErrorIs(t, err, domain.ErrInvalidArgument, "%d", bad)
	}
	require.False(t, domain.Exhausted(4, 5))
	require.True(t, domain.Exhausted(5, 5))
}

func TestReasons(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", domain.MaxReasonBytes)
	cut := domain.TruncateReason(long)
	require.LessOrEqual(t, len(cut), domain.MaxReasonBytes)
	require.True(t, utf8.ValidString(cut))
	require.Equal(t, "ab", domain.TruncateReason("a\x00b"))
	require.Equal(t, "delivered 5 times without an ack (delivery limit)", domain.ExhaustedReason(5, ""))
	require.Contains(t, domain.ExhaustedReason(5, "boom"), "last error: boom")

	ref := domain.LeaseRef{Topic: "t", ConsumerID: "c", LeaseID: uuid.New(), Reason: "fine"}
	require.NoError(t, ref.Validate())
	ref.Reason = strings.Repeat("r", domain.MaxReasonBytes+1)
	require.ErrorIs(t, ref.Validate(), domain.ErrInvalidArgument)
	ref.Reason = "a\x00"
	require.ErrorIs(t, ref.Validate(), domain.ErrInvalidArgument)
}

func TestLeaseRequestValidateWithin(t *testing.T) {
	t.Parallel()
	req := domain.LeaseRequest{Topic: "t", ConsumerID: "c", Max: 6000, LeaseDuration: 10 * time.Minute}
	require.ErrorContains(t, req.Validate(time.Second), "max must be between 1 and 5000")
	raised := domain.LeaseLimits{MaxMessages: 8000, MaxDuration: 20 * time.Minute}
	require.NoError(t, raised.Validate())
	require.NoError(t, req.ValidateWithin(time.Second, raised))
	lowered := domain.LeaseLimits{MaxMessages: 100, MaxDuration: time.Minute}
	err := req.ValidateWithin(time.Second, lowered)
	require.ErrorIs(t, err, domain.ErrInvalidArgument)
	require.ErrorContains(t, err, "between 1 and 100 (this queue's lease limit), got 6000")
	req.Max = 50
	require.ErrorContains(t, req.ValidateWithin(time.Second, lowered), "between 1s and 1m0s (this queue's lease limit), got 10m0s")
	require.Error(t, domain.LeaseLimits{MaxMessages: domain.CeilingLeaseMessages + 1}.Validate())
	require.Error(t, domain.LeaseLimits{MaxDuration: domain.CeilingLeaseDuration + time.Second}.Validate())
}

// BenchmarkValidatePublishOne is the check every published message pays,
// in the streamer and again in the queue.
func BenchmarkValidatePublishOne(b *testing.B) {
	m := []domain.OutgoingMessage{{IdempotencyKey: "k-1", Payload: json.RawMessage(
		`{"gpu_uuid":"GPU-5fd4f087-86f3-7a43-b711-4771313afc50","metric_name":"DCGM_FI_DEV_GPU_UTIL","value":1}`)}}
	b.ReportAllocs()
	for b.Loop() {
		if err := domain.ValidatePublish(domain.TelemetryTopic, m); err != nil {
			b.Fatal(err)
		}
	}
}
