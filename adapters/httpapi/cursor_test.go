package httpapi

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/ports"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC)
	q := ports.TelemetryQuery{GPUUUID: "GPU-5fd4f087-86f3-7a43-b711-4771313afc50", Start: start,
		End: start.Add(time.Hour), MetricName: "DCGM_FI_DEV_GPU_UTIL", Limit: 10}
	tests := []struct {
		name string
		pos  ports.Cursor
	}{
		{"whole second", ports.Cursor{Timestamp: start, ID: 1}},
		{"microseconds", ports.Cursor{Timestamp: start.Add(1234567 * time.Microsecond), ID: 42}},
		{"nanoseconds survive", ports.Cursor{Timestamp: start.Add(1), ID: 1 << 62}},
		{"other zone comes back in UTC", ports.Cursor{Timestamp: start.Add(time.Minute).In(time.FixedZone("x", 7200)), ID: 7}},
		{"at the window's end", ports.Cursor{Timestamp: start.Add(time.Hour), ID: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := encodeCursor(q, tt.pos)
			require.LessOrEqual(t, len(s), maxCursorLen)
			require.NotContains(t, s, "=", "unpadded base64url")
			// Page size is not part of the query's identity.
			q2 := q
			q2.Limit = 500
			got, err := decodeCursor(q2, s)
			require.NoError(t, err)
			require.True(t, tt.pos.Timestamp.Equal(got.Timestamp))
			require.Equal(t, time.UTC, got.Timestamp.Location())
			require.Equal(t, tt.pos.ID, got.ID)
		})
	}
}

func TestCursorRejects(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC)
	q := ports.TelemetryQuery{GPUUUID: "GPU-a", Start: start, End: start.Add(time.Hour), MetricName: "m"}
	valid := encodeCursor(q, ports.Cursor{Timestamp: start.Add(time.Minute), ID: 5})
	forge := func(json string) string { return base64.RawURLEncoding.EncodeToString([]byte(json)) }
	fp := fingerprint(q)
	tests := []struct {
		name   string
		query  ports.TelemetryQuery
		cursor string
		want   error
	}{
		{"other gpu", ports.TelemetryQuery{GPUUUID: "GPU-b", Start: q.Start, End: q.End, MetricName: "m"}, valid, errCursorMismatch},
		{"other metric", ports.TelemetryQuery{GPUUUID: "GPU-a", Start: q.Start, End: q.End, MetricName: "n"}, valid, errCursorMismatch},
		{"no metric", ports.TelemetryQuery{GPUUUID: "GPU-a", Start: q.Start, End: q.End}, valid, errCursorMismatch},
		{"other start", ports.TelemetryQuery{GPUUUID: "GPU-a", Start: q.Start.Add(time.Nanosecond), End: q.End, MetricName: "m"}, valid, errCursorMismatch},
		{"open end", ports.TelemetryQuery{GPUUUID: "GPU-a", Start: q.Start, MetricName: "m"}, valid, errCursorMismatch},
		{"position before the window", q, forge(`{"v":1,"ts":"2025-07-18T20:00:00Z","id":5,"q":"` + fp + `"}`), errCursorMismatch},
		{"position after the window", q, forge(`{"v":1,"ts":"2025-07-18T22:00:00Z","id":5,"q":"` + fp + `"}`), errCursorMismatch},
		{"empty", q, "", errCursorGarbled},
		{"padded base64", q, valid + "==", errCursorGarbled},
		{"std base64 alphabet", q, "+/+/", errCursorGarbled},
		{"not json", q, forge(`hello`), errCursorGarbled},
		{"trailing data", q, forge(`{"v":1,"ts":"2025-07-18T20:43:34Z","id":5,"q":"` + fp + `"} {}`), errCursorGarbled},
		{"version 2", q, forge(`{"v":2,"ts":"2025-07-18T20:43:34Z","id":5,"q":"` + fp + `"}`), errCursorGarbled},
		{"id 0", q, forge(`{"v":1,"ts":"2025-07-18T20:43:34Z","id":0,"q":"` + fp + `"}`), errCursorGarbled},
		{"bad timestamp", q, forge(`{"v":1,"ts":"yesterday","id":5,"q":"` + fp + `"}`), errCursorGarbled},
		{"missing fingerprint", q, forge(`{"v":1,"ts":"2025-07-18T20:43:34Z","id":5}`), errCursorGarbled},
		{"unknown field", q, forge(`{"v":1,"ts":"2025-07-18T20:43:34Z","id":5,"q":"` + fp + `","admin":true}`), errCursorGarbled},
		{"too long", q, valid + string(make([]byte, maxCursorLen)), errCursorGarbled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeCursor(tt.query, tt.cursor)
			require.ErrorIs(t, err, tt.want)
		})
	}
	t.Run("a hand-made cursor with the right fingerprint is just a position", func(t *testing.T) {
		t.Parallel()
		got, err := decodeCursor(q, forge(`{"v":1,"ts":"2025-07-18T20:43:34.5Z","id":5,"q":"`+fp+`"}`))
		require.NoError(t, err)
		require.Equal(t, ports.Cursor{Timestamp: start.Add(60500 * time.Millisecond), ID: 5}, got)
	})
}

func TestWantsNDJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		format  string
		accept  []string
		want    bool
		wantErr bool
	}{
		{"nothing", "", nil, false, false},
		{"any", "", []string{"*/*"}, false, false},
		{"json", "", []string{"application/json"}, false, false},
		{"ndjson", "", []string{"application/x-ndjson"}, true, false},
		{"ndjson with params", "", []string{"application/x-ndjson; charset=utf-8"}, true, false},
		{"ndjson ranked lower", "", []string{"application/x-ndjson;q=0.2, application/json"}, false, false},
		{"ndjson ranked higher", "", []string{"application/json;q=0.9, application/x-ndjson"}, true, false},
		{"ndjson refused", "", []string{"application/x-ndjson;q=0"}, false, false},
		{"several headers", "", []string{"application/json;q=0.1", "application/x-ndjson"}, true, false},
		{"format wins", "json", []string{"application/x-ndjson"}, false, false},
		{"format ndjson", "ndjson", []string{"application/json"}, true, false},
		{"bad format", "NDJSON", nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := wantsNDJSON(tt.format, tt.accept)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		opts             Options
		wantDef, wantMax int
	}{
		{"zero", Options{}, DefaultLimit, MaxLimit},
		{"custom", Options{DefaultLimit: 50, MaxLimit: 200}, 50, 200},
		{"default above max is capped", Options{DefaultLimit: 500, MaxLimit: 200}, 200, 200},
		{"small max", Options{MaxLimit: 10}, 10, 10},
		{"negative", Options{DefaultLimit: -1, MaxLimit: -1}, DefaultLimit, MaxLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := New(nil, tt.opts)
			require.Equal(t, tt.wantDef, s.defaultLimit)
			require.Equal(t, tt.wantMax, s.maxLimit)
		})
	}
}
