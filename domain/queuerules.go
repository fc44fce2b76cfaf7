package domain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// ErrInvalidArgument is wrapped by every queue rule a request breaks: the
// request is malformed or out of bounds, and retrying it unchanged fails
// again. ports.ErrInvalidArgument is this same value, so adapters and callers
// test for it with errors.Is whichever package they name.
var ErrInvalidArgument = errors.New("invalid argument")

// Limits of the queue, the same for every backend, so swapping adapters never
// changes which requests are accepted. Adapters may accept less where their
// backend must (a larger minimum lease), never more.
const (
	// MaxTopicBytes caps a topic name.
	MaxTopicBytes = 64
	// MaxMessagesPerPublish caps the messages of one publish.
	MaxMessagesPerPublish = 10000
	// MaxPayloadBytes caps one message's payload.
	MaxPayloadBytes = 1 << 20
	// MaxKeyBytes caps a message's Key and IdempotencyKey and a consumer id.
	MaxKeyBytes = 256
	// MaxLeaseMessages caps LeaseRequest.Max unless a queue is configured
	// otherwise (LeaseLimits): one lease holds at most this many messages.
	MaxLeaseMessages = 5000
	// MaxLeaseDuration caps LeaseRequest.LeaseDuration unless a queue is
	// configured otherwise: a consumer that dies holding a lease delays its
	// messages by at most this long.
	MaxLeaseDuration = 5 * time.Minute
	// CeilingLeaseMessages and CeilingLeaseDuration are the most a
	// configuration may raise the lease limits to.
	CeilingLeaseMessages = 10000
	CeilingLeaseDuration = time.Hour
	// MaxLeaseWait caps LeaseRequest.Wait, the time a lease may wait for
	// messages when none is ready (a long poll). 20 s, as SQS's
	// WaitTimeSeconds: long enough that an idle consumer asks a few times a
	// minute, short enough to sit well inside the HTTP servers' and clients'
	// timeouts (30 s and more), so a wait never looks like a dead server.
	MaxLeaseWait = 20 * time.Second
)

// LeaseLimits bound one lease: how many messages it may ask for and for how
// long. The zero value means the defaults, MaxLeaseMessages and
// MaxLeaseDuration.
type LeaseLimits struct {
	MaxMessages int
	MaxDuration time.Duration
}

// DefaultLeaseLimits are the limits every queue applies unless configured.
func DefaultLeaseLimits() LeaseLimits {
	return LeaseLimits{MaxMessages: MaxLeaseMessages, MaxDuration: MaxLeaseDuration}
}

// WithDefaults fills zero fields with the defaults.
func (l LeaseLimits) WithDefaults() LeaseLimits {
	if l.MaxMessages == 0 {
		l.MaxMessages = MaxLeaseMessages
	}
	if l.MaxDuration == 0 {
		l.MaxDuration = MaxLeaseDuration
	}
	return l
}

// Validate checks configured limits: positive and within the ceilings.
func (l LeaseLimits) Validate() error {
	l = l.WithDefaults()
	switch {
	case l.MaxMessages < 1 || l.MaxMessages > CeilingLeaseMessages:
		return invalid("lease limit of %d messages must be between 1 and %d", l.MaxMessages, CeilingLeaseMessages)
	case l.MaxDuration < time.Second || l.MaxDuration > CeilingLeaseDuration:
		return invalid("lease limit of %s must be between 1s and %s", l.MaxDuration, CeilingLeaseDuration)
	}
	return nil
}

// OutgoingMessage is one message to publish.
type OutgoingMessage struct {
	Payload json.RawMessage `json:"payload"`
	// Key chooses the partition (see PartitionKey); telemetry uses the GPU
	// UUID. When empty, the queue takes the payload's "gpu_uuid" field, or
	// spreads the message by its id.
	Key string `json:"key,omitempty"`
	// IdempotencyKey, when set, makes the publish safe to retry: the message
	// id is derived from (topic, key) by MessageID, and a second message with
	// the same id is reported as a duplicate, not stored.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// LeaseRequest asks for up to Max messages of Topic for LeaseDuration.
type LeaseRequest struct {
	Topic         string
	ConsumerID    string
	Max           int
	LeaseDuration time.Duration
	// Wait, when not zero, makes the lease a long poll: with nothing ready
	// the queue parks the request and answers as soon as messages become
	// ready (with those ready then, up to Max), or with an empty lease when
	// Wait has passed. Zero answers at once, as before. 0 to MaxLeaseWait.
	Wait time.Duration
}

// LeaseRef names a lease for Ack and Release.
type LeaseRef struct {
	Topic      string
	ConsumerID string
	LeaseID    uuid.UUID
	// Reason, optional and used by Release only, says why the consumer gave
	// the lease back (its last error). The queue keeps it with the messages
	// and records it in the dead letter if they reach the delivery limit.
	// At most MaxReasonBytes, no NUL (TruncateReason makes any text fit).
	Reason string
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// ValidateTopic checks a topic name: 1 to MaxTopicBytes characters of A-Z,
// a-z, 0-9, '.', '_' and '-', with no empty dot-separated part and no leading
// '_' (a topic names NATS subjects, where those mean something else).
func ValidateTopic(topic string) error {
	switch {
	case strings.TrimSpace(topic) == "":
		return invalid("topic is required")
	case !topicChars(topic):
		return invalid("topic %q must be 1-%d characters of A-Z, a-z, 0-9, '.', '_' or '-'",
			truncate(topic, MaxTopicBytes+8), MaxTopicBytes)
	case strings.HasPrefix(topic, ".") || strings.HasSuffix(topic, ".") || strings.Contains(topic, ".."):
		return invalid("topic %q has an empty dot-separated part", topic)
	case strings.HasPrefix(topic, "_"):
		return invalid("topic %q starts with '_'", topic)
	}
	return nil
}

// topicChars reports whether topic is 1 to MaxTopicBytes of the characters
// every backend accepts in a name (topics become parts of NATS subjects and
// stream names): A-Z, a-z, 0-9, '.', '_' and '-'. A loop, not a regexp: it
// runs on every publish.
func topicChars(topic string) bool {
	if len(topic) == 0 || len(topic) > MaxTopicBytes {
		return false
	}
	for i := 0; i < len(topic); i++ {
		switch c := topic[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ValidateConsumerID checks a consumer id: required (not blank), at most
// MaxKeyBytes, no NUL.
func ValidateConsumerID(id string) error {
	if strings.TrimSpace(id) == "" {
		return invalid("consumer_id is required")
	}
	return validateKey("consumer_id", id)
}

// validateKey checks an optional identifier: at most MaxKeyBytes, no NUL
// (PostgreSQL text cannot hold it, and one such value would fail a whole
// group commit).
func validateKey(field, v string) error {
	switch {
	case len(v) > MaxKeyBytes:
		return invalid("%s is longer than %d bytes (%d)", field, MaxKeyBytes, len(v))
	case strings.IndexByte(v, 0) >= 0:
		return invalid("%s must not contain NUL", field)
	}
	return nil
}

// ValidatePayload checks a payload: present and not JSON null, at most
// MaxPayloadBytes, valid UTF-8 JSON, and without the escape \u0000, which
// PostgreSQL's jsonb refuses (the rule holds on every backend, so a message
// one backend accepts every backend accepts).
func ValidatePayload(p json.RawMessage) error { return validatePayload("payload", p) }

func validatePayload(field string, p json.RawMessage) error {
	switch {
	case len(p) == 0 || bytes.Equal(bytes.TrimSpace(p), []byte("null")):
		return invalid("%s is required and must not be null", field)
	case len(p) > MaxPayloadBytes:
		return invalid("%s is %d bytes, over the %d byte limit", field, len(p), MaxPayloadBytes)
	case !utf8.Valid(p):
		return invalid("%s is not valid UTF-8", field)
	case !json.Valid(p):
		return invalid("%s is not valid JSON", field)
	case HasEscapedNUL(p):
		return invalid(`%s must not contain \u0000 (PostgreSQL's jsonb cannot store it)`, field)
	}
	return nil
}

// Validate checks one message of a publish.
func (m OutgoingMessage) Validate() error { return m.validate("") }

// validate checks m, naming its fields with prefix ("messages[3].").
func (m OutgoingMessage) validate(prefix string) error {
	if err := validatePayload(prefix+"payload", m.Payload); err != nil {
		return err
	}
	if err := validateKey(prefix+"key", m.Key); err != nil {
		return err
	}
	return validateKey(prefix+"idempotency_key", m.IdempotencyKey)
}

// ValidatePublish checks a whole publish: the topic, 1 to
// MaxMessagesPerPublish messages, and each message; an error names the first
// bad message's field ("messages[3].payload is not valid JSON").
func ValidatePublish(topic string, msgs []OutgoingMessage) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	switch n := len(msgs); {
	case n == 0:
		return invalid("messages must not be empty")
	case n > MaxMessagesPerPublish:
		return invalid("a publish carries at most %d messages, got %d", MaxMessagesPerPublish, n)
	}
	for i, m := range msgs {
		if m.validate("") != nil {
			// Checked again only to name the field: no prefix is built
			// for the messages that pass.
			return m.validate(fmt.Sprintf("messages[%d].", i))
		}
	}
	return nil
}

// Validate checks a lease request against the default lease limits and the
// backend's shortest lease, minLease.
func (r LeaseRequest) Validate(minLease time.Duration) error {
	return r.ValidateWithin(minLease, DefaultLeaseLimits())
}

// ValidateWithin checks a lease request against a queue's configured limits
// (zero fields mean the defaults) and the backend's shortest lease,
// minLease. An error names the limit the request broke.
func (r LeaseRequest) ValidateWithin(minLease time.Duration, limits LeaseLimits) error {
	if err := ValidateTopic(r.Topic); err != nil {
		return err
	}
	if err := ValidateConsumerID(r.ConsumerID); err != nil {
		return err
	}
	limits = limits.WithDefaults()
	switch {
	case r.Max < 1 || r.Max > limits.MaxMessages:
		return invalid("max must be between 1 and %d (this queue's lease limit), got %d", limits.MaxMessages, r.Max)
	case r.LeaseDuration < minLease || r.LeaseDuration > limits.MaxDuration:
		return invalid("lease duration must be between %s and %s (this queue's lease limit), got %s",
			minLease, limits.MaxDuration, r.LeaseDuration)
	case r.Wait < 0 || r.Wait > MaxLeaseWait:
		return invalid("lease wait must be between 0 and %s, got %s", MaxLeaseWait, r.Wait)
	}
	return nil
}

// Validate checks an Ack or Release reference: a valid topic and consumer id
// and a lease id. Whether the lease is live, and whose it is, is the
// queue's to say (ErrLeaseExpired, or ErrInvalidArgument for another
// consumer's lease: see ports/doc.go).
func (r LeaseRef) Validate() error {
	if err := ValidateTopic(r.Topic); err != nil {
		return err
	}
	if err := ValidateConsumerID(r.ConsumerID); err != nil {
		return err
	}
	if r.LeaseID == uuid.Nil {
		return invalid("lease_id is required")
	}
	switch {
	case len(r.Reason) > MaxReasonBytes:
		return invalid("reason is longer than %d bytes (%d)", MaxReasonBytes, len(r.Reason))
	case strings.IndexByte(r.Reason, 0) >= 0:
		return invalid("reason must not contain NUL")
	}
	return nil
}

// CheckSettle is how every adapter's Ack and Release begins: the caller's
// context must still be live and the reference well-formed (Validate). op
// ("ack", "release") starts the error.
func CheckSettle(ctx context.Context, op string, ref LeaseRef) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := ref.Validate(); err != nil {
		return fmt.Errorf("%s lease %s: %w", op, ref.LeaseID, err)
	}
	return nil
}

// CheckOwner is the consumer-id rule every queue applies on Ack and Release:
// only the consumer a lease was granted to may settle it. A ref naming
// another consumer fails with ErrInvalidArgument and changes nothing.
func CheckOwner(ref LeaseRef, owner string) error {
	if ref.ConsumerID != owner {
		return invalid("lease %s belongs to consumer %q, not %q", ref.LeaseID, owner, ref.ConsumerID)
	}
	return nil
}

// PartitionKey is the string a message's partition is derived from
// (PartitionOf): its Key, else its payload's top-level "gpu_uuid" string (so
// telemetry lands by GPU even without a key), else its message id, which
// spreads keyless messages evenly.
func PartitionKey(m OutgoingMessage, id uuid.UUID) string {
	if m.Key != "" {
		return m.Key
	}
	if gpu := gpuUUIDOf(m.Payload); gpu != "" {
		return gpu
	}
	return id.String()
}

// gpuUUIDOf returns the payload's top-level "gpu_uuid" string, or "". Only
// objects are decoded, and only that field.
func gpuUUIDOf(p json.RawMessage) string {
	if !bytes.HasPrefix(bytes.TrimLeft(p, " \t\r\n"), []byte("{")) {
		return ""
	}
	var probe struct {
		GPUUUID *string `json:"gpu_uuid"`
	}
	if err := json.Unmarshal(p, &probe); err != nil || probe.GPUUUID == nil {
		return ""
	}
	return *probe.GPUUUID
}

// HasEscapedNUL reports whether raw JSON contains the escape \u0000: an odd
// run of backslashes before "u0000" ("\\u0000" is a literal backslash).
func HasEscapedNUL(raw []byte) bool {
	needle := []byte(`u0000`)
	for off := 0; ; {
		i := bytes.Index(raw[off:], needle)
		if i < 0 {
			return false
		}
		at := off + i
		backslashes := 0
		for j := at - 1; j >= 0 && raw[j] == '\\'; j-- {
			backslashes++
		}
		if backslashes%2 == 1 {
			return true
		}
		off = at + len(needle)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// The delivery limit. A message handed out MaxDeliveries times without an
// ack is dead-lettered by the queue instead of being leased again, so one
// message that can never be processed (a poison message) cannot circulate
// for ever. Every adapter takes its limit from MaxDeliveriesOf.
const (
	// DefaultMaxDeliveries is the limit when none is configured
	// (MQ_MAX_DELIVERIES).
	DefaultMaxDeliveries = 5
	// MaxMaxDeliveries caps a configured limit; beyond it the limit no longer
	// protects anything.
	MaxMaxDeliveries = 1000
	// MaxReasonBytes caps the reason a consumer gives on Release (and the
	// reason a dead letter keeps); longer reasons are cut by TruncateReason.
	MaxReasonBytes = 2048
)

// MaxDeliveriesOf returns the delivery limit for a configured value: zero
// means DefaultMaxDeliveries; 1 to MaxMaxDeliveries is taken as is; anything
// else is an error.
func MaxDeliveriesOf(configured int) (int, error) {
	switch {
	case configured == 0:
		return DefaultMaxDeliveries, nil
	case configured < 1 || configured > MaxMaxDeliveries:
		return 0, invalid("max deliveries must be between 1 and %d, got %d", MaxMaxDeliveries, configured)
	}
	return configured, nil
}

// Exhausted reports whether a message handed out deliveries times, none of
// them acked, has reached the limit: the queue dead-letters it instead of
// leasing it again.
func Exhausted(deliveries, maxDeliveries int) bool { return deliveries >= maxDeliveries }

// TruncateReason cuts a failure reason to MaxReasonBytes on a UTF-8
// boundary and removes NUL bytes (PostgreSQL text cannot hold them), so any
// error text can be kept with a dead letter.
func TruncateReason(reason string) string {
	reason = strings.ReplaceAll(reason, "\x00", "")
	if len(reason) <= MaxReasonBytes {
		return reason
	}
	cut := MaxReasonBytes - len("…")
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut] + "…"
}

// ExhaustedReason is the reason a queue records when it dead-letters a
// message at its delivery limit, with the last failure it knows of.
func ExhaustedReason(deliveries int, lastError string) string {
	r := fmt.Sprintf("delivered %d times without an ack (delivery limit)", deliveries)
	if lastError != "" {
		r += ": last error: " + lastError
	}
	return TruncateReason(r)
}
