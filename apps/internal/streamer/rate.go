package streamer

import (
	"context"
	"time"
)

// maxRateDebt is how far behind its schedule a rate pacer may fall before it
// forgets the debt: after a stall (backpressure, a queue outage) the
// streamer resumes at its rate instead of bursting to catch up.
const maxRateDebt = 100 * time.Millisecond

// ratePacer holds emissions to a rate in messages per second, on average:
// message n is due n/rate after the start, and the pacer sleeps only when
// the next message is not yet due. A sleep that overshoots (timers are
// coarser than the gap between messages above ~1,000 msgs/s) leaves the
// following messages due at once, so they go out back to back: small bursts
// at an exact mean rate, one timer wake-up per burst rather than one per
// message. Owned by the reader goroutine.
type ratePacer struct {
	gap   time.Duration // 1/rate; 0 = unpaced
	start time.Time
	sent  int64
}

func newRatePacer(rate int) *ratePacer {
	if rate <= 0 {
		return &ratePacer{}
	}
	return &ratePacer{gap: time.Second / time.Duration(rate)}
}

// wait returns when the next message is due, or the context's error.
func (p *ratePacer) wait(ctx context.Context) error {
	if p.gap == 0 {
		return nil
	}
	now := time.Now()
	if p.start.IsZero() {
		p.start = now
	}
	due := p.start.Add(time.Duration(p.sent) * p.gap)
	p.sent++
	if late := now.Sub(due); late > maxRateDebt {
		p.start, p.sent = now, 1
		return nil
	}
	if d := due.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
