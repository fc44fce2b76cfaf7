package freeport

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPoolStaysBelowTheEphemeralRangeAndNeverRepeats(t *testing.T) {
	t.Parallel()
	lo, hi := bounds()
	require.Equal(t, 20000, lo)
	require.LessOrEqual(t, hi, 32768)
	var p Pool
	seen := map[string]bool{}
	for range 200 {
		addr, err := p.Addr()
		require.NoError(t, err)
		require.False(t, seen[addr], "%s handed out twice", addr)
		seen[addr] = true
		require.True(t, inRange(t, addr, lo, hi), "%s outside %d–%d", addr, lo, hi-1)
	}
	// A port someone holds is skipped.
	var q Pool
	addr, err := q.Addr()
	require.NoError(t, err)
	held, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	defer held.Close()
	q.next = port(t, addr)
	next, err := q.Addr()
	require.NoError(t, err)
	require.NotEqual(t, addr, next)
}

// Port's port is below the ephemeral range and free to bind.
func TestPortIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	t.Parallel()
	n, err := Port()
	require.NoError(t, err)
	lo, hi := bounds()
	require.True(t, n >= lo && n < hi, "port %d outside %d–%d", n, lo, hi-1)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n)))
	require.NoError(t, err)
	require.NoError(t, l.Close())
}

func inRange(t *testing.T, addr string, lo, hi int) bool {
	t.Helper()
	host, _, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	n := port(t, addr)
	return n >= lo && n < hi
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}
