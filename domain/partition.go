package domain

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// NumPartitions is the fixed number of queue partitions. Readers own
// contiguous ranges of them; the count never changes, so a message's partition
// never does either.
const NumPartitions = 256

// PartitionOf returns the partition of a partition key (the GPU UUID for
// telemetry): FNV-1a 32-bit of the key's bytes, modulo NumPartitions. The
// hash is part of the on-disk format (queue_messages.partition_key): changing
// it strands queued messages on the wrong readers, so golden tests pin it.
func PartitionOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % NumPartitions)
}

// PartitionRange is an inclusive range of partitions [First, Last].
type PartitionRange struct {
	First int `json:"first"`
	Last  int `json:"last"`
}

// Contains reports whether partition p is in the range.
func (r PartitionRange) Contains(p int) bool { return p >= r.First && p <= r.Last }

// Len is the number of partitions in the range.
func (r PartitionRange) Len() int { return r.Last - r.First + 1 }

// String formats the range as "first-last", the form ParseRange reads.
func (r PartitionRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// Validate checks the range lies within [0, NumPartitions) and is not inverted.
func (r PartitionRange) Validate() error {
	if r.First < 0 || r.Last >= NumPartitions || r.First > r.Last {
		return fmt.Errorf("%w: %d-%d (want 0 <= first <= last <= %d)", ErrInvalidRange, r.First, r.Last, NumPartitions-1)
	}
	return nil
}

// ParseRange reads "first-last" (or a single partition "n").
func ParseRange(s string) (PartitionRange, error) {
	s = strings.TrimSpace(s)
	lo, hi, found := strings.Cut(s, "-")
	if !found {
		hi = lo
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(lo))
	last, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil {
		return PartitionRange{}, fmt.Errorf("%w: %q (want \"first-last\", e.g. \"0-127\")", ErrInvalidRange, s)
	}
	r := PartitionRange{First: first, Last: last}
	return r, r.Validate()
}

// SplitPartitions divides the NumPartitions partitions into n contiguous,
// non-overlapping ranges covering all of them, in order; the first
// NumPartitions%n ranges are one longer. n below 1 or above NumPartitions is
// an error: a reader with no partition serves nothing.
func SplitPartitions(n int) ([]PartitionRange, error) {
	if n < 1 || n > NumPartitions {
		return nil, fmt.Errorf("%w: cannot split %d partitions into %d ranges", ErrInvalidRange, NumPartitions, n)
	}
	ranges := make([]PartitionRange, 0, n)
	size, extra := NumPartitions/n, NumPartitions%n
	first := 0
	for i := range n {
		l := size
		if i < extra {
			l++
		}
		ranges = append(ranges, PartitionRange{First: first, Last: first + l - 1})
		first += l
	}
	return ranges, nil
}
