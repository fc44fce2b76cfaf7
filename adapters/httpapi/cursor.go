package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/gpufleet/telemetry/ports"
)

// A cursor is base64url (unpadded) of a small versioned JSON object:
//
//	{"v":1,"ts":"2025-07-18T20:42:34.123456Z","id":42,"q":"<fingerprint>"}
//
// ts and id are the keyset position (ports.Cursor) the next page starts
// after. q fingerprints the query the cursor belongs to (GPU, window, metric),
// so a cursor replayed against another query is rejected instead of silently
// returning rows from the wrong place. The limit is not part of it: a client
// may change page size mid-walk.
//
// The cursor is checked, not signed: anyone can build one, but the only
// thing a hand-made cursor can do is start the same query at another
// position inside the same window, which the client could ask for anyway.
// Signing would need a key shared by every apigw replica for nothing more.

const (
	cursorVersion = 1
	// maxCursorLen bounds what we decode; real cursors are about 110 bytes.
	maxCursorLen = 512
)

var (
	errCursorGarbled  = errors.New("cursor: not a cursor issued by this API")
	errCursorMismatch = errors.New("cursor does not match this query")
)

type cursorJSON struct {
	V  int    `json:"v"`
	TS string `json:"ts"`
	ID int64  `json:"id"`
	Q  string `json:"q"`
}

// fingerprint identifies a query's row set: everything but the limit and the
// position. Unset bounds and metric are encoded distinctly from any value.
func fingerprint(q ports.TelemetryQuery) string {
	h := sha256.New()
	for _, part := range []string{"v1", q.GPUUUID, timeKey(q.Start), timeKey(q.End), q.MetricName} {
		h.Write([]byte(strconv.Itoa(len(part))))
		h.Write([]byte{':'})
		h.Write([]byte(part))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

func timeKey(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

// encodeCursor makes the opaque next_cursor for position c of query q.
func encodeCursor(q ports.TelemetryQuery, c ports.Cursor) string {
	b, _ := json.Marshal(cursorJSON{ // a struct of strings and ints always marshals
		V: cursorVersion, TS: c.Timestamp.UTC().Format(time.RFC3339Nano), ID: c.ID, Q: fingerprint(q),
	})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor and checks it belongs to q: errCursorGarbled
// when it is not a cursor at all, errCursorMismatch when it is one of
// another query (or points outside q's window).
func decodeCursor(q ports.TelemetryQuery, s string) (ports.Cursor, error) {
	if len(s) > maxCursorLen {
		return ports.Cursor{}, errCursorGarbled
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ports.Cursor{}, errCursorGarbled
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var cj cursorJSON
	if err := dec.Decode(&cj); err != nil || dec.More() {
		return ports.Cursor{}, errCursorGarbled
	}
	if cj.V != cursorVersion || cj.ID < 1 || cj.Q == "" {
		return ports.Cursor{}, errCursorGarbled
	}
	ts, err := time.Parse(time.RFC3339Nano, cj.TS)
	if err != nil {
		return ports.Cursor{}, errCursorGarbled
	}
	if cj.Q != fingerprint(q) {
		return ports.Cursor{}, errCursorMismatch
	}
	if (!q.Start.IsZero() && ts.Before(q.Start)) || (!q.End.IsZero() && ts.After(q.End)) {
		return ports.Cursor{}, errCursorMismatch
	}
	return ports.Cursor{Timestamp: ts.UTC(), ID: cj.ID}, nil
}
