//go:build faults

package pgqueue

import (
	"os"
	"time"
)

// Test-only failpoints, compiled in only with the "faults" build tag, so the
// fault-injection suite (test/faults) can kill mqwriter on either side of a
// flush's COMMIT: PGQUEUE_FAILPOINT_BEFORE_COMMIT and
// PGQUEUE_FAILPOINT_AFTER_COMMIT hold a Go duration a flusher pauses for
// before it writes a batch, or after the batch committed and before its
// publishers are answered.
var (
	beforeCommitPause = failpointDuration("PGQUEUE_FAILPOINT_BEFORE_COMMIT")
	afterCommitPause  = failpointDuration("PGQUEUE_FAILPOINT_AFTER_COMMIT")
)

func failpointDuration(name string) time.Duration {
	d, err := time.ParseDuration(os.Getenv(name))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

func failpointBeforeCommit() { pause(beforeCommitPause) }

func failpointAfterCommit() { pause(afterCommitPause) }

func pause(d time.Duration) {
	if d > 0 {
		time.Sleep(d)
	}
}
