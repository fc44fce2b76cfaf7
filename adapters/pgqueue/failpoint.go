//go:build !faults

package pgqueue

// Failpoints are compiled in only with the "faults" build tag (see
// failpoint_faults.go), for the fault-injection suite; here they are no-ops.

func failpointBeforeCommit() {}

func failpointAfterCommit() {}
