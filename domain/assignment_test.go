package domain_test

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

func TestAssignmentRoundTrip(t *testing.T) {
	t.Parallel()
	a, err := domain.Assign("mqreader", 3)
	require.NoError(t, err)
	b, err := json.Marshal(a)
	require.NoError(t, err)
	require.JSONEq(t, `{"replicas":3,"ranges":{"mqreader-0":"0-85","mqreader-1":"86-170","mqreader-2":"171-255"}}`, string(b))

	var back domain.Assignment
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, a, back)
	r, ok := back.For("mqreader-1")
	require.True(t, ok)
	require.Equal(t, domain.PartitionRange{First: 86, Last: 170}, r)
	_, ok = back.For("mqreader-3")
	require.False(t, ok)
}

func TestAssignmentRejectsOverlapsAndBadRanges(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"overlap":  `{"replicas":2,"ranges":{"a-0":"0-128","a-1":"128-255"}}`,
		"inverted": `{"replicas":1,"ranges":{"a-0":"9-3"}}`,
		"outside":  `{"replicas":1,"ranges":{"a-0":"0-256"}}`,
		"garbage":  `{"replicas":1,"ranges":{"a-0":"x"}}`,
		"not json": `{`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var a domain.Assignment
			require.Error(t, json.Unmarshal([]byte(in), &a))
		})
	}
}

func TestRecordValidate(t *testing.T) {
	t.Parallel()
	v := 1.0
	good := domain.Record{MsgUUID: domain.MessageID("t", "k"), Point: domain.Point{
		GPUUUID: "GPU-1", MetricName: "DCGM_FI_DEV_GPU_UTIL", Timestamp: time.Unix(1, 0), Value: &v}}
	require.NoError(t, domain.ValidateRecords([]domain.Record{good}))
	for name, mutate := range map[string]func(*domain.Record){
		"nil msg uuid":      func(r *domain.Record) { r.MsgUUID = uuid.Nil },
		"invalid point":     func(r *domain.Record) { r.GPUUUID = "" },
		"gpu index too big": func(r *domain.Record) { r.GPUIndex = math.MaxInt32 + 1 },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := good
			mutate(&r)
			err := domain.ValidateRecords([]domain.Record{good, r})
			require.ErrorIs(t, err, domain.ErrInvalidPoint)
			require.ErrorIs(t, err, domain.ErrInvalidArgument, "a store refuses the batch as invalid")
			require.ErrorContains(t, err, "record 1")
		})
	}
}
