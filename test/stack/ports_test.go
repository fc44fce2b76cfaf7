package stack

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPortsStayBelowTheEphemeralRangeAndNeverRepeat(t *testing.T) {
	t.Parallel()
	var p Ports
	seen := map[string]bool{}
	for range 200 {
		addr, err := p.Addr()
		require.NoError(t, err)
		require.False(t, seen[addr], "%s handed out twice", addr)
		seen[addr] = true
		host, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1", host)
		n, err := strconv.Atoi(port)
		require.NoError(t, err)
		require.True(t, n >= 20000 && n < 32768, "port %d outside 20000–32767", n)
	}
	// A port someone holds is skipped.
	var q Ports
	addr, err := q.Addr()
	require.NoError(t, err)
	held, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	defer held.Close()
	_, port, _ := net.SplitHostPort(addr)
	q.next, _ = strconv.Atoi(port)
	next, err := q.Addr()
	require.NoError(t, err)
	require.NotEqual(t, addr, next)
}
