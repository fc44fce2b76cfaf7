package pgqueue

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// row is one message ready for the INSERT.
type row struct {
	topic     string
	id        uuid.UUID
	payload   []byte
	partition int16
}

// prepareRows checks a publish against the queue's rules (domain) and
// assigns each message its id and partition. Errors wrap
// ports.ErrInvalidArgument and name the message.
func prepareRows(topic string, msgs []ports.OutgoingMessage) ([]row, error) {
	if err := domain.ValidatePublish(topic, msgs); err != nil {
		return nil, fmt.Errorf("publish to %q: %w", topic, err)
	}
	rows := make([]row, len(msgs))
	for i, m := range msgs {
		id := domain.MessageID(topic, m.IdempotencyKey)
		rows[i] = row{topic: topic, id: id, payload: m.Payload,
			partition: int16(domain.PartitionOf(domain.PartitionKey(m, id)))}
	}
	return rows, nil
}
