package stack

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCommandExitCodes: help exits 0 without running, a bad flag 2, a
// failed run 1, each error printed after the command's name.
func TestCommandExitCodes(t *testing.T) {
	t.Parallel()
	parse := func(args []string) (string, error) {
		switch args[0] {
		case "-h":
			return "", flag.ErrHelp
		case "-bad":
			return "", errors.New("flag provided but not defined: -bad")
		}
		return args[0], nil
	}
	run := func(_ context.Context, cfg string, stdout io.Writer) error {
		if cfg == "fail" {
			return errors.New("the database is gone")
		}
		_, err := io.WriteString(stdout, "ran "+cfg)
		return err
	}
	tests := []struct {
		arg, stdout, stderr string
		code                int
	}{
		{"-h", "", "", 0},
		{"-bad", "", "bench: flag provided but not defined: -bad\n", 2},
		{"fail", "", "bench: the database is gone\n", 1},
		{"ok", "ran ok", "", 0},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		code := command(t.Context(), "bench", []string{tt.arg}, &stdout, &stderr, parse, run)
		require.Equal(t, tt.code, code, tt.arg)
		require.Equal(t, tt.stdout, stdout.String(), tt.arg)
		require.Equal(t, tt.stderr, stderr.String(), tt.arg)
	}
}
