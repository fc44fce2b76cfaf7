package streamer

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRatePacerHoldsTheMeanRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRatePacer(2_000) // a gap of 500µs
		start := time.Now()
		for range 1_000 {
			require.NoError(t, p.wait(t.Context()))
		}
		// The 1,000th message is due 999 gaps after the first.
		require.Equal(t, 999*500*time.Microsecond, time.Since(start))
	})
}

func TestRatePacerForgetsALongStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newRatePacer(1_000)
		require.NoError(t, p.wait(t.Context()))
		time.Sleep(time.Second) // a stall far past maxRateDebt
		resumed := time.Now()
		for range 11 {
			require.NoError(t, p.wait(t.Context()))
		}
		// No burst of the 1,000 messages the stall "owed": the schedule
		// restarts at the first message after it.
		require.Equal(t, 10*time.Millisecond, time.Since(resumed))
	})
}

func TestRatePacerUnpacedAndCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		unpaced := newRatePacer(0)
		for range 100 {
			require.NoError(t, unpaced.wait(t.Context()))
		}
		require.Zero(t, time.Since(start))

		slow := newRatePacer(1) // one a second
		require.NoError(t, slow.wait(t.Context()))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.ErrorIs(t, slow.wait(ctx), context.Canceled)
	})
}
