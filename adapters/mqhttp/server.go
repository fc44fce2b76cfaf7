package mqhttp

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// ServerOptions configures a Server. The zero value is usable.
type ServerOptions struct {
	// Registerer receives the server's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Logger logs requests (debug) and 5xx answers (warn); nil means slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes caps a request body; a larger one is a 413. Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Topics, when not empty, are the only topics served: a publish, lease,
	// ack or release naming another is a 404 not_found, so a stray or
	// hostile client can neither fill PostgreSQL with messages nobody will
	// consume nor make a reader start serving topics that do not exist.
	// Empty serves every valid topic name.
	Topics []string
	// Auth, when set, requires a bearer token of each route's scope (see
	// Routes); /healthz, /readyz and /metrics are the apps' and stay open.
	// Nil serves the protocol without authentication: the apps always set
	// it unless MQ_AUTH=none, and in-process tests leave it nil.
	Auth *Auth
	// MaxInflightBytes bounds the request bodies in progress at once (see
	// admission); a request that does not fit is a 429 before its body is
	// read. Zero means DefaultMaxInflightBytes.
	MaxInflightBytes int64
	// MaxConcurrentPublishes bounds the publishes in progress at once; one
	// more is a 429. Zero means DefaultMaxConcurrentPublishes.
	MaxConcurrentPublishes int
	// MaxPayloadBytes bounds each message's payload at publish; a larger one
	// is a 413 naming the message and the limit. Zero means
	// DefaultMaxPayloadBytes; it cannot exceed domain.MaxPayloadBytes.
	MaxPayloadBytes int64
}

// Server answers the queue protocol over a Publisher and a Consumer. Either
// may be nil: mqwriter serves only publish and mqreader only lease, ack and
// release; the routes of a missing side answer 404. A Server holds no
// mutable state after NewServer, so it serves any number of requests at once.
type Server struct {
	pub     ports.Publisher // immutable; nil when publish is not served
	cons    ports.Consumer  // immutable; nil when lease/ack/release are not served
	log     *slog.Logger
	maxBody int64
	topics  map[string]struct{} // immutable; nil serves every topic
	auth    *Auth               // nil: no authentication
	metrics serverMetrics
	admit   *admission
	maxPay  int64      // immutable: MaxPayloadBytes
	stream  *streamHub // the publish streams' drain signal (stream_server.go)
}

// NewServer returns a Server over pub and cons, either of which may be nil.
func NewServer(pub ports.Publisher, cons ports.Consumer, opts ServerOptions) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	maxBody := opts.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	var topics map[string]struct{}
	if len(opts.Topics) > 0 {
		topics = make(map[string]struct{}, len(opts.Topics))
		for _, t := range opts.Topics {
			topics[t] = struct{}{}
		}
	}
	return &Server{
		pub:     pub,
		cons:    cons,
		log:     log,
		maxBody: maxBody,
		topics:  topics,
		auth:    opts.Auth,
		metrics: newServerMetrics(opts.Registerer, log, opts.Auth != nil),
		admit: &admission{
			maxBody:      maxBody,
			maxBytes:     orDefault(opts.MaxInflightBytes, DefaultMaxInflightBytes),
			maxPublishes: orDefault(int64(opts.MaxConcurrentPublishes), DefaultMaxConcurrentPublishes),
		},
		maxPay: min(orDefault(opts.MaxPayloadBytes, DefaultMaxPayloadBytes), domain.MaxPayloadBytes),
		stream: newStreamHub(),
	}
}

// checkTopic validates a request's topic: present, well-formed, and served
// here.
func (s *Server) checkTopic(topic string) error {
	if err := domain.ValidateTopic(topic); err != nil {
		return err
	}
	if s.topics == nil {
		return nil
	}
	if _, ok := s.topics[topic]; !ok {
		return &protocolError{status: http.StatusNotFound, code: CodeNotFound,
			message: "unknown topic " + strconv.Quote(truncate(topic, 64)) + "; this queue serves " + s.topicList()}
	}
	return nil
}

func (s *Server) topicList() string {
	names := make([]string, 0, len(s.topics))
	for t := range s.topics {
		names = append(names, strconv.Quote(t))
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Handler returns a router serving the protocol's routes and nothing else;
// unknown routes and methods answer JSON 404 and 405.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	s.Register(r)
	return r
}

// Route is one route of the protocol and the scope a token needs for it.
type Route struct {
	Path  string
	Scope Scope
}

// Routes lists the protocol's routes with their scopes: what the server
// registers, for tests and documentation.
func Routes() []Route {
	var s Server // its table needs no state: the endpoints are not called
	table := s.routeTable()
	out := make([]Route, len(table))
	for i, rt := range table {
		out[i] = Route{Path: rt.path, Scope: rt.scope}
	}
	// The publish stream is not an endpoint (stream_server.go checks its
	// token itself, with s.check), but it has its scope like every route.
	return append(out, Route{Path: PathPublishStream, Scope: ScopePublish})
}

// queueRoute is one entry of the route table. The scope a token needs is a
// property of the route, so a new route is added, with its scope, here and
// only here.
type queueRoute struct {
	path   string
	name   string // the route label of the metrics
	scope  Scope
	served bool // false: this server does not serve the route's side (404)
	e      endpoint
}

// routeTable is every route of the protocol.
func (s *Server) routeTable() []queueRoute {
	return []queueRoute{
		{path: PathPublish, name: "publish", scope: ScopePublish, served: s.pub != nil, e: s.publish},
		{path: PathLease, name: "lease", scope: ScopeConsume, served: s.cons != nil, e: s.lease},
		{path: PathAck, name: "ack", scope: ScopeConsume, served: s.cons != nil,
			e: s.settle("ack", "acked", func(ctx context.Context, ref ports.LeaseRef) error { return s.cons.Ack(ctx, ref) })},
		{path: PathRelease, name: "release", scope: ScopeConsume, served: s.cons != nil,
			e: s.settle("release", "released", func(ctx context.Context, ref ports.LeaseRef) error { return s.cons.Release(ctx, ref) })},
	}
}

// Register adds the protocol's routes to r. When r has no NotFoundHandler or
// MethodNotAllowedHandler yet, it installs ones that answer in JSON.
func (s *Server) Register(r *mux.Router) {
	for _, rt := range s.routeTable() {
		s.route(r, rt)
	}
	s.registerStream(r) // PathPublishStream: the publish scope too
	if r.NotFoundHandler == nil {
		r.NotFoundHandler = s.handle("unmatched", func(http.ResponseWriter, *http.Request) (any, error) {
			return nil, &protocolError{status: http.StatusNotFound, code: CodeNotFound, message: "no such route"}
		})
	}
	if r.MethodNotAllowedHandler == nil {
		r.MethodNotAllowedHandler = s.handle("unmatched", func(w http.ResponseWriter, _ *http.Request) (any, error) {
			w.Header().Set("Allow", http.MethodPost)
			return nil, &protocolError{status: http.StatusMethodNotAllowed, code: CodeMethodNotAllowed, message: "method not allowed; use POST"}
		})
	}
}

// route registers one endpoint behind its scope's token check, or, when its
// side is not served, a JSON 404 for any method so a misrouted client learns
// why (that answer reveals nothing and touches no message, so it needs no
// token).
func (s *Server) route(r *mux.Router, rt queueRoute) {
	if !rt.served {
		r.Handle(rt.path, s.handle(rt.name, func(http.ResponseWriter, *http.Request) (any, error) {
			return nil, &protocolError{status: http.StatusNotFound, code: CodeNotFound,
				message: rt.name + " is not served here (this is the queue's " + s.side() + " side)"}
		}))
		return
	}
	r.Handle(rt.path, s.handle(rt.name, s.guard(rt.scope, s.admit.admit(rt.path == PathPublish, rt.e)))).Methods(http.MethodPost)
}

func orDefault(v, def int64) int64 {
	if v <= 0 {
		return def
	}
	return v
}

func (s *Server) side() string {
	switch {
	case s.pub != nil:
		return "write"
	case s.cons != nil:
		return "read"
	}
	return "no"
}

// endpoint handles one request: it returns the 200 body, or an error that
// writeError answers. w is the connection's own writer, for MaxBytesReader.
type endpoint func(w http.ResponseWriter, r *http.Request) (any, error)

// handle wraps e with the answer, metrics and logging.
func (s *Server) handle(route string, e endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		body, err := e(w, r)
		status := http.StatusOK
		if err != nil {
			status = writeError(w, err)
		} else {
			writeJSON(w, status, body)
		}
		elapsed := time.Since(start)
		s.metrics.observe(route, status, elapsed)
		s.logRequest(r, route, status, elapsed, err)
	})
}

func (s *Server) logRequest(r *http.Request, route string, status int, elapsed time.Duration, err error) {
	ctx := r.Context()
	attrs := []slog.Attr{
		slog.String("route", route),
		slog.Int("status", status),
		slog.Duration("duration", elapsed),
		slog.String("remote", r.RemoteAddr),
	}
	// A client that hung up is not the server's fault: keep it at debug.
	if status >= 500 && !errors.Is(err, context.Canceled) {
		s.log.LogAttrs(ctx, slog.LevelWarn, "mqhttp request failed", append(attrs, slog.Any("error", err))...)
		return
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "mqhttp request", attrs...)
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) (any, error) {
	var req publishRequest
	if err := s.decode(w, r, &req); err != nil {
		return nil, err
	}
	if err := s.checkTopic(req.Topic); err != nil {
		return nil, err
	}
	if n := len(req.Messages); n > MaxPublishMessages {
		return nil, tooLarge("%d messages exceed the limit of %d per publish", n, MaxPublishMessages)
	}
	msgs := make([]ports.OutgoingMessage, len(req.Messages))
	for i, m := range req.Messages {
		if err := s.checkMessage(req.Topic, i, m.Payload); err != nil {
			return nil, err
		}
		msgs[i] = ports.OutgoingMessage{Payload: m.Payload, Key: m.Key, IdempotencyKey: m.IdempotencyKey}
	}
	res, err := s.pub.Publish(r.Context(), req.Topic, msgs)
	if err != nil {
		return nil, inContext(err, "publish %d messages to %s", len(msgs), req.Topic)
	}
	return publishResponse(res), nil
}

// checkMessage applies the writer's own rules to the payload of message i
// of a publish (or a stream frame) to topic: MQ_MAX_PAYLOAD_BYTES, and on
// the telemetry topic the point's field bounds — a point the store could
// never hold is refused here, naming the field, rather than queued to be
// dead-lettered later.
func (s *Server) checkMessage(topic string, i int, payload []byte) error {
	if len(payload) > int(s.maxPay) {
		return payloadTooLarge(i, len(payload), s.maxPay)
	}
	if topic != domain.TelemetryTopic {
		return nil
	}
	if err := domain.CheckPointPayload(payload); err != nil {
		return fmt.Errorf("%w: messages[%d].payload: %w", ports.ErrInvalidArgument, i, err)
	}
	return nil
}

func (s *Server) lease(w http.ResponseWriter, r *http.Request) (any, error) {
	var req leaseRequest
	if err := s.decode(w, r, &req); err != nil {
		return nil, err
	}
	if err := s.checkTopic(req.Topic); err != nil {
		return nil, err
	}
	// Checked before the conversion to a Duration, which could overflow.
	if req.LeaseSeconds < 1 || time.Duration(req.LeaseSeconds) > MaxLeaseSeconds {
		return nil, badRequest("lease_seconds must be between 1 and %d, got %d", int64(MaxLeaseSeconds), req.LeaseSeconds)
	}
	if req.WaitMS < 0 || time.Duration(req.WaitMS) > MaxWaitMS {
		return nil, badRequest("wait_ms must be between 0 and %d, got %d", int64(MaxWaitMS), req.WaitMS)
	}
	lreq := ports.LeaseRequest{
		Topic:         req.Topic,
		ConsumerID:    req.ConsumerID,
		Max:           req.Max,
		LeaseDuration: time.Duration(req.LeaseSeconds) * time.Second,
		Wait:          time.Duration(req.WaitMS) * time.Millisecond,
	}
	if lreq.Wait > 0 {
		roomForWait(w, r, lreq.Wait)
	}
	lease, err := s.cons.Lease(r.Context(), lreq)
	if err != nil {
		return nil, inContext(err, "lease from %s for %s", req.Topic, req.ConsumerID)
	}
	if err := r.Context().Err(); err != nil && len(lease.Messages) > 0 {
		// The client hung up while the lease was granted: give it back now
		// rather than write it to nobody and let it wait for its expiry.
		ref := ports.LeaseRef{Topic: cmp.Or(lease.Topic, req.Topic), ConsumerID: req.ConsumerID, LeaseID: lease.ID}
		if rerr := s.cons.Release(context.WithoutCancel(r.Context()), ref); rerr != nil {
			s.log.Warn("release of a lease whose client hung up failed; it returns at expiry", "lease_id", lease.ID, "err", rerr)
		}
		return nil, fmt.Errorf("lease from %s for %s: client gone: %w", req.Topic, req.ConsumerID, err)
	}
	resp := leaseResponse{
		LeaseID:    lease.ID,
		Topic:      cmp.Or(lease.Topic, req.Topic),
		ConsumerID: cmp.Or(lease.ConsumerID, req.ConsumerID),
		ExpiresAt:  lease.ExpiresAt.UTC(),
		Messages:   make([]leaseMessage, len(lease.Messages)), // never null on the wire
	}
	for i, m := range lease.Messages {
		resp.Messages[i] = leaseMessage{
			MsgUUID:    m.ID,
			Partition:  m.Partition,
			Payload:    m.Payload,
			CreatedAt:  m.CreatedAt.UTC(),
			Deliveries: m.Deliveries,
		}
	}
	return resp, nil
}

// inContext wraps the queue's err with the request it answers, for the
// server's log. A client's own mistake (ErrInvalidArgument) is returned as
// the queue told it: its message is the answer's body, and the client knows
// what it sent.
func inContext(err error, format string, args ...any) error {
	if errors.Is(err, ports.ErrInvalidArgument) {
		return err
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// settle is the ack and release endpoints: op names the call and the
// status it answers, do makes it.
func (s *Server) settle(op, status string, do func(context.Context, ports.LeaseRef) error) endpoint {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		ref, err := s.decodeLeaseRef(w, r)
		if err != nil {
			return nil, err
		}
		if err := do(r.Context(), ref); err != nil {
			return nil, inContext(err, "%s lease %s", op, ref.LeaseID)
		}
		return statusResponse{Status: status}, nil
	}
}

// roomForWait moves the deadlines of a long-poll lease past its wait when
// the server's ReadTimeout or WriteTimeout would end it sooner (an expired
// read deadline cancels the request; an expired write deadline loses the
// answer), so the longest wait fits whatever timeouts the app runs with.
// net/http sets both afresh for the connection's next request, so nothing
// leaks; with a timeout of zero (none) nothing is touched.
func roomForWait(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok {
		return
	}
	need := wait + waitWriteBudget
	rc, end := http.NewResponseController(w), time.Now().Add(need)
	if srv.ReadTimeout > 0 && srv.ReadTimeout < need {
		_ = rc.SetReadDeadline(end) // best effort: a writer without deadlines keeps the server's
	}
	if srv.WriteTimeout > 0 && srv.WriteTimeout < need {
		_ = rc.SetWriteDeadline(end)
	}
}

func (s *Server) decodeLeaseRef(w http.ResponseWriter, r *http.Request) (ports.LeaseRef, error) {
	var req leaseRefRequest
	if err := s.decode(w, r, &req); err != nil {
		return ports.LeaseRef{}, err
	}
	if err := s.checkTopic(req.Topic); err != nil {
		return ports.LeaseRef{}, err
	}
	if req.LeaseID == "" {
		return ports.LeaseRef{}, badRequest("lease_id is required")
	}
	id, err := uuid.Parse(req.LeaseID)
	if err != nil {
		return ports.LeaseRef{}, badRequest("lease_id must be a UUID, got %q", truncate(req.LeaseID, 64))
	}
	return ports.LeaseRef{Topic: req.Topic, ConsumerID: req.ConsumerID, LeaseID: id, Reason: req.Reason}, nil
}

// decode reads r's body into dst: application/json, at most maxBody bytes,
// valid UTF-8, exactly one JSON value, no unknown fields.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any) error {
	if err := checkBody(r.Header, "application/json"); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return tooLarge("request body exceeds %d bytes", s.maxBody)
		}
		return badRequest("read body: %v", err)
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD; refuse it
	// instead, as RFC 8259 requires UTF-8.
	if !utf8.Valid(body) {
		return badRequest("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("unexpected data after the JSON object")
	}
	return nil
}

// decodeError turns a json decoding failure into a 400 that says what is wrong.
func decodeError(err error) error {
	if syn, ok := errors.AsType[*json.SyntaxError](err); ok {
		return badRequest("malformed JSON at byte %d: %v", syn.Offset, err)
	}
	if typ, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if typ.Field == "" {
			return badRequest("body must be a JSON object, got %s", typ.Value)
		}
		return badRequest("%s must be %s, got %s", typ.Field, jsonKind(typ.Type), typ.Value)
	}
	switch msg := err.Error(); {
	case errors.Is(err, io.EOF):
		return badRequest("empty body; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: unexpected end of body")
	case strings.HasPrefix(msg, "json: unknown field "):
		return badRequest("unknown field %s", strings.TrimPrefix(msg, "json: unknown field "))
	default:
		return badRequest("malformed JSON: %v", err)
	}
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// checkBody refuses a body the server would misread: a media type other
// than one of want, a charset other than UTF-8, or any content coding (the
// server does not decompress, so a gzipped body would be parsed as JSON and
// fail with a misleading error).
func checkBody(h http.Header, want ...string) error {
	unsupported := func(msg string) error {
		return &protocolError{status: http.StatusUnsupportedMediaType, code: CodeUnsupportedMediaType, message: msg}
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return unsupported("Content-Encoding " + strconv.Quote(truncate(ce, 32)) + " is not supported; send the body uncompressed")
	}
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !slices.Contains(want, mt) {
		msg := "Content-Type must be " + want[0]
		if ct != "" {
			msg += ", got " + strconv.Quote(truncate(ct, 64))
		}
		return unsupported(msg)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return unsupported("charset must be utf-8, got " + strconv.Quote(truncate(cs, 32)))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
