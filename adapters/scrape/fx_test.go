package scrape_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/adapters/scrape"
	"github.com/gpufleet/telemetry/adapters/scrape/scrapetest"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

type discoverer struct{ urls []string }

func (d discoverer) Targets(ctx context.Context, out chan<- []string) error {
	return scrape.Static(d.urls).Targets(ctx, out)
}

func TestModule(t *testing.T) {
	t.Parallel()
	url := serve(t, text(hostBody("fx", 1, "1", "DCGM_FI_DEV_GPU_UTIL")))
	tests := []struct {
		name    string
		cfg     scrape.Config
		extra   fx.Option
		wantErr string
	}{
		{name: "list", cfg: scrape.Config{Targets: []string{url}, Interval: time.Second}, extra: fx.Options()},
		{name: "discoverer", cfg: scrape.Config{Interval: time.Second},
			extra: fx.Provide(func() scrape.Discoverer { return discoverer{urls: []string{url}} })},
		{name: "no targets", cfg: scrape.Config{}, extra: fx.Options(), wantErr: "no targets"},
		{name: "two sources", cfg: scrape.Config{Targets: []string{url}, TargetsFile: filepath.Join(t.TempDir(), "t")},
			extra: fx.Options(), wantErr: "more than one source"},
		{name: "bad timeout", cfg: scrape.Config{Targets: []string{url}, Interval: time.Second, Timeout: 2 * time.Second},
			extra: fx.Options(), wantErr: "shorter than the interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				src      ports.Source
				concrete *scrape.Source
			)
			opts := []fx.Option{
				scrape.Module, tt.extra, fx.NopLogger, fx.Supply(tt.cfg),
				fx.Provide(func() *slog.Logger { return quiet() }, func() prometheus.Registerer { return prometheus.NewRegistry() }),
				fx.Populate(&src, &concrete),
			}
			require.NoError(t, fx.ValidateApp(opts...))
			if tt.wantErr != "" {
				require.ErrorContains(t, fx.New(opts...).Err(), tt.wantErr)
				return
			}
			app := fxtest.New(t, opts...).RequireStart()
			require.Same(t, concrete, src.(*scrape.Source), "one instance behind both types")
			p, err := src.Next(t.Context())
			require.NoError(t, err)
			require.Equal(t, "fx", p.Hostname)
			app.RequireStop()
			_, err = src.Next(t.Context())
			require.ErrorIs(t, err, ports.ErrClosed)
		})
	}
}

// What the fake exporter serves, the scrape source reads back exactly: the
// points' fields and values, with labels_raw rebuilt from dcgm-exporter's
// labels (driver version and PCI bus id carried over from the CSV's).
func TestFakeExporterRoundTrip(t *testing.T) {
	t.Parallel()
	raw := `DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="dgx-9",UUID="GPU-rt",__name__="DCGM_FI_DEV_FB_USED",device="nvidia3",gpu="3",instance="dgx-9:9400",job="dgx_dcgm_exporter",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:9A:00.0"`
	in := []domain.Point{
		{MetricName: "DCGM_FI_DEV_FB_USED", GPUIndex: 3, Device: "nvidia3", GPUUUID: "GPU-rt", ModelName: "NVIDIA H100 80GB HBM3",
			Hostname: "dgx-9", Value: f64(81234.5), LabelsRaw: raw},
		{MetricName: "DCGM_FI_DEV_DEC_UTIL", GPUIndex: 3, Device: "nvidia3", GPUUUID: "GPU-rt", ModelName: "NVIDIA H100 80GB HBM3",
			Hostname: "dgx-9", Container: "c", Pod: "p", Namespace: "n", Value: nil},
	}
	fleet, err := scrapetest.StartFleet("127.0.0.1", 0, scrapetest.Hosts(in), 0)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, fleet.Stop(context.Background())) })
	require.Len(t, fleet.URLs, 1)
	h := start(t, scrape.Options{Targets: scrape.Static(fleet.URLs), Interval: time.Second})
	got := h.next(t, 2)
	instance := fleet.URLs[0][len("http://") : len(fleet.URLs[0])-len("/metrics")]
	// Points come in metric-name order.
	require.Equal(t, "DCGM_FI_DEV_DEC_UTIL", got[0].MetricName)
	require.Equal(t, `Hostname="dgx-9",UUID="GPU-rt",__name__="DCGM_FI_DEV_DEC_UTIL",container="c",device="nvidia3",gpu="3",instance="`+instance+`",modelName="NVIDIA H100 80GB HBM3",namespace="n",pod="p"`, got[0].LabelsRaw)
	require.Equal(t, `DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="dgx-9",UUID="GPU-rt",__name__="DCGM_FI_DEV_FB_USED",device="nvidia3",gpu="3",instance="`+instance+`",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:9A:00.0"`, got[1].LabelsRaw)
	for i, want := range []domain.Point{in[1], in[0]} {
		p := got[i]
		p.Timestamp, p.LabelsRaw, want.LabelsRaw = time.Time{}, "", ""
		require.Equal(t, want, p)
	}
	require.Positive(t, fleet.Exporters[0].Served())
}
