package leasebook_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/internal/leasebook"
)

func TestHeapOrdersByDeadline(t *testing.T) {
	t.Parallel()
	var h leasebook.Heap[int]
	base := time.Unix(1000, 0)
	var entries []*leasebook.Entry[int]
	for i, off := range rand.Perm(100) {
		entries = append(entries, h.Push(i, base.Add(time.Duration(off)*time.Second)))
	}
	// Remove every third entry, move every fifth one to the very end.
	removed := map[int]bool{}
	for i, e := range entries {
		switch {
		case i%3 == 0:
			h.Remove(e)
			h.Remove(e) // twice is harmless
			removed[i] = true
			require.False(t, e.Queued())
		case i%5 == 0:
			h.Fix(e, base.Add(time.Hour+time.Duration(i)))
		}
	}
	require.Equal(t, 100-len(removed), h.Len())
	at, ok := h.Next()
	require.True(t, ok)
	_, due := h.PopDue(at.Add(-time.Nanosecond))
	require.False(t, due, "nothing is due before the earliest deadline")

	var got []time.Time
	for {
		e, ok := h.PopDue(base.Add(2 * time.Hour))
		if !ok {
			break
		}
		require.False(t, removed[e.Value], "a removed entry came out")
		require.False(t, e.Queued())
		got = append(got, e.At())
	}
	require.Len(t, got, 100-len(removed))
	require.True(t, slices.IsSortedFunc(got, func(a, b time.Time) int { return a.Compare(b) }), "deadlines in order")
	_, ok = h.Next()
	require.False(t, ok)

	e := entries[1]
	h.Requeue(e, base)
	require.Equal(t, e, h.Peek())
}

func TestRecentForgetsOldestFirst(t *testing.T) {
	t.Parallel()
	r := leasebook.NewRecent[int, string](3)
	for i := range 5 {
		r.Put(i, "v")
	}
	require.Equal(t, 3, r.Len())
	for i, want := range []bool{false, false, true, true, true} {
		_, ok := r.Get(i)
		require.Equal(t, want, ok, "key %d", i)
	}
	r.Put(4, "updated") // an update keeps its place
	v, _ := r.Get(4)
	require.Equal(t, "updated", v)
}

// A key deleted and added again must not be forgotten early when the slot it
// first had comes round (the bug of the copies this package replaced).
func TestRecentDeleteThenPut(t *testing.T) {
	t.Parallel()
	r := leasebook.NewRecent[string, int](2)
	r.Put("a", 1)
	r.Delete("a")
	r.Put("b", 2)
	r.Put("a", 3) // newest now; its old slot is evicted next
	r.Put("c", 4) // evicts the stale "a" slot, not the live "a"
	v, ok := r.Get("a")
	require.True(t, ok, "the re-added key was forgotten with its stale slot")
	require.Equal(t, 3, v)
	require.LessOrEqual(t, r.Len(), 2)
}

func TestAlarm(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a := leasebook.NewAlarm()
		defer a.Stop()
		require.Nil(t, a.C, "a new alarm is off")
		start := time.Now()
		a.Set(start.Add(time.Minute), true)
		a.Set(start.Add(time.Minute), true) // same deadline: no re-arm
		fired := <-a.C
		a.Fired()
		require.Equal(t, time.Minute, fired.Sub(start))
		require.Nil(t, a.C)

		a.Set(time.Now().Add(time.Second), true)
		a.Set(time.Time{}, false)
		require.Nil(t, a.C, "stopped")
	})
}
