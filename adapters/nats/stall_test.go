package nats_test

import (
	"bytes"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// TestStalledPullIsCountedAndRedelivered holds the server's answer to one
// pull for longer than nats.go waits for it (fetchIdleCut), as a process
// starved of CPU meets it: the lease comes back empty, the stall is counted,
// and the messages the server sent to the abandoned pull come back after
// AckWait, delivered a second time, not lost.
func TestStalledPullIsCountedAndRedelivered(t *testing.T) {
	t.Parallel()
	srvURL := serverURL(t)
	proxy := startHoldingProxy(t, srvURL)
	reg := prometheus.NewRegistry()
	q := newQueue(t, proxy.url, testConfig(t, srvURL, time.Second), reg)
	topic := newTopic()
	publish(t, q, topic, msg("GPU-1", 1, "k1"), msg("GPU-1", 2, "k2"))

	proxy.holdNextPull <- 1500 * time.Millisecond
	l, err := q.Lease(t.Context(), leaseReq(topic, 2, time.Minute))
	require.NoError(t, err)
	require.Empty(t, l.Messages, "the pull was cut before its answer arrived")
	require.Equal(t, 1.0, counter(t, reg, "nats_queue_fetch_stalls_total"))

	_, got := leaseN(t, q, topic, 2, time.Minute)
	for _, m := range got {
		require.Equal(t, 2, m.Deliveries, "message %s: the abandoned pull's delivery counts", m.ID)
	}
	require.Equal(t, 1.0, counter(t, reg, "nats_queue_fetch_stalls_total"), "the later pulls were answered in time")
}

// holdingProxy forwards NATS client connections to a server. Armed with a
// duration (holdNextPull), it holds the server's bytes on the connection
// that sends the next JetStream pull request (a publish to
// $JS.API.CONSUMER.MSG.NEXT) for that long once the answer starts.
type holdingProxy struct {
	url          string
	holdNextPull chan time.Duration
}

func startHoldingProxy(t *testing.T, serverURL string) *holdingProxy {
	t.Helper()
	u, err := url.Parse(serverURL)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	p := &holdingProxy{url: "nats://" + ln.Addr().String(), holdNextPull: make(chan time.Duration, 1)}
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return // the listener closed at the test's end
			}
			server, err := net.Dial("tcp", u.Host)
			if err != nil {
				_ = client.Close()
				continue
			}
			t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
			hold := make(chan time.Duration, 1) // this connection's, so no other one takes it
			go p.toServer(client, server, hold)
			go toClient(server, client, hold)
		}
	}()
	return p
}

// toServer copies the client's bytes to the server; a chunk with a pull
// request takes the armed hold, before it is forwarded, for this connection.
func (p *holdingProxy) toServer(client, server net.Conn, hold chan<- time.Duration) {
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 && bytes.Contains(buf[:n], []byte("CONSUMER.MSG.NEXT")) {
			select {
			case d := <-p.holdNextPull:
				hold <- d
			default:
			}
		}
		if n > 0 {
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = server.Close()
			return
		}
	}
}

// toClient copies the server's bytes to the client, pausing before the first
// chunk it reads after a hold was taken: the answer to the held pull, or
// something later, comes after it.
func toClient(server, client net.Conn, hold <-chan time.Duration) {
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			select {
			case d := <-hold:
				time.Sleep(d) // the stall being simulated, not a wait for a condition
			default:
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = client.Close()
			return
		}
	}
}
