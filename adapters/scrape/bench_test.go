package scrape

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/scrape/scrapetest"
	"github.com/gpufleet/telemetry/domain"
)

// benchMetrics are the ten fields of the shipped dump.
var benchMetrics = []string{"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_POWER_USAGE",
	"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_DEC_UTIL",
	"DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK"}

// benchHosts makes n hosts of 8 GPUs x 10 fields = 80 series each, labelled
// like the shipped dump's (driver version, PCI bus id).
func benchHosts(n int) [][]domain.Point {
	hosts := make([][]domain.Point, n)
	for h := range hosts {
		host := fmt.Sprintf("bench-dgx-%04d", h)
		for g := range 8 {
			uuid := fmt.Sprintf("GPU-%08x-4998-fdc5-0785-%012x", h, g)
			for i, m := range benchMetrics {
				v := float64(i*100 + g)
				hosts[h] = append(hosts[h], domain.Point{MetricName: m, GPUIndex: g, Device: fmt.Sprintf("nvidia%d", g),
					GPUUUID: uuid, ModelName: "NVIDIA H100 80GB HBM3", Hostname: host, Value: &v,
					LabelsRaw: fmt.Sprintf(`DCGM_FI_DRIVER_VERSION="535.129.03",pci_bus_id="00000000:%02X:00.0"`, g*16+0x18)})
			}
		}
	}
	return hosts
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScrape measures what one streamer spends per target: one
// iteration is one scrape of one fake dcgm-exporter (80 series, gzip, keep-
// alive) out of a fleet of 1,000, parsed into points that go through the
// source's channel to Next, as in the running streamer. Targets are scraped
// concurrently, as their goroutines would be. It reports targets/s, the CPU
// per scrape (the whole process: the in-process exporters' serving of a
// pre-rendered body included, so the figure is pessimistic), and
// targets/15s/core: how many targets one core scrapes within the default
// 15 s interval at that CPU cost. Run it on one core:
//
//	go test -run '^$' -bench Scrape -cpu 1 ./adapters/scrape/
func BenchmarkScrape(b *testing.B) {
	const targets = 1000
	fleet, err := scrapetest.StartFleet("127.0.0.1", 0, benchHosts(targets), 0)
	require.NoError(b, err)
	b.Cleanup(func() { _ = fleet.Stop(context.Background()) })
	src, err := New(Options{Targets: Static(fleet.URLs), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	loops := make(chan *target, targets) // each target is owned by one goroutine at a time, as in the source
	for _, u := range fleet.URLs {
		t, err := newTarget(src, u)
		require.NoError(b, err)
		loops <- t
	}
	var points atomic.Int64
	drained := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(drained)
		for {
			if _, err := src.Next(ctx); err != nil {
				return
			}
			points.Add(1)
		}
	}()
	// Warm every keep-alive connection, so the figure is the steady state.
	for range targets {
		t := <-loops
		for _, p := range t.scrape(ctx) {
			src.out <- p
		}
		loops <- t
	}
	points.Store(0)

	b.SetParallelism(16) // goroutines per GOMAXPROCS: I/O of many targets overlaps
	b.ResetTimer()
	cpu0, wall0 := cpuTime(), time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t := <-loops
			for _, p := range t.scrape(ctx) {
				src.out <- p
			}
			loops <- t
		}
	})
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	b.StopTimer()
	require.Eventually(b, func() bool { return points.Load() == int64(b.N)*80 }, time.Minute, time.Millisecond, "every point reached Next")
	cancel()
	<-drained

	perScrape := cpu / time.Duration(b.N)
	b.ReportMetric(float64(b.N)/wall.Seconds(), "targets/s")
	b.ReportMetric(float64(perScrape.Microseconds()), "cpu-µs/scrape")
	b.ReportMetric(float64(15*time.Second/perScrape), "targets/15s/core")
}

// BenchmarkSourceRounds runs the real Source over 1,000 fake exporters (80
// series each) at a 3 s interval, five times the rate the default 15 s
// interval asks of one streamer, and reads every point through Next: one
// iteration is one round of all 1,000 targets. It reports the CPU per target
// scrape and per round, and the rounds skipped and scrapes failed (both 0
// when one core keeps up). Run it on one core:
//
//	go test -run '^$' -bench SourceRounds -cpu 1 ./adapters/scrape/
func BenchmarkSourceRounds(b *testing.B) {
	const targets = 1000
	fleet, err := scrapetest.StartFleet("127.0.0.1", 0, benchHosts(targets), 0)
	require.NoError(b, err)
	b.Cleanup(func() { _ = fleet.Stop(context.Background()) })
	src, err := New(Options{Targets: Static(fleet.URLs), Interval: 3 * time.Second, Buffer: 1 << 14,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(b, err)
	src.Start()
	b.Cleanup(func() { _ = src.Stop(context.Background()) })
	ctx := context.Background()
	// The first round warms the connections.
	for range targets * 80 {
		_, err := src.Next(ctx)
		require.NoError(b, err)
	}
	skipped0, errors0 := testutilSum(src.m.roundsSkipped), testutilSum(src.m.errors)
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		for range targets * 80 {
			if _, err := src.Next(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(testutilSum(src.m.roundsSkipped)-skipped0, "skipped-rounds")
	b.ReportMetric(testutilSum(src.m.errors)-errors0, "failed-scrapes")
	b.ReportMetric(float64((cpu / time.Duration(b.N*targets)).Microseconds()), "cpu-µs/scrape")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/round")
}

// testutilSum adds up every series of a counter vector.
func testutilSum(c interface {
	Collect(chan<- prometheus.Metric)
}) float64 {
	ch := make(chan prometheus.Metric, 4096)
	go func() { c.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var d dto.Metric
		_ = m.Write(&d)
		sum += d.GetCounter().GetValue()
	}
	return sum
}
