package nats

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/gpufleet/telemetry/domain"
)

// Config configures a Queue. Zero fields take the defaults of DefaultConfig,
// except URL, which is required.
type Config struct {
	// URL is the NATS server URL, or a comma-separated list of them.
	URL string
	// Replicas is the replica count of every stream: 1 for a single
	// server, 3 for a cluster. Default 1.
	Replicas int
	// AckWait is the consumer's redelivery timeout: how long a message
	// handed out stays invisible without an ack, Nak or InProgress. It
	// bounds how late a crashed consumer's messages come back. Every Queue
	// sharing a server must use the same value. Default 30s.
	AckWait time.Duration
	// DuplicateWindow is how long a stream remembers message ids to drop
	// duplicate publishes. Default 2m.
	DuplicateWindow time.Duration
	// StreamPrefix starts every stream name: <prefix>_<topic>. Letters,
	// digits and "-" only. Default "tq".
	StreamPrefix string
	// MaxDeliveries is the delivery limit (MQ_MAX_DELIVERIES): a message the
	// server hands out again after that many deliveries is moved to the
	// topic's dead-letter stream instead of being leased. Zero means
	// domain.DefaultMaxDeliveries; bounds are domain.MaxDeliveriesOf's.
	MaxDeliveries int
	// User and Password, when User is set, authenticate the connection as
	// a NATS user (natsd defines a publisher and a consumer user with
	// permissions to match). Never logged.
	User     string
	Password string
}

// DefaultConfig returns the defaults listed on Config, without a URL.
func DefaultConfig() Config {
	return Config{Replicas: 1, AckWait: 30 * time.Second, DuplicateWindow: 2 * time.Minute, StreamPrefix: "tq",
		MaxDeliveries: domain.DefaultMaxDeliveries}
}

// MinLease is the shortest lease accepted (the other limits are the queue's
// rules in domain). A lease's expiry is kept by this client (it Naks the
// messages when the lease ends), so a lease much shorter than a few round
// trips to the server would be meaningless.
const MinLease = time.Second

// Tuning that is not configuration.
const (
	// consumerName is the durable consumer of every stream.
	consumerName = "consumers"
	// maxAckPending caps the messages handed out and not yet acked over all
	// leases of a topic; the server stops delivering beyond it.
	maxAckPending = 100000
	// minAckWait keeps the InProgress period (AckWait/2) well above a round trip.
	minAckWait = time.Second
	// ackedLeases is how many acked lease ids are remembered, so that a
	// repeated Ack succeeds.
	ackedLeases = 10000
	// publishWindow caps one Publish's messages awaiting their PubAck.
	publishWindow = 1024
	// asyncMaxPending caps the connection's async publishes awaiting a
	// PubAck, over all concurrent Publish calls.
	asyncMaxPending = 1 << 16
	// ackPayload is JetStream's ack, as a message to a delivered message's
	// reply subject ("+ACK", nats-server's AckAck).
	ackPayload = "+ACK"
	// ioTimeout bounds a PubAck, one Ack's round trip and a flush.
	ioTimeout = 30 * time.Second
	// releaseReasons is how many release reasons are remembered (by stream
	// sequence) for the dead letter of a message that reaches its limit.
	releaseReasons = 10000
	// deadLetterMaxMsgs caps each dead-letter stream; the oldest go first.
	deadLetterMaxMsgs = 100000
	// Headers of a dead letter.
	headerDeliveries = "Gpufleet-Deliveries"
	headerReason     = "Gpufleet-Reason"
)

// prefixPattern is the set of valid stream prefixes.
var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,32}$`)

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	c.Replicas = cmp.Or(c.Replicas, d.Replicas)
	c.AckWait = cmp.Or(c.AckWait, d.AckWait)
	c.DuplicateWindow = cmp.Or(c.DuplicateWindow, d.DuplicateWindow)
	c.StreamPrefix = cmp.Or(c.StreamPrefix, d.StreamPrefix)
	var errs []error
	if n, err := domain.MaxDeliveriesOf(c.MaxDeliveries); err != nil {
		errs = append(errs, err)
	} else {
		c.MaxDeliveries = n
	}
	if strings.TrimSpace(c.URL) == "" {
		errs = append(errs, errors.New("url is empty"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d out of [1, 5]", c.Replicas))
	}
	if c.AckWait < minAckWait {
		errs = append(errs, fmt.Errorf("ack wait %s below %s", c.AckWait, minAckWait))
	}
	if c.DuplicateWindow < 0 {
		errs = append(errs, fmt.Errorf("duplicate window %s is negative", c.DuplicateWindow))
	}
	if !prefixPattern.MatchString(c.StreamPrefix) {
		errs = append(errs, fmt.Errorf("stream prefix %q must match %s", c.StreamPrefix, prefixPattern))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("nats config: %w", err)
	}
	return c, nil
}

// deadLetterStream is the dead-letter stream of topic: its stream's name and
// "_DLQ". No topic's stream has that name: the escaping writes "_" only as
// "__" or "_d".
func (c Config) deadLetterStream(topic string) string { return c.streamName(topic) + "_DLQ" }

// deadLetterSubject is the subject of topic's dead letters. Topics cannot
// start with "_", so it never overlaps a topic's subjects.
func deadLetterSubject(topic string) string { return "_dlq." + topic }

// streamName is the stream of topic: the prefix, "_", and the topic with "_"
// doubled and "." written "_d". The escaping is prefix-free, so distinct
// topics never share a stream.
func (c Config) streamName(topic string) string {
	var b strings.Builder
	b.Grow(len(c.StreamPrefix) + 1 + 2*len(topic))
	b.WriteString(c.StreamPrefix)
	b.WriteByte('_')
	for i := 0; i < len(topic); i++ {
		switch topic[i] {
		case '_':
			b.WriteString("__")
		case '.':
			b.WriteString("_d")
		default:
			b.WriteByte(topic[i])
		}
	}
	return b.String()
}
