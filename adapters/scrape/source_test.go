package scrape_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/scrape"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/contract/sourcetest"
)

// TestConformance runs the shared source suite with the fixture's records
// served by a fake dcgm-exporter.
func TestConformance(t *testing.T) {
	t.Parallel()
	sourcetest.Run(t, func(t testing.TB, records [][]string) ports.Source {
		url := serve(t, text(exposition(records)))
		return start(t, scrape.Options{Targets: scrape.Static{url}, Interval: 100 * time.Millisecond}).src
	}, sourcetest.Capabilities{Replay: false})
}

// exposition renders CSV records (sourcetest.Header order) as dcgm-exporter
// series; a record of the wrong length becomes a line the parser refuses.
func exposition(records [][]string) string {
	var b strings.Builder
	for _, r := range records {
		if len(r) != len(sourcetest.Header) {
			b.WriteString(`DCGM_FI_DEV_GPU_UTIL{gpu="0"` + "\n")
			continue
		}
		value := r[10]
		if value == "" {
			value = "NaN"
		}
		fmt.Fprintf(&b, `%s{gpu="%s",UUID="%s",device="%s",modelName="%s",Hostname="%s"} %s`+"\n",
			r[1], r[2], r[4], r[3], r[5], r[6], value)
	}
	return b.String()
}

// A real dcgm-exporter body: every DCGM series becomes a point with the
// exporter's labels in the point's fields and labels_raw; go_* series are
// ignored and counted.
func TestTextBody(t *testing.T) {
	t.Parallel()
	body := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 12
# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-aaa",pci_bus_id="00000000:07:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="dgx-1",DCGM_FI_DRIVER_VERSION="535.129.03",container="trainer",namespace="ml",pod="job-0"} 41
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="7",UUID="GPU-bbb",device="nvidia7",modelName="NVIDIA H100 80GB HBM3",Hostname="dgx-1"} 1.5e+09
process_open_fds 9
`
	url := serve(t, text(body))
	before := time.Now().UTC().Round(0)
	h := start(t, scrape.Options{Targets: scrape.Static{url}, Interval: time.Second})
	got := h.next(t, 2)
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")
	for i := range got {
		require.False(t, got[i].Timestamp.Before(before), "stamped with the scrape time")
		require.Equal(t, time.UTC, got[i].Timestamp.Location())
		got[i].Timestamp = time.Time{}
	}
	require.Equal(t, []domain.Point{
		{MetricName: "DCGM_FI_DEV_GPU_TEMP", GPUIndex: 0, Device: "nvidia0", GPUUUID: "GPU-aaa",
			ModelName: "NVIDIA H100 80GB HBM3", Hostname: "dgx-1", Container: "trainer", Pod: "job-0", Namespace: "ml", Value: f64(41),
			LabelsRaw: `DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="dgx-1",UUID="GPU-aaa",__name__="DCGM_FI_DEV_GPU_TEMP",container="trainer",device="nvidia0",gpu="0",instance="` + host + `",modelName="NVIDIA H100 80GB HBM3",namespace="ml",pci_bus_id="00000000:07:00.0",pod="job-0"`},
		{MetricName: "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPUIndex: 7, Device: "nvidia7", GPUUUID: "GPU-bbb",
			ModelName: "NVIDIA H100 80GB HBM3", Hostname: "dgx-1", Value: f64(1.5e9),
			LabelsRaw: `Hostname="dgx-1",UUID="GPU-bbb",__name__="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",device="nvidia7",gpu="7",instance="` + host + `",modelName="NVIDIA H100 80GB HBM3"`},
	}, got)
	require.Eventually(t, func() bool {
		return h.metric(t, "streamer_scrape_series_ignored_total", nil) >= 2 &&
			h.metric(t, "streamer_scrape_samples_total", map[string]string{"target": url}) >= 2 &&
			h.metric(t, "streamer_scrape_target_up", map[string]string{"target": url}) == 1
	}, 10*time.Second, 5*time.Millisecond)
	require.GreaterOrEqual(t, h.metric(t, "streamer_scrape_duration_seconds", map[string]string{"target": url}), 0.0)
}

// OpenMetrics (chosen by the exporter from our Accept header): # UNIT,
// unknown types, exemplars, timestamps in seconds and # EOF are understood;
// a sample's own timestamp stamps its point.
func TestOpenMetricsBody(t *testing.T) {
	t.Parallel()
	body := `# TYPE DCGM_FI_DEV_POWER_USAGE gauge
# UNIT DCGM_FI_DEV_POWER_USAGE watts
# HELP DCGM_FI_DEV_POWER_USAGE Power draw.
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-om",Hostname="h # 1",modelName="m {x}"} 312.25 1700000000.5
# TYPE DCGM_FI_PROF_PIPE_TENSOR_ACTIVE unknown
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{gpu="1",UUID="GPU-om"} 0.5
# TYPE DCGM_FI_DEV_XID_ERRORS counter
DCGM_FI_DEV_XID_ERRORS_total{gpu="1",UUID="GPU-om"} 3 # {trace_id="abc"} 1.0 1700000000.0
# EOF
`
	accept := make(chan string, 1)
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case accept <- r.Header.Get("Accept"):
		default:
		}
		w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
		_, _ = io.WriteString(w, body)
	})
	h := start(t, scrape.Options{Targets: scrape.Static{url}, Interval: time.Second})
	got := h.next(t, 3)
	require.Contains(t, <-accept, "application/openmetrics-text")
	byName := map[string]domain.Point{}
	for _, p := range got {
		byName[p.MetricName] = p
	}
	power := byName["DCGM_FI_DEV_POWER_USAGE"]
	require.Equal(t, time.UnixMilli(1700000000500).UTC(), power.Timestamp, "the sample's own timestamp")
	require.Equal(t, f64(312.25), power.Value)
	require.Equal(t, "h # 1", power.Hostname)
	require.Equal(t, "m {x}", power.ModelName)
	require.Equal(t, f64(0.5), byName["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"].Value)
	require.Equal(t, f64(3), byName["DCGM_FI_DEV_XID_ERRORS_total"].Value, "the exemplar is dropped")
}

// gzip is asked for and decoded; a corrupt gzip stream is a failed scrape
// counted under "read", not a crash.
func TestGzip(t *testing.T) {
	t.Parallel()
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = io.WriteString(zw, hostBody("gz-host", 2, "7", "DCGM_FI_DEV_SM_CLOCK"))
	require.NoError(t, zw.Close())
	good := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			http.Error(w, "want gzip", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(zipped.Bytes())
	})
	bad := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = io.WriteString(w, "not gzip at all")
	})
	h := start(t, scrape.Options{Targets: scrape.Static{good, bad}, Interval: time.Second})
	for _, p := range h.next(t, 2) {
		require.Equal(t, "gz-host", p.Hostname)
		require.Equal(t, f64(7), p.Value)
	}
	h.requireDown(t, bad, scrape.ErrRead, 1)
}

// A DCGM series without a UUID, or with no usable gpu index, is skipped and
// counted; an unparsable line costs only itself; the rest of the body is
// used.
func TestUnusableSeriesSkippedAndCounted(t *testing.T) {
	t.Parallel()
	body := `DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="h"} 1
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="",Hostname="h"} 1
DCGM_FI_DEV_GPU_UTIL{gpu="x",UUID="GPU-x",Hostname="h"} 1
DCGM_FI_DEV_GPU_UTIL{UUID="GPU-y",Hostname="h"} 1
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-z",Hostname="h"} not-a-number
DCGM_FI_DEV_GPU_UTIL{gpu="3",UUID="GPU-ok",Hostname="h"} 55
`
	url := serve(t, text(body))
	h := start(t, scrape.Options{Targets: scrape.Static{url}, Interval: time.Second})
	p := h.next(t, 1)[0]
	require.Equal(t, "GPU-ok", p.GPUUUID)
	require.Equal(t, f64(55), p.Value)
	// Every scrape of the body skips 2, 2 and 1. The source scrapes every
	// second, and a test slowed by a loaded machine may read the counters
	// after the second scrape (which then waits to hand its point out), so
	// the counts are k times those for some k ≥ 1.
	skipped := func(reason string) float64 {
		return h.metric(t, "streamer_scrape_series_skipped_total", map[string]string{"reason": reason})
	}
	require.Eventually(t, func() bool {
		k := skipped(scrape.SkipParse)
		return k >= 1 && skipped(scrape.SkipMissingUUID) == 2*k && skipped(scrape.SkipBadGPUIndex) == 2*k
	}, 10*time.Second, 5*time.Millisecond)
}

// NaN, ±Inf and DCGM's blank sentinels become a nil value, as in the CSV.
func TestSentinelsAndNaNAreNull(t *testing.T) {
	t.Parallel()
	values := []struct {
		text string
		want *float64
	}{
		{"NaN", nil}, {"+Inf", nil}, {"-Inf", nil}, {"4294967295", nil},
		{"9223372036854775794", nil}, {"2147483632", nil}, {"140737488355328", nil},
		{"0", f64(0)}, {"-3.5", f64(-3.5)}, {"1e+06", f64(1e6)},
	}
	var b strings.Builder
	for i, v := range values {
		fmt.Fprintf(&b, "DCGM_FI_DEV_FIELD_%02d{gpu=\"0\",UUID=\"GPU-s\"} %s\n", i, v.text)
	}
	h := start(t, scrape.Options{Targets: scrape.Static{serve(t, text(b.String()))}, Interval: time.Second})
	got := h.next(t, len(values))
	for i, v := range values {
		p := got[i]
		require.Equal(t, fmt.Sprintf("DCGM_FI_DEV_FIELD_%02d", i), p.MetricName, "points come in name order")
		require.Equal(t, v.want, p.Value, v.text)
		require.NoError(t, p.Validate())
	}
}

// A 50 MiB body is refused at the 16 MiB default cap and counted; the target
// is down, and another target is scraped as usual.
func TestBodyOverTheCapRefused(t *testing.T) {
	t.Parallel()
	line := []byte(dcgmLine("DCGM_FI_DEV_GPU_UTIL", 0, "GPU-big", "big", "1"))
	huge := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		for written := 0; written < 50<<20; written += len(line) {
			if _, err := w.Write(line); err != nil {
				return // the scraper hung up at its cap
			}
		}
	})
	small := serve(t, text(hostBody("small", 1, "5", "DCGM_FI_DEV_GPU_UTIL")))
	// A 64 KiB cap: reached in microseconds, so the refusal, not the
	// timeout, ends the read even on a machine too busy to read 16 MiB
	// (the default cap) inside the timeout.
	h := start(t, scrape.Options{Targets: scrape.Static{huge, small}, Interval: 2 * time.Second, Timeout: time.Second * 3 / 2,
		MaxBodyBytes: 64 << 10})
	p := h.next(t, 1)[0]
	require.Equal(t, "small", p.Hostname)
	require.Eventually(t, func() bool {
		return h.metric(t, "streamer_scrape_errors_total", map[string]string{"target": huge, "reason": scrape.ErrBodyTooLarge}) >= 1 &&
			h.metric(t, "streamer_scrape_errors_total", map[string]string{"target": huge, "reason": scrape.ErrTimeout}) == 0
	}, 20*time.Second, 5*time.Millisecond)
	require.Equal(t, 0.0, h.metric(t, "streamer_scrape_target_up", map[string]string{"target": huge}))
	require.Equal(t, 0.0, h.metric(t, "streamer_scrape_samples_total", map[string]string{"target": huge}), "nothing of a refused body is used")
}

// A target that never answers times out at Timeout, is counted, and does not
// hold back another target, which is scraped round after round.
func TestSlowTargetTimesOutOthersUnaffected(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	fastURL := serve(t, text(hostBody("fast", 1, "1", "DCGM_FI_DEV_GPU_UTIL")))
	h := start(t, scrape.Options{Targets: scrape.Static{slow, fastURL}, Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond})
	// Three rounds of the fast target while the slow one keeps timing out.
	for _, p := range h.next(t, 3) {
		require.Equal(t, "fast", p.Hostname)
	}
	h.requireDown(t, slow, scrape.ErrTimeout, 2)
	// Awaited: on a busy machine one of the fast target's scrapes can miss
	// the 100 ms timeout too, and its up reads 0 until the next round.
	require.Eventually(t, func() bool {
		return h.metric(t, "streamer_scrape_target_up", map[string]string{"target": fastURL}) == 1
	}, 20*time.Second, time.Millisecond, "the fast target is not up")
}

// A target that fails every other scrape flips up between 0 and 1, is
// counted, and keeps yielding points when it answers.
func TestFlappingTarget(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	body := hostBody("flap", 1, "3", "DCGM_FI_DEV_GPU_UTIL")
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%2 == 0 {
			http.Error(w, "exporter restarting", http.StatusServiceUnavailable)
			return
		}
		text(body)(w, r)
	})
	// Not the fast interval: its 40 ms timeout is within reach of a busy
	// machine, and a timeout is counted under another reason.
	h := start(t, scrape.Options{Targets: scrape.Static{url}, Interval: 200 * time.Millisecond})
	target := map[string]string{"target": url}
	for range 3 {
		require.Eventually(t, func() bool { return h.metric(t, "streamer_scrape_target_up", target) == 0 }, 20*time.Second, time.Millisecond)
		require.Eventually(t, func() bool { return h.metric(t, "streamer_scrape_target_up", target) == 1 }, 20*time.Second, time.Millisecond)
	}
	// Awaited, not read once: on a busy machine some of the downs above may
	// be timeouts (counted under their own reason), and the 503s go on.
	require.Eventually(t, func() bool {
		return h.metric(t, "streamer_scrape_errors_total", map[string]string{"target": url, "reason": scrape.ErrHTTPStatus}) >= 2
	}, 20*time.Second, time.Millisecond, "503s not counted under %s", scrape.ErrHTTPStatus)
	for _, p := range h.next(t, 3) {
		require.Equal(t, f64(3), p.Value)
	}
}

// A down target (nothing listening) is counted as a connection error and
// tried again every interval.
func TestDownTargetRetried(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(text(""))
	dead := srv.URL + "/metrics"
	srv.Close() // the port is free now: connections are refused
	h := start(t, scrape.Options{Targets: scrape.Static{dead}, Interval: fast})
	h.requireDown(t, dead, scrape.ErrConnection, 2)
}

// The targets file is read again while running: an edit swaps targets, the
// removed target's series leave /metrics, bad entries are skipped.
func TestTargetsFileEditedWhileRunning(t *testing.T) {
	t.Parallel()
	a := serve(t, text(hostBody("host-a", 1, "1", "DCGM_FI_DEV_GPU_UTIL")))
	b := serve(t, text(hostBody("host-b", 1, "2", "DCGM_FI_DEV_GPU_UTIL")))
	path := filepath.Join(t.TempDir(), "targets")
	writeFile(t, path, "# dcgm exporters\n"+a+"\n")
	h := start(t, scrape.Options{Targets: scrape.File{Path: path, Refresh: 10 * time.Millisecond, Logger: quiet()}, Interval: fast})
	require.Equal(t, "host-a", h.next(t, 1)[0].Hostname)

	hostPort := strings.TrimSuffix(strings.TrimPrefix(b, "http://"), "/metrics")
	writeFile(t, path, hostPort+", ftp://nope\n")
	require.Eventually(t, func() bool {
		return h.metric(t, "streamer_scrape_target_up", map[string]string{"target": a}) == -1 &&
			h.metric(t, "streamer_scrape_targets", nil) == 1
	}, 20*time.Second, 5*time.Millisecond, "host-a's series removed")
	// Points of host-a's last rounds may still be in the buffer: read until
	// host-b's arrive.
	require.Eventually(t, func() bool {
		p, err := h.src.Next(t.Context())
		return err == nil && p.Hostname == "host-b"
	}, 20*time.Second, time.Millisecond)
}

// A publisher slower than the interval: a target does not pile rounds up.
// The rounds whose slot passes while its previous round is still handed out
// are skipped and counted, and every point read is from a whole round.
func TestSlowPublisherSkipsRounds(t *testing.T) {
	t.Parallel()
	url := serve(t, text(hostBody("busy", 40, "9", "DCGM_FI_DEV_GPU_UTIL")))
	h := start(t, scrape.Options{Targets: scrape.Static{url}, Interval: 200 * time.Millisecond, Buffer: 1})
	// The reader takes one point per poll (every 30 ms at the least): a
	// round of forty points takes six 200 ms intervals to hand out. The
	// interval is long enough that a loaded machine's scrape does not time
	// out (the default timeout, 160 ms), so every round has points to hold
	// up the next.
	require.Eventually(t, func() bool {
		p := h.next(t, 1)[0]
		require.Equal(t, f64(9), p.Value)
		return h.metric(t, "streamer_scrape_rounds_skipped_total", map[string]string{"target": url}) >= 3
	}, 20*time.Second, 30*time.Millisecond)
}

// Next honours Stop (ErrClosed) and a done context even with points waiting.
func TestNextAfterStop(t *testing.T) {
	t.Parallel()
	url := serve(t, text(hostBody("stop", 1, "1", "DCGM_FI_DEV_GPU_UTIL")))
	src, err := scrape.New(scrape.Options{Targets: scrape.Static{url}, Interval: fast, Logger: quiet()})
	require.NoError(t, err)
	require.ErrorIs(t, src.Check(t.Context()), ports.ErrUnavailable, "not ready before the first target set")
	src.Start()
	_, err = src.Next(t.Context())
	require.NoError(t, err)
	require.NoError(t, src.Check(t.Context()))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = src.Next(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, src.Stop(t.Context()))
	require.NoError(t, src.Stop(t.Context()), "Stop twice")
	_, err = src.Next(t.Context())
	require.ErrorIs(t, err, ports.ErrClosed)

	never, err := scrape.New(scrape.Options{Targets: scrape.Static{url}, Logger: quiet()})
	require.NoError(t, err)
	require.NoError(t, never.Stop(t.Context()), "stopping a source never started")
}

func TestOptionsValidated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    scrape.Options
		wantErr string
	}{
		{"no targets", scrape.Options{}, "no target discoverer"},
		{"timeout not below interval", scrape.Options{Targets: scrape.Static{}, Interval: time.Second, Timeout: time.Second}, "shorter than the interval"},
		{"negative interval", scrape.Options{Targets: scrape.Static{}, Interval: -time.Second}, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := scrape.New(tt.opts)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	src, err := scrape.New(scrape.Options{Targets: scrape.Static{}, Interval: 5 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 4*time.Second, src.Timeout(), "default timeout: 80% of a short interval")
	src, err = scrape.New(scrape.Options{Targets: scrape.Static{}})
	require.NoError(t, err)
	require.Equal(t, 15*time.Second, src.Interval())
	require.Equal(t, 10*time.Second, src.Timeout())
}

func TestParseTargets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "10.0.0.1:9400", want: []string{"http://10.0.0.1:9400/metrics"}},
		{in: "b:9400, a:9400,a:9400", want: []string{"http://a:9400/metrics", "http://b:9400/metrics"}},
		{in: "https://gpu-7.example:9400", want: []string{"https://gpu-7.example:9400/metrics"}},
		{in: "http://h:1/custom/path?x=1", want: []string{"http://h:1/custom/path?x=1"}},
		{in: "[fd00::1]:9400", want: []string{"http://[fd00::1]:9400/metrics"}},
		{in: "# comment only\n\n  h:1 # trailing\nh:2\n", want: []string{"http://h:1/metrics", "http://h:2/metrics"}},
		{in: "", want: nil},
		{in: "nohost", wantErr: `target "nohost"`},
		{in: "ftp://h:1", wantErr: "scheme"},
		{in: "h:1,:9400", want: []string{"http://h:1/metrics"}, wantErr: `target ":9400"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := scrape.ParseTargets(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

// A targets file that does not exist yet (the fake exporters have not
// written it) is waited for, not fatal.
func TestTargetsFileAppearsLater(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "targets")
	out := make(chan []string)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- scrape.File{Path: path, Refresh: 5 * time.Millisecond, Logger: quiet()}.Targets(ctx, out)
	}()
	writeFile(t, path, "h:9400\n")
	require.Equal(t, []string{"http://h:9400/metrics"}, <-out)
	writeFile(t, path, "")
	require.Equal(t, []string{}, <-out, "an emptied file removes every target")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}
