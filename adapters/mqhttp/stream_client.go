package mqhttp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/internal/startstop"
	"github.com/gpufleet/telemetry/ports"
)

// Client stream defaults.
const (
	// DefaultStreamWindow is the client's default in-flight window: at most
	// that many messages sent and not yet answered; Publish blocks past it.
	DefaultStreamWindow = StreamWindow
	// streamDialTimeout bounds the wait for a stream's 200.
	streamDialTimeout = 10 * time.Second
	// dialHeartbeat is how often a dial writes a blank line (see dial).
	dialHeartbeat = 100 * time.Millisecond
	// DefaultStreamStallTimeout is how long a connection may carry messages
	// in flight with no answer before the client gives it up and sends them
	// again on a new one: a server that stopped answering, or a peer that
	// vanished without closing the connection (a node lost), would
	// otherwise hold them until TCP gives up, many minutes later. Longer
	// than a publish takes when the database is slow (the server answers
	// each message when it is committed or refused).
	DefaultStreamStallTimeout = 30 * time.Second
)

// publishStream is the client's side of the streaming publish path: one
// connection (re-opened on demand after it ends) carrying every Publish of
// the client as frames, answered per message in any order. The run
// goroutine owns the connection and the messages in flight; one goroutine
// writes the frames and one reads the answers of each connection, so run
// never blocks on I/O.
type publishStream struct {
	url  string
	auth string       // the Authorization header of every dial; "" for none
	http *http.Client // the client's, without an overall timeout: a stream lives long
	// window is a counting semaphore, buffered to the window size: Publish
	// puts a token per message before submitting it and run takes it back
	// when the message is answered or failed, so at most that many are in
	// flight and a full window blocks the producer.
	window chan struct{}
	stall  time.Duration    // StreamStallTimeout
	submit chan *streamMsg  // Publish → run; unbuffered
	events chan streamEvent // connection goroutines → run; unbuffered
	loop   *startstop.Loop  // run; the client starts it in NewClient and stops it in Close
}

// streamMsg is one message of a Publish on its way through run.
type streamMsg struct {
	body  []byte               // the frame's JSON object without seq: `{"topic":…}`
	idx   int                  // its index in the Publish call
	reply chan<- streamOutcome // buffered to the call's message count: run never blocks on it
}

type streamOutcome struct {
	idx    int
	status string // StreamAccepted or StreamDuplicate when err is nil
	err    error
}

type streamEventKind int

const (
	evConnected streamEventKind = iota
	evDialFailed
	evAnswers
	evLost
)

type streamEvent struct {
	kind    streamEventKind
	gen     int
	conn    *streamConn    // evConnected
	answers []streamAnswer // evAnswers
	err     error          // evDialFailed, evLost
}

// streamConn is one open stream; frames is read by its writer goroutine.
type streamConn struct {
	gen    int
	frames chan streamOut // buffered to the window: run's sends never block (at most window messages are pending)
	cancel context.CancelFunc
}

type streamOut struct {
	seq  uint64
	body []byte
}

func newPublishStream(url, auth string, hc *http.Client, window int, stall time.Duration) *publishStream {
	h := *hc
	h.Timeout = 0
	ps := &publishStream{
		url:    url,
		auth:   auth,
		http:   &h,
		window: make(chan struct{}, window),
		stall:  stall,
		submit: make(chan *streamMsg),
		events: make(chan streamEvent),
	}
	ps.loop = startstop.Go(ps.run)
	return ps
}

// close fails what is in flight with ErrClosed, ends the connection and
// waits for run.
func (ps *publishStream) close() { _ = ps.loop.Stop(context.Background()) }

func (ps *publishStream) run(ctx context.Context) {
	var (
		seq     uint64                    // last seq given; owned by run
		pending = map[uint64]*streamMsg{} // sent or waiting for a connection; owned by run
		conn    *streamConn               // nil while there is none; owned by run
		gen     int                       // generation of the latest dial
		dialing bool
		// heard is when conn last showed progress (connected, or an answer
		// came); the stall check runs a few times per stall timeout.
		heard      time.Time
		stallCheck = time.NewTicker(max(ps.stall/4, time.Millisecond))
	)
	defer stallCheck.Stop()
	answer := func(seq uint64, o streamOutcome) {
		m, ok := pending[seq]
		if !ok {
			return // already failed with its connection, or a stray seq
		}
		delete(pending, seq)
		o.idx = m.idx
		m.reply <- o
		<-ps.window
	}
	failAll := func(err error) {
		for s := range pending {
			answer(s, streamOutcome{err: err})
		}
	}
	closeConn := func() {
		if conn != nil {
			close(conn.frames)
			conn = nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			closeConn()
			failAll(fmt.Errorf("publish stream: %w", ports.ErrClosed))
			return
		case now := <-stallCheck.C:
			if conn != nil && len(pending) > 0 && now.Sub(heard) > ps.stall {
				conn.cancel()
				closeConn()
				// As for a lost connection: sent again with their keys.
				failAll(fmt.Errorf("publish stream: %w", transportError{fmt.Errorf("no answer for %s", ps.stall)}))
			}
		case m := <-ps.submit:
			seq++
			if len(pending) == 0 {
				heard = time.Now() // nothing was awaited before this one
			}
			pending[seq] = m
			switch {
			case conn != nil:
				conn.frames <- streamOut{seq: seq, body: m.body}
			case !dialing:
				dialing = true
				gen++
				go ps.dial(gen, cap(ps.window))
			}
		case ev := <-ps.events:
			switch ev.kind {
			case evConnected:
				if ev.gen != gen || conn != nil {
					close(ev.conn.frames)
					continue
				}
				dialing, conn, heard = false, ev.conn, time.Now()
				// Everything unanswered goes out again in order: answers of
				// an earlier connection that never came are failed already,
				// so these were never sent.
				for _, s := range slices.Sorted(maps.Keys(pending)) {
					conn.frames <- streamOut{seq: s, body: pending[s].body}
				}
			case evDialFailed:
				if ev.gen == gen {
					dialing = false
					failAll(ev.err)
				}
			case evAnswers:
				if conn == nil || ev.gen != conn.gen {
					continue // a connection already given up on
				}
				heard = time.Now()
				for _, a := range ev.answers {
					answer(a.Seq, outcomeOf(a))
				}
			case evLost:
				if conn != nil && ev.gen == conn.gen {
					closeConn()
					// Unanswered messages may or may not be stored: the caller
					// sends them again with their idempotency keys.
					failAll(ev.err)
				}
			}
		}
	}
}

// emit hands ev to run unless the stream is closed.
func (ps *publishStream) emit(ev streamEvent) bool {
	select {
	case ps.events <- ev:
		return true
	case <-ps.loop.Done():
		return false
	}
}

// dial opens a stream and, once its 200 arrives, hands it to run and starts
// its writer and reader.
func (ps *publishStream) dial(gen, window int) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	fail := func(err error) {
		cancel()
		_ = pw.Close()
		ps.emit(streamEvent{kind: evDialFailed, gen: gen, err: err})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ps.url, pr)
	if err != nil {
		fail(fmt.Errorf("publish stream: %w: build request: %w", ports.ErrInvalidArgument, err))
		return
	}
	req.Header.Set("Content-Type", ContentTypeNDJSON)
	req.Header.Set("Accept", ContentTypeNDJSON)
	if ps.auth != "" {
		req.Header.Set("Authorization", ps.auth)
	}
	// The body (the pipe) has nothing to read until run sends frames, which
	// it does only after the 200; but Go's transport, once it reads a body,
	// waits for that read to return even when the connection failed. So
	// while the dial waits, a blank line (which the server skips) goes out
	// every dialHeartbeat: its write fails on a dead connection, and Do
	// returns. The timeout closes the pipe as well.
	timer := time.AfterFunc(streamDialTimeout, func() {
		cancel()
		_ = pw.CloseWithError(context.DeadlineExceeded)
	})
	stopBeat, beatDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(beatDone)
		t := time.NewTicker(dialHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-stopBeat:
				return
			case <-t.C:
				if _, err := pw.Write([]byte{'\n'}); err != nil {
					return
				}
			}
		}
	}()
	resp, err := ps.http.Do(req)
	close(stopBeat)
	if !timer.Stop() && err == nil {
		err = context.DeadlineExceeded
		_ = resp.Body.Close()
	}
	if err != nil {
		fail(fmt.Errorf("publish stream: %w", transportError{err}))
		<-beatDone // fail closed the pipe: a beat in a write ends
		return
	}
	if resp.StatusCode != http.StatusOK {
		rerr := responseError(resp)
		_ = resp.Body.Close()
		fail(fmt.Errorf("publish stream: %w", rerr))
		<-beatDone
		return
	}
	// The transport reads the body from now on, so a beat in a write ends;
	// frames start only after the last beat (no blank line inside a frame).
	<-beatDone
	conn := &streamConn{gen: gen, frames: make(chan streamOut, window), cancel: cancel}
	go conn.write(pw)
	if !ps.emit(streamEvent{kind: evConnected, gen: gen, conn: conn}) {
		cancel()
		_ = resp.Body.Close()
		return
	}
	go ps.read(conn, resp.Body)
}

// write sends conn's frames until run closes frames, flushing whenever none
// is waiting (after a yield), then ends the request body. A write error cancels the
// connection (its reader then reports it lost).
func (c *streamConn) write(pw *io.PipeWriter) {
	bw := bufio.NewWriterSize(pw, 32<<10)
	var (
		buf  = make([]byte, 0, 1024)
		werr error
	)
	for f := range c.frames {
		if werr != nil {
			continue // drain, so run's close is the only end
		}
		buf = append(buf[:0], `{"seq":`...)
		buf = strconv.AppendUint(buf, f.seq, 10)
		buf = append(buf, ',')
		buf = append(buf, f.body[1:]...)
		buf = append(buf, '\n')
		if _, werr = bw.Write(buf); werr == nil && len(c.frames) == 0 {
			// Publishers sending at once (a burst, or those a window slot
			// freed) queue their frames meanwhile: one write for them all.
			runtime.Gosched()
			if len(c.frames) == 0 {
				werr = bw.Flush()
			}
		}
		if werr != nil {
			c.cancel()
		}
	}
	if werr == nil {
		werr = bw.Flush()
	}
	_ = pw.CloseWithError(werr) // nil: a clean end of the request body
}

// read passes conn's answers to run, several at a time when several are
// buffered, until the response ends; then it reports the connection lost.
func (ps *publishStream) read(conn *streamConn, body io.ReadCloser) {
	defer conn.cancel()
	defer func() { _ = body.Close() }()
	br := bufio.NewReaderSize(body, 32<<10)
	var batch []streamAnswer
	lost := func(err error) { ps.emit(streamEvent{kind: evLost, gen: conn.gen, err: err}) }
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if len(batch) > 0 && !ps.emit(streamEvent{kind: evAnswers, gen: conn.gen, answers: batch}) {
				return
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				err = errors.New("answer frame too long")
			}
			lost(fmt.Errorf("publish stream: %w", transportError{fmt.Errorf("stream ended: %w", err)}))
			return
		}
		var a streamAnswer
		if err := json.Unmarshal(line, &a); err != nil {
			lost(fmt.Errorf("publish stream: %w: malformed answer: %w", ports.ErrUnavailable, err))
			return
		}
		if a.Seq == 0 { // the server's last word: why it ends the stream
			if len(batch) > 0 && !ps.emit(streamEvent{kind: evAnswers, gen: conn.gen, answers: batch}) {
				return
			}
			lost(fmt.Errorf("publish stream: ended by the server: %w", outcomeOf(a).err))
			return
		}
		batch = append(batch, a)
		if br.Buffered() == 0 || len(batch) >= 256 {
			if !ps.emit(streamEvent{kind: evAnswers, gen: conn.gen, answers: batch}) {
				return
			}
			batch = nil
		}
	}
}

// outcomeOf turns an answer frame into a message's outcome; an error frame
// becomes the *ResponseError the request path would have returned, so
// errors.Is and the retry rules hold alike.
func outcomeOf(a streamAnswer) streamOutcome {
	switch a.Status {
	case StreamAccepted, StreamDuplicate:
		return streamOutcome{status: a.Status}
	}
	re := &ResponseError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "malformed answer"}
	if a.Error != nil {
		re.Code, re.Message = a.Error.Code, a.Error.Message
		re.Status = statusOfCode(a.Error.Code)
	}
	re.RetryAfter = time.Duration(a.RetryAfterMs) * time.Millisecond
	return streamOutcome{err: re}
}

// statusOfCode is the HTTP status the request path answers with code.
func statusOfCode(code string) int {
	switch code {
	case CodeInvalidArgument:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeLeaseExpired:
		return http.StatusConflict
	case CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case CodeBackpressure:
		return http.StatusTooManyRequests
	case CodeClosed, CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeTimeout:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

// send submits bodies and waits for every outcome (or ctx). A message
// submitted before ctx ended may still be stored.
func (ps *publishStream) send(ctx context.Context, bodies [][]byte) ([]streamOutcome, error) {
	reply := make(chan streamOutcome, len(bodies))
	for i, b := range bodies {
		select {
		case ps.window <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ps.loop.Done():
			return nil, ports.ErrClosed
		}
		select {
		case ps.submit <- &streamMsg{body: b, idx: i, reply: reply}:
		case <-ctx.Done():
			<-ps.window
			return nil, ctx.Err()
		case <-ps.loop.Done():
			<-ps.window
			return nil, ports.ErrClosed
		}
	}
	out := make([]streamOutcome, len(bodies))
	for range bodies {
		select {
		case o := <-reply:
			out[o.idx] = o
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// encodeFrameBody is m's frame without seq, as encoding/json would write
// it, but with the payload copied as it is rather than re-parsed and
// compacted (a quarter of the streamer's CPU at full rate): ValidatePublish
// has checked it is JSON. Only a payload that spans lines is compacted,
// since a frame is one line.
func encodeFrameBody(topic string, m ports.OutgoingMessage) ([]byte, error) {
	b := make([]byte, 0, 64+len(topic)+len(m.Payload)+len(m.Key)+len(m.IdempotencyKey))
	b = append(b, `{"topic":`...)
	b = appendString(b, topic)
	b = append(b, `,"payload":`...)
	if bytes.IndexByte(m.Payload, '\n') >= 0 || bytes.IndexByte(m.Payload, '\r') >= 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, m.Payload); err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		b = append(b, c.Bytes()...)
	} else {
		b = append(b, m.Payload...)
	}
	if m.Key != "" {
		b = append(b, `,"key":`...)
		b = appendString(b, m.Key)
	}
	if m.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = appendString(b, m.IdempotencyKey)
	}
	return append(b, '}'), nil
}

// publishOverStream is Publish on the streaming path: the batch is checked
// as a whole first (so an invalid message stores nothing, as on the request
// path), then every message goes as its own frame. Messages that fail
// transiently (backpressure, a lost connection) are sent again with their
// idempotency keys by the client's retry policy (one attempt with
// PublishOnce); the others' answers are kept. Unlike a request, a stream
// publish of several messages is not atomic: a message refused by the
// server alone (not by the shared rules checked here) leaves the others
// stored.
func (c *Client) publishOverStream(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	if err := ctx.Err(); err != nil {
		return ports.PublishResult{}, fmt.Errorf("publish: %w", err)
	}
	if err := domain.ValidatePublish(topic, msgs); err != nil {
		return ports.PublishResult{}, fmt.Errorf("publish: %w", err)
	}
	// A key repeated within the call is the same message: as in a request,
	// the first occurrence is the one stored, so only it is sent and the
	// repeats count as duplicates (sent concurrently, a repeat could win).
	bodies := make([][]byte, 0, len(msgs))
	repeats := 0
	seen := map[string]bool{}
	for i, m := range msgs {
		if k := m.IdempotencyKey; k != "" {
			if seen[k] {
				repeats++
				continue
			}
			seen[k] = true
		}
		b, err := encodeFrameBody(topic, m)
		if err != nil {
			return ports.PublishResult{}, fmt.Errorf("publish: %w: message %d: %w", ports.ErrInvalidArgument, i, err)
		}
		bodies = append(bodies, b)
	}
	p := c.callPolicy("publish")
	if c.publishOnce {
		p.MaxTries = 1
	}
	var (
		res      ports.PublishResult
		attempts int
	)
	_, err := retry.Do(ctx, p, func() (struct{}, error) {
		attempts++
		outs, err := c.stream.send(ctx, bodies)
		if err != nil {
			return struct{}{}, retry.Permanent(err)
		}
		var (
			again   [][]byte
			lastErr error
		)
		for i, o := range outs {
			switch {
			case o.err == nil && o.status == StreamDuplicate:
				res.Duplicates++
			case o.err == nil:
				res.Accepted++
			case retryable(o.err):
				again, lastErr = append(again, bodies[i]), o.err
			default:
				return struct{}{}, retry.Permanent(o.err)
			}
		}
		bodies = again
		return struct{}{}, lastErr
	})
	switch {
	case err == nil:
		res.Duplicates += repeats
		return res, nil
	case ctx.Err() != nil || !retryable(err) || attempts == 1:
		return res, fmt.Errorf("publish: %w", err)
	default:
		return res, fmt.Errorf("publish: gave up after %d attempts: %w", attempts, err)
	}
}
