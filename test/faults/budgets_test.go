//go:build faults

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/stack"
)

// Memory bounds of scenario 14, for the plain (not race-built) binaries
// with their default budgets: MQ_MAX_INFLIGHT_BYTES 32 MiB (mqwriter),
// READER_BUFFER_BYTES 64 MiB and MQ_LEASE_MAX_BYTES 8 MiB (mqreader).
const (
	writerPeakLimitKiB = 320 << 10
	readerPeakLimitKiB = 320 << 10
)

// Scenario 14: byte budgets and stream caps, while the pipeline runs.
//   - 200 concurrent publishes of 8 MiB each (128 payloads of ~64 KB) to a
//     writer: each is answered 200 or 429 (Retry-After, refused before its
//     body is sent: Expect: 100-continue) and the writer's peak RSS stays
//     under writerPeakLimitKiB.
//   - 100 messages of 1 MiB injected into queue_messages and leased from a
//     reader without acking: the reader stops loading at its byte budget
//     (leases come back empty), no lease answer passes MQ_LEASE_MAX_BYTES,
//     the utilization gauge reads full, and its peak RSS stays under
//     readerPeakLimitKiB; then everything is acked.
//   - Slow NDJSON clients (which never read) take apigw's API_MAX_STREAMS=2
//     slots; one more stream gets 429 while /api/v1/gpus keeps answering.
func byteBudgets(t *testing.T, s *system, rng *rand.Rand) (history, expectations, func(figures)) {
	s.bins = plainDir // memory is measured; the race detector multiplies it
	w, _, _ := pipeline(s, nil, nil)
	p := startPublisher(t, w, defaultLoad("s14", rng.Uint64()))
	progress(t, p, 200)

	bigW := s.start("mqwriter-big", "mqwriter", map[string]string{"QUEUE_TOPICS": "big"})
	bigR := s.reader("mqreader-big", "0-255", map[string]string{"QUEUE_TOPICS": "big"})
	concurrentBigPublishes(t, bigW)
	bigRefills(t, s, bigR)
	slowStreams(t, s)

	progress(t, p, 200) // the pipeline kept working throughout
	h := p.stop()
	// foreign: slowStreams stores rows of its own, straight into the store.
	return h, expectations{drainWithin: 30 * time.Second, maxRedelivered: 0.05, foreign: true}, nil
}

// concurrentBigPublishes sends 200 publishes of 8 MiB at once.
func concurrentBigPublishes(t *testing.T, w *service) {
	const publishers, perPublish = 200, 128
	payload := `"` + strings.Repeat("p", 64000) + `"`
	var b bytes.Buffer
	b.WriteString(`{"topic":"big","messages":[`)
	for i := range perPublish {
		if i > 0 {
			b.WriteByte(',')
		}
		// The same keys in every publish: one copy is stored, the rest are
		// duplicates, but each publish still goes all the way to PostgreSQL.
		fmt.Fprintf(&b, `{"payload":%s,"idempotency_key":"big-%d"}`, payload, i)
	}
	b.WriteString(`]}`)
	body := b.Bytes()
	t.Logf("publish body: %.2f MiB", float64(len(body))/(1<<20))
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		ExpectContinueTimeout: 10 * time.Second, MaxConnsPerHost: 0, MaxIdleConnsPerHost: publishers}}
	type answer struct {
		status int
		retry  string
		err    error
	}
	answers := make(chan answer, publishers) // buffered: every sender finishes without waiting
	for range publishers {
		go func() {
			req, err := http.NewRequest(http.MethodPost, "http://"+w.addr+"/v1/publish", bytes.NewReader(body))
			if err != nil {
				answers <- answer{err: err}
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+stack.PublishToken)
			req.Header.Set("Expect", "100-continue")
			resp, err := client.Do(req)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answers <- answer{status: resp.StatusCode, retry: resp.Header.Get("Retry-After")}
		}()
	}
	counts := map[int]int{}
	for range publishers {
		a := <-answers
		require.NoError(t, a.err)
		require.Contains(t, []int{http.StatusOK, http.StatusTooManyRequests}, a.status)
		if a.status == http.StatusTooManyRequests {
			require.NotEmpty(t, a.retry, "a 429 carries Retry-After")
		}
		counts[a.status]++
	}
	hwm, rss := memKiB(t, w, "VmHWM"), memKiB(t, w, "VmRSS")
	t.Logf("200 concurrent 8 MiB publishes: %d answered 200, %d answered 429; mqwriter peak RSS (VmHWM) %d MiB, RSS now %d MiB (bound %d MiB)",
		counts[http.StatusOK], counts[http.StatusTooManyRequests], hwm>>10, rss>>10, writerPeakLimitKiB>>10)
	require.Positive(t, counts[http.StatusOK], "some publishes fit the budget")
	require.Positive(t, counts[http.StatusTooManyRequests], "200 × 8 MiB cannot all fit 32 MiB at once")
	require.Less(t, hwm, writerPeakLimitKiB, "mqwriter's peak memory")
}

// bigRefills fills a reader with 1 MiB messages and checks its byte budgets.
func bigRefills(t *testing.T, s *system, r *service) {
	ctx := context.Background()
	const big = 100
	// Incompressible (random hex, different in every row), as a hostile
	// payload would be: stored at full size.
	_, err := s.pool.Exec(ctx, `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key)
SELECT 'big', gen_random_uuid(),
       to_jsonb((SELECT string_agg(md5(random()::text || i::text || j::text), '') FROM generate_series(1, 32768) j)),
       i % 256
FROM generate_series(1, $1) i`, big)
	require.NoError(t, err)
	queued := s.count(`SELECT count(*) FROM queue_messages WHERE topic = 'big'`) // the 1 MiB ones and the writer's 128

	type leased struct {
		id    string
		msgs  int
		bytes int // payload bytes
	}
	lease := func() (leased, int) {
		var out struct {
			LeaseID  string `json:"lease_id"`
			Messages []struct {
				Payload json.RawMessage `json:"payload"`
			} `json:"messages"`
		}
		resp, err := consumeCall(s.http, "http://"+r.addr+"/v1/lease",
			`{"topic":"big","consumer_id":"budgets","max":5000,"lease_seconds":120}`)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
		require.NoError(t, json.Unmarshal(raw, &out))
		l := leased{id: out.LeaseID, msgs: len(out.Messages)}
		for _, m := range out.Messages {
			l.bytes += len(m.Payload)
		}
		return l, len(raw)
	}
	var held []leased
	outstanding, outstandingBytes, largest, empties := 0, 0, 0, 0
	// Lease without acking until the reader has nothing more to give: its
	// buffer is full of leased messages (or the topic is exhausted).
	for empties < 40 && outstanding < queued {
		l, size := lease()
		largest = max(largest, size)
		if l.msgs == 0 {
			empties++
			time.Sleep(100 * time.Millisecond) // a refill may be running; ask again
			continue
		}
		empties = 0
		held = append(held, l)
		outstanding += l.msgs
		outstandingBytes += l.bytes
	}
	m, err := s.scrape(r)
	require.NoError(t, err)
	hwm := memKiB(t, r, "VmHWM")
	t.Logf("1 MiB refills: %d of %d messages (%.1f MiB of payload) leased before the reader's byte budget stopped it, in %d leases "+
		"(largest answer %.2f MiB); utilization %.2f; mqreader peak RSS (VmHWM) %d MiB (bound %d MiB)",
		outstanding, queued, float64(outstandingBytes)/(1<<20), len(held), float64(largest)/(1<<20),
		m["mqreader_buffer_utilization_ratio"], hwm>>10, readerPeakLimitKiB>>10)
	require.LessOrEqual(t, largest, 8<<20+64<<10, "a lease answer past MQ_LEASE_MAX_BYTES")
	require.Less(t, outstanding, queued, "the byte budget, not the topic's end, stopped the reader")
	require.LessOrEqual(t, outstandingBytes, 64<<20+1<<20, "held past READER_BUFFER_BYTES by more than one message")
	require.GreaterOrEqual(t, m["mqreader_buffer_utilization_ratio"], 0.95)
	require.Less(t, hwm, readerPeakLimitKiB, "mqreader's peak memory")

	// Ack what is held; the rest comes through as room frees.
	ack := func(id string) {
		resp, err := consumeCall(s.http, "http://"+r.addr+"/v1/ack",
			`{"topic":"big","consumer_id":"budgets","lease_id":"`+id+`"}`)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	for _, l := range held {
		ack(l.id)
	}
	require.Eventually(t, func() bool {
		if l, _ := lease(); l.msgs > 0 {
			ack(l.id)
		}
		return s.count(`SELECT count(*) FROM queue_messages WHERE topic = 'big'`) == 0
	}, time.Minute, 10*time.Millisecond)
	t.Logf("mqreader peak RSS after draining the topic: %d MiB", memKiB(t, r, "VmHWM")>>10)
}

// slowStreams holds apigw's stream slots with clients that never read and
// checks the API still answers.
func slowStreams(t *testing.T, s *system) {
	ctx := context.Background()
	// One GPU with enough rows that its stream outgrows the socket buffers.
	gpu := "GPU-budgets-0000-0000-0000-000000000001"
	store := postgres.NewTelemetryStore(s.pool, nil)
	now := time.Now().UTC()
	const rows, batch = 60000, 5000
	for start := 0; start < rows; start += batch {
		recs := make([]domain.Record, batch)
		for i := range recs {
			v := float64(i)
			recs[i] = domain.Record{MsgUUID: uuid.New(), Point: domain.Point{GPUUUID: gpu, Hostname: "budgets",
				Device: "nvidia0", ModelName: "budgets", MetricName: "DCGM_FI_DEV_GPU_UTIL",
				Timestamp: now.Add(-time.Duration(start+i) * 10 * time.Millisecond), Value: &v,
				LabelsRaw: `padding="` + strings.Repeat("x", 200) + `"`}}
		}
		_, err := store.WriteBatch(ctx, recs)
		require.NoError(t, err)
	}
	api := s.start("apigw", "apigw", map[string]string{"API_MAX_STREAMS": "2"})
	target := "/api/v1/gpus/" + url.PathEscape(gpu) + "/telemetry?format=ndjson"

	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			_ = c.Close()
		}
	}()
	// A small receive buffer, fixed before connecting (it also stops the
	// kernel's autotuning, which on loopback grows to tens of MiB): the
	// stream fills it and the server's send buffer, then waits on the client.
	slowDialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	// One at a time, each holding its slot (its status line read, nothing
	// more) before the next starts, so none races another for a slot.
	for range 2 {
		c, err := slowDialer.Dial("tcp", api.addr)
		require.NoError(t, err)
		slow = append(slow, c)
		_, err = io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: "+api.addr+"\r\n\r\n")
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
		status := make([]byte, len("HTTP/1.1 200"))
		_, err = io.ReadFull(c, status)
		require.NoError(t, err)
		require.Equal(t, "HTTP/1.1 200", string(status), "a slow client's stream started")
	}
	resp, err := s.http.Get("http://" + api.addr + target)
	require.NoError(t, err)
	refused, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "a third stream while two slow clients hold the slots: %s", refused)
	require.Contains(t, string(refused), `"code":"too_many_streams"`)
	for i := range 10 {
		start := time.Now()
		require.Equal(t, http.StatusOK, s.status(api, "/api/v1/gpus"), "/api/v1/gpus attempt %d", i)
		t.Logf("/api/v1/gpus answered in %s with both stream slots held", time.Since(start).Round(time.Millisecond))
	}
	for _, c := range slow {
		_ = c.Close()
	}
	slow = nil
	require.Eventually(t, func() bool {
		resp, err := s.http.Get("http://" + api.addr + "/api/v1/gpus/" + url.PathEscape(gpu) + "/telemetry?limit=1&format=ndjson")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	}, time.Minute, 200*time.Millisecond, "the slots come back once the slow clients are gone")
}

// memKiB reads a VmHWM or VmRSS line of svc's /proc status, in KiB.
func memKiB(t *testing.T, svc *service, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", svc.proc.PID()))
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, svc.proc.PID())
	return 0
}

// consumeCall posts body to url with the consume token the stack gave the
// readers.
func consumeCall(c *http.Client, url, body string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+stack.ConsumeToken)
	return c.Do(req)
}
