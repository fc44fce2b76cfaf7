package domain

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Point is one DCGM exporter sample: a metric of one GPU at one instant.
// Its JSON form is the payload the streamer publishes to the queue.
type Point struct {
	Timestamp  time.Time `json:"timestamp"`
	MetricName string    `json:"metric_name"`
	GPUIndex   int       `json:"gpu_index"`
	Device     string    `json:"device"`
	GPUUUID    string    `json:"gpu_uuid"`
	ModelName  string    `json:"model_name"`
	Hostname   string    `json:"hostname"`
	Container  string    `json:"container"`
	Pod        string    `json:"pod"`
	Namespace  string    `json:"namespace"`
	// Value is nil when the exporter reported nothing or a DCGM blank sentinel.
	Value     *float64 `json:"value"`
	LabelsRaw string   `json:"labels_raw"`
}

// Validate reports the first rule the point breaks, as an error wrapping
// ErrInvalidPoint, or nil.
func (p Point) Validate() error {
	switch {
	case p.GPUUUID == "":
		return invalidPoint("gpu_uuid is empty")
	case p.MetricName == "":
		return invalidPoint("metric_name is empty")
	case p.Timestamp.IsZero():
		return invalidPoint("timestamp is missing")
	case p.GPUIndex < 0:
		return invalidPoint("gpu_index is negative")
	case p.Value != nil && IsBlank(*p.Value):
		return invalidPoint("value is a DCGM blank sentinel; send null")
	}
	return p.checkBounds()
}

// Record is a Point as it travels to and from the telemetry store. Written,
// it carries the queue message that brought it (MsgUUID, checked but not
// stored: the store deduplicates on the sample's natural key, ADR 0004).
// Read back, ID is the sample's series id (the tiebreak of the (timestamp,
// id) order, unique per timestamp within a GPU); MsgUUID and IngestedAt are
// zero.
type Record struct {
	Point
	// MsgUUID is the queue message's UUID.
	MsgUUID    uuid.UUID `json:"msg_uuid"`
	ID         int64     `json:"id"`
	IngestedAt time.Time `json:"ingested_at"`
}

// GPU is one entry of the GPU registry.
type GPU struct {
	UUID      string    `json:"id"`
	Hostname  string    `json:"hostname"`
	GPUIndex  int       `json:"gpu_index"`
	Device    string    `json:"device"`
	ModelName string    `json:"model_name"`
	LastSeen  time.Time `json:"last_seen"`
}

// GPUOf returns the registry entry a point implies.
func GPUOf(p Point) GPU {
	return GPU{UUID: p.GPUUUID, Hostname: p.Hostname, GPUIndex: p.GPUIndex,
		Device: p.Device, ModelName: p.ModelName, LastSeen: p.Timestamp}
}

// DeadLetter is a message that can never be processed, kept with its reason
// so it does not stall its partition and can be inspected later.
type DeadLetter struct {
	MsgUUID uuid.UUID
	Topic   string
	Payload []byte
	Reason  string
	// Deliveries is how often the queue handed the message out, when known
	// (0 otherwise).
	Deliveries int
	// Source says who set the message aside: DeadLetterSourceQueue (the
	// delivery limit) or DeadLetterSourceCollector (unparseable, or data the
	// store refuses). Empty means the collector.
	Source string
}

// Sources of a dead letter: who decided the message can never be processed.
const (
	// DeadLetterSourceQueue: the queue, at the delivery limit.
	DeadLetterSourceQueue = "queue"
	// DeadLetterSourceCollector: the collector, for a message it cannot
	// parse or whose data the store refuses.
	DeadLetterSourceCollector = "collector"
)

// DCGM reports "no value" with sentinels rather than an empty field. The
// exporter's integer blanks start at 0x7ffffffffffffff0 (≈9.22e18), its 32-bit
// ones at 0x7ffffff0, its float blanks at 2^47, and several utilisation fields
// report 0xffffffff.
const (
	blankInt64Floor = 9.2e18
	blankUint32     = 4294967295
	blankInt32Floor = 2147483632 // DCGM_INT32_BLANK; the next 15 values are its other "no data" codes
	blankInt32Ceil  = 2147483647
	blankFP64Floor  = 140737488355328 // DCGM_FP64_BLANK = 2^47
	blankFP64Ceil   = blankFP64Floor + 15
)

// IsBlank reports whether v is not a measurement but a DCGM "blank" sentinel
// (or NaN/Inf), which the pipeline stores as NULL.
func IsBlank(v float64) bool {
	switch {
	case math.IsNaN(v), math.IsInf(v, 0):
		return true
	case math.Abs(v) >= blankInt64Floor:
		return true
	case v == blankUint32:
		return true
	case v >= blankInt32Floor && v <= blankInt32Ceil && v == math.Trunc(v):
		return true
	case v >= blankFP64Floor && v <= blankFP64Ceil && v == math.Trunc(v):
		return true
	}
	return false
}

// CleanValue returns v, or nil when v is a blank sentinel.
func CleanValue(v float64) *float64 {
	if IsBlank(v) {
		return nil
	}
	return &v
}

// Validate reports why the record cannot be stored: no message UUID, an
// invalid point, or a GPU index beyond 32 bits. Errors wrap ErrInvalidPoint.
func (r Record) Validate() error {
	if r.MsgUUID == uuid.Nil {
		return invalidPoint("msg_uuid is nil")
	}
	if err := r.Point.Validate(); err != nil {
		return err
	}
	if r.GPUIndex > math.MaxInt32 {
		return invalidPoint(fmt.Sprintf("gpu_index %d out of range", r.GPUIndex))
	}
	return nil
}

// ValidateRecords checks every record of a batch, so a store can refuse the
// whole batch before storing any of it. The error wraps ErrInvalidArgument
// (what a store reports for a batch it refuses) and the record's own error.
func ValidateRecords(records []Record) error {
	for i, r := range records {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("%w: record %d (msg %s): %w", ErrInvalidArgument, i, r.MsgUUID, err)
		}
	}
	return nil
}

// FormatLabels renders label name/value pairs, in the order given, the way
// labels_raw holds them: name="value" separated by commas, values escaped as
// in the Prometheus exposition format (backslash, double quote, newline).
// It is also the inside of a series' braces.
func FormatLabels(pairs [][2]string) string {
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p[0])
		b.WriteString(`="`)
		b.WriteString(labelValueEscaper.Replace(p[1]))
		b.WriteByte('"')
	}
	return b.String()
}

var labelValueEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
