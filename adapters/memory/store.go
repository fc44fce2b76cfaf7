package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/internal/actor"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

var (
	_ ports.TelemetryStore = (*TelemetryStore)(nil)
	_ ports.Checker        = (*TelemetryStore)(nil)
)

// streamChunk is how many rows StreamTelemetry copies out of the store per
// round trip to its owner goroutine; it bounds the stream's memory.
const streamChunk = 256

// TelemetryStore is an in-memory ports.TelemetryStore with the same
// semantics as the PostgreSQL one: a series per GPU, metric and attribute
// set, samples deduplicated on (series, timestamp), timestamps kept in UTC
// at microsecond precision, 1-minute rollups, retention by whole UTC days,
// a GPU registry kept current by writes. One goroutine (run) owns all
// state; the methods send it operations and wait for the reply. Start runs
// it, Close stops it.
type TelemetryStore struct {
	ops  chan func(*storeState) // unbuffered: each call hands its op to run
	svc  *startstop.Service     // runs run once
	opts Options
}

// Options tune a memory TelemetryStore, as postgres.Options do.
type Options struct {
	// Retention of raw samples and RollupRetention of rollups (0: forever).
	Retention, RollupRetention time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// seriesKey is a series' identity: GPU, metric and every attribute.
type seriesKey struct {
	gpu, metric, host, device, model, container, pod, namespace, labels string
	index                                                               int
}

// memSeries is one series: its attributes, samples sorted by time, and
// rollups by minute.
type memSeries struct {
	id      int64
	attrs   domain.Point // Timestamp and Value unused
	samples []memSample
	rollups map[int64]domain.Agg // by minute (unix seconds)
}

type memSample struct {
	ts    time.Time
	value *float64
}

// storeState is the store's data; owned by run, never touched elsewhere.
type storeState struct {
	nextID  int64
	series  map[seriesKey]*memSeries
	byGPU   map[string][]*memSeries
	gpus    map[string]domain.GPU
	letters []domain.DeadLetter
	lettAt  []time.Time // lettAt[i] is when letters[i] was stored; its id is i+1
	lettSet map[uuid.UUID]struct{}
	// inserted counts samples ever inserted (PipelineStats).
	inserted int64
}

// NewTelemetryStore builds an empty store; it starts nothing. Start runs its
// owner goroutine (calls before Start fail), Close stops it.
func NewTelemetryStore() *TelemetryStore { return NewTelemetryStoreWith(Options{}) }

// NewTelemetryStoreWith builds an empty store with opts.
func NewTelemetryStoreWith(opts Options) *TelemetryStore {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &TelemetryStore{
		opts: opts,
		ops:  make(chan func(*storeState)),
		svc:  startstop.NewService(),
	}
	return s
}

// Start runs the owner goroutine on a context of its own. A store starts
// once; Start after Start or Close fails with ports.ErrClosed.
func (s *TelemetryStore) Start(context.Context) error {
	if !s.svc.Start(s.run) {
		return fmt.Errorf("start memory store: %w", ports.ErrClosed)
	}
	return nil
}

func (s *TelemetryStore) run(ctx context.Context) {
	st := &storeState{
		nextID:  1,
		series:  map[seriesKey]*memSeries{},
		byGPU:   map[string][]*memSeries{},
		gpus:    map[string]domain.GPU{},
		lettSet: map[uuid.UUID]struct{}{},
	}
	for {
		select {
		case op := <-s.ops:
			op(st)
		case <-ctx.Done():
			return
		}
	}
}

// Close stops the owner goroutine and waits for it; later calls fail with
// ports.ErrClosed. It is safe to call more than once.
func (s *TelemetryStore) Close() {
	_ = s.svc.Stop(context.Background())
}

// Check reports whether the store still serves calls.
func (s *TelemetryStore) Check(ctx context.Context) error {
	if _, err := call(ctx, s, func(*storeState) struct{} { return struct{}{} }); err != nil {
		return fmt.Errorf("check memory store: %w", err)
	}
	return nil
}

// call runs fn on the owner goroutine and waits for its result, the
// caller's context or the store's shutdown, whichever comes first.
func call[T any](ctx context.Context, s *TelemetryStore, fn func(*storeState) T) (T, error) {
	if !s.svc.Started() {
		var zero T
		return zero, fmt.Errorf("memory store not started: %w", ports.ErrClosed)
	}
	v, err := actor.Call(ctx, s.ops, s.svc.Done(), fn)
	if errors.Is(err, actor.ErrStopped) {
		return v, fmt.Errorf("memory store: %w", ports.ErrClosed)
	}
	return v, err
}

// normTime is how PostgreSQL keeps a timestamptz: UTC, microseconds.
func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// WriteBatch stores the samples not stored yet (by series and timestamp),
// all at once, updates their rollups and the GPU registry. Duplicates
// counts the rest, including a sample repeated inside the batch; Expired
// the samples older than the raw retention (dropped).
func (s *TelemetryStore) WriteBatch(ctx context.Context, records []domain.Record) (ports.WriteResult, error) {
	if err := domain.ValidateRecords(records); err != nil {
		return ports.WriteResult{}, fmt.Errorf("write batch: %w", err)
	}
	if len(records) == 0 {
		return ports.WriteResult{}, nil
	}
	var cutoff time.Time
	if s.opts.Retention > 0 {
		cutoff = s.opts.Now().Add(-s.opts.Retention)
	}
	// Copy and normalise off the owner goroutine; the caller keeps its slice.
	rows := make([]domain.Record, len(records))
	for i, r := range records {
		r.Timestamp = normTime(r.Timestamp)
		if r.Value != nil {
			v := *r.Value
			r.Value = &v
		}
		rows[i] = r
	}
	res, err := call(ctx, s, func(st *storeState) ports.WriteResult {
		return st.write(rows, cutoff)
	})
	if err != nil {
		return ports.WriteResult{}, fmt.Errorf("write batch: %w", err)
	}
	return res, nil
}

func keyOf(p domain.Point) seriesKey {
	return seriesKey{gpu: p.GPUUUID, metric: p.MetricName, host: p.Hostname, device: p.Device, model: p.ModelName,
		container: p.Container, pod: p.Pod, namespace: p.Namespace, labels: p.LabelsRaw, index: p.GPUIndex}
}

func (st *storeState) write(rows []domain.Record, cutoff time.Time) ports.WriteResult {
	var res ports.WriteResult
	for _, r := range rows {
		if r.Timestamp.Before(cutoff) {
			res.Expired++
			continue
		}
		st.observe(r.Point)
		k := keyOf(r.Point)
		ser, ok := st.series[k]
		if !ok {
			attrs := r.Point
			attrs.Timestamp, attrs.Value = time.Time{}, nil
			ser = &memSeries{id: st.nextID, attrs: attrs, rollups: map[int64]domain.Agg{}}
			st.nextID++
			st.series[k] = ser
			st.byGPU[r.GPUUUID] = append(st.byGPU[r.GPUUUID], ser)
		}
		i, found := slices.BinarySearchFunc(ser.samples, r.Timestamp, func(m memSample, t time.Time) int { return m.ts.Compare(t) })
		if found {
			res.Duplicates++
			continue
		}
		ser.samples = slices.Insert(ser.samples, i, memSample{ts: r.Timestamp, value: r.Value})
		if r.Value != nil {
			minute := r.Timestamp.Truncate(domain.RollupStep).Unix()
			a := ser.rollups[minute]
			a.Add(*r.Value, r.Timestamp)
			ser.rollups[minute] = a
		}
		res.Inserted++
	}
	st.inserted += int64(res.Inserted)
	return res
}

// observe updates the registry: last_seen only moves forward, and the
// attributes follow the newest observation (ties: the later write).
func (st *storeState) observe(p domain.Point) {
	g := domain.GPUOf(p)
	old, ok := st.gpus[g.UUID]
	if ok && g.LastSeen.Before(old.LastSeen) {
		return
	}
	st.gpus[g.UUID] = g
}

// WriteDeadLetters keeps letters whose MsgUUID is new; repeats are ignored.
func (s *TelemetryStore) WriteDeadLetters(ctx context.Context, letters []domain.DeadLetter) error {
	for i, l := range letters {
		if l.MsgUUID == uuid.Nil {
			return fmt.Errorf("write dead letters: letter %d: msg_uuid is nil: %w", i, ports.ErrInvalidArgument)
		}
	}
	copied := make([]domain.DeadLetter, len(letters))
	for i, l := range letters {
		l.Payload = slices.Clone(l.Payload)
		copied[i] = l
	}
	now := s.opts.Now().UTC().Truncate(time.Microsecond)
	_, err := call(ctx, s, func(st *storeState) struct{} {
		for _, l := range copied {
			if _, dup := st.lettSet[l.MsgUUID]; dup {
				continue
			}
			st.lettSet[l.MsgUUID] = struct{}{}
			st.letters = append(st.letters, l)
			st.lettAt = append(st.lettAt, now)
		}
		return struct{}{}
	})
	if err != nil {
		return fmt.Errorf("write dead letters: %w", err)
	}
	return nil
}

// DeadLetters returns the stored dead letters in the order they were first
// written (for tests and a no-database mode).
func (s *TelemetryStore) DeadLetters(ctx context.Context) ([]domain.DeadLetter, error) {
	out, err := call(ctx, s, func(st *storeState) []domain.DeadLetter {
		out := make([]domain.DeadLetter, len(st.letters))
		for i, l := range st.letters {
			l.Payload = slices.Clone(l.Payload)
			out[i] = l
		}
		return out
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// ListGPUs returns the registry ordered by hostname, GPU index, UUID.
func (s *TelemetryStore) ListGPUs(ctx context.Context) ([]domain.GPU, error) {
	out, err := call(ctx, s, func(st *storeState) []domain.GPU {
		out := make([]domain.GPU, 0, len(st.gpus))
		for _, g := range st.gpus {
			out = append(out, g)
		}
		return out
	})
	if err != nil {
		return nil, fmt.Errorf("list gpus: %w", err)
	}
	slices.SortFunc(out, func(a, b domain.GPU) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.GPUIndex, b.GPUIndex), cmp.Compare(a.UUID, b.UUID))
	})
	return out, nil
}

// page is one window of rows copied out of the store.
type page struct {
	rows  []domain.Record
	more  bool
	found bool
}

// QueryTelemetry returns up to q.Limit rows after q.After in (timestamp, id)
// order. Next is nil exactly when no matching row follows the page.
func (s *TelemetryStore) QueryTelemetry(ctx context.Context, q ports.TelemetryQuery) (ports.TelemetryPage, error) {
	if err := q.Validate(true); err != nil {
		return ports.TelemetryPage{}, fmt.Errorf("query telemetry: %w", err)
	}
	p, err := s.fetch(ctx, q, q.After, q.Limit)
	if err != nil {
		return ports.TelemetryPage{}, fmt.Errorf("query telemetry: %w", err)
	}
	out := ports.TelemetryPage{Records: p.rows}
	if p.more && len(p.rows) > 0 {
		last := p.rows[len(p.rows)-1]
		out.Next = &ports.Cursor{Timestamp: last.Timestamp, ID: last.ID}
	}
	return out, nil
}

// StreamTelemetry calls fn for every matching row, copying streamChunk rows
// at a time so memory stays bounded and fn never runs on the owner goroutine.
func (s *TelemetryStore) StreamTelemetry(ctx context.Context, q ports.TelemetryQuery, fn func(domain.Record) error) error {
	if err := q.Validate(false); err != nil {
		return fmt.Errorf("stream telemetry: %w", err)
	}
	after := q.After
	for {
		p, err := s.fetch(ctx, q, after, streamChunk)
		if err != nil {
			return fmt.Errorf("stream telemetry: %w", err)
		}
		for _, r := range p.rows {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if !p.more || len(p.rows) == 0 {
			return nil
		}
		last := p.rows[len(p.rows)-1]
		after = &ports.Cursor{Timestamp: last.Timestamp, ID: last.ID}
	}
}

// fetch copies up to limit matching rows after the cursor and reports
// whether more follow; an unknown GPU is ErrNotFound.
func (s *TelemetryStore) fetch(ctx context.Context, q ports.TelemetryQuery, after *ports.Cursor, limit int) (page, error) {
	start, end := q.Start, q.End
	if !start.IsZero() {
		start = normTime(start)
	}
	if !end.IsZero() {
		end = normTime(end)
	}
	var cur *ports.Cursor
	if after != nil {
		c := ports.Cursor{Timestamp: normTime(after.Timestamp), ID: after.ID}
		cur = &c
	}
	p, err := call(ctx, s, func(st *storeState) page {
		if _, ok := st.gpus[q.GPUUUID]; !ok {
			return page{}
		}
		var rows []domain.Record
		for _, ser := range st.byGPU[q.GPUUUID] {
			if q.MetricName != "" && ser.attrs.MetricName != q.MetricName {
				continue
			}
			// First sample not before start and strictly after the cursor.
			i := sort.Search(len(ser.samples), func(i int) bool {
				ts := ser.samples[i].ts
				if !start.IsZero() && ts.Before(start) {
					return false
				}
				if cur != nil {
					c := ts.Compare(cur.Timestamp)
					return c > 0 || (c == 0 && ser.id > cur.ID)
				}
				return true
			})
			for n := 0; i < len(ser.samples) && n <= limit; i, n = i+1, n+1 {
				m := ser.samples[i]
				if !end.IsZero() && m.ts.After(end) {
					break
				}
				rows = append(rows, ser.record(m))
			}
		}
		slices.SortFunc(rows, compareRecords)
		out := page{found: true, rows: rows}
		if len(rows) > limit {
			out.rows, out.more = rows[:limit], true
		}
		return out
	})
	if err != nil {
		return page{}, err
	}
	if !p.found {
		return page{}, fmt.Errorf("gpu %s: %w", q.GPUUUID, ports.ErrNotFound)
	}
	return p, nil
}

// record is sample m of the series as a Record (a copy).
func (ser *memSeries) record(m memSample) domain.Record {
	r := domain.Record{Point: ser.attrs, ID: ser.id}
	r.Timestamp = m.ts
	if m.value != nil {
		v := *m.value
		r.Value = &v
	}
	return r
}

// storeParams takes the store's Options from the graph when an app
// supplies them.
type storeParams struct {
	fx.In
	LC   fx.Lifecycle
	Opts *Options `optional:"true"`
}

func newStoreFx(p storeParams) *TelemetryStore {
	var opts Options
	if p.Opts != nil {
		opts = *p.Opts
	}
	s := NewTelemetryStoreWith(opts)
	lc := p.LC
	lc.Append(fx.Hook{OnStart: s.Start, OnStop: func(context.Context) error { s.Close(); return nil }})
	return s
}

// StoreModule provides the in-memory telemetry store as
// ports.TelemetryStore, ports.TelemetryWriter, ports.TelemetryReader and
// ports.TelemetryMaintainer (STORE_BACKEND=memory), closed when the app
// stops; a *memory.Options in the graph sets its retentions.
var StoreModule = fx.Module("memory.store",
	fx.Provide(fx.Annotate(newStoreFx,
		fx.As(new(ports.TelemetryStore)), fx.As(new(ports.TelemetryWriter)), fx.As(new(ports.TelemetryReader)),
		fx.As(new(ports.TelemetryMaintainer)))),
)
