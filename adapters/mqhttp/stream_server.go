package mqhttp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// The streaming publish path (docs/adr/0013-streaming-publish.md): one
// long-lived POST whose request body is a stream of message frames and whose
// response body is a stream of per-message answers, both NDJSON, over a
// full-duplex HTTP/1.1 exchange (or an HTTP/2 stream).
const (
	// PathPublishStream is the streaming publish route.
	PathPublishStream = "/v1/publish/stream"
	// ContentTypeNDJSON is the media type of both directions of a stream.
	ContentTypeNDJSON = "application/x-ndjson"
	// StreamWindow is the most messages of one stream the server holds
	// unanswered; past it the server stops reading the stream, so TCP flow
	// control slows the producer instead of anything being dropped.
	StreamWindow = 1024
	// StreamWindowBytes bounds the same in frame bytes, so a window of
	// large messages cannot hold unbounded memory.
	StreamWindowBytes = 16 << 20
	// streamIdleTimeout ends a stream that sent no frame for that long.
	streamIdleTimeout = 2 * time.Minute
	// maxFrameBytes caps one frame: the largest payload plus its keys and
	// envelope.
	maxFrameBytes = domain.MaxPayloadBytes + 4<<10
	// retryAfterMillis is the retry_after_ms of a transient per-message error.
	retryAfterMillis = 1000
)

// Status values of an answer frame.
const (
	StreamAccepted  = "accepted"
	StreamDuplicate = "duplicate"
	StreamError     = "error"
)

// streamFrame is one message frame of a stream (client → server).
type streamFrame struct {
	Seq            uint64          `json:"seq"`
	Topic          string          `json:"topic"`
	Payload        json.RawMessage `json:"payload"`
	Key            string          `json:"key,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// streamAnswer is one answer frame (server → client). Seq 0 answers no
// message: it is the stream's last frame, saying why the server ended it.
type streamAnswer struct {
	Seq          uint64       `json:"seq"`
	Status       string       `json:"status"`
	Error        *errorDetail `json:"error,omitempty"`
	RetryAfterMs int          `json:"retry_after_ms,omitempty"`
}

// streamHub is the server's shared stream state: the drain broadcast.
type streamHub struct {
	draining  chan struct{} // closed by Drain: streams stop reading and end
	drainOnce sync.Once
}

func newStreamHub() *streamHub { return &streamHub{draining: make(chan struct{})} }

// DrainStreams makes every open publish stream stop reading new frames,
// answer what it holds and end, and refuses new streams with 503: run it
// before the HTTP server's graceful shutdown, which would otherwise wait for
// streams that never go idle. It returns at once.
func (s *Server) DrainStreams(context.Context) error {
	s.stream.drainOnce.Do(func() { close(s.stream.draining) })
	return nil
}

// registerStream adds the streaming publish route (publish scope, like
// PathPublish); on a server without the publish side it answers 404 as the
// other routes of a missing side do.
func (s *Server) registerStream(r *mux.Router) {
	if s.pub == nil {
		s.route(r, queueRoute{path: PathPublishStream, name: "publish_stream", scope: ScopePublish})
		return
	}
	r.Handle(PathPublishStream, http.HandlerFunc(s.publishStream)).Methods(http.MethodPost)
}

// publishStream serves one stream. Errors found before the stream starts
// (wrong media type, draining) are ordinary JSON error answers; after it,
// each message gets its own answer frame.
func (s *Server) publishStream(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc := http.NewResponseController(w)
	// HTTP/1.1 needs full duplex to read the body after writing, and to
	// answer a refused stream at once (otherwise the server first reads
	// the body, which never ends); HTTP/2 streams are full duplex already
	// and answer ErrNotSupported.
	if err := rc.EnableFullDuplex(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Warn("publish stream: enable full duplex", "err", err)
	}
	err := s.check(w, r, ScopePublish)
	if err == nil {
		err = s.openStream(r)
	}
	if err != nil {
		// The body is unread and, in full duplex, still owned by this
		// request: close the connection rather than hand it to the next
		// request (net/http panics reading a connection whose full-duplex
		// body was left behind).
		w.Header().Set("Connection", "close")
		status := writeError(w, err)
		s.metrics.observe("publish_stream", status, time.Since(start))
		s.logRequest(r, "publish_stream", status, time.Since(start), err)
		return
	}
	w.Header().Set("Content-Type", ContentTypeNDJSON)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		s.logRequest(r, "publish_stream", http.StatusOK, time.Since(start), err)
		return
	}
	st := &serverStream{s: s, rc: rc, w: w, r: r,
		answers:     make(chan streamAnswer, StreamWindow),
		freed:       make(chan finished, StreamWindow),
		writeFailed: make(chan struct{}),
	}
	err = st.run()
	s.logRequest(r, "publish_stream", http.StatusOK, time.Since(start), err)
}

// openStream checks a stream's request before its 200.
func (s *Server) openStream(r *http.Request) error {
	select {
	case <-s.stream.draining:
		return fmt.Errorf("publish stream: %w", ports.ErrClosed)
	default:
	}
	// application/json is accepted too: each line is a JSON text.
	return checkBody(r.Header, ContentTypeNDJSON, "application/json")
}

// serverStream is one open stream. The run goroutine reads frames and owns
// the window counts; one goroutine per message publishes it; the writer
// goroutine owns the response.
type serverStream struct {
	s  *Server
	rc *http.ResponseController
	w  http.ResponseWriter
	r  *http.Request
	// answers carries every answer to the writer. Buffered to the window:
	// at most StreamWindow messages are unanswered, so a publisher never
	// blocks on a slow client (the client's reading, not ours, is slow).
	answers chan streamAnswer
	// freed returns each finished message's seq and frame size to run,
	// after its answer is queued; buffered to the window for the same
	// reason.
	freed chan finished
	// writeFailed is closed by the writer when an answer could not be
	// written: run stops reading then, so the client sees the stream end
	// and resends what is unanswered, instead of filling its window with
	// messages nobody will answer.
	writeFailed chan struct{}
}

// finished is a published message whose answer is queued.
type finished struct {
	seq  uint64
	size int
}

// run reads the stream until EOF, an error, or a drain, then waits for the
// messages in flight and their answers. It returns why reading ended (nil
// for a clean EOF).
func (st *serverStream) run() error {
	ctx := st.r.Context()
	writerDone := make(chan error, 1)
	go func() { writerDone <- st.writeAnswers() }()

	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		// A drain interrupts the blocked read; the stream then ends cleanly.
		defer close(watchDone)
		select {
		case <-st.s.stream.draining:
			_ = st.rc.SetReadDeadline(time.Now())
		case <-stopWatch:
		}
	}()

	var (
		// unanswered holds the seqs of the messages being published (a
		// seq is in flight once at most, so its size is their count);
		// owned by run, as is inflightBytes.
		unanswered    = map[uint64]struct{}{}
		inflightBytes int64
		readErr       error
		wg            sync.WaitGroup
		deadlineSet   time.Time // when the read deadline was last moved; owned by run
	)
	release := func(f finished) {
		inflightBytes -= int64(f.size)
		delete(unanswered, f.seq)
	}
	sc := bufio.NewScanner(st.r.Body)
	sc.Buffer(make([]byte, 0, 64<<10), min(maxFrameBytes, int(st.s.maxBody)))
	for {
		// The idle deadline moves at most once a second, not per frame.
		// The server's ReadTimeout counts from the request's start, so it
		// is replaced here before the first frame.
		if now := time.Now(); now.Sub(deadlineSet) > time.Second {
			_ = st.rc.SetReadDeadline(now.Add(streamIdleTimeout))
			deadlineSet = now
		}
		// Checked after the deadline moved: a writer that fails later
		// sets it to now itself, so a blocked read returns either way.
		select {
		case <-st.s.stream.draining:
			readErr = ports.ErrClosed
		case <-st.writeFailed:
			readErr = errAnswersFailed
		default:
		}
		if readErr != nil || !sc.Scan() {
			break
		}
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f, err := decodeFrame(line)
		if err != nil {
			readErr = err
			break
		}
		// A seq sent again while its message is unanswered waits for that
		// answer, so the client gets the two answers in the order of their
		// frames and can tell them apart.
		for _, again := unanswered[f.Seq]; again; _, again = unanswered[f.Seq] {
			release(<-st.freed)
		}
		msg := ports.OutgoingMessage{Payload: f.Payload, Key: f.Key, IdempotencyKey: f.IdempotencyKey}
		if err := st.s.checkTopic(f.Topic); err != nil {
			st.answers <- answerOf(f.Seq, ports.PublishResult{}, err)
			continue
		}
		if err := st.s.checkMessage(f.Topic, 0, f.Payload); err != nil {
			st.answers <- answerOf(f.Seq, ports.PublishResult{}, err)
			continue
		}
		size := len(line)
		// Window: wait for room, taking back what finished meanwhile.
		for len(unanswered) > 0 && (len(unanswered) >= StreamWindow || inflightBytes+int64(size) > StreamWindowBytes) {
			release(<-st.freed)
		}
	drain:
		for {
			select {
			case done := <-st.freed:
				release(done)
			default:
				break drain
			}
		}
		inflightBytes += int64(size)
		unanswered[f.Seq] = struct{}{}
		// The frame's bytes are the scanner's: msg must own its payload.
		msg.Payload = bytes.Clone(msg.Payload)
		wg.Add(1)
		go func(seq uint64, topic string, size int) {
			defer wg.Done()
			start := time.Now()
			res, err := st.s.pub.Publish(ctx, topic, []ports.OutgoingMessage{msg})
			a := answerOf(seq, res, err)
			st.answers <- a
			st.freed <- finished{seq: seq, size: size}
			status := http.StatusOK
			if err != nil {
				status, _, _ = classify(err)
			}
			st.s.metrics.observe("publish_stream", status, time.Since(start))
		}(f.Seq, f.Topic, size)
	}
	if readErr == nil {
		readErr = sc.Err()
	}
	select {
	case <-st.writeFailed:
		readErr = nil // the writer's error says why, whatever the interrupted read said
	default:
	}
	select {
	case <-st.s.stream.draining:
		if readErr != nil {
			readErr = fmt.Errorf("publish stream: server draining: %w", ports.ErrClosed)
		}
	default:
	}
	close(stopWatch)
	<-watchDone
	wg.Wait()
	if end := endFrame(readErr); end != nil {
		st.answers <- *end
	}
	close(st.answers)
	werr := <-writerDone
	if readErr == nil || errors.Is(readErr, ports.ErrClosed) {
		return werr
	}
	return readErr
}

// errAnswersFailed ends reading when the answers can no longer be written
// (run then returns the writer's own error).
var errAnswersFailed = errors.New("publish stream: answers could not be written")

// endFrame is the last frame for a stream ended by err, or nil for a clean
// end (EOF or a client that went away).
func endFrame(err error) *streamAnswer {
	switch {
	case err == nil, errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, context.Canceled):
		return nil
	case errors.Is(err, bufio.ErrTooLong):
		err = tooLarge("a frame exceeds %d bytes", maxFrameBytes)
	case errors.Is(err, ports.ErrClosed), errors.Is(err, ports.ErrInvalidArgument):
	default:
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("%w: stream idle", ports.ErrClosed)
			break
		}
		return nil // the connection broke: nobody to tell
	}
	a := answerOf(0, ports.PublishResult{}, err)
	return &a
}

// decodeFrame reads one frame: valid UTF-8, one JSON object, no unknown
// fields, seq at least 1. A frame that fails ends the stream (its seq, and
// so whom to answer, is not known for sure).
func decodeFrame(line []byte) (streamFrame, error) {
	var f streamFrame
	if !utf8.Valid(line) {
		return f, badRequest("frame is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("frame: %w", decodeError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return f, badRequest("frame: unexpected data after the JSON object")
	}
	if f.Seq == 0 {
		return f, badRequest("frame: seq must be a positive integer")
	}
	return f, nil
}

// answerOf is the answer frame of one message's publish.
func answerOf(seq uint64, res ports.PublishResult, err error) streamAnswer {
	if err == nil {
		if res.Duplicates > 0 {
			return streamAnswer{Seq: seq, Status: StreamDuplicate}
		}
		return streamAnswer{Seq: seq, Status: StreamAccepted}
	}
	status, code, message := classify(err)
	a := streamAnswer{Seq: seq, Status: StreamError, Error: &errorDetail{Code: code, Message: message}}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		a.RetryAfterMs = retryAfterMillis
	}
	return a
}

// writeAnswers writes answers as they come, flushing whenever none is
// waiting (after a yield), until answers is closed. Its write deadline
// moves with the answers (the server's WriteTimeout counts from the
// request's start, and a stream lives longer): a client that reads no
// answer for streamIdleTimeout is cut off. After a write error it stops
// the reading (writeFailed), keeps draining (so no publisher blocks) and
// returns that error.
func (st *serverStream) writeAnswers() error {
	bw := bufio.NewWriterSize(st.w, 16<<10)
	var (
		werr        error
		deadlineSet time.Time
	)
	failed := func(err error) {
		werr = err
		close(st.writeFailed)
		_ = st.rc.SetReadDeadline(time.Now()) // interrupt a blocked read
	}
	buf := make([]byte, 0, 256)
	for a := range st.answers {
		if werr != nil {
			continue
		}
		if now := time.Now(); now.Sub(deadlineSet) > time.Second {
			_ = st.rc.SetWriteDeadline(now.Add(streamIdleTimeout))
			deadlineSet = now
		}
		buf = appendAnswer(buf[:0], a)
		if _, err := bw.Write(buf); err != nil {
			failed(err)
			continue
		}
		if len(st.answers) == 0 {
			// The publishers a commit answers wake together: let them queue
			// their answers, so the batch goes out in one write.
			runtime.Gosched()
		}
		if len(st.answers) == 0 {
			if err := bw.Flush(); err != nil {
				failed(err)
				continue
			}
			if err := st.rc.Flush(); err != nil {
				failed(err)
			}
		}
	}
	if werr == nil {
		if werr = bw.Flush(); werr == nil {
			werr = st.rc.Flush()
		}
	}
	if werr != nil {
		st.s.log.LogAttrs(st.r.Context(), slog.LevelDebug, "publish stream: write answers", slog.Any("error", werr))
	}
	return werr
}

// appendAnswer encodes a as one NDJSON line; the common answers without
// encoding/json.
func appendAnswer(buf []byte, a streamAnswer) []byte {
	if a.Error == nil {
		buf = append(buf, `{"seq":`...)
		buf = strconv.AppendUint(buf, a.Seq, 10)
		buf = append(buf, `,"status":"`...)
		buf = append(buf, a.Status...)
		return append(buf, "\"}\n"...)
	}
	b, _ := json.Marshal(a) // our own type: always encodes
	buf = append(buf, b...)
	return append(buf, '\n')
}
