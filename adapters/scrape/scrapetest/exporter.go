// Package scrapetest is a fake NVIDIA dcgm-exporter, for the scrape
// adapter's tests and benchmark, the end-to-end tests and the no-GPU demo
// (apps/fake-dcgm-exporter): it serves telemetry points (the shipped CSV's,
// or made up) in the Prometheus text format with dcgm-exporter's label names,
// one exporter per host.
package scrapetest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpufleet/telemetry/domain"
)

// series is one rendered sample line, value apart.
type series struct {
	metric string
	labels string // `{gpu="0",UUID="…",…}`
	value  *float64
}

// Exporter serves one host's points on /metrics, like one dcgm-exporter.
type Exporter struct {
	Hostname string
	series   []series // immutable after NewExporter, grouped by metric
	jitter   float64
	plain    []byte // the body when jitter is 0, rendered once
	gzipped  []byte // plain, gzip-compressed once
	served   atomic.Int64
}

// NewExporter builds an exporter of points (normally one host's). jitter > 0
// multiplies every value by a random factor in [1-jitter, 1+jitter] on every
// scrape; 0 serves the values exactly.
func NewExporter(points []domain.Point, jitter float64) *Exporter {
	e := &Exporter{jitter: jitter}
	if len(points) > 0 {
		e.Hostname = points[0].Hostname
	}
	sorted := slices.Clone(points)
	slices.SortStableFunc(sorted, func(a, b domain.Point) int {
		if c := strings.Compare(a.MetricName, b.MetricName); c != 0 {
			return c
		}
		return a.GPUIndex - b.GPUIndex
	})
	for _, p := range sorted {
		e.series = append(e.series, series{metric: p.MetricName, labels: exporterLabels(p), value: p.Value})
	}
	if jitter == 0 {
		e.plain = e.render()
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write(e.plain)
		_ = zw.Close()
		e.gzipped = b.Bytes()
	}
	return e
}

// Served is the number of scrapes answered.
func (e *Exporter) Served() int64 { return e.served.Load() }

// Series is the number of series one scrape serves.
func (e *Exporter) Series() int { return len(e.series) }

// ServeHTTP answers GET /metrics in the Prometheus text format, gzipped when
// the client accepts it.
func (e *Exporter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	body := e.plain
	if body == nil {
		body = e.render()
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		if e.gzipped != nil {
			body = e.gzipped
		} else {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			_, _ = zw.Write(body)
			_ = zw.Close()
			body = b.Bytes()
		}
	}
	e.served.Add(1)
	_, _ = w.Write(body)
}

// Body is one scrape's uncompressed body (jittered when jitter is set).
func (e *Exporter) Body() []byte {
	if e.plain != nil {
		return e.plain
	}
	return e.render()
}

func (e *Exporter) render() []byte {
	var b bytes.Buffer
	for i, s := range e.series {
		if i == 0 || e.series[i-1].metric != s.metric {
			fmt.Fprintf(&b, "# HELP %s DCGM field %s.\n# TYPE %s gauge\n", s.metric, s.metric, s.metric)
		}
		b.WriteString(s.metric)
		b.WriteString(s.labels)
		b.WriteByte(' ')
		b.WriteString(formatValue(s.value, e.jitter))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func formatValue(v *float64, jitter float64) string {
	if v == nil {
		return "NaN"
	}
	x := *v
	if jitter > 0 {
		x *= 1 + jitter*(2*rand.Float64()-1)
	}
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return "NaN"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// exporterLabels renders a point's labels as dcgm-exporter names and orders
// them: gpu, UUID, pci_bus_id, device, modelName, Hostname, the driver
// version, then container/namespace/pod when set. pci_bus_id, the driver
// version and any other exporter label come from the point's labels_raw;
// the labels Prometheus itself adds (__name__, instance, job) do not.
func exporterLabels(p domain.Point) string {
	raw := ParseLabels(p.LabelsRaw)
	pairs := [][2]string{{"gpu", strconv.Itoa(p.GPUIndex)}, {"UUID", p.GPUUUID}}
	if v, ok := raw["pci_bus_id"]; ok {
		pairs = append(pairs, [2]string{"pci_bus_id", v})
	}
	pairs = append(pairs, [2]string{"device", p.Device}, [2]string{"modelName", p.ModelName}, [2]string{"Hostname", p.Hostname})
	if v, ok := raw["DCGM_FI_DRIVER_VERSION"]; ok {
		pairs = append(pairs, [2]string{"DCGM_FI_DRIVER_VERSION", v})
	}
	for _, kv := range [][2]string{{"container", p.Container}, {"namespace", p.Namespace}, {"pod", p.Pod}} {
		if kv[1] != "" {
			pairs = append(pairs, kv)
		}
	}
	known := map[string]bool{"__name__": true, "instance": true, "job": true, "gpu": true, "UUID": true,
		"pci_bus_id": true, "device": true, "modelName": true, "Hostname": true, "DCGM_FI_DRIVER_VERSION": true,
		"container": true, "namespace": true, "pod": true}
	var extra []string
	for k := range raw {
		if !known[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		pairs = append(pairs, [2]string{k, raw[k]})
	}
	return "{" + domain.FormatLabels(pairs) + "}"
}

// ParseLabels reads labels_raw (name="value" pairs separated by commas, the
// values escaped as in the exposition format). A malformed rest is ignored.
func ParseLabels(raw string) map[string]string {
	out := map[string]string{}
	for raw != "" {
		eq := strings.Index(raw, `="`)
		if eq < 0 {
			break
		}
		name := strings.TrimSpace(raw[:eq])
		rest := raw[eq+2:]
		var val strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				switch rest[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(rest[i])
				}
				continue
			}
			val.WriteByte(rest[i])
		}
		if i >= len(rest) {
			break
		}
		out[name] = val.String()
		raw = strings.TrimPrefix(rest[i+1:], ",")
	}
	return out
}

// Hosts groups points by hostname, hosts in name order, each host's points in
// their original order.
func Hosts(points []domain.Point) [][]domain.Point {
	by := map[string][]domain.Point{}
	var names []string
	for _, p := range points {
		if _, ok := by[p.Hostname]; !ok {
			names = append(names, p.Hostname)
		}
		by[p.Hostname] = append(by[p.Hostname], p)
	}
	slices.Sort(names)
	out := make([][]domain.Point, len(names))
	for i, n := range names {
		out[i] = by[n]
	}
	return out
}

// Fleet is one Exporter per host, each on its own loopback port.
type Fleet struct {
	Exporters []*Exporter
	URLs      []string // the targets, http://127.0.0.1:port/metrics, in Exporters' order
	servers   []*http.Server
	done      chan struct{}
}

// StartFleet serves each host's points (Hosts' groups) on host:basePort+i;
// basePort 0 takes free ports. It fails, serving nothing, when a port is
// taken.
func StartFleet(host string, basePort int, hosts [][]domain.Point, jitter float64) (*Fleet, error) {
	f := &Fleet{done: make(chan struct{})}
	var listeners []net.Listener
	for i, pts := range hosts {
		port := 0
		if basePort > 0 {
			port = basePort + i
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
			return nil, fmt.Errorf("fake exporter %d of %d: %w", i+1, len(hosts), err)
		}
		listeners = append(listeners, l)
		e := NewExporter(pts, jitter)
		f.Exporters = append(f.Exporters, e)
		f.URLs = append(f.URLs, "http://"+l.Addr().String()+"/metrics")
		f.servers = append(f.servers, &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second})
	}
	var wg sync.WaitGroup
	for i, l := range listeners {
		wg.Go(func() {
			// ErrServerClosed after Stop; an earlier failure shows to the
			// scraper as a target down, which is what such a fake is for.
			_ = f.servers[i].Serve(l)
		})
	}
	go func() {
		wg.Wait()
		close(f.done)
	}()
	return f, nil
}

// Stop shuts every exporter down, waiting (bounded by ctx) for scrapes in
// flight.
func (f *Fleet) Stop(ctx context.Context) error {
	var errs []error
	for _, s := range f.servers {
		errs = append(errs, s.Shutdown(ctx))
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
