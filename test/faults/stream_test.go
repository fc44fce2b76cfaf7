//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/freeport"
)

// Scenario 10: the streaming publish path under faults. The test's
// publishers and the streamer binary both publish over streams
// (STREAMER_TRANSPORT=stream) through a TCP proxy in front of mqwriter.
// The faults, each mid-stream: every connection dropped by the proxy
// (twice), kill -9 of mqwriter, and kill -9 of the streamer. Unanswered
// messages are sent again with their idempotency keys; the invariants
// (every acknowledged message stored once, nothing stored twice) are
// checked as for every scenario, and a last undisturbed streamer pass must
// be stored whole.
func streamFaults(t *testing.T, s *system, rng *rand.Rand) (history, expectations, func(figures)) {
	w, _, _ := pipeline(s, nil, nil)
	px := startProxy(t, w.addr)
	st := s.start("streamer", "streamer", map[string]string{
		"MQ_WRITER_URL":        "http://" + px.addr,
		"STREAMER_TRANSPORT":   "stream",
		"STREAMER_CSV_PATH":    csvPath,
		"STREAMER_INTERVAL_MS": "2",
		"LOG_LEVEL":            "info", // its run id is logged at info; the rows' keys derive from it
	})
	cfg := defaultLoad("s10", rng.Uint64())
	cfg.stream, cfg.via = true, px.addr
	p := startPublisher(t, w, cfg)

	streamed := func() float64 { return s.counter(st, "streamer_messages_published_total") }
	streamerProgress := func(n float64) {
		target := streamed() + n
		require.Eventually(t, func() bool { return streamed() >= target }, 60*time.Second, 20*time.Millisecond,
			"the streamer is stuck at %.0f acknowledged messages", streamed())
	}
	for i := range 2 {
		progress(t, p, 200)
		streamerProgress(200)
		jitter(rng, 100*time.Millisecond)
		t.Logf("dropped %d proxied connections (round %d)", px.dropAll(), i+1)
	}
	progress(t, p, 200)
	jitter(rng, 100*time.Millisecond)
	s.kill(w)
	t.Logf("killed mqwriter mid-stream")
	s.launch(w, "")
	before := p.ackedMsgs.Load()
	if !assert.Eventually(t, func() bool { return p.ackedMsgs.Load() >= before+200 }, 60*time.Second, 20*time.Millisecond,
		"publishers stuck at %d acknowledged messages after the writer's restart", p.ackedMsgs.Load()) {
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1) // where the stream client waits
		t.FailNow()
	}
	streamerProgress(200)
	jitter(rng, 100*time.Millisecond)
	s.kill(st)
	t.Logf("killed the streamer mid-stream")
	h := p.stop()

	lastStart, runs := lastStreamerPass(t, s, st)
	return h, expectations{drainWithin: 90 * time.Second, maxRedelivered: 0.3, foreign: true, foreignSince: lastStart, foreignAcked: csvRows},
		func(f figures) {
			require.Positive(t, f.retried, "no stream publish was sent again: the faults hit nothing in flight")
			require.Zero(t, s.counter(st, "streamer_messages_dropped_total"), "the streamer dropped messages")
			t.Logf("streamer runs %d, rows from the streamer %d, proxied connections dropped %d", len(runs), f.foreign, px.dropped.Load())
		}
}

// lastStreamerPass runs the (stopped) streamer once more over one CSV pass,
// undisturbed, waits until all of it is acknowledged, and returns when it
// started and every run id of the streamer so far.
func lastStreamerPass(t *testing.T, s *system, st *service) (time.Time, []string) {
	t.Helper()
	st.env["STREAMER_MAX_ROWS"] = strconv.Itoa(csvRows)
	lastStart := time.Now() // the earlier runs have exited: every sample stamped from here is the last pass's
	s.launch(st, "")
	require.Eventually(t, func() bool {
		return s.counter(st, "streamer_messages_published_total")+s.counter(st, "streamer_messages_duplicate_total")+
			s.counter(st, "streamer_messages_dropped_total") >= float64(runsTotal(st, csvRows))
	}, 2*time.Minute, 100*time.Millisecond, "the last streamer pass did not finish")
	return lastStart, streamerRuns(t, s, st)
}

// proxy forwards TCP connections to target and drops them all on demand
// (a dropped connection, as a restarted load balancer or a network blip
// would). One goroutine (run) owns the open connections.
type proxy struct {
	addr    string
	ln      net.Listener
	target  string
	conns   chan net.Conn // accept loop → run; unbuffered
	drop    chan chan int // dropAll → run
	done    chan struct{} // closed by close
	dropped atomic.Int64  // sockets dropped so far
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	addr, err := freeport.Addr()
	require.NoError(t, err)
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	px := &proxy{addr: addr, ln: ln, target: target, conns: make(chan net.Conn), drop: make(chan chan int), done: make(chan struct{})}
	runDone := make(chan struct{})
	go func() { defer close(runDone); px.run() }()
	acceptDone := make(chan struct{})
	go func() { defer close(acceptDone); px.accept() }()
	t.Cleanup(func() {
		close(px.done)
		_ = ln.Close()
		<-acceptDone
		<-runDone
	})
	return px
}

func (px *proxy) run() {
	var open []net.Conn // owned by run
	closeAll := func() int {
		for _, c := range open {
			_ = c.Close()
		}
		n := len(open)
		open = nil
		return n
	}
	for {
		select {
		case c := <-px.conns:
			open = append(open, c)
		case reply := <-px.drop:
			reply <- closeAll()
		case <-px.done:
			closeAll()
			return
		}
	}
}

// track hands c to run; false once the proxy is closed.
func (px *proxy) track(c net.Conn) bool {
	select {
	case px.conns <- c:
		return true
	case <-px.done:
		_ = c.Close()
		return false
	}
}

func (px *proxy) accept() {
	for {
		down, err := px.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", px.target)
		if err != nil {
			_ = down.Close()
			continue
		}
		if !px.track(down) || !px.track(up) {
			_ = up.Close()
			continue
		}
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		go pipe(up, down)
		go pipe(down, up)
	}
}

// dropAll closes every proxied connection (both sides) and returns how many
// sockets it closed.
func (px *proxy) dropAll() int {
	reply := make(chan int, 1)
	select {
	case px.drop <- reply:
		n := <-reply
		px.dropped.Add(int64(n))
		return n
	case <-px.done:
		return 0
	}
}

// streamPost is post over the streaming path: the publish's messages go as
// frames on the publisher's stream client, and the outcome comes back in
// the shape of the request path's answer, so the retry loop and the history
// are the same.
func (p *publisher) streamPost(ctx context.Context, body []byte) (int, []byte, error) {
	var req struct {
		Topic    string        `json:"topic"`
		Messages []wireMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, nil, err
	}
	msgs := make([]ports.OutgoingMessage, len(req.Messages))
	for i, m := range req.Messages {
		msgs[i] = ports.OutgoingMessage{Payload: m.Payload, Key: m.Key, IdempotencyKey: m.IdempotencyKey}
	}
	res, err := p.stream.Publish(ctx, req.Topic, msgs)
	if err == nil {
		return http.StatusOK, mustJSON(map[string]int{"accepted": res.Accepted, "duplicates": res.Duplicates}), nil
	}
	if re, ok := errors.AsType[*mqhttp.ResponseError](err); ok {
		return re.Status, []byte(re.Error()), nil
	}
	return 0, nil, err // no answer: a lost connection, a cancelled publish
}
