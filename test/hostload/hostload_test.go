package hostload_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/test/hostload"
)

func TestAverage(t *testing.T) {
	t.Parallel()
	got := hostload.Average()
	if _, err := os.Stat("/proc/loadavg"); err != nil {
		require.Empty(t, got, "no /proc/loadavg")
		return
	}
	f := strings.Fields(got)
	require.Len(t, f, 3, "%q", got)
	for _, v := range f {
		_, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err, "%q", got)
	}
}
