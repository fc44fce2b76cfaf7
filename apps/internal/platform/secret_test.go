package platform_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

func TestSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	one := filepath.Join(dir, "one")
	require.NoError(t, os.WriteFile(one, []byte("# mounted Secret\n\n  s3cret-value  \n"), 0o600))
	two := filepath.Join(dir, "two")
	require.NoError(t, os.WriteFile(two, []byte("a\nb\n"), 0o600))
	tests := []struct {
		name, value, file, want, err string
	}{
		{name: "variable", value: "v", want: "v"},
		{name: "file, comments and blanks ignored", file: one, want: "s3cret-value"},
		{name: "neither", want: ""},
		{name: "both", value: "v", file: one, err: "X and X_FILE are both set"},
		{name: "two in the file", file: two, err: "want exactly one secret, found 2"},
		{name: "missing file", file: filepath.Join(dir, "nope"), err: "X_FILE: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := platform.NewEnvFrom(nil)
			got := e.Secret("X", tt.value, "X_FILE", tt.file)
			if tt.err != "" {
				require.ErrorContains(t, e.Err(), tt.err)
				require.Empty(t, got)
				return
			}
			require.NoError(t, e.Err())
			require.Equal(t, tt.want, got)
		})
	}
	require.Equal(t, []string{"t1", "t2"}, platform.SecretLines([]byte("t1\n# c\n\n t2 \n")))
}
