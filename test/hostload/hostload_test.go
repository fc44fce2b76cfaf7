package hostload

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAverage reads three numbers where /proc/loadavg exists, else nothing.
func TestAverage(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/loadavg"); err != nil {
		require.Empty(t, Average(), "no /proc/loadavg")
		return
	}
	got := Average()
	f := strings.Fields(got)
	require.Len(t, f, 3, "%q", got)
	for _, v := range f {
		_, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err, "%q", got)
	}
}
