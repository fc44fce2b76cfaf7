package mqhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/ports"
)

// Every error the server can meet gets its status and stable code, wrapped
// or not; only invalid-argument answers carry the error's text.
func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{tooLarge("big"), http.StatusRequestEntityTooLarge, CodePayloadTooLarge},
		{badRequest("bad %d", 1), http.StatusBadRequest, CodeInvalidArgument},
		{ports.ErrLeaseExpired, http.StatusConflict, CodeLeaseExpired},
		{ports.ErrNotFound, http.StatusNotFound, CodeNotFound},
		{ports.ErrBackpressure, http.StatusTooManyRequests, CodeBackpressure},
		{ports.ErrClosed, http.StatusServiceUnavailable, CodeClosed},
		{ports.ErrUnavailable, http.StatusServiceUnavailable, CodeUnavailable},
		{context.DeadlineExceeded, http.StatusGatewayTimeout, CodeTimeout},
		{context.Canceled, http.StatusServiceUnavailable, CodeUnavailable},
		{errors.New("secret internals"), http.StatusInternalServerError, CodeInternal},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			status, code, message := classify(fmt.Errorf("op: %w", tc.err))
			require.Equal(t, tc.status, status)
			require.Equal(t, tc.code, code)
			if tc.code != CodeInvalidArgument && tc.code != CodePayloadTooLarge {
				require.NotContains(t, message, "op:", "internals never leak")
			}
		})
	}
}
