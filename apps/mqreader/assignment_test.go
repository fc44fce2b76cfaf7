package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func writeAssignment(t *testing.T, path string, replicas int) {
	t.Helper()
	a, err := domain.Assign("mqreader", replicas)
	require.NoError(t, err)
	b, err := json.Marshal(a)
	require.NoError(t, err)
	// Write then rename, as the kubelet swaps a ConfigMap mount atomically.
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func TestRangeFromAssignmentFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), domain.AssignmentKey)
	writeAssignment(t, path, 3)
	for pod, want := range map[string]*domain.PartitionRange{
		"mqreader-0": {First: 0, Last: 85},
		"mqreader-2": {First: 171, Last: 255},
		"mqreader-7": nil, // not assigned: serves nothing, not ready
	} {
		env := platform.NewEnvFrom(map[string]string{"PARTITIONS_FILE": path, "POD_NAME": pod})
		require.Equal(t, want, partitionRange(env), pod)
		require.NoError(t, env.Err())
	}
	missing := platform.NewEnvFrom(map[string]string{"PARTITIONS_FILE": path + ".absent", "POD_NAME": "mqreader-0"})
	require.Nil(t, partitionRange(missing), "no file yet: no range")
	require.NoError(t, missing.Err())

	require.NoError(t, os.WriteFile(path, []byte("{"), 0o644))
	broken := platform.NewEnvFrom(map[string]string{"PARTITIONS_FILE": path, "POD_NAME": "mqreader-0"})
	_ = partitionRange(broken)
	require.ErrorContains(t, broken.Err(), "PARTITIONS_FILE")
}

// A changed ConfigMap is noticed and reported; the served range stays until
// the controller's rolling restart.
func TestAssignmentChangeIsReported(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), domain.AssignmentKey)
	writeAssignment(t, path, 1)
	base := apptest.Start(t, options, apptest.WithTokens(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t),
		"PARTITIONS_FILE": path, "POD_NAME": "mqreader-0", "PARTITIONS_WATCH_INTERVAL_MS": "20"}))
	stale := func() string {
		_, body := apptest.Fetch(t, http.MethodGet, base+"/metrics", "")
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "mqreader_partition_assignment_stale ") {
				return strings.TrimPrefix(line, "mqreader_partition_assignment_stale ")
			}
		}
		return ""
	}
	require.Eventually(t, func() bool { return stale() == "0" }, 10*time.Second, 20*time.Millisecond)
	writeAssignment(t, path, 2) // mqreader-0 now owns 0-127
	require.Eventually(t, func() bool { return stale() == "1" }, 10*time.Second, 20*time.Millisecond)
	apptest.RequireProbesOK(t, base) // still serving its old range until restarted
	writeAssignment(t, path, 1)
	require.Eventually(t, func() bool { return stale() == "0" }, 10*time.Second, 20*time.Millisecond)
}
