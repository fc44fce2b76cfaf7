// Package faults is the fault-injection and hostile-input suite (build tag
// "faults", run by `make test-faults`). It starts the real binaries on
// loopback against a PostgreSQL cluster of its own, drives publishes from the
// test with a recorded history, injects faults (kill -9, SIGSTOP, SIGTERM,
// PostgreSQL stopped, partition ranges changed, hostile requests, poison
// messages, telemetry fields beyond their bounds, byte budgets, a soak with
// random kills, the streaming publish path under dropped connections and
// kill -9 of mqwriter and of the streamer), and after each scenario checks the
// queue's promises from that history: every acknowledged publish is stored
// exactly once, nothing is stored that was never published, redeliveries
// are bounded, and the backlog drains within a stated time.
//
// FAULTS_SOAK (a Go duration, default 5m) shortens the soak for quick runs;
// FAULTS_SEED shifts every scenario's seed.
package faults
