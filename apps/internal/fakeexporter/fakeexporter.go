// Package fakeexporter is the fake-dcgm-exporter app's component: it loads a
// DCGM CSV dump and serves it as one dcgm-exporter per host on consecutive
// loopback ports (scrapetest.Fleet), for demos and tests without GPUs. It
// writes the list of its target URLs to a file the streamer can read
// (SCRAPE_TARGETS_FILE) and logs it.
package fakeexporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/adapters/scrape/scrapetest"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
)

// Config is the fake exporters' configuration.
type Config struct {
	// CSVPath is the dump to serve (a file or a directory of parts).
	CSVPath string
	// Host is the address the exporters listen on (default 127.0.0.1).
	Host string
	// BasePort is the first host's port; host i listens on BasePort+i. 0
	// picks free ports.
	BasePort int
	// Hosts limits how many hosts are served (0: every host of the dump).
	Hosts int
	// Jitter multiplies every value by a random factor in [1-Jitter,
	// 1+Jitter] on each scrape; 0 serves the CSV's values exactly.
	Jitter float64
	// TargetsFile, when set, receives the target URLs, one per line.
	TargetsFile string
}

// Load reads the FAKE_DCGM_* variables.
func Load(env *platform.Env, defaultCSV string) Config {
	cfg := Config{
		CSVPath:     env.String("FAKE_DCGM_CSV_PATH", defaultCSV),
		Host:        env.String("FAKE_DCGM_HOST", "127.0.0.1"),
		BasePort:    env.Int("FAKE_DCGM_BASE_PORT", 9400, 0, 65535),
		Hosts:       env.Int("FAKE_DCGM_HOSTS", 0, 0, 10000),
		TargetsFile: env.String("FAKE_DCGM_TARGETS_FILE", ""),
	}
	if v := env.String("FAKE_DCGM_JITTER", ""); v != "" {
		if _, err := fmt.Sscanf(v, "%g", &cfg.Jitter); err != nil || cfg.Jitter < 0 || cfg.Jitter > 1 {
			env.Fail(fmt.Errorf("FAKE_DCGM_JITTER=%q: want a fraction in 0..1 (0.05 = ±5%%)", v))
		}
	}
	return cfg
}

// Module serves the fleet for the app's lifetime and reports it ready once
// every exporter listens.
func Module(cfg Config) fx.Option {
	return fx.Module("fakeexporter",
		fx.Supply(cfg),
		fx.Provide(New),
		fx.Invoke(func(lc fx.Lifecycle, f *Fakes) {
			lc.Append(fx.Hook{OnStart: f.Start, OnStop: f.Stop})
		}),
	)
}

// Fakes is the running fleet.
type Fakes struct {
	cfg    Config
	hosts  [][]domain.Point // immutable after New
	logger *slog.Logger
	fleet  *scrapetest.Fleet // set by Start, read by Stop (fx orders them)
}

// New loads the CSV; it serves nothing until Start.
func New(cfg Config, logger *slog.Logger) (*Fakes, error) {
	src, err := csv.New(cfg.CSVPath, csv.Options{Once: true, Logger: logger})
	if err != nil {
		return nil, err
	}
	var points []domain.Point
	for {
		p, err := src.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", cfg.CSVPath, err)
		}
		points = append(points, p)
	}
	hosts := scrapetest.Hosts(points)
	if cfg.Hosts > 0 && cfg.Hosts < len(hosts) {
		hosts = hosts[:cfg.Hosts]
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	return &Fakes{cfg: cfg, hosts: hosts, logger: logger}, nil
}

// Start listens on every host's port and writes the targets file.
func (f *Fakes) Start(context.Context) error {
	fleet, err := scrapetest.StartFleet(f.cfg.Host, f.cfg.BasePort, f.hosts, f.cfg.Jitter)
	if err != nil {
		return err
	}
	f.fleet = fleet
	if f.cfg.TargetsFile != "" {
		if err := writeAtomic(f.cfg.TargetsFile, strings.Join(fleet.URLs, "\n")+"\n"); err != nil {
			return errors.Join(err, fleet.Stop(context.Background()))
		}
	}
	series := 0
	for _, e := range fleet.Exporters {
		series += e.Series()
	}
	f.logger.Info("fake dcgm-exporters serving", "exporters", len(fleet.URLs), "series", series,
		"jitter", f.cfg.Jitter, "targets_file", f.cfg.TargetsFile, "targets", strings.Join(fleet.URLs, ","))
	return nil
}

// Stop shuts the exporters down.
func (f *Fakes) Stop(ctx context.Context) error {
	if f.fleet == nil {
		return nil
	}
	return f.fleet.Stop(ctx)
}

// URLs are the served targets (after Start).
func (f *Fakes) URLs() []string {
	if f.fleet == nil {
		return nil
	}
	return f.fleet.URLs
}

// writeAtomic replaces path with content in one rename, so a streamer
// re-reading the file never sees half of it.
func writeAtomic(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".targets-*")
	if err != nil {
		return fmt.Errorf("targets file: %w", err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("targets file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("targets file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("targets file: %w", err)
	}
	return nil
}
