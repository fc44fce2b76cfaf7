package mqhttp

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/ports"
)

const (
	// routeGrace keeps a route past its lease's expiry, so a late ack still
	// reaches the reader that can say "expired" for sure.
	routeGrace = 30 * time.Second
	// defaultMaxRoutes bounds the table; past it the routes that expire
	// soonest are dropped (their acks fall back to asking every reader).
	defaultMaxRoutes = 1 << 16
	// sweepEvery is how often run drops expired routes.
	sweepEvery = 5 * time.Second
)

// routeTable remembers which reader served each lease, so Ack and Release
// go back to it. One goroutine (run) owns the map; callers talk to it over
// ops.
type routeTable struct {
	ops      chan routeOp  // unbuffered: a send returns once run holds the op
	stop     chan struct{} // closed by close to end run
	done     chan struct{} // closed by run when it returns
	stopOnce sync.Once
	now      func() time.Time // immutable
	max      int              // immutable
}

type routeOpKind int

const (
	opPut routeOpKind = iota
	opGet
	opForget
	opSize
)

type routeOp struct {
	kind    routeOpKind
	id      uuid.UUID
	reader  int              // opPut
	expires time.Time        // opPut
	reply   chan routeLookup // opGet; 1-buffered so run never blocks on it
}

type routeLookup struct {
	reader int
	ok     bool
}

func newRouteTable(now func() time.Time, maxRoutes int) *routeTable {
	t := &routeTable{
		ops:  make(chan routeOp),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		now:  now,
		max:  maxRoutes,
	}
	go t.run()
	return t
}

// close stops run and waits for it; it is idempotent.
func (t *routeTable) close() {
	t.stopOnce.Do(func() { close(t.stop) })
	<-t.done
}

func (t *routeTable) send(ctx context.Context, op routeOp) error {
	select {
	case t.ops <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.done:
		return fmt.Errorf("lease routes: %w", ports.ErrClosed)
	}
}

// put records that reader served lease id, until expires.
func (t *routeTable) put(ctx context.Context, id uuid.UUID, reader int, expires time.Time) error {
	return t.send(ctx, routeOp{kind: opPut, id: id, reader: reader, expires: expires})
}

// forget drops the route of lease id.
func (t *routeTable) forget(ctx context.Context, id uuid.UUID) error {
	return t.send(ctx, routeOp{kind: opForget, id: id})
}

// get returns the reader that served lease id, if it is still known.
func (t *routeTable) get(ctx context.Context, id uuid.UUID) (reader int, ok bool, err error) {
	reply := make(chan routeLookup, 1)
	if err := t.send(ctx, routeOp{kind: opGet, id: id, reply: reply}); err != nil {
		return 0, false, err
	}
	// run answers every op it took before taking the next, so this only
	// waits for that answer.
	select {
	case r := <-reply:
		return r.reader, r.ok, nil
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
}

// size returns how many routes are held (for tests and debugging).
func (t *routeTable) size(ctx context.Context) (int, error) {
	reply := make(chan routeLookup, 1)
	if err := t.send(ctx, routeOp{kind: opSize, reply: reply}); err != nil {
		return 0, err
	}
	select {
	case r := <-reply:
		return r.reader, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (t *routeTable) run() {
	defer close(t.done)
	st := routeState{byID: make(map[uuid.UUID]routeEntry), max: t.max}
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-sweep.C:
			st.expire(t.now())
		case op := <-t.ops:
			switch op.kind {
			case opPut:
				st.put(op.id, op.reader, op.expires)
			case opForget:
				delete(st.byID, op.id)
			case opGet:
				e, ok := st.byID[op.id]
				ok = ok && t.now().Before(e.expires)
				op.reply <- routeLookup{reader: e.reader, ok: ok}
			case opSize:
				op.reply <- routeLookup{reader: len(st.byID), ok: true}
			}
		}
	}
}

// routeState is the table's data; owned by run.
type routeState struct {
	byID  map[uuid.UUID]routeEntry
	order expiryHeap // may hold stale items (forgotten or re-put ids); checked on pop
	max   int
}

type routeEntry struct {
	reader  int
	expires time.Time
}

func (s *routeState) put(id uuid.UUID, reader int, expires time.Time) {
	s.byID[id] = routeEntry{reader: reader, expires: expires}
	heap.Push(&s.order, expiryItem{id: id, expires: expires})
	for len(s.byID) > s.max && s.order.Len() > 0 {
		s.pop()
	}
}

// expire drops every route that expired by now.
func (s *routeState) expire(now time.Time) {
	for s.order.Len() > 0 && !s.order[0].expires.After(now) {
		s.pop()
	}
}

// pop removes the earliest heap item and its route, unless the route was
// re-put with another expiry since.
func (s *routeState) pop() {
	it := heap.Pop(&s.order).(expiryItem)
	if e, ok := s.byID[it.id]; ok && e.expires.Equal(it.expires) {
		delete(s.byID, it.id)
	}
}

type expiryItem struct {
	id      uuid.UUID
	expires time.Time
}

// expiryHeap is a min-heap of route expiries (container/heap.Interface).
type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
