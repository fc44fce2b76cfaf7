package scrape_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/scrape"
	"github.com/gpufleet/telemetry/domain"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// harness is a started source with its own registry.
type harness struct {
	src *scrape.Source
	reg *prometheus.Registry
}

// start builds and starts a source; opts.Logger and opts.Registerer are
// filled in. It stops with the test.
func start(t testing.TB, opts scrape.Options) harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	src, err := scrape.New(opts)
	require.NoError(t, err)
	src.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // t.Context is done by now
		defer cancel()
		require.NoError(t, src.Stop(ctx))
	})
	return harness{src: src, reg: reg}
}

// serve runs handler on 127.0.0.1 and returns its /metrics URL.
func serve(t testing.TB, handler http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

// text serves body as the Prometheus text format.
func text(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = io.WriteString(w, body)
	}
}

// metric returns the value of the series name{labels} in reg, or -1 when
// there is no such series.
func (h harness) metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := h.reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				switch {
				case m.GetCounter() != nil:
					return m.GetCounter().GetValue()
				case m.GetGauge() != nil:
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// requireDown waits until target's scrapes have failed with reason at least
// times times, then checks the target is down.
func (h harness) requireDown(t testing.TB, target, reason string, times int) {
	t.Helper()
	require.Eventually(t, func() bool {
		return h.metric(t, "streamer_scrape_errors_total", map[string]string{"target": target, "reason": reason}) >= float64(times)
	}, 20*time.Second, 5*time.Millisecond, "%s: %d scrapes failing with %s", target, times, reason)
	require.Equal(t, 0.0, h.metric(t, "streamer_scrape_target_up", map[string]string{"target": target}))
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := labels[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// next reads n points.
func (h harness) next(t testing.TB, n int) []domain.Point {
	t.Helper()
	out := make([]domain.Point, 0, n)
	for range n {
		p, err := h.src.Next(t.Context())
		require.NoError(t, err)
		out = append(out, p)
	}
	return out
}

// dcgmLine is one dcgm-exporter series line.
func dcgmLine(metric string, gpu int, uuid, host, value string) string {
	return fmt.Sprintf(`%s{gpu="%d",UUID="%s",pci_bus_id="00000000:%02X:00.0",device="nvidia%d",modelName="NVIDIA H100 80GB HBM3",Hostname="%s",DCGM_FI_DRIVER_VERSION="535.129.03"} %s`,
		metric, gpu, uuid, gpu*16+7, gpu, host, value) + "\n"
}

func uuidOf(host string, gpu int) string {
	return fmt.Sprintf("GPU-%08x-0000-0000-0000-%012d", len(host)*1000+int(host[len(host)-1]), gpu)
}

// hostBody is a host's exposition: gpus GPUs, the given metrics, value v.
func hostBody(host string, gpus int, value string, metrics ...string) string {
	var b strings.Builder
	for _, m := range metrics {
		fmt.Fprintf(&b, "# HELP %s test\n# TYPE %s gauge\n", m, m)
		for g := range gpus {
			b.WriteString(dcgmLine(m, g, uuidOf(host, g), host, value))
		}
	}
	return b.String()
}

func f64(v float64) *float64 { return &v }

// fast is a short interval for tests that wait for several rounds.
const fast = 50 * time.Millisecond

// writeFile replaces path atomically (a rename), as an operator's tooling
// or a ConfigMap volume would, so a reader never sees half a file.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}
