package mqhttp

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestRouteTable(t *testing.T) {
	t.Parallel()
	type step struct {
		put     *int          // reader to put for the step's id
		ttl     time.Duration // of a put
		forget  bool
		advance time.Duration // fake time passed before the lookup
		want    int           // -1: unknown
		size    *int          // routes held after the step, when set
	}
	intp := func(i int) *int { return &i }
	tests := []struct {
		name  string
		max   int
		ids   int    // distinct lease ids, used round-robin by the steps
		steps []step // step i acts on id i % ids
	}{
		{"known until expiry", 10, 1, []step{
			{put: intp(2), ttl: time.Minute, want: 2},
			{advance: 59 * time.Second, want: 2},
			{advance: 2 * time.Second, want: -1},
		}},
		{"swept after expiry", 10, 1, []step{
			{put: intp(1), ttl: time.Second, want: 1, size: intp(1)},
			{advance: 2 * sweepEvery, want: -1, size: intp(0)},
		}},
		{"forget", 10, 1, []step{
			{put: intp(0), ttl: time.Minute, want: 0},
			{forget: true, want: -1},
		}},
		{"re-put extends", 10, 1, []step{
			{put: intp(0), ttl: time.Second, want: 0},
			{put: intp(1), ttl: time.Minute, want: 1},
			{advance: 2 * sweepEvery, want: 1},
		}},
		{"over the bound the soonest expiring go", 2, 3, []step{
			{put: intp(0), ttl: time.Second, want: 0},     // id 0
			{put: intp(1), ttl: time.Minute, want: 1},     // id 1
			{put: intp(2), ttl: 2 * time.Minute, want: 2}, // id 2 evicts id 0
			{want: -1}, // id 0
			{want: 1},  // id 1
			{want: 2},  // id 2
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				rt := newRouteTable(time.Now, tc.max)
				defer rt.close()
				ids := make([]uuid.UUID, tc.ids)
				for i := range ids {
					ids[i] = uuid.New()
				}
				for i, st := range tc.steps {
					id := ids[i%len(ids)]
					switch {
					case st.put != nil:
						require.NoError(t, rt.put(t.Context(), id, *st.put, time.Now().Add(st.ttl)))
					case st.forget:
						require.NoError(t, rt.forget(t.Context(), id))
					}
					time.Sleep(st.advance) // fake time inside the bubble
					synctest.Wait()
					got, ok, err := rt.get(t.Context(), id)
					require.NoError(t, err)
					if st.want < 0 {
						require.False(t, ok, "step %d: route still known", i)
					} else {
						require.True(t, ok, "step %d: route lost", i)
						require.Equal(t, st.want, got, "step %d", i)
					}
					if st.size != nil {
						n, err := rt.size(t.Context())
						require.NoError(t, err)
						require.Equal(t, *st.size, n, "step %d: routes held", i)
					}
				}
			})
		})
	}
}

func TestRouteTableClosed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := newRouteTable(time.Now, 10)
		rt.close()
		rt.close() // idempotent
		_, _, err := rt.get(t.Context(), uuid.New())
		require.Error(t, err)
		require.Error(t, rt.put(t.Context(), uuid.New(), 0, time.Now()))
	})
}
