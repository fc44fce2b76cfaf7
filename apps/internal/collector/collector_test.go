package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/ports"
)

// The tests are in package collector so they can read the loop's counters
// with testutil.ToFloat64; they drive it only through its exported API.

var quiet = slog.New(slog.DiscardHandler)

var base = time.Date(2025, 7, 18, 13, 42, 33, 0, time.UTC)

func point(gpu string, i int) domain.Point {
	v := float64(i)
	return domain.Point{Timestamp: base.Add(time.Duration(i) * time.Second), MetricName: "DCGM_FI_DEV_GPU_UTIL",
		GPUIndex: i % 8, Device: fmt.Sprintf("nvidia%d", i%8), GPUUUID: gpu, ModelName: "NVIDIA H100 80GB HBM3",
		Hostname: "host-1", Value: &v, LabelsRaw: `DCGM_FI_DRIVER_VERSION="535.129.03"`}
}

func payload(t testing.TB, p domain.Point) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(p)
	require.NoError(t, err)
	return b
}

// goodPayloads returns n valid payloads spread over three GPUs.
func goodPayloads(t testing.TB, n int) []json.RawMessage {
	out := make([]json.RawMessage, n)
	for i := range n {
		out[i] = payload(t, point(fmt.Sprintf("GPU-%d", i%3), i))
	}
	return out
}

// msgLabel carries a message's idempotency key in a good payload's labels:
// the store keeps no message UUID (it deduplicates on the sample), so
// storedIDs reads the key back from there.
const msgLabel = `,test_msg_key="`

// publish puts payloads on the telemetry topic with idempotency keys, so the
// test knows every message's id, and returns the ids in order.
func publish(t testing.TB, q ports.Publisher, payloads ...json.RawMessage) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, len(payloads))
	msgs := make([]ports.OutgoingMessage, len(payloads))
	for i, p := range payloads {
		key := uuid.NewString()
		var pt domain.Point
		if json.Unmarshal(p, &pt) == nil && (domain.Record{Point: pt, MsgUUID: uuid.New()}).Validate() == nil {
			pt.LabelsRaw += msgLabel + key + `"`
			p = payload(t, pt)
		}
		msgs[i] = ports.OutgoingMessage{Payload: p, IdempotencyKey: key}
		ids[i] = domain.MessageID(domain.TelemetryTopic, key)
	}
	res, err := q.Publish(context.Background(), domain.TelemetryTopic, msgs)
	require.NoError(t, err)
	require.Equal(t, len(payloads), res.Accepted)
	return ids
}

// storedIDs returns the message UUID of every telemetry row in the store
// (from the key publish put in its labels), one entry per row, so a
// duplicate row shows as a repeated id.
func storedIDs(t testing.TB, s ports.TelemetryReader) []uuid.UUID {
	t.Helper()
	ctx := context.Background()
	gpus, err := s.ListGPUs(ctx)
	require.NoError(t, err)
	var ids []uuid.UUID
	for _, g := range gpus {
		err := s.StreamTelemetry(ctx, ports.TelemetryQuery{GPUUUID: g.UUID}, func(r domain.Record) error {
			_, key, ok := strings.Cut(r.LabelsRaw, msgLabel)
			require.True(t, ok, "stored row without a message key: %q", r.LabelsRaw)
			ids = append(ids, domain.MessageID(domain.TelemetryTopic, strings.TrimSuffix(key, `"`)))
			return nil
		})
		require.NoError(t, err)
	}
	return ids
}

func requireQueueEmpty(t testing.TB, q *memory.Queue) {
	t.Helper()
	st, err := q.Stats(context.Background())
	require.NoError(t, err)
	require.Zero(t, st.Ready, "ready messages")
	require.Zero(t, st.Leased, "leased messages")
}

// consumer wraps a ports.Consumer, counting calls. Its hooks run on the
// goroutine that makes the call.
type consumer struct {
	ports.Consumer
	leases, acks, releases atomic.Int64
	lastReason             atomic.Pointer[string]
	// onRequest sees each lease request before the queue does.
	onRequest func(ports.LeaseRequest)
	// onLease may rewrite a lease before the collector sees it.
	onLease func(domain.Lease) domain.Lease
	// ackErr, when it returns an error, answers the ack instead of the queue.
	ackErr func(n int64) error
	// onAck runs after each ack the queue accepted.
	onAck func(ref ports.LeaseRef)
}

func (c *consumer) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	c.leases.Add(1)
	if c.onRequest != nil {
		c.onRequest(req)
	}
	l, err := c.Consumer.Lease(ctx, req)
	if err == nil && c.onLease != nil {
		l = c.onLease(l)
	}
	return l, err
}

func (c *consumer) Ack(ctx context.Context, ref ports.LeaseRef) error {
	n := c.acks.Add(1)
	if c.ackErr != nil {
		if err := c.ackErr(n); err != nil {
			return err
		}
	}
	if err := c.Consumer.Ack(ctx, ref); err != nil {
		return err
	}
	if c.onAck != nil {
		c.onAck(ref)
	}
	return nil
}

func (c *consumer) Release(ctx context.Context, ref ports.LeaseRef) error {
	c.releases.Add(1)
	c.lastReason.Store(&ref.Reason)
	return c.Consumer.Release(ctx, ref)
}

// reason is the reason of the last Release.
func (c *consumer) reason() string {
	if r := c.lastReason.Load(); r != nil {
		return *r
	}
	return ""
}

// writer wraps a ports.TelemetryWriter and fails its first calls.
type writer struct {
	ports.TelemetryWriter
	batchFailures  atomic.Int64 // WriteBatch calls still to fail with ErrUnavailable
	letterFailures atomic.Int64 // WriteDeadLetters calls still to fail with ErrUnavailable
	batches        atomic.Int64 // WriteBatch calls
	failCall       int64        // the WriteBatch call (1-based) that fails with ErrUnavailable; set before use
	// block, when set, holds WriteBatch until it is closed; entered is
	// signalled (without blocking) when a WriteBatch starts.
	block, entered chan struct{}
}

func (w *writer) WriteBatch(ctx context.Context, records []domain.Record) (ports.WriteResult, error) {
	call := w.batches.Add(1)
	if w.entered != nil {
		select {
		case w.entered <- struct{}{}:
		default:
		}
	}
	if w.block != nil {
		select {
		case <-w.block:
		case <-ctx.Done():
			return ports.WriteResult{}, ctx.Err()
		}
	}
	if w.batchFailures.Add(-1) >= 0 || call == w.failCall {
		return ports.WriteResult{}, fmt.Errorf("write batch: connection refused: %w", ports.ErrUnavailable)
	}
	return w.TelemetryWriter.WriteBatch(ctx, records)
}

func (w *writer) WriteDeadLetters(ctx context.Context, letters []domain.DeadLetter) error {
	if w.letterFailures.Add(-1) >= 0 {
		return fmt.Errorf("write dead letters: connection refused: %w", ports.ErrUnavailable)
	}
	return w.TelemetryWriter.WriteDeadLetters(ctx, letters)
}

// rig is a collector on a memory queue and store, with both wrapped.
type rig struct {
	q     *memory.Queue
	store *memory.TelemetryStore
	cons  *consumer
	w     *writer
	reg   *prometheus.Registry
	c     *Collector
}

func newRig(t testing.TB, cfg Config) *rig {
	t.Helper()
	q := memory.NewQueue(memory.QueueOptions{MinLease: 10 * time.Millisecond, Logger: quiet})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	store := memory.NewTelemetryStore()
	require.NoError(t, store.Start(t.Context()))
	t.Cleanup(store.Close)
	r := &rig{q: q, store: store, cons: &consumer{Consumer: q}, w: &writer{TelemetryWriter: store}, reg: prometheus.NewPedanticRegistry()}
	if cfg.ConsumerID == "" {
		cfg.ConsumerID = "collector-test"
	}
	if cfg.LeaseMax == 0 {
		cfg.LeaseMax = 100
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = time.Minute
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	r.c = New(r.cons, r.w, cfg, quiet, r.reg)
	return r
}

func TestPersistsThenAcks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		messages int
		leaseMax int
		batches  int
	}{
		{"one message", 1, 100, 1},
		{"one batch", 50, 100, 1},
		{"several batches", 250, 100, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{LeaseMax: tt.leaseMax})
			ids := publish(t, r.q, goodPayloads(t, tt.messages)...)

			// When the queue sees an ack, every message of that lease must
			// already be stored. ProcessOnce runs on this goroutine, so the
			// hooks do too.
			var leased []domain.Message
			r.cons.onLease = func(l domain.Lease) domain.Lease { leased = l.Messages; return l }
			r.cons.onAck = func(ports.LeaseRef) {
				stored := map[uuid.UUID]bool{}
				for _, id := range storedIDs(t, r.store) {
					stored[id] = true
				}
				for _, m := range leased {
					require.True(t, stored[m.ID], "message %s acked before it was stored", m.ID)
				}
			}

			total := 0
			for {
				n, err := r.c.ProcessOnce(t.Context())
				require.NoError(t, err)
				if n == 0 {
					break
				}
				total += n
			}
			require.Equal(t, tt.messages, total)
			require.ElementsMatch(t, ids, storedIDs(t, r.store), "rows stored = published, once each")
			requireQueueEmpty(t, r.q)
			require.EqualValues(t, tt.batches, r.cons.acks.Load())
			require.Zero(t, r.cons.releases.Load())
			require.Equal(t, float64(tt.messages), testutil.ToFloat64(r.c.m.leased))
			require.Equal(t, float64(tt.messages), testutil.ToFloat64(r.c.m.persisted))
			require.Equal(t, float64(tt.messages), testutil.ToFloat64(r.c.m.acked))
			require.Zero(t, testutil.ToFloat64(r.c.m.duplicates))
			require.EqualValues(t, tt.batches, histogramCount(t, r.c.m.batchSeconds), "one duration per batch")
			require.EqualValues(t, tt.messages, histogramCount(t, r.c.m.sampleAge), "one end-to-end age per stored sample")
		})
	}
}

// histogramCount reads a histogram's observation count.
func histogramCount(t testing.TB, h prometheus.Histogram) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1) // a histogram emits exactly one metric
	h.Collect(ch)
	var m dto.Metric
	require.NoError(t, (<-ch).Write(&m))
	return m.GetHistogram().GetSampleCount()
}

func TestEmptyLeaseIsNotAnError(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	n, err := r.c.ProcessOnce(t.Context())
	require.NoError(t, err)
	require.Zero(t, n)
	require.Zero(t, r.cons.acks.Load(), "nothing to ack")
	require.Zero(t, r.w.batches.Load(), "nothing to write")
}

func TestTransientFailureReleasesAndRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		batchFailures  int64
		letterFailures int64
		poison         bool
		// wantDuplicates: a batch stored before the failure comes back as
		// duplicates, never as second rows.
		wantDuplicates float64
	}{
		{name: "store down once", batchFailures: 1},
		{name: "store down three times", batchFailures: 3},
		{name: "dead-letter write fails after the batch landed", letterFailures: 1, poison: true, wantDuplicates: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{})
			r.w.batchFailures.Store(tt.batchFailures)
			r.w.letterFailures.Store(tt.letterFailures)
			payloads := goodPayloads(t, 10)
			if tt.poison {
				payloads = append(payloads, json.RawMessage(`{"metric_name":"x"}`))
			}
			ids := publish(t, r.q, payloads...)
			good := ids[:10]

			failures := tt.batchFailures + tt.letterFailures
			for i := range failures {
				n, err := r.c.ProcessOnce(t.Context())
				require.ErrorIs(t, err, ports.ErrUnavailable)
				require.Equal(t, len(payloads), n)
				require.Zero(t, r.cons.acks.Load(), "a batch that was not fully stored is never acked")
				require.Equal(t, i+1, r.cons.releases.Load(), "the lease is released")
				st, err := r.q.Stats(t.Context())
				require.NoError(t, err)
				require.Equal(t, len(payloads), st.Ready, "released messages are ready again at once")
				require.Zero(t, st.Leased)
			}

			n, err := r.c.ProcessOnce(t.Context())
			require.NoError(t, err)
			require.Equal(t, len(payloads), n)
			require.ElementsMatch(t, good, storedIDs(t, r.store), "stored exactly once")
			requireQueueEmpty(t, r.q)
			require.EqualValues(t, 1, r.cons.acks.Load())
			require.Equal(t, float64(failures), testutil.ToFloat64(r.c.m.released))
			require.Equal(t, float64(failures), testutil.ToFloat64(r.c.m.errors.WithLabelValues("persist")))
			require.Equal(t, 10.0, testutil.ToFloat64(r.c.m.persisted))
			require.Equal(t, tt.wantDuplicates, testutil.ToFloat64(r.c.m.duplicates))
			require.Equal(t, float64(len(payloads)), testutil.ToFloat64(r.c.m.acked))
		})
	}
}

// corrupt is a placeholder payload that the consumer wrapper replaces with
// bytes that are not JSON (the memory queue only carries valid JSON).
const corrupt = `{"corrupt":true}`

func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		payloads   []string
		wantReason []string
	}{
		{"not JSON", []string{`{"gpu_uuid": "GPU-1", "metric_`}, []string{"decode payload"}},
		{"trailing garbage", []string{`{"gpu_uuid":"GPU-1"} {"x":1}`}, []string{"decode payload"}},
		{"JSON but not an object", []string{`"DCGM_FI_DEV_GPU_UTIL"`}, []string{"decode payload"}},
		{"empty gpu_uuid", []string{`{"timestamp":"2025-07-18T13:42:33Z","metric_name":"DCGM_FI_DEV_GPU_UTIL","gpu_uuid":"","value":1}`},
			[]string{"gpu_uuid is empty"}},
		{"DCGM blank sent as a number", []string{`{"timestamp":"2025-07-18T13:42:33Z","metric_name":"DCGM_FI_DEV_GPU_UTIL","gpu_uuid":"GPU-1","value":4294967295}`},
			[]string{"blank sentinel"}},
		{"bad timestamp", []string{`{"timestamp":"yesterday","metric_name":"m","gpu_uuid":"GPU-1"}`}, []string{"decode payload"}},
		{"all at once", []string{
			`{"gpu_uuid": "GPU-1", "metric_`,
			`{"timestamp":"2025-07-18T13:42:33Z","metric_name":"DCGM_FI_DEV_GPU_UTIL","gpu_uuid":"","value":1}`,
			`{"timestamp":"2025-07-18T13:42:33Z","metric_name":"DCGM_FI_DEV_GPU_UTIL","gpu_uuid":"GPU-1","value":4294967295}`,
		}, []string{"decode payload", "gpu_uuid is empty", "blank sentinel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{})
			// Good messages around the poison, in one batch.
			good := goodPayloads(t, 6)
			raw := map[int][]byte{} // position → the bytes the collector must see
			payloads := append([]json.RawMessage{}, good[:3]...)
			for _, p := range tt.payloads {
				raw[len(payloads)] = []byte(p)
				if json.Valid([]byte(p)) {
					payloads = append(payloads, json.RawMessage(p))
				} else {
					payloads = append(payloads, json.RawMessage(corrupt))
				}
			}
			payloads = append(payloads, good[3:]...)
			ids := publish(t, r.q, payloads...)
			want := map[uuid.UUID][]byte{}
			var goodIDs []uuid.UUID
			for i, id := range ids {
				if b, ok := raw[i]; ok {
					want[id] = b
				} else {
					goodIDs = append(goodIDs, id)
				}
			}
			r.cons.onLease = func(l domain.Lease) domain.Lease {
				for i, m := range l.Messages {
					if b, ok := want[m.ID]; ok {
						l.Messages[i].Payload = b
					}
				}
				return l
			}

			n, err := r.c.ProcessOnce(t.Context())
			require.NoError(t, err)
			require.Equal(t, len(payloads), n, "one batch")

			require.ElementsMatch(t, goodIDs, storedIDs(t, r.store), "good messages of the same batch are stored")
			letters, err := r.store.DeadLetters(t.Context())
			require.NoError(t, err)
			require.Len(t, letters, len(tt.payloads))
			reasons := make([]string, 0, len(letters))
			for _, l := range letters {
				b, ok := want[l.MsgUUID]
				require.True(t, ok, "dead letter %s is one of the poison messages", l.MsgUUID)
				require.Equal(t, string(b), string(l.Payload), "the payload is kept as received")
				require.Equal(t, domain.TelemetryTopic, l.Topic)
				reasons = append(reasons, l.Reason)
			}
			for _, w := range tt.wantReason {
				require.True(t, containsAny(reasons, w), "a reason mentions %q: %q", w, reasons)
			}
			requireQueueEmpty(t, r.q)
			require.EqualValues(t, 1, r.cons.acks.Load(), "poison is acked with the batch after one attempt")
			require.Zero(t, r.cons.releases.Load())
			require.Equal(t, float64(len(tt.payloads)), testutil.ToFloat64(r.c.m.deadLettered))
			require.Equal(t, float64(len(goodIDs)), testutil.ToFloat64(r.c.m.persisted))
		})
	}
}

func containsAny(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestOnlyPoisonStillAcks(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	ids := publish(t, r.q, json.RawMessage(`{}`), json.RawMessage(`[]`))
	n, err := r.c.ProcessOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 2, n)
	letters, err := r.store.DeadLetters(t.Context())
	require.NoError(t, err)
	require.Len(t, letters, 2)
	require.ElementsMatch(t, ids, []uuid.UUID{letters[0].MsgUUID, letters[1].MsgUUID})
	require.Empty(t, storedIDs(t, r.store))
	requireQueueEmpty(t, r.q)
}

// textWriter stores dead letters the way a text column does: a NUL byte or
// invalid UTF-8 is refused with ErrInvalidArgument.
type textWriter struct {
	ports.TelemetryWriter
}

func (w textWriter) WriteDeadLetters(ctx context.Context, letters []domain.DeadLetter) error {
	for _, l := range letters {
		if !utf8.Valid(l.Payload) || bytes.IndexByte(l.Payload, 0) >= 0 {
			return fmt.Errorf("write dead letters: invalid byte sequence for encoding UTF8: %w", ports.ErrInvalidArgument)
		}
	}
	return w.TelemetryWriter.WriteDeadLetters(ctx, letters)
}

func TestUnstorablePoisonIsEscapedNotRetriedForever(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload []byte
	}{
		{"NUL byte", []byte("{\"gpu_uuid\":\"GPU-1\x00\"}")},
		{"invalid UTF-8", []byte{'{', 0xff, 0xfe, '}'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{})
			r.w.TelemetryWriter = textWriter{TelemetryWriter: r.store}
			ids := publish(t, r.q, json.RawMessage(corrupt), goodPayloads(t, 1)[0])
			r.cons.onLease = func(l domain.Lease) domain.Lease {
				for i, m := range l.Messages {
					if m.ID == ids[0] {
						l.Messages[i].Payload = tt.payload
					}
				}
				return l
			}
			_, err := r.c.ProcessOnce(t.Context())
			require.NoError(t, err)
			letters, err := r.store.DeadLetters(t.Context())
			require.NoError(t, err)
			require.Len(t, letters, 1)
			require.Equal(t, ids[0], letters[0].MsgUUID)
			unquoted, err := strconv.Unquote(string(letters[0].Payload))
			require.NoError(t, err, "the payload is kept, Go-quoted")
			require.Equal(t, string(tt.payload), unquoted)
			require.Contains(t, letters[0].Reason, "Go-quoted")
			require.ElementsMatch(t, ids[1:], storedIDs(t, r.store))
			requireQueueEmpty(t, r.q)
			require.Zero(t, r.cons.releases.Load())
		})
	}
}

func TestDeadLettersCarryTheTopicWhenTheLeaseOmitsIt(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	publish(t, r.q, json.RawMessage(`{}`))
	// A backend that does not echo the topic in its lease.
	r.cons.onLease = func(l domain.Lease) domain.Lease { l.Topic = ""; return l }
	_, err := r.c.ProcessOnce(t.Context())
	require.NoError(t, err)
	letters, err := r.store.DeadLetters(t.Context())
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Equal(t, domain.TelemetryTopic, letters[0].Topic)
	requireQueueEmpty(t, r.q)
}

func TestStoreRejectionIsIsolated(t *testing.T) {
	t.Parallel()
	// gpu_index beyond int32 decodes (Go's int is 64-bit) but the store's
	// column cannot hold it: the store answers ErrInvalidArgument for the
	// whole batch.
	rejected := point("GPU-9", 1)
	rejected.GPUIndex = math.MaxInt32 + 1
	_, err := Decode(payload(t, rejected))
	require.NoError(t, err, "Decode accepts it")

	tests := []struct {
		name          string
		before, after int
	}{
		{"in the middle", 4, 4},
		{"first", 0, 5},
		{"alone", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, Config{})
			good := goodPayloads(t, tt.before+tt.after)
			payloads := append(append(append([]json.RawMessage{}, good[:tt.before]...), payload(t, rejected)), good[tt.before:]...)
			ids := publish(t, r.q, payloads...)
			badID := ids[tt.before]
			goodIDs := append(append([]uuid.UUID{}, ids[:tt.before]...), ids[tt.before+1:]...)

			n, err := r.c.ProcessOnce(t.Context())
			require.NoError(t, err)
			require.Equal(t, len(payloads), n)
			require.ElementsMatch(t, goodIDs, storedIDs(t, r.store))
			letters, err := r.store.DeadLetters(t.Context())
			require.NoError(t, err)
			require.Len(t, letters, 1)
			require.Equal(t, badID, letters[0].MsgUUID)
			require.Contains(t, letters[0].Reason, "store rejected record")
			require.JSONEq(t, string(payload(t, rejected)), string(letters[0].Payload))
			requireQueueEmpty(t, r.q)
			require.LessOrEqual(t, r.w.batches.Load(), int64(1+2*bits.Len(uint(len(payloads)))),
				"one batch, then a bisection down to the bad record")
			require.Equal(t, 1.0, testutil.ToFloat64(r.c.m.deadLettered))
			require.Equal(t, float64(len(goodIDs)), testutil.ToFloat64(r.c.m.persisted))
		})
	}
}

// A large batch with a few records the store refuses costs a bisection,
// not a write per record: every good record lands, each bad one is
// dead-lettered with its delivery count, and the lease is acked.
func TestStoreRejectionBisects(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{LeaseMax: 1000})
	payloads := goodPayloads(t, 1000)
	for _, i := range []int{17, 800} {
		p := point("GPU-9", 5000+i)
		p.GPUIndex = math.MaxInt32 + 1
		payloads[i] = payload(t, p)
	}
	ids := publish(t, r.q, payloads...)
	n, err := r.c.ProcessOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1000, n)
	require.Len(t, storedIDs(t, r.store), 998)
	letters, err := r.store.DeadLetters(t.Context())
	require.NoError(t, err)
	require.Len(t, letters, 2)
	require.ElementsMatch(t, []uuid.UUID{ids[17], ids[800]}, []uuid.UUID{letters[0].MsgUUID, letters[1].MsgUUID})
	require.Equal(t, 1, letters[0].Deliveries)
	require.LessOrEqual(t, r.w.batches.Load(), int64(1+2*2*bits.Len(1000)), "writes of the bisection")
	require.Zero(t, r.cons.releases.Load())
	requireQueueEmpty(t, r.q)
}

func TestStoreRejectionThenOutage(t *testing.T) {
	t.Parallel()
	rejected := point("GPU-9", 1)
	rejected.GPUIndex = math.MaxInt32 + 1
	r := newRig(t, Config{})
	// Call 1 is the batch of 9 (rejected); call 2 stores its first half
	// (4 good records); call 3, the other half, is rejected; call 4 (the
	// bad record and the next good one) meets an outage.
	r.w.failCall = 4
	// One GPU, so one partition: the lease keeps publish order.
	good := make([]json.RawMessage, 8)
	for i := range good {
		good[i] = payload(t, point("GPU-9", 10+i))
	}
	ids := publish(t, r.q, append(append(append([]json.RawMessage{}, good[:4]...), payload(t, rejected)), good[4:]...)...)
	goodIDs := append(append([]uuid.UUID{}, ids[:4]...), ids[5:]...)

	_, err := r.c.ProcessOnce(t.Context())
	require.ErrorIs(t, err, ports.ErrUnavailable)
	require.EqualValues(t, 1, r.cons.releases.Load())
	require.Zero(t, r.cons.acks.Load())
	require.Len(t, storedIDs(t, r.store), 4)
	require.Equal(t, 4.0, testutil.ToFloat64(r.c.m.persisted), "rows stored before the outage are counted")
	require.Contains(t, r.cons.reason(), "connection refused", "the release says why")
	letters, err := r.store.DeadLetters(t.Context())
	require.NoError(t, err)
	require.Empty(t, letters, "nothing is dead-lettered from a batch that is released")

	_, err = r.c.ProcessOnce(t.Context())
	require.NoError(t, err)
	require.ElementsMatch(t, goodIDs, storedIDs(t, r.store), "exactly once")
	letters, err = r.store.DeadLetters(t.Context())
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Equal(t, ids[4], letters[0].MsgUUID)
	require.Equal(t, 8.0, testutil.ToFloat64(r.c.m.persisted))
	require.Equal(t, 4.0, testutil.ToFloat64(r.c.m.duplicates))
	requireQueueEmpty(t, r.q)
}

func TestAckRejectedIsCountedAndNotFatal(t *testing.T) {
	t.Parallel()
	// Fake time: the lease expires without the test waiting for it.
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{LeaseDuration: time.Second})
		// The first ack comes too late: the queue refuses it, and the lease
		// expires, so the messages come back.
		r.cons.ackErr = func(n int64) error {
			if n == 1 {
				return fmt.Errorf("ack lease: %w", ports.ErrLeaseExpired)
			}
			return nil
		}
		ids := publish(t, r.q, goodPayloads(t, 5)...)

		n, err := r.c.ProcessOnce(t.Context())
		require.NoError(t, err, "an expired lease is not a failure of the collector")
		require.Equal(t, 5, n)
		require.Equal(t, 1.0, testutil.ToFloat64(r.c.m.ackRejected))
		require.Zero(t, testutil.ToFloat64(r.c.m.acked))
		require.Zero(t, testutil.ToFloat64(r.c.m.errors.WithLabelValues("ack")))
		require.ElementsMatch(t, ids, storedIDs(t, r.store), "the rows are stored")

		// Inside the synctest bubble this advances the fake clock past the
		// lease's expiry at once; it waits for nothing real.
		time.Sleep(2 * time.Second)
		n, err = r.c.ProcessOnce(t.Context())
		require.NoError(t, err)
		require.Equal(t, 5, n, "redelivered after expiry")
		require.ElementsMatch(t, ids, storedIDs(t, r.store), "the redelivery is deduplicated")
		require.Equal(t, 5.0, testutil.ToFloat64(r.c.m.duplicates))
		require.Equal(t, 5.0, testutil.ToFloat64(r.c.m.persisted))
		require.Equal(t, 5.0, testutil.ToFloat64(r.c.m.acked))
		requireQueueEmpty(t, r.q)
	})
}

func TestAckFailureIsReported(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	r.cons.ackErr = func(int64) error { return fmt.Errorf("ack: %w", ports.ErrUnavailable) }
	publish(t, r.q, goodPayloads(t, 2)...)
	_, err := r.c.ProcessOnce(t.Context())
	require.ErrorIs(t, err, ports.ErrUnavailable)
	require.Equal(t, 1.0, testutil.ToFloat64(r.c.m.errors.WithLabelValues("ack")))
	require.Zero(t, testutil.ToFloat64(r.c.m.ackRejected))
	require.Zero(t, r.cons.releases.Load(), "stored rows are not released; the lease expires")
}

func TestLeaseFailureIsReported(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{LeaseMax: -1})
	_, err := r.c.ProcessOnce(t.Context())
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
	require.Equal(t, 1.0, testutil.ToFloat64(r.c.m.errors.WithLabelValues("lease")))
}

func TestRunDrainsTheQueue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		workers       int
		batchFailures int64
	}{
		{"one worker", 1, 0},
		{"four workers", 4, 0},
		{"backs off through store failures", 2, domain.DefaultMaxDeliveries - 1}, // fewer than the delivery limit: no message can be dead-lettered
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Fake time: the idle polls and failure backoffs pass instantly.
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, Config{Workers: tt.workers, LeaseMax: 7})
				r.w.batchFailures.Store(tt.batchFailures)
				ids := publish(t, r.q, goodPayloads(t, 100)...)
				acked := make(chan struct{}) // closed once the queue is empty after an ack
				var once sync.Once
				r.cons.onAck = func(ports.LeaseRef) { // runs on the workers
					st, err := r.q.Stats(context.Background())
					if err == nil && st.Ready == 0 && st.Leased == 0 {
						once.Do(func() { close(acked) })
					}
				}
				r.c.Start()
				<-acked
				require.NoError(t, r.c.Stop(t.Context()))
				require.ElementsMatch(t, ids, storedIDs(t, r.store))
				requireQueueEmpty(t, r.q)
				require.Equal(t, float64(tt.batchFailures), testutil.ToFloat64(r.c.m.released))
			})
		})
	}
}

func TestStopFinishesTheBatchInHand(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	r.w.block = make(chan struct{})
	r.w.entered = make(chan struct{}, 1)    // 1: WriteBatch never waits for the test
	runCtx := make(chan context.Context, 1) // 1: the first lease's context, kept for the test
	r.cons.Consumer = ctxSpy{Consumer: r.cons.Consumer, ctxs: runCtx}
	ids := publish(t, r.q, goodPayloads(t, 5)...)

	r.c.Start()
	<-r.w.entered // the worker holds a batch
	loopCtx := <-runCtx

	stopped := make(chan error, 1)
	go func() { stopped <- r.c.Stop(context.Background()) }()
	<-loopCtx.Done() // Stop has cancelled the loop
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a batch was being stored", err)
	default:
	}
	close(r.w.block)
	require.NoError(t, <-stopped)

	require.ElementsMatch(t, ids, storedIDs(t, r.store), "the batch in hand is stored")
	requireQueueEmpty(t, r.q)
	require.EqualValues(t, 1, r.cons.acks.Load(), "and acked")
	require.Zero(t, r.cons.releases.Load())
}

// ctxSpy hands the context of its first Lease call to ctxs.
type ctxSpy struct {
	ports.Consumer
	ctxs chan context.Context
}

func (s ctxSpy) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	select {
	case s.ctxs <- ctx:
	default:
	}
	return s.Consumer.Lease(ctx, req)
}

func TestStopWithoutStart(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	require.NoError(t, r.c.Stop(t.Context()))
}

func TestStopHonoursItsContext(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	r.w.block = make(chan struct{})
	r.w.entered = make(chan struct{}, 1)
	publish(t, r.q, goodPayloads(t, 1)...)
	r.c.Start()
	<-r.w.entered
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, r.c.Stop(ctx), context.Canceled, "a stuck batch does not hold Stop past its context")
	close(r.w.block)
	require.NoError(t, r.c.Stop(t.Context()))
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	store := memory.NewTelemetryStore()
	require.NoError(t, store.Start(t.Context()))
	t.Cleanup(store.Close)
	c := New(q, store, Config{}, nil, nil)
	require.Equal(t, domain.TelemetryTopic, c.cfg.Topic)
	require.Equal(t, 1, c.cfg.Workers)
	require.Positive(t, c.cfg.BatchTimeout)
	require.Positive(t, c.cfg.PollInterval, "an idle collector must not spin")
	require.NotNil(t, c.log)
}

func TestMetricsLint(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	publish(t, r.q, goodPayloads(t, 1)...)
	_, err := r.c.ProcessOnce(t.Context())
	require.NoError(t, err)
	r.c.m.errors.WithLabelValues("lease") // make the vector visible to the linter
	promxtest.RequireLintClean(t, r.reg)
	for _, name := range []string{"collector_records_persisted_total", "collector_acks_rejected_total", "collector_batch_duration_seconds"} {
		require.Equal(t, 1, testutil.CollectAndCount(r.reg, name), name)
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	good := point("GPU-5fd4f087", 3)
	tests := []struct {
		name    string
		payload string
		want    func(p domain.Point)
		wantErr string
	}{
		{name: "valid", payload: string(payload(t, good)), want: func(p domain.Point) {
			require.Equal(t, good.GPUUUID, p.GPUUUID)
			require.Equal(t, *good.Value, *p.Value)
			require.True(t, good.Timestamp.Equal(p.Timestamp))
		}},
		{name: "null value is kept as null", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":"GPU-1","value":null}`,
			want: func(p domain.Point) { require.Nil(t, p.Value) }},
		{name: "timestamp is converted to UTC", payload: `{"timestamp":"2025-07-18T15:42:33+02:00","metric_name":"m","gpu_uuid":"GPU-1"}`,
			want: func(p domain.Point) {
				require.Equal(t, time.UTC, p.Timestamp.Location())
				require.Equal(t, base, p.Timestamp)
			}},
		{name: "unknown fields are ignored", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":"GPU-1","new_field":1}`,
			want: func(p domain.Point) { require.Equal(t, "m", p.MetricName) }},
		{name: "trailing whitespace", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":"GPU-1"}` + " \n",
			want: func(p domain.Point) { require.Equal(t, "GPU-1", p.GPUUUID) }},
		{name: "empty", payload: ``, wantErr: "decode payload"},
		{name: "not JSON", payload: `not json`, wantErr: "decode payload"},
		{name: "truncated", payload: `{"metric_name":"m"`, wantErr: "decode payload"},
		{name: "a second object", payload: `{"metric_name":"m"} {}`, wantErr: "trailing data"},
		{name: "a stray closing brace", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":"GPU-1"}}`, wantErr: "trailing data"},
		{name: "a stray closing bracket", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":"GPU-1"}]`, wantErr: "trailing data"},
		{name: "array", payload: `[]`, wantErr: "decode payload"},
		{name: "null", payload: `null`, wantErr: "gpu_uuid is empty"},
		{name: "wrong type", payload: `{"gpu_index":"zero"}`, wantErr: "decode payload"},
		{name: "empty gpu_uuid", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":""}`, wantErr: "gpu_uuid is empty"},
		{name: "empty metric", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"","gpu_uuid":"GPU-1"}`, wantErr: "metric_name is empty"},
		{name: "no timestamp", payload: `{"metric_name":"m","gpu_uuid":"GPU-1"}`, wantErr: "timestamp is missing"},
		{name: "negative index", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":"GPU-1","gpu_index":-1}`, wantErr: "gpu_index is negative"},
		{name: "blank uint32", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":"GPU-1","value":4294967295}`, wantErr: "blank sentinel"},
		{name: "blank int64", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":"GPU-1","value":9223372036854775794}`, wantErr: "blank sentinel"},
		{name: "NaN is not JSON", payload: `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"m","gpu_uuid":"GPU-1","value":NaN}`, wantErr: "decode payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Decode([]byte(tt.payload))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Equal(t, domain.Point{}, p)
				return
			}
			require.NoError(t, err)
			require.NoError(t, p.Validate())
			tt.want(p)
		})
	}
}

// checkedWriter is a writer whose store has a Check (as both real stores
// do), failing while down is set.
type checkedWriter struct {
	*writer
	down   atomic.Bool
	checks atomic.Int64
}

func (w *checkedWriter) Check(context.Context) error {
	w.checks.Add(1)
	if w.down.Load() {
		return fmt.Errorf("ping: connection refused: %w", ports.ErrUnavailable)
	}
	return nil
}

// After a batch fails because the database is down, a worker does not
// lease again until the store answers its check: leasing meanwhile would
// only spend the messages' deliveries toward the queue's delivery limit.
func TestWaitsForTheStoreBeforeLeasingAgain(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{})
	cw := &checkedWriter{writer: r.w}
	cw.down.Store(true)
	r.w.batchFailures.Store(1)
	c := New(r.cons, cw, Config{ConsumerID: "collector-test", LeaseMax: 100, LeaseDuration: time.Minute,
		PollInterval: 10 * time.Millisecond}, quiet, prometheus.NewPedanticRegistry())
	ids := publish(t, r.q, goodPayloads(t, 3)...)
	c.Start()
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	require.Eventually(t, func() bool { return cw.checks.Load() >= 3 }, 10*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 1, r.cons.leases.Load(), "no lease while the store is down")
	require.EqualValues(t, 1, r.cons.releases.Load())
	require.Positive(t, testutil.ToFloat64(c.m.storeWaits))

	cw.down.Store(false)
	require.Eventually(t, func() bool { return len(storedIDs(t, r.store)) == len(ids) }, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return r.cons.acks.Load() == 1 }, 10*time.Second, 5*time.Millisecond)
	requireQueueEmpty(t, r.q)
}

// With a lease wait, an idle worker is woken by the queue when messages
// arrive instead of sleeping PollInterval (an hour here, so only the wait
// can bring the messages in time), and the wait reaches the queue.
func TestLeaseWaitWakesAnIdleWorker(t *testing.T) {
	t.Parallel()
	r := newRig(t, Config{Workers: 1, LeaseWait: domain.MaxLeaseWait, PollInterval: time.Hour})
	waits := make(chan time.Duration, 1)
	r.cons.onRequest = func(req ports.LeaseRequest) {
		select {
		case waits <- req.Wait:
		default:
		}
	}
	r.c.Start()
	t.Cleanup(func() { require.NoError(t, r.c.Stop(context.Background())) })
	require.Equal(t, domain.MaxLeaseWait, <-waits, "the lease carries the wait")
	ids := publish(t, r.q, goodPayloads(t, 5)...)
	require.Eventually(t, func() bool { return len(storedIDs(t, r.store)) == len(ids) }, 10*time.Second, 5*time.Millisecond)
	require.ElementsMatch(t, ids, storedIDs(t, r.store))
}
