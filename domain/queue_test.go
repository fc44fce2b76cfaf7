package domain_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

func TestMessageID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		a, b    [2]string // (topic, key) pairs
		same    bool
		version uuid.Version
	}{
		{name: "same key and topic", a: [2]string{"telemetry", "k1"}, b: [2]string{"telemetry", "k1"}, same: true, version: 5},
		{name: "other topic", a: [2]string{"telemetry", "k1"}, b: [2]string{"other", "k1"}, version: 5},
		{name: "other key", a: [2]string{"telemetry", "k1"}, b: [2]string{"telemetry", "k2"}, version: 5},
		{name: "separator is not ambiguous", a: [2]string{"ab", "c"}, b: [2]string{"a", "bc"}, version: 5},
		{name: "no key is random", a: [2]string{"telemetry", ""}, b: [2]string{"telemetry", ""}, version: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := domain.MessageID(tt.a[0], tt.a[1]), domain.MessageID(tt.b[0], tt.b[1])
			require.Equal(t, tt.version, a.Version())
			require.Equal(t, tt.version, b.Version())
			require.NotEqual(t, uuid.Nil, a)
			if tt.same {
				require.Equal(t, a, b)
			} else {
				require.NotEqual(t, a, b)
			}
		})
	}
}

// TestMessageIDGolden pins the derived id: it is stored, and a retry after an
// upgrade must still map to the same message.
func TestMessageIDGolden(t *testing.T) {
	t.Parallel()
	require.Equal(t, uuid.MustParse("ce1c3cdc-6a16-5e8e-a557-eb0de3c8ee87"), domain.MessageID("telemetry", "row-1"))
}
