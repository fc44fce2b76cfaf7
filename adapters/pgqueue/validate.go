package pgqueue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// Limits of the queue protocol.
const (
	// MaxMessagesPerPublish caps one publish request.
	MaxMessagesPerPublish = 10000
	// MaxPayloadBytes caps one message's payload.
	MaxPayloadBytes = 1 << 20
	// MaxLeaseDuration caps one lease.
	MaxLeaseDuration = time.Hour
	// MaxLeaseMessages caps LeaseRequest.Max.
	MaxLeaseMessages = 10000
	// MaxKeyLength caps a message's Key and IdempotencyKey and a consumer id, in bytes.
	MaxKeyLength = 256
)

var topicPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func validateTopic(topic string) error {
	if !topicPattern.MatchString(topic) {
		return fmt.Errorf("%w: topic %q must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
			ports.ErrInvalidArgument, topic)
	}
	return nil
}

// row is one message ready for the INSERT.
type row struct {
	topic     string
	id        uuid.UUID
	payload   []byte
	partition int16
}

// prepareRows validates a publish and assigns each message its id and
// partition. Errors wrap ports.ErrInvalidArgument and name the message.
func prepareRows(topic string, msgs []ports.OutgoingMessage) ([]row, error) {
	if err := validateTopic(topic); err != nil {
		return nil, err
	}
	if len(msgs) == 0 || len(msgs) > MaxMessagesPerPublish {
		return nil, fmt.Errorf("%w: a publish carries 1 to %d messages, got %d",
			ports.ErrInvalidArgument, MaxMessagesPerPublish, len(msgs))
	}
	rows := make([]row, len(msgs))
	for i, m := range msgs {
		if err := validatePayload(m.Payload); err != nil {
			return nil, fmt.Errorf("%w: message %d: %s", ports.ErrInvalidArgument, i, err)
		}
		if len(m.Key) > MaxKeyLength || len(m.IdempotencyKey) > MaxKeyLength {
			return nil, fmt.Errorf("%w: message %d: key or idempotency key longer than %d bytes",
				ports.ErrInvalidArgument, i, MaxKeyLength)
		}
		id := domain.MessageID(topic, m.IdempotencyKey)
		rows[i] = row{topic: topic, id: id, payload: m.Payload, partition: int16(partitionOf(m, id))}
	}
	return rows, nil
}

// validatePayload checks what PostgreSQL's jsonb would otherwise refuse in
// the middle of a shared flush: it must be valid UTF-8 JSON of at most
// MaxPayloadBytes without a \u0000 escape.
func validatePayload(p json.RawMessage) error {
	switch {
	case len(p) == 0:
		return fmt.Errorf("payload is empty")
	case len(p) > MaxPayloadBytes:
		return fmt.Errorf("payload is %d bytes, over the %d byte limit", len(p), MaxPayloadBytes)
	case !json.Valid(p):
		return fmt.Errorf("payload is not valid JSON")
	case !utf8.Valid(p):
		return fmt.Errorf("payload is not valid UTF-8")
	case hasNULEscape(p):
		return fmt.Errorf(`payload contains \u0000, which PostgreSQL's jsonb cannot store`)
	}
	return nil
}

// hasNULEscape reports whether valid JSON p contains the escape \u0000 (and
// not merely an escaped backslash followed by "u0000").
func hasNULEscape(p []byte) bool {
	needle := []byte(`u0000`)
	for off := 0; ; {
		i := bytes.Index(p[off:], needle)
		if i < 0 {
			return false
		}
		at := off + i
		backslashes := 0
		for j := at - 1; j >= 0 && p[j] == '\\'; j-- {
			backslashes++
		}
		if backslashes%2 == 1 {
			return true
		}
		off = at + len(needle)
	}
}

// partitionOf picks a message's partition: its key, else the payload's
// "gpu_uuid" string (so telemetry lands by GPU even without a key), else its
// message id, which spreads keyless messages evenly.
func partitionOf(m ports.OutgoingMessage, id uuid.UUID) int {
	if m.Key != "" {
		return domain.PartitionOf(m.Key)
	}
	if gpu := gpuUUIDOf(m.Payload); gpu != "" {
		return domain.PartitionOf(gpu)
	}
	return domain.PartitionOf(id.String())
}

// gpuUUIDOf returns the payload's top-level "gpu_uuid" string, or "". Only
// that field is decoded.
func gpuUUIDOf(p json.RawMessage) string {
	if len(p) == 0 || p[0] != '{' && !bytes.HasPrefix(bytes.TrimLeft(p, " \t\r\n"), []byte("{")) {
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
