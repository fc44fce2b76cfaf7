// Package freeport picks free TCP ports on 127.0.0.1 for the servers tests
// start, below the kernel's ephemeral port range.
//
// A port the kernel hands out for "127.0.0.1:0" lies in the ephemeral range
// (net.ipv4.ip_local_port_range, 32768–60999 by default), the range every
// outgoing connection on the machine takes its source port from. Such a port
// is free only at the moment it is picked: before a server binds it, or
// while a server on it is stopped, any connection can take it, and the
// server then fails with "address already in use". A NATS server restarted
// on its port in make test did, in CI. Below the range only listeners bind,
// so a port picked here stays free for its server's restarts unless another
// test picks the same one.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Pool hands out free ports (Port) or addresses (Addr), never the same one twice. Owned by one
// goroutine; the zero value is ready to use.
type Pool struct{ next int }

// Addr returns a free 127.0.0.1 address ("127.0.0.1:port").
func (p *Pool) Addr() (string, error) {
	port, err := p.Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// Port returns a free port on 127.0.0.1.
func (p *Pool) Port() (int, error) {
	lo, hi := bounds()
	if hi-lo < 1 {
		return kernelPort() // no room below the range: the kernel's pick, with its race
	}
	if p.next < lo || p.next >= hi {
		p.next = lo + rand.IntN(hi-lo) // apart from a parallel process's
	}
	for range hi - lo {
		port := p.next
		if p.next++; p.next == hi {
			p.next = lo
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken
		}
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("port %d: %w", port, err)
		}
		return port, nil
	}
	return 0, fmt.Errorf("no free port in %d–%d", lo, hi-1)
}

// Addr returns a free 127.0.0.1 address from a fresh pool.
func Addr() (string, error) {
	var p Pool
	return p.Addr()
}

// Port returns a free port on 127.0.0.1 from a fresh pool.
func Port() (int, error) {
	var p Pool
	return p.Port()
}

// bounds is the range ports are picked from: 20000 up to the ephemeral
// range's start (32768 unless the kernel says lower). 20000 stays above the
// ports services on a developer's machine commonly use.
func bounds() (lo, hi int) {
	lo, hi = 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if first, err := strconv.Atoi(f[0]); err == nil && first < hi {
				hi = first
			}
		}
	}
	return lo, hi
}

// kernelPort is the kernel's pick from the ephemeral range.
func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
