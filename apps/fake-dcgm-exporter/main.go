// Command fake-dcgm-exporter serves a DCGM CSV dump (the shipped one by
// default) as one NVIDIA dcgm-exporter per host on consecutive loopback
// ports: 31 hosts on 127.0.0.1:9400..9430 for the shipped dump, each
// answering GET /metrics in the Prometheus text format with dcgm-exporter's
// label names and the CSV's values. It is the no-GPU demo and test double
// for STREAMER_SOURCE=scrape: `make run STREAMER_SOURCE=scrape` starts it.
//
// Environment (see .env.example): FAKE_DCGM_CSV_PATH, FAKE_DCGM_HOST,
// FAKE_DCGM_BASE_PORT (0: free ports), FAKE_DCGM_HOSTS, FAKE_DCGM_JITTER,
// FAKE_DCGM_TARGETS_FILE (the target URLs, one per line, for
// SCRAPE_TARGETS_FILE), HTTP_ADDR (health and metrics, default :9399),
// LOG_LEVEL.
package main

import (
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/apps/internal/fakeexporter"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	return fx.Options(
		platform.Module(platform.LoadCommon(env, "fake-dcgm-exporter", ":9399")),
		fakeexporter.Module(fakeexporter.Load(env, csv.DefaultPath)),
	)
}
