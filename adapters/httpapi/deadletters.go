package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gpufleet/telemetry/ports"
)

// Bounds of the pipeline endpoints.
const (
	// DefaultDeadLetterPage and MaxDeadLetterPage bound a dead-letter page.
	DefaultDeadLetterPage, MaxDeadLetterPage = 50, 1000
	// DeadLetterPayloadChars is how much of a payload a dead-letter list
	// shows; payload_bytes keeps the full size.
	DeadLetterPayloadChars = 512
	// DefaultStaleAfter is how long a host may go without a sample before
	// the pipeline view marks it stale.
	DefaultStaleAfter = 2 * time.Minute
)

var (
	deadLetterParams = []string{"limit", "cursor"}
	pipelineParams   = []string{"stale_after"}
)

// DeadLetter is one message that could never be processed.
type DeadLetter struct {
	// ID orders dead letters: higher is newer.
	ID int64 `json:"id" example:"42"`
	// MsgUUID is the queue message's UUID (assigned by mqwriter).
	MsgUUID string `json:"msg_uuid" format:"uuid" example:"0f8fad5b-d9cb-469f-a165-70867728950e"`
	// Topic is the queue topic the message came from.
	Topic string `json:"topic" example:"telemetry"`
	// Reason says why it can never be processed.
	Reason string `json:"reason" example:"decode payload: unexpected end of JSON input"`
	// CreatedAt is when it was dead-lettered (RFC 3339, UTC).
	CreatedAt time.Time `json:"created_at" format:"date-time" example:"2025-07-18T20:42:34Z"`
	// Payload is the message as received, truncated to 512 characters.
	Payload string `json:"payload" example:"{\"gpu_uuid\":"`
	// PayloadBytes is the full payload's size.
	PayloadBytes int `json:"payload_bytes" example:"12"`
	// PayloadTruncated says Payload is shorter than the stored payload.
	PayloadTruncated bool `json:"payload_truncated" example:"false"`
}

// DeadLetterList is the body of GET /api/v1/dead-letters.
type DeadLetterList struct {
	// DeadLetters are newest first; empty (never null) when there are none.
	DeadLetters []DeadLetter `json:"dead_letters"`
	// NextCursor is present when older dead letters follow: pass it as cursor.
	NextCursor string `json:"next_cursor,omitempty" example:"eyJ2IjoxLCJiIjo0Mn0"`
}

// HostStatus is one host's freshness.
type HostStatus struct {
	Hostname string `json:"hostname" example:"mtv5-dgx1-hgpu-031"`
	// GPUs is how many GPUs of the host the registry holds.
	GPUs int `json:"gpus" example:"8"`
	// LastSeen is the newest sample time of any of its GPUs (RFC 3339, UTC).
	LastSeen time.Time `json:"last_seen" format:"date-time" example:"2025-07-18T20:42:34Z"`
	// AgeSeconds is how long ago that was, by the store's clock.
	AgeSeconds float64 `json:"age_seconds" example:"3.5"`
	// Stale is true when AgeSeconds exceeds the request's stale_after.
	Stale bool `json:"stale" example:"false"`
}

// PipelineStatus is the body of GET /api/v1/pipeline.
type PipelineStatus struct {
	// Time is the store's clock when the snapshot was taken.
	Time time.Time `json:"time" format:"date-time" example:"2025-07-18T20:42:38Z"`
	// SamplesInserted is a cumulative count of samples the store inserted:
	// only its rate between two snapshots means something (it may lag a few
	// seconds and drop when retention removes a day).
	SamplesInserted int64 `json:"samples_inserted" example:"1234567"`
	// QueueBacklog is how many messages wait in the PostgreSQL queue, counted
	// up to 100000 (queue_backlog_capped then says there are more); null when
	// the store cannot see the queue.
	QueueBacklog       *int64 `json:"queue_backlog" extensions:"x-nullable" example:"120"`
	QueueBacklogCapped bool   `json:"queue_backlog_capped" example:"false"`
	// OldestQueued is when the oldest waiting message was published; null when
	// none waits.
	OldestQueued *time.Time `json:"oldest_queued" format:"date-time" extensions:"x-nullable" example:"2025-07-18T20:42:30Z"`
	// DeadLetters counts stored dead letters up to 100000.
	DeadLetters       int64 `json:"dead_letters" example:"1"`
	DeadLettersCapped bool  `json:"dead_letters_capped" example:"false"`
	// StaleAfterSeconds is the threshold used for hosts[].stale.
	StaleAfterSeconds float64 `json:"stale_after_seconds" example:"120"`
	// Hosts are ordered by hostname.
	Hosts []HostStatus `json:"hosts"`
}

type deadLetterCursorJSON struct {
	V int   `json:"v"`
	B int64 `json:"b"`
}

func encodeDeadLetterCursor(before int64) string {
	b, _ := json.Marshal(deadLetterCursorJSON{V: 1, B: before}) // ints always marshal
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeDeadLetterCursor(s string) (int64, error) {
	bad := badRequest("cursor: not a cursor issued by this API; pass next_cursor from a previous page unchanged")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if len(s) > maxCursorLen || err != nil {
		return 0, bad
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c deadLetterCursorJSON
	if err := dec.Decode(&c); err != nil || c.V != 1 || c.B < 1 {
		return 0, bad
	}
	return c.B, nil
}

// listDeadLetters godoc
//
//	@Summary		List dead letters
//	@Description	Messages the collector could never process (poison messages), newest first, with the reason each was
//	@Description	set aside. payload is truncated to 512 characters (payload_bytes is the full size). Pages hold up to
//	@Description	limit letters; when older ones follow the answer has next_cursor: repeat with cursor=next_cursor.
//	@Tags			pipeline
//	@Produce		json
//	@Param			limit			query		int				false	"Page size"	default(50)	minimum(1)	maximum(1000)
//	@Param			cursor			query		string			false	"next_cursor of the previous page, unchanged"
//	@Param			X-Request-Id	header		string			false	"Request id to echo (a sane token); one is generated otherwise"
//	@Success		200				{object}	DeadLetterList	"A page of dead letters; dead_letters is [] when empty"
//	@Failure		400				{object}	ErrorResponse	"Bad limit or cursor, unknown parameter"
//	@Failure		405				{object}	ErrorResponse	"Method not allowed (see the Allow header)"
//	@Failure		500				{object}	ErrorResponse	"Internal error (details are logged, never returned)"
//	@Failure		503				{object}	ErrorResponse	"The telemetry store is unavailable"
//	@Failure		504				{object}	ErrorResponse	"The store did not answer in time"
//	@Header			all				{string}	X-Request-Id	"The request id, echoed or generated"
//	@Router			/api/v1/dead-letters [get]
func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	vals, err := queryParams(r, deadLetterParams)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := ports.DeadLetterQuery{PayloadChars: DeadLetterPayloadChars}
	if q.Limit, err = parseLimit(vals, DefaultDeadLetterPage, MaxDeadLetterPage); err != nil {
		s.writeError(w, r, err)
		return
	}
	if vals.Has("cursor") {
		if q.Before, err = decodeDeadLetterCursor(vals.Get("cursor")); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	page, err := s.reader.ListDeadLetters(r.Context(), q)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list dead letters: %w", err))
		return
	}
	body := DeadLetterList{DeadLetters: make([]DeadLetter, 0, len(page.Letters))}
	for _, l := range page.Letters {
		body.DeadLetters = append(body.DeadLetters, DeadLetter{ID: l.ID, MsgUUID: l.MsgUUID.String(), Topic: l.Topic,
			Reason: l.Reason, CreatedAt: l.CreatedAt.UTC(), Payload: string(l.Payload), PayloadBytes: l.PayloadBytes,
			PayloadTruncated: len(l.Payload) < l.PayloadBytes})
	}
	if page.Next != 0 {
		body.NextCursor = encodeDeadLetterCursor(page.Next)
	}
	s.writeJSON(w, r, http.StatusOK, body)
}

// pipelineStatus godoc
//
//	@Summary		The pipeline's health
//	@Description	A cheap snapshot for the dashboard's pipeline view: a cumulative count of samples inserted (its
//	@Description	difference over a minute or more of polls, divided by the time between, is the persist rate: samples
//	@Description	arrive a scrape's worth at a time), the PostgreSQL queue's backlog and its oldest
//	@Description	message, the dead-letter count, and each host's newest sample time with hosts silent for longer than
//	@Description	stale_after marked stale.
//	@Tags			pipeline
//	@Produce		json
//	@Param			stale_after		query		string			false	"Go duration after which a silent host is stale (10s to 168h)"	default(2m)	example(5m)
//	@Param			X-Request-Id	header		string			false	"Request id to echo (a sane token); one is generated otherwise"
//	@Success		200				{object}	PipelineStatus	"The snapshot"
//	@Failure		400				{object}	ErrorResponse	"Bad stale_after, unknown parameter"
//	@Failure		500				{object}	ErrorResponse	"Internal error (details are logged, never returned)"
//	@Failure		503				{object}	ErrorResponse	"The telemetry store is unavailable"
//	@Failure		504				{object}	ErrorResponse	"The store did not answer in time"
//	@Header			all				{string}	X-Request-Id	"The request id, echoed or generated"
//	@Router			/api/v1/pipeline [get]
func (s *Server) pipelineStatus(w http.ResponseWriter, r *http.Request) {
	vals, err := queryParams(r, pipelineParams)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	staleAfter := DefaultStaleAfter
	if raw := vals.Get("stale_after"); vals.Has("stale_after") {
		d, err := time.ParseDuration(raw)
		if err != nil || d < 10*time.Second || d > 7*24*time.Hour {
			s.writeError(w, r, badRequest("stale_after: %q is not a Go duration from 10s to 168h", clip(raw)))
			return
		}
		staleAfter = d
	}
	st, err := s.reader.PipelineStats(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("pipeline stats: %w", err))
		return
	}
	body := PipelineStatus{Time: st.At.UTC(), SamplesInserted: st.SamplesInserted, QueueBacklogCapped: st.QueueBacklogCapped,
		OldestQueued: st.OldestQueued, DeadLetters: st.DeadLetters, DeadLettersCapped: st.DeadLettersCapped,
		StaleAfterSeconds: staleAfter.Seconds(), Hosts: make([]HostStatus, 0, len(st.Hosts))}
	if st.QueueBacklog >= 0 {
		body.QueueBacklog = &st.QueueBacklog
	}
	for _, h := range st.Hosts {
		age := max(st.At.Sub(h.LastSeen), 0)
		body.Hosts = append(body.Hosts, HostStatus{Hostname: h.Hostname, GPUs: h.GPUs, LastSeen: h.LastSeen.UTC(),
			AgeSeconds: age.Seconds(), Stale: age > staleAfter})
	}
	s.writeJSON(w, r, http.StatusOK, body)
}
