package mqhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/ports"
)

// Lease asks the readers in turn, starting at the next one in round-robin
// order, and returns the first lease with messages; when every reader that
// answered had nothing ready it returns an empty lease. A reader that fails
// transiently (down, draining) is skipped; only when every reader failed
// does the call back off and try another round. The lease duration is sent
// in whole seconds, rounded up; it must be between 1s and an hour.
//
// A req.Wait (wait_ms, rounded up to a millisecond) is passed through: with
// one reader the request carries it; with several, a round without it comes
// first, and when every reader was empty the waiting requests go to all of
// them at once (so the wait is the wait, not one per reader): the first
// lease with messages wins and the others are cancelled. When two readers
// grant a lease in the same instant the later one is released (its
// messages count one delivery). A custom HTTPClient's Timeout must exceed
// the longest wait used.
func (c *Client) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	switch {
	case c.closed():
		return domain.Lease{}, fmt.Errorf("lease: %w", ports.ErrClosed)
	case len(c.readers) == 0:
		return domain.Lease{}, fmt.Errorf("lease: %w: no reader URLs configured", ports.ErrInvalidArgument)
	}
	if req.LeaseDuration < time.Second || req.LeaseDuration > MaxLeaseSeconds*time.Second {
		return domain.Lease{}, fmt.Errorf("lease: %w: duration %s out of the protocol's [1s, %ds]",
			ports.ErrInvalidArgument, req.LeaseDuration, MaxLeaseSeconds)
	}
	if req.Wait < 0 || req.Wait > domain.MaxLeaseWait {
		return domain.Lease{}, fmt.Errorf("lease: %w: wait %s out of [0, %s]", ports.ErrInvalidArgument, req.Wait, domain.MaxLeaseWait)
	}
	secs := leaseSeconds(req.LeaseDuration)
	wire := leaseRequest{Topic: req.Topic, ConsumerID: req.ConsumerID, Max: req.Max, LeaseSeconds: secs,
		WaitMS: int64((req.Wait + time.Millisecond - 1) / time.Millisecond)}
	n := len(c.readers)
	if n > 1 {
		wire.WaitMS = 0 // the first round asks without waiting
	}
	body, err := json.Marshal(wire)
	if err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w: encode request: %w", ports.ErrInvalidArgument, err)
	}
	start := int((c.next.Add(1) - 1) % uint64(n))
	rounds := 0
	lease, err := retry.Do(ctx, c.callPolicy("lease"), func() (domain.Lease, error) {
		rounds++
		return c.leaseRound(ctx, body, secs, start, n)
	})
	switch {
	case err == nil && len(lease.Messages) == 0 && n > 1 && req.Wait > 0:
		return c.leaseWaiting(ctx, req, secs, start)
	case err == nil:
		return lease, nil
	case ctx.Err() != nil || !retryable(err):
		return domain.Lease{}, fmt.Errorf("lease: %w", err)
	default:
		return domain.Lease{}, fmt.Errorf("lease: every reader failed %d times: %w", rounds, err)
	}
}

// leaseRound is one attempt of Lease: count readers once each, from start.
// It returns the first lease with messages, else an empty lease when a reader
// answered, else the last transient error (a Permanent one at once).
func (c *Client) leaseRound(ctx context.Context, body []byte, secs, start, count int) (domain.Lease, error) {
	n := len(c.readers)
	var (
		empty    domain.Lease
		answered bool
		lastErr  error
	)
	for i := range count {
		idx := (start + i) % n
		var resp leaseResponse
		err := c.post(ctx, c.readers[idx]+PathLease, body, &resp)
		if err == nil {
			lease := resp.toDomain()
			if len(lease.Messages) == 0 {
				if !answered {
					empty, answered = lease, true
				}
				continue
			}
			if err := c.route(ctx, lease, idx, secs); err != nil {
				return domain.Lease{}, retry.Permanent(err)
			}
			return lease, nil
		}
		if ctx.Err() != nil {
			return domain.Lease{}, err
		}
		if !retryable(err) {
			return domain.Lease{}, retry.Permanent(fmt.Errorf("from %s: %w", c.readers[idx], err))
		}
		lastErr = err
		if i < count-1 {
			c.retried("lease", err) // the next reader follows at once
		}
	}
	if answered {
		return empty, nil
	}
	return domain.Lease{}, lastErr
}

// route records which reader granted lease, for its ack or release.
func (c *Client) route(ctx context.Context, lease domain.Lease, idx, secs int) error {
	// Expiry on our clock, not the server's: no skew to reason about.
	expires := time.Now().Add(time.Duration(secs)*time.Second + routeGrace)
	// Fails only when ctx ended or Close ran; the lease then expires on its
	// reader and is redelivered.
	return c.routes.put(ctx, lease.ID, idx, expires)
}

// leaseWaiting sends the waiting lease to one reader, idx (the round's
// first, which rotates between calls, so a client's workers wait on every
// reader between them). Not to all at once: each reader is notified of
// every commit to the topic, so two waiting readers would both grant, and
// the lease given back would count a delivery against messages nobody
// processed — under a steady trickle, enough to dead-letter good messages.
func (c *Client) leaseWaiting(ctx context.Context, req ports.LeaseRequest, secs, idx int) (domain.Lease, error) {
	body, err := json.Marshal(leaseRequest{Topic: req.Topic, ConsumerID: req.ConsumerID, Max: req.Max,
		LeaseSeconds: secs, WaitMS: int64((req.Wait + time.Millisecond - 1) / time.Millisecond)})
	if err != nil {
		return domain.Lease{}, fmt.Errorf("lease: %w: encode request: %w", ports.ErrInvalidArgument, err)
	}
	lease, err := c.leaseRound(ctx, body, secs, idx, 1)
	if err != nil {
		return domain.Lease{}, fmt.Errorf("lease: waiting on %s: %w", c.readers[idx], err)
	}
	return lease, nil
}

// leaseSeconds rounds d up to whole seconds, the protocol's unit.
func leaseSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func (r leaseResponse) toDomain() domain.Lease {
	l := domain.Lease{
		ID:         r.LeaseID,
		Topic:      r.Topic,
		ConsumerID: r.ConsumerID,
		ExpiresAt:  r.ExpiresAt,
		Messages:   make([]domain.Message, len(r.Messages)),
	}
	for i, m := range r.Messages {
		l.Messages[i] = domain.Message{
			ID:         m.MsgUUID,
			Topic:      r.Topic,
			Partition:  m.Partition,
			Payload:    m.Payload,
			CreatedAt:  m.CreatedAt,
			Deliveries: m.Deliveries,
		}
	}
	return l
}

// Ack acknowledges the lease at the reader that served it.
func (c *Client) Ack(ctx context.Context, ref ports.LeaseRef) error {
	return c.settle(ctx, "ack", PathAck, ref)
}

// Release returns the lease's messages to ready at the reader that served it.
func (c *Client) Release(ctx context.Context, ref ports.LeaseRef) error {
	return c.settle(ctx, "release", PathRelease, ref)
}

// settle sends an ack or release to the reader that served the lease. When
// the route is unknown (it was dropped, or another Client leased it), it
// asks every reader: only the one holding the lease can accept it, the others
// answer 409 and change nothing.
func (c *Client) settle(ctx context.Context, op, path string, ref ports.LeaseRef) error {
	if c.closed() {
		return fmt.Errorf("%s: %w", op, ports.ErrClosed)
	}
	if len(c.readers) == 0 {
		return fmt.Errorf("%s: %w: no reader URLs configured", op, ports.ErrInvalidArgument)
	}
	op = op + " lease " + ref.LeaseID.String()
	req := leaseRefRequest{Topic: ref.Topic, ConsumerID: ref.ConsumerID, LeaseID: ref.LeaseID.String()}
	if path == PathRelease {
		req.Reason = ref.Reason
	}
	idx, ok, err := c.routes.get(ctx, ref.LeaseID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if ok || len(c.readers) == 1 {
		err := c.call(ctx, op, c.readers[idx]+path, req, &statusResponse{})
		if ok && errors.Is(err, ports.ErrLeaseExpired) {
			_ = c.routes.forget(ctx, ref.LeaseID) // best effort: the route expires anyway
		}
		return err
	}
	var expired, other error
	for _, reader := range c.readers {
		err := c.call(ctx, op, reader+path, req, &statusResponse{})
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return err
		case errors.Is(err, ports.ErrLeaseExpired):
			expired = err
		case errors.Is(err, ports.ErrInvalidArgument):
			return err // every reader would say the same
		default:
			other = err
		}
	}
	if other != nil {
		// A reader we could not reach may hold the lease: do not claim it expired.
		return other
	}
	return expired
}
