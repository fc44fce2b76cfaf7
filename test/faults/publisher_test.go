//go:build faults

package faults

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/stack"
)

// publisherConfig shapes the load the test drives.
type publisherConfig struct {
	prefix   string        // idempotency keys are <prefix>/w<worker>/<seq>
	seed     uint64        // per-worker generators derive from it
	workers  int           // concurrent publishers
	maxBatch int           // messages per publish: 1..maxBatch
	every    time.Duration // each worker's pause between publishes
	poison   float64       // share of messages whose payload can never be stored
	giveUp   float64       // chance a client gives up after a failed attempt
	retryFor time.Duration // a client gives up on a publish after this long
	stream   bool          // publish over the streaming path (one frame per message) instead of a request per publish
	via      string        // host:port to publish to instead of the writer's (a proxy in front of it)
}

// msgRecord is one message of the history.
type msgRecord struct {
	key    string
	id     uuid.UUID // domain.MessageID(topic, key): what telemetry.uuid must hold
	poison bool
}

// publishRecord is one publish: its messages and how it ended.
type publishRecord struct {
	msgs        []msgRecord
	acked       bool   // a 2xx answered it: every message is committed
	attempts    int    // HTTP requests sent
	accepted    int    // from the 2xx: new messages
	duplicates  int    // from the 2xx: messages already committed by an earlier attempt
	unexpected  string // an answer the protocol does not allow here (fails the scenario)
	lastFailure string // the last failed attempt's error or status, for failure messages
}

// history is everything the publisher sent, in no particular order.
type history []publishRecord

// publisher publishes real DCGM points to mqwriter from worker goroutines
// and records every attempt. Each worker owns its slice of the history until
// stop has waited for it.
type publisher struct {
	cfg       publisherConfig
	writerURL string
	points    []domain.Point
	workers   retries        // the load's publishes
	bursts    retries        // burst's: one large publish the test needs acknowledged
	stream    *mqhttp.Client // cfg.stream: the stream client every worker shares
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	logs      []history // logs[i] is owned by worker i until wg.Wait returns
	burstLog  history   // owned by the test goroutine (burst, stop)
	burstRng  *rand.Rand

	ackedMsgs atomic.Int64 // messages acknowledged so far; any goroutine
	sentMsgs  atomic.Int64 // messages in publishes begun so far; any goroutine
	failures  atomic.Int64 // failed attempts (network, 429, 5xx); any goroutine
}

// startPublisher starts cfg.workers publishing to writer until stop.
func startPublisher(t *testing.T, writer *service, cfg publisherConfig) *publisher {
	t.Helper()
	if cfg.retryFor == 0 {
		cfg.retryFor = 40 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := writer.addr
	if cfg.via != "" {
		addr = cfg.via
	}
	p := &publisher{
		cfg:       cfg,
		writerURL: "http://" + addr + "/v1/publish",
		points:    loadPoints(t),
		workers:   retries{client: &http.Client{Timeout: 10 * time.Second}, giveUp: cfg.giveUp},
		// A burst of 5,000 messages took 2–5 s to commit with the
		// race-built writer beside the scenarios' load here: a moment twice
		// as slow would time out at 10 s, and each retry the same way.
		bursts:   retries{client: &http.Client{Timeout: time.Minute}},
		cancel:   cancel,
		logs:     make([]history, cfg.workers),
		burstRng: rand.New(rand.NewPCG(cfg.seed, 1<<32)),
	}
	if cfg.stream {
		// One attempt per call: the retries and their record are work's.
		c, err := mqhttp.NewClient(mqhttp.ClientConfig{WriterURL: "http://" + addr, Stream: true, PublishOnce: true,
			PublishToken: stack.PublishToken}) // the token stack gave mqwriter
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		p.stream = c
	}
	for i := range cfg.workers {
		p.wg.Go(func() { p.work(ctx, i) })
	}
	t.Cleanup(func() { p.stop() })
	return p
}

// stop ends every worker (a publish in flight is abandoned unacknowledged)
// and returns the history. It may be called more than once.
func (p *publisher) stop() history {
	p.cancel()
	p.wg.Wait()
	h := append(history(nil), p.burstLog...)
	for _, l := range p.logs {
		h = append(h, l...)
	}
	return h
}

// burst publishes n messages in one request from the test goroutine, so
// the collectors have a backlog to work through, and requires it
// acknowledged.
func (p *publisher) burst(t *testing.T, n int) {
	t.Helper()
	rec, body := p.build(p.burstRng, fmt.Sprintf("%s/burst%d", p.cfg.prefix, len(p.burstLog)), n)
	p.sentMsgs.Add(int64(n))
	start := time.Now()
	p.publish(context.Background(), p.bursts, p.burstRng, body, &rec)
	p.burstLog = append(p.burstLog, rec)
	require.True(t, rec.acked, "burst of %d not acknowledged after %d attempts in %s (unexpected answer: %q; last failure: %q)",
		n, rec.attempts, time.Since(start).Round(time.Millisecond), rec.unexpected, rec.lastFailure)
	t.Logf("burst of %d acknowledged in %s (%d attempts)", n, time.Since(start).Round(time.Millisecond), rec.attempts)
	p.ackedMsgs.Add(int64(n))
}

func (p *publisher) work(ctx context.Context, worker int) {
	rng := rand.New(rand.NewPCG(p.cfg.seed, uint64(worker)))
	tick := time.NewTicker(max(p.cfg.every, time.Millisecond))
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := 1 + rng.IntN(p.cfg.maxBatch)
		rec, body := p.build(rng, fmt.Sprintf("%s/w%d/%d", p.cfg.prefix, worker, seq), n)
		p.sentMsgs.Add(int64(n))
		p.publish(ctx, p.workers, rng, body, &rec)
		if rec.acked {
			p.ackedMsgs.Add(int64(n))
		}
		p.logs[worker] = append(p.logs[worker], rec)
	}
}

// build makes a publish of n messages keyed <prefix>.<i>: real DCGM points
// stamped now, a share of them poison.
func (p *publisher) build(rng *rand.Rand, prefix string, n int) (publishRecord, []byte) {
	rec := publishRecord{msgs: make([]msgRecord, n)}
	wire := make([]wireMessage, n)
	for i := range n {
		key := prefix + "." + strconv.Itoa(i)
		poison := rng.Float64() < p.cfg.poison
		pt := p.points[rng.IntN(len(p.points))]
		pt.Timestamp = time.Now().UTC()
		// The key in the labels makes every message's content unique, so a
		// duplicate under another msg_uuid would still show.
		pt.LabelsRaw += `,faults_key="` + key + `"`
		payload := mustJSON(pt)
		if poison {
			payload = poisonPayload(rng, pt)
		}
		rec.msgs[i] = msgRecord{key: key, id: domain.MessageID(domain.TelemetryTopic, key), poison: poison}
		wire[i] = wireMessage{Payload: payload, Key: pt.GPUUUID, IdempotencyKey: key}
	}
	return rec, mustJSON(map[string]any{"topic": domain.TelemetryTopic, "messages": wire})
}

type wireMessage struct {
	Payload        json.RawMessage `json:"payload"`
	Key            string          `json:"key,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// retries is how a publish is attempted: over client, and after a failed
// attempt given up with probability giveUp (as a client might), or once
// cfg.retryFor has passed.
type retries struct {
	client *http.Client
	giveUp float64
}

// publish sends body until a 2xx, a refusal, the client giving up, or ctx
// ending. The idempotency keys make every retry safe.
func (p *publisher) publish(ctx context.Context, how retries, rng *rand.Rand, body []byte, rec *publishRecord) {
	deadline := time.Now().Add(p.cfg.retryFor)
	backoff := 50 * time.Millisecond
	for {
		rec.attempts++
		status, answer, err := p.post(ctx, how.client, body)
		switch {
		case err == nil && status == http.StatusOK:
			var res struct{ Accepted, Duplicates int }
			if err := json.Unmarshal(answer, &res); err != nil {
				rec.unexpected = fmt.Sprintf("200 with an unreadable body %q", answer)
				return
			}
			rec.acked, rec.accepted, rec.duplicates = true, res.Accepted, res.Duplicates
			if res.Accepted+res.Duplicates != len(rec.msgs) {
				rec.unexpected = fmt.Sprintf("200 counts %d accepted + %d duplicates for %d messages", res.Accepted, res.Duplicates, len(rec.msgs))
			}
			return
		case err == nil && status != http.StatusTooManyRequests && status < 500:
			rec.unexpected = fmt.Sprintf("%d %s", status, answer)
			return
		}
		p.failures.Add(1)
		if err != nil {
			rec.lastFailure = err.Error()
		} else {
			rec.lastFailure = fmt.Sprintf("%d %s", status, bytes.TrimSpace(answer))
		}
		if ctx.Err() != nil || time.Now().After(deadline) || rng.Float64() < how.giveUp {
			return // never acknowledged: it may or may not have landed
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (p *publisher) post(ctx context.Context, client *http.Client, body []byte) (int, []byte, error) {
	if p.stream != nil {
		return p.streamPost(ctx, body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.writerURL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+stack.PublishToken) // the token stack gave mqwriter
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, answer, nil
}

// poisonPayload returns JSON the writer accepts but no collector can ever
// store as a telemetry point.
func poisonPayload(rng *rand.Rand, pt domain.Point) json.RawMessage {
	switch rng.IntN(6) {
	case 0:
		return json.RawMessage(`"just a string"`)
	case 1:
		return json.RawMessage(`[1,2,3]`)
	case 2:
		return mustJSON(map[string]any{"gpu_uuid": pt.GPUUUID, "metric_name": pt.MetricName, "timestamp": "yesterday"})
	case 3:
		pt.MetricName = ""
		return mustJSON(pt)
	case 4:
		v := 9.223372036854775807e18 // a DCGM blank sentinel: must be sent as null
		pt.Value = &v
		return mustJSON(pt)
	default:
		return mustJSON(map[string]any{"gpu_uuid": pt.GPUUUID, "metric_name": pt.MetricName,
			"timestamp": pt.Timestamp, "gpu_index": "zero"})
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// loadPoints reads the shipped DCGM CSV into points (by header name).
func loadPoints(t *testing.T) []domain.Point {
	t.Helper()
	f, err := os.Open(csvPath)
	require.NoError(t, err)
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	require.NoError(t, err)
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	var out []domain.Point
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		idx, err := strconv.Atoi(rec[col["gpu_id"]])
		require.NoError(t, err)
		p := domain.Point{
			MetricName: rec[col["metric_name"]], GPUIndex: idx, Device: rec[col["device"]],
			GPUUUID: rec[col["uuid"]], ModelName: rec[col["modelname"]], Hostname: rec[col["hostname"]],
			Container: rec[col["container"]], Pod: rec[col["pod"]], Namespace: rec[col["namespace"]],
			LabelsRaw: rec[col["labels_raw"]],
		}
		if v, err := strconv.ParseFloat(rec[col["value"]], 64); err == nil {
			p.Value = domain.CleanValue(v)
		}
		out = append(out, p)
	}
	require.Len(t, out, 2470)
	return out
}
