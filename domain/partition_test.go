package domain_test

import (
	"encoding/csv"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

const shippedCSV = "../deployments/data/dcgm_metrics_20250718_134233.csv"

// fnv1a32 is FNV-1a 32-bit written out from its definition, independent of
// hash/fnv, so a change of PartitionOf's hash cannot pass unnoticed.
func fnv1a32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// shippedGPUs returns the distinct GPU UUIDs of the shipped CSV.
func shippedGPUs(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(shippedCSV)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	col := -1
	for i, h := range recs[0] {
		if h == "uuid" {
			col = i
		}
	}
	require.GreaterOrEqual(t, col, 0, "uuid column")
	seen := map[string]bool{}
	var out []string
	for _, r := range recs[1:] {
		if !seen[r[col]] {
			seen[r[col]] = true
			out = append(out, r[col])
		}
	}
	return out
}

// TestPartitionOfGolden pins the partition of real GPU UUIDs: the hash is
// part of the queue's on-disk format.
func TestPartitionOfGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		want int
	}{
		{"GPU-5fd4f087-86f3-7a43-b711-4771313afc50", 34},
		{"GPU-bc7a12ab-4998-fdc5-0785-2678a929a142", 29},
		{"GPU-6c8915d7-f04d-beb9-3e8a-e06f97ca4480", 41},
		{"GPU-9ba418e1-59be-2f2e-6031-e3f6b7c64ad7", 63},
		{"GPU-557ab48c-efdb-8390-2d6f-ac4248d9442c", 202},
		{"GPU-36d6a969-caf0-2674-26d9-1eb517893df7", 204},
		{"", 197}, // the FNV-1a offset basis 0x811c9dc5
		{"a", 44}, // 0xe40c292c
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, domain.PartitionOf(tt.key))
			require.Equal(t, tt.want, int(fnv1a32(tt.key)%domain.NumPartitions))
		})
	}
}

func TestPartitionOfMatchesFNV1a(t *testing.T) {
	t.Parallel()
	keys := shippedGPUs(t)
	for i := range 1000 {
		keys = append(keys, fmt.Sprintf("key-%d", i), strings.Repeat("x", i%40))
	}
	for _, k := range keys {
		p := domain.PartitionOf(k)
		require.Equal(t, int(fnv1a32(k)%domain.NumPartitions), p, "key %q", k)
		require.True(t, p >= 0 && p < domain.NumPartitions, "key %q", k)
	}
}

// TestShippedGPUsSpread checks the cluster's GPUs spread over the
// partitions (247 random keys fill about 158 of 256), unlike gpu_id, which
// would use 8.
func TestShippedGPUsSpread(t *testing.T) {
	t.Parallel()
	gpus := shippedGPUs(t)
	require.Len(t, gpus, 247)
	parts := map[int]bool{}
	for _, g := range gpus {
		parts[domain.PartitionOf(g)] = true
	}
	require.GreaterOrEqual(t, len(parts), 150)
}

func TestSplitPartitions(t *testing.T) {
	t.Parallel()
	for n := 1; n <= domain.NumPartitions; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			ranges, err := domain.SplitPartitions(n)
			require.NoError(t, err)
			require.Len(t, ranges, n)
			next, lo, hi := 0, domain.NumPartitions, 0
			for i, r := range ranges {
				require.NoError(t, r.Validate(), "range %d", i)
				require.Equal(t, next, r.First, "range %d starts where the previous ended", i)
				next = r.Last + 1
				lo, hi = min(lo, r.Len()), max(hi, r.Len())
			}
			require.Equal(t, domain.NumPartitions, next, "ranges cover every partition")
			require.LessOrEqual(t, hi-lo, 1, "sizes differ by at most one")
			for p := range domain.NumPartitions {
				owners := 0
				for _, r := range ranges {
					if r.Contains(p) {
						owners++
					}
				}
				require.Equal(t, 1, owners, "partition %d", p)
			}
		})
	}
}

func TestSplitPartitionsRejects(t *testing.T) {
	t.Parallel()
	for _, n := range []int{-1, 0, domain.NumPartitions + 1, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			ranges, err := domain.SplitPartitions(n)
			require.ErrorIs(t, err, domain.ErrInvalidRange)
			require.Nil(t, ranges)
		})
	}
}

func TestSplitPartitionsExamples(t *testing.T) {
	t.Parallel()
	ranges, err := domain.SplitPartitions(3)
	require.NoError(t, err)
	require.Equal(t, []domain.PartitionRange{{First: 0, Last: 85}, {First: 86, Last: 170}, {First: 171, Last: 255}}, ranges)
}

func TestParseRange(t *testing.T) {
	t.Parallel()
	valid := []struct {
		in   string
		want domain.PartitionRange
	}{
		{"0-255", domain.PartitionRange{First: 0, Last: 255}},
		{"0-127", domain.PartitionRange{First: 0, Last: 127}},
		{"128-255", domain.PartitionRange{First: 128, Last: 255}},
		{" 5 - 10 ", domain.PartitionRange{First: 5, Last: 10}},
		{"7", domain.PartitionRange{First: 7, Last: 7}},
		{"255-255", domain.PartitionRange{First: 255, Last: 255}},
	}
	for _, tt := range valid {
		t.Run("valid "+tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := domain.ParseRange(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			back, err := domain.ParseRange(got.String())
			require.NoError(t, err)
			require.Equal(t, got, back, "String round-trips")
		})
	}
	invalid := []string{"", " ", "-", "a-b", "0-", "-5", "-1-5", "5-3", "0-256", "256", "1-2-3", "0x10", "1.5-3", "0..255"}
	for _, in := range invalid {
		t.Run(fmt.Sprintf("invalid %q", in), func(t *testing.T) {
			t.Parallel()
			_, err := domain.ParseRange(in)
			require.ErrorIs(t, err, domain.ErrInvalidRange)
		})
	}
}

func TestPartitionRange(t *testing.T) {
	t.Parallel()
	r := domain.PartitionRange{First: 10, Last: 20}
	require.Equal(t, 11, r.Len())
	require.Equal(t, "10-20", r.String())
	tests := []struct {
		p    int
		want bool
	}{{9, false}, {10, true}, {15, true}, {20, true}, {21, false}}
	for _, tt := range tests {
		require.Equal(t, tt.want, r.Contains(tt.p), "partition %d", tt.p)
	}
	for _, bad := range []domain.PartitionRange{{First: -1, Last: 3}, {First: 3, Last: 2}, {First: 0, Last: 256}} {
		require.ErrorIs(t, bad.Validate(), domain.ErrInvalidRange, "%+v", bad)
	}
}
