package queuetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// A suite case is only as good as the broken adapter it catches. The
// wrappers here break one promise each, and RequireCaught runs a case over
// one of them in a child process of the test binary and requires it to
// fail: a meta-test that keeps each case able to bite. One wrapper,
// ExpireFirstAck, breaks no promise but the test's luck, and
// RequireSurvives requires the cases it names to pass over it.

// brokenEnv names the wrapper a child run of RequireCaught or RequireSurvives uses.
const brokenEnv = "QUEUETEST_BROKEN"

// Names of the deliberately broken wrappers, for Broken and RequireCaught.
const (
	// AckDeletesNothing: Ack returns nil and leaves the lease alone, so its
	// messages come back at the lease's expiry.
	AckDeletesNothing = "ack-deletes-nothing"
	// PublishDespiteCancel: Publish with an ended context stores the
	// messages anyway, then reports the context's error.
	PublishDespiteCancel = "publish-despite-cancel"
	// StoreNothing: Publish stores nothing and answers that every message
	// was a duplicate, as a writer whose dedup key collides would.
	StoreNothing = "store-nothing"
	// AnswerBeforeCommit: Publish answers at once and stores the messages
	// later (at the next Lease or Flush), as a writer acknowledging before
	// its group commit would; a clean stop flushes, a crash loses them.
	AnswerBeforeCommit = "answer-before-commit"
	// NoDeliveryLimit: the queue never dead-letters, as an adapter without
	// a delivery limit would. No wrapper can switch an adapter's limit off,
	// so Broken returns the queue as is and the harness builds it with its
	// limit at domain.MaxMaxDeliveries, far above the Capabilities'.
	NoDeliveryLimit = "no-delivery-limit"
	// IgnoreWait: Lease drops the request's Wait and answers at once, as an
	// adapter without the long poll would.
	IgnoreWait = "ignore-wait"
	// ExpireFirstAck: the first Ack finds its lease expired, as a machine
	// that stalls the test past a short lease makes it: the lease's
	// messages go back to ready (a Release, as its expiry would) and Ack
	// answers ErrLeaseExpired. A legal queue, for RequireSurvives.
	ExpireFirstAck = "expire-first-ack"
)

// BrokenVariant is the wrapper a child run of RequireCaught or RequireSurvives
// was started with, "" in an ordinary run.
func BrokenVariant() string { return os.Getenv(brokenEnv) }

// RunOverBroken is the child test a RequireCaught meta-test runs: Run over
// the harnesses newHarness builds with wrap, which puts each queue it starts
// inside the broken wrapper BrokenVariant names. In an ordinary run (no
// variant) it does nothing.
func RunOverBroken(t *testing.T, newHarness func(t testing.TB, wrap func(ports.Queue) ports.Queue) Harness, caps Capabilities) {
	t.Helper()
	variant := BrokenVariant()
	if variant == "" {
		return
	}
	wrap := func(q ports.Queue) ports.Queue { return Broken(variant, q) }
	Run(t, func(t testing.TB) Harness { return newHarness(t, wrap) }, caps)
}

// Broken wraps q in the named broken wrapper (one of the constants above).
// It panics on an unknown name: a typo in a test.
func Broken(name string, q ports.Queue) ports.Queue {
	switch name {
	case AckDeletesNothing:
		return ackDeletesNothing{q}
	case PublishDespiteCancel:
		return publishDespiteCancel{q}
	case StoreNothing:
		return storeNothing{q}
	case AnswerBeforeCommit:
		return &answerBeforeCommit{Queue: q, pending: make(chan pendingBatch, pendingBatches)}
	case NoDeliveryLimit:
		return q
	case IgnoreWait:
		return ignoreWait{q}
	case ExpireFirstAck:
		return &expireFirstAck{Queue: q}
	default:
		panic(fmt.Sprintf("queuetest: no broken wrapper %q", name))
	}
}

type ignoreWait struct{ ports.Queue }

func (q ignoreWait) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	req.Wait = 0
	return q.Queue.Lease(ctx, req)
}

type expireFirstAck struct {
	ports.Queue
	acked atomic.Bool
}

func (q *expireFirstAck) Ack(ctx context.Context, ref ports.LeaseRef) error {
	if q.acked.Swap(true) {
		return q.Queue.Ack(ctx, ref)
	}
	if err := q.Queue.Release(ctx, ref); err != nil {
		return err
	}
	return fmt.Errorf("ack lease %s: %w", ref.LeaseID, ports.ErrLeaseExpired)
}

type ackDeletesNothing struct{ ports.Queue }

func (ackDeletesNothing) Ack(context.Context, ports.LeaseRef) error { return nil }

type publishDespiteCancel struct{ ports.Queue }

func (q publishDespiteCancel) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	res, err := q.Queue.Publish(context.WithoutCancel(ctx), topic, msgs)
	if ctx.Err() != nil {
		return ports.PublishResult{}, ctx.Err()
	}
	return res, err
}

type storeNothing struct{ ports.Queue }

func (storeNothing) Publish(_ context.Context, _ string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	return ports.PublishResult{Duplicates: len(msgs)}, nil
}

// pendingBatches bounds answerBeforeCommit's buffer: more than any suite
// case publishes between two leases.
const pendingBatches = 1024

// answerBeforeCommit holds published batches in a channel (its buffer, so
// it needs no lock) until the next Lease or Flush. It defers every publish,
// invalid ones included: run it only on the cases it is meant to break.
type answerBeforeCommit struct {
	ports.Queue
	pending chan pendingBatch
}

type pendingBatch struct {
	topic string
	msgs  []ports.OutgoingMessage
}

func (q *answerBeforeCommit) Publish(_ context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	q.pending <- pendingBatch{topic: topic, msgs: msgs}
	return ports.PublishResult{Accepted: len(msgs)}, nil
}

func (q *answerBeforeCommit) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	if err := q.Flush(ctx); err != nil {
		return domain.Lease{}, err
	}
	return q.Queue.Lease(ctx, req)
}

// Flush stores every pending batch: what a clean stop does.
func (q *answerBeforeCommit) Flush(ctx context.Context) error {
	for {
		select {
		case b := <-q.pending:
			if _, err := q.Queue.Publish(ctx, b.topic, b.msgs); err != nil {
				return fmt.Errorf("flush: %w", err)
			}
		default:
			return nil
		}
	}
}

// Flusher is implemented by a broken wrapper that holds messages until a
// clean stop: a harness's Restart calls Flush before Close, its Crash does
// not.
type Flusher interface {
	Flush(ctx context.Context) error
}

// FlushHeld flushes q when it is a Flusher, so what a broken wrapper holds
// reaches the queue: a harness's Restart calls it before closing the queue.
func FlushHeld(t testing.TB, q ports.Queue) {
	t.Helper()
	if f, ok := q.(Flusher); ok {
		require.NoError(t, f.Flush(t.Context()))
	}
}

// RequireCaught runs the tests of the calling test binary that match
// pattern (a -test.run pattern) in a child process whose BrokenVariant is
// variant, and requires the run to fail with output containing each of
// wants. The child's test builds its harness over Broken(BrokenVariant(), …).
func RequireCaught(t *testing.T, pattern, variant string, wants ...string) {
	t.Helper()
	requireChildFails(t, []string{"-test.run=" + pattern, "-test.count=1", "-test.v"}, variant, wants)
}

// RequireBenchCaught is RequireCaught for the benchmarks matching pattern
// (a -test.bench pattern), each run for one iteration.
func RequireBenchCaught(t *testing.T, pattern, variant string, wants ...string) {
	t.Helper()
	requireChildFails(t, []string{"-test.run=^$", "-test.bench=" + pattern, "-test.benchtime=1x", "-test.count=1"}, variant, wants)
}

// RequireSurvives is RequireCaught for a legal wrapper (ExpireFirstAck): the
// run must pass, with output containing each of wants.
func RequireSurvives(t *testing.T, pattern, variant string, wants ...string) {
	t.Helper()
	text, err := runChild(t, []string{"-test.run=" + pattern, "-test.count=1", "-test.v"}, variant)
	require.NoError(t, err, "the suite failed over the legal wrapper %q:\n%s", variant, failures(text))
	require.Contains(t, text, "--- PASS", "run over %q passed no test:\n%s", variant, text)
	for _, w := range wants {
		require.Contains(t, text, w, "run over %q:\n%s", variant, text)
	}
}

// runChild runs the calling test binary with args and BrokenVariant
// variant, and returns its output.
func runChild(t *testing.T, args []string, variant string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(os.Environ(), brokenEnv+"="+variant)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func requireChildFails(t *testing.T, args []string, variant string, wants []string) {
	t.Helper()
	pattern := strings.Join(args, " ")
	text, err := runChild(t, args, variant)
	require.Error(t, err, "the suite passed over the broken wrapper %q:\n%s", variant, text)
	require.Contains(t, text, "--- FAIL", "run over %q failed without a failing test:\n%s", variant, text)
	for _, w := range wants {
		require.Contains(t, text, w, "run over %q:\n%s", variant, text)
	}
	t.Logf("%s over %s failed as it should:\n%s", pattern, variant, failures(text))
}

// failures keeps the lines of a test run's output that report a failure.
func failures(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "--- FAIL") || strings.Contains(strings.SplitN(l, " ", 2)[0], ".go:") || strings.HasPrefix(l, "Error:") || strings.HasPrefix(l, "Messages:") ||
			strings.HasPrefix(l, "Error Trace:") || strings.HasPrefix(l, "expected") || strings.HasPrefix(l, "actual") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
