package mqhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/ports"
)

// nopPublisher accepts everything at once, so a benchmark over it measures
// the transport alone.
type nopPublisher struct{}

func (nopPublisher) Publish(_ context.Context, _ string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	return ports.PublishResult{Accepted: len(msgs)}, nil
}

// BenchmarkPublishTransport is the measurement behind the choice of the
// streaming transport (docs/adr/0013-streaming-publish.md): one message per
// Publish from 256 concurrent callers, over a request per message, a
// full-duplex HTTP/1.1 stream, and an h2c (HTTP/2 without TLS) stream, to a
// publisher that does nothing. Compare cpu-ns/op: the CPU time of the process (client and server
// both) per message.
func BenchmarkPublishTransport(b *testing.B) {
	cases := []struct {
		name   string
		stream bool
		h2c    bool
	}{
		{name: "request"},
		{name: "stream-http1", stream: true},
		{name: "stream-h2c", stream: true, h2c: true},
	}
	payload := []byte(`{"gpu_uuid":"GPU-5fd4f087-86f3-7a43-b711-4771313afc50","metric_name":"DCGM_FI_DEV_GPU_UTIL","timestamp":"2026-12-03T12:00:00Z","value":42,"hostname":"node-1","gpu_index":0,"device":"nvidia0","model_name":"NVIDIA H100 80GB HBM3"}`)
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(mqhttp.NewServer(nopPublisher{}, nil, mqhttp.ServerOptions{Logger: quietLogger()}).Handler())
			var hc *http.Client
			if tc.h2c {
				srv.Config.Protocols = new(http.Protocols)
				srv.Config.Protocols.SetHTTP1(true)
				srv.Config.Protocols.SetUnencryptedHTTP2(true)
				tr := &http.Transport{Protocols: new(http.Protocols)}
				tr.Protocols.SetUnencryptedHTTP2(true)
				hc = &http.Client{Transport: tr}
			}
			srv.Start()
			defer srv.Close()
			c, err := mqhttp.NewClient(mqhttp.ClientConfig{WriterURL: srv.URL, Stream: tc.stream, HTTPClient: hc})
			require.NoError(b, err)
			defer func() { _ = c.Close() }()
			var seq atomic.Int64
			b.SetParallelism(max(1, 256/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := "bench/" + strconv.FormatInt(seq.Add(1), 10)
					if _, err := c.Publish(context.Background(), "telemetry", []ports.OutgoingMessage{{Payload: payload, Key: "GPU-1", IdempotencyKey: k}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			// CPU per message is what the choice rests on: on a shared
			// machine wall time mostly measures the neighbours.
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
