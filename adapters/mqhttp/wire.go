package mqhttp

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/domain"
)

// Routes of the protocol.
const (
	PathPublish = "/v1/publish"
	PathLease   = "/v1/lease"
	PathAck     = "/v1/ack"
	PathRelease = "/v1/release"
	// PathReady is the readiness endpoint Client.Check calls; the apps serve it.
	PathReady = "/readyz"
)

// Protocol limits. The queue's rules (sizes, names, lease bounds) are
// domain's and the port checks them (every adapter calls domain), so the
// server validates only what is the protocol's: the JSON, the topics it
// serves, the message count (413) and lease_seconds before it becomes a
// Duration; a rule the port refuses is a 400 with the port's message.
const (
	// DefaultMaxBodyBytes is the default request body limit (8 MiB).
	DefaultMaxBodyBytes = 8 << 20
	// MaxPublishMessages is the most messages one publish may carry.
	MaxPublishMessages = domain.MaxMessagesPerPublish
	// MaxLeaseSeconds is the longest lease any queue may be configured to
	// grant, in seconds; the protocol counts leases in whole seconds, so the
	// shortest is one. The queue's own limit (default 300 s) is the port's
	// to enforce.
	MaxLeaseSeconds = domain.CeilingLeaseDuration / time.Second
	// MaxWaitMS is the longest wait_ms a lease may carry: domain.MaxLeaseWait.
	MaxWaitMS = domain.MaxLeaseWait / time.Millisecond
	// waitWriteBudget is how long a long-poll lease has to write its answer
	// once its wait is over: when the server's timeouts are shorter, the
	// request's deadlines move to the end of the wait plus this
	// (roomForWait).
	waitWriteBudget = 30 * time.Second
)

// The wire types are the protocol, kept apart from domain's JSON tags so a
// change there cannot silently change the protocol.

type publishRequest struct {
	Topic    string           `json:"topic"`
	Messages []publishMessage `json:"messages"`
}

type publishMessage struct {
	Payload        json.RawMessage `json:"payload"`
	Key            string          `json:"key,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

type publishResponse struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

type leaseRequest struct {
	Topic        string `json:"topic"`
	ConsumerID   string `json:"consumer_id"`
	Max          int    `json:"max"`
	LeaseSeconds int    `json:"lease_seconds"`
	// WaitMS (optional) makes the lease a long poll: with nothing ready the
	// reader answers when messages are, or empty after this many
	// milliseconds (0 to domain.MaxLeaseWait).
	WaitMS int64 `json:"wait_ms,omitempty"`
}

type leaseResponse struct {
	LeaseID    uuid.UUID      `json:"lease_id"`
	Topic      string         `json:"topic"`
	ConsumerID string         `json:"consumer_id"`
	ExpiresAt  time.Time      `json:"expires_at"`
	Messages   []leaseMessage `json:"messages"`
}

type leaseMessage struct {
	MsgUUID    uuid.UUID       `json:"msg_uuid"`
	Partition  int             `json:"partition"`
	Payload    json.RawMessage `json:"payload"`
	CreatedAt  time.Time       `json:"created_at"`
	Deliveries int             `json:"deliveries"`
}

// leaseRefRequest is the body of ack and release. LeaseID is a string so a
// malformed id is reported as such rather than as a JSON type error.
type leaseRefRequest struct {
	Topic      string `json:"topic"`
	ConsumerID string `json:"consumer_id"`
	LeaseID    string `json:"lease_id"`
	// Reason (release only, optional) is the consumer's last error; the
	// queue keeps it for the dead letter (ports.LeaseRef.Reason).
	Reason string `json:"reason,omitempty"`
}

type statusResponse struct {
	Status string `json:"status"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// appendJSON appends the lease as encoding/json would write it, but copies
// each payload as it is instead of re-parsing and compacting it: a payload
// is valid JSON by the port's contract (domain.ValidatePublish checks every
// message before any queue stores it), and at full rate that re-compaction
// was 44 % of mqreader's CPU. Payload whitespace is therefore the queue's
// own (a jsonb payload reads back as PostgreSQL prints it).
func (r leaseResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"lease_id":`...)
	b = appendUUID(b, r.LeaseID)
	b = append(b, `,"topic":`...)
	b = appendString(b, r.Topic)
	b = append(b, `,"consumer_id":`...)
	b = appendString(b, r.ConsumerID)
	b = append(b, `,"expires_at":`...)
	b = appendTime(b, r.ExpiresAt)
	b = append(b, `,"messages":[`...)
	for i, m := range r.Messages {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"msg_uuid":`...)
		b = appendUUID(b, m.MsgUUID)
		b = append(b, `,"partition":`...)
		b = strconv.AppendInt(b, int64(m.Partition), 10)
		b = append(b, `,"payload":`...)
		if len(m.Payload) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, m.Payload...)
		}
		b = append(b, `,"created_at":`...)
		b = appendTime(b, m.CreatedAt)
		b = append(b, `,"deliveries":`...)
		b = strconv.AppendInt(b, int64(m.Deliveries), 10)
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// encodeJSON is the lease's JSON body (selfEncoder).
func (r leaseResponse) encodeJSON() []byte {
	return r.appendJSON(make([]byte, 0, r.encodedSizeHint()))
}

// encodedSizeHint is a capacity that holds the encoded lease without
// growing: the payloads, and each message's own fields at their longest.
func (r leaseResponse) encodedSizeHint() int {
	const perMessage = 190 // keys, a uuid, two numbers, a timestamp
	n := 256 + len(r.Topic) + len(r.ConsumerID)
	for _, m := range r.Messages {
		n += perMessage + len(m.Payload)
	}
	return n
}

// appendString appends s as a JSON string, escaped as encoding/json does.
func appendString(b []byte, s string) []byte {
	if plainASCII(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, err := json.Marshal(s)
	if err != nil { // a string always encodes
		return append(b, `""`...)
	}
	return append(b, q...)
}

// plainASCII reports whether s needs no escaping in JSON: printable ASCII
// without the quote, the backslash, and the characters encoding/json
// escapes for HTML.
func plainASCII(s string) bool {
	for i := range len(s) {
		switch c := s[i]; {
		case c < 0x20, c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// appendUUID appends id quoted, in its canonical form, without the
// allocation of id.String().
func appendUUID(b []byte, id uuid.UUID) []byte {
	b = append(b, '"')
	b = hex.AppendEncode(b, id[:4])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[4:6])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[6:8])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[8:10])
	b = append(b, '-')
	b = hex.AppendEncode(b, id[10:])
	return append(b, '"')
}

// appendTime appends t as encoding/json does (RFC 3339 with nanoseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
