package mqhttp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/adapters/internal/actor"
	"github.com/gpufleet/telemetry/adapters/internal/leasebook"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

const (
	// routeGrace keeps a route past its lease's expiry, so a late ack still
	// reaches the reader that can say "expired" for sure.
	routeGrace = 30 * time.Second
	// defaultMaxRoutes bounds the table; past it the routes that expire
	// soonest are dropped (their acks fall back to asking every reader).
	defaultMaxRoutes = 1 << 16
	// sweepEvery is how often the owner drops expired routes.
	sweepEvery = 5 * time.Second
)

// routeTable remembers which reader served each lease, so Ack and Release
// go back to it. One goroutine owns the routes (routeState); callers hand it
// closures through actor.Call. The client starts it in NewClient and stops
// it in Close: a client is used without an fx lifecycle.
type routeTable struct {
	ops  chan func(*routeState)
	loop *startstop.Loop
	now  func() time.Time // immutable
}

func newRouteTable(now func() time.Time, maxRoutes int) *routeTable {
	t := &routeTable{ops: make(chan func(*routeState)), now: now}
	st := &routeState{byID: make(map[uuid.UUID]*leasebook.Entry[route]), max: maxRoutes}
	t.loop = startstop.Go(func(ctx context.Context) { t.run(ctx, st) })
	return t
}

// close stops the owner and waits for it; it is idempotent.
func (t *routeTable) close() { _ = t.loop.Stop(context.Background()) }

// done is closed once the owner has stopped.
func (t *routeTable) done() <-chan struct{} { return t.loop.Done() }

// put records that reader served lease id, until expires.
func (t *routeTable) put(ctx context.Context, id uuid.UUID, reader int, expires time.Time) error {
	_, err := routeCall(ctx, t, func(s *routeState) struct{} { s.put(id, reader, expires); return struct{}{} })
	return err
}

// forget drops the route of lease id.
func (t *routeTable) forget(ctx context.Context, id uuid.UUID) error {
	_, err := routeCall(ctx, t, func(s *routeState) struct{} { s.forget(id); return struct{}{} })
	return err
}

// get returns the reader that served lease id, if it is still known.
func (t *routeTable) get(ctx context.Context, id uuid.UUID) (reader int, ok bool, err error) {
	type found struct {
		reader int
		ok     bool
	}
	now := t.now()
	f, err := routeCall(ctx, t, func(s *routeState) found {
		r, ok := s.get(id, now)
		return found{r, ok}
	})
	return f.reader, f.ok, err
}

// size returns how many routes are held (for tests and debugging).
func (t *routeTable) size(ctx context.Context) (int, error) {
	return routeCall(ctx, t, func(s *routeState) int { return len(s.byID) })
}

func routeCall[T any](ctx context.Context, t *routeTable, fn func(*routeState) T) (T, error) {
	v, err := actor.Call(ctx, t.ops, t.done(), fn)
	if errors.Is(err, actor.ErrStopped) {
		return v, fmt.Errorf("lease routes: %w", ports.ErrClosed)
	}
	return v, err
}

func (t *routeTable) run(ctx context.Context, st *routeState) {
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			st.expire(t.now())
		case op := <-t.ops:
			op(st)
		}
	}
}

// route is the reader that served a lease.
type route struct {
	id     uuid.UUID
	reader int
}

// routeState is the table's data, owned by the table's goroutine: each
// route's entry in an expiry heap (leasebook), so a forgotten or re-put
// route moves or leaves the heap at once.
type routeState struct {
	byID  map[uuid.UUID]*leasebook.Entry[route]
	order leasebook.Heap[route]
	max   int
}

func (s *routeState) put(id uuid.UUID, reader int, expires time.Time) {
	if e, ok := s.byID[id]; ok {
		e.Value.reader = reader
		s.order.Requeue(e, expires)
		return
	}
	s.byID[id] = s.order.Push(route{id: id, reader: reader}, expires)
	for len(s.byID) > s.max {
		s.drop(s.order.Peek())
	}
}

func (s *routeState) get(id uuid.UUID, now time.Time) (reader int, ok bool) {
	e, ok := s.byID[id]
	if !ok || !now.Before(e.At()) {
		return 0, false
	}
	return e.Value.reader, true
}

func (s *routeState) forget(id uuid.UUID) {
	if e, ok := s.byID[id]; ok {
		s.drop(e)
	}
}

func (s *routeState) drop(e *leasebook.Entry[route]) {
	s.order.Remove(e)
	delete(s.byID, e.Value.id)
}

// expire drops every route that expired by now.
func (s *routeState) expire(now time.Time) {
	for e, ok := s.order.PopDue(now); ok; e, ok = s.order.PopDue(now) {
		delete(s.byID, e.Value.id)
	}
}
