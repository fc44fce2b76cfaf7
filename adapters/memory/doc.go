// Package memory holds the in-memory adapters: queue and telemetry store, for
// tests and a no-database mode. Nothing here survives a restart.
//
// Each adapter keeps its state in one owner goroutine (an actor): callers send
// it a request carrying a 1-buffered reply channel and wait on the reply, their
// context and the actor's done channel. There are no mutexes.
//
// The Queue keeps the ports.Queue contract except durability: Publish returns
// once messages are in memory, and Close (or a crash) loses them. Within a
// topic messages sit in per-partition FIFOs (partition = domain.PartitionOf of
// the message key, else the payload's "gpu_uuid", else the message id); Lease
// takes round-robin across partitions and in order within one. A message
// whose lease ends without an ack after QueueOptions.MaxDeliveries
// deliveries is moved to the queue's dead letters (DeadLetters; the last
// 10,000 kept) instead of being offered again.
package memory
