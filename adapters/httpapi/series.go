package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// Defaults and bounds of the time-series endpoints.
const (
	// DefaultGPUPage is large enough for a whole typical fleet (247 GPUs
	// come in one answer).
	DefaultGPUPage = 1000
	// MaxGPUPage is the largest GPU page a client may ask for.
	MaxGPUPage = 10000
	// defaultSeriesWindow is the series window when start_time is absent.
	defaultSeriesWindow = time.Hour
	// defaultTop and maxTop bound a fleet summary's top list.
	defaultTop, maxTop = 5, 100
)

var (
	gpuParams    = []string{"hostname", "model_name", "limit", "cursor"}
	seriesParams = []string{"metric_name", "start_time", "end_time", "step"}
	fleetParams  = []string{"metric_name", "top"}
)

// gpuCursorJSON is a GPU page cursor: the keyset position and a fingerprint
// of the filters it belongs to, base64url-encoded like the telemetry cursor.
type gpuCursorJSON struct {
	V int    `json:"v"`
	H string `json:"h"`
	I int    `json:"i"`
	U string `json:"u"`
	F string `json:"f"`
}

func gpuFilterKey(q ports.GPUQuery) string {
	h := sha256.Sum256([]byte(strconv.Itoa(len(q.Hostname)) + ":" + q.Hostname + q.ModelName))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

func encodeGPUCursor(q ports.GPUQuery, c ports.GPUCursor) string {
	b, _ := json.Marshal(gpuCursorJSON{V: 1, H: c.Hostname, I: c.GPUIndex, U: c.UUID, F: gpuFilterKey(q)}) // strings and ints always marshal
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeGPUCursor(q ports.GPUQuery, s string) (ports.GPUCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if len(s) > maxCursorLen || err != nil {
		return ports.GPUCursor{}, badRequest("cursor: not a cursor issued by this API; pass next_cursor from a previous page unchanged")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c gpuCursorJSON
	if err := dec.Decode(&c); err != nil || c.V != 1 || c.U == "" {
		return ports.GPUCursor{}, badRequest("cursor: not a cursor issued by this API; pass next_cursor from a previous page unchanged")
	}
	if c.F != gpuFilterKey(q) {
		return ports.GPUCursor{}, badRequest("cursor does not match this query: a cursor only continues the filters (hostname, model_name) that returned it")
	}
	return ports.GPUCursor{Hostname: c.H, GPUIndex: c.I, UUID: c.U}, nil
}

// listGPUs godoc
//
//	@Summary		List GPUs
//	@Description	GPUs that have reported telemetry, from the GPU registry (it never scans samples), ordered by hostname,
//	@Description	then GPU index, then UUID. A GPU's id is its UUID; gpu_index is its index on its host. hostname and
//	@Description	model_name keep only exact matches. Pages hold up to limit GPUs (default 1000, a whole typical fleet);
//	@Description	when more may follow the answer has next_cursor: repeat with cursor=next_cursor and the same filters.
//	@Tags			gpus
//	@Produce		json
//	@Param			hostname		query		string			false	"Only GPUs of this host"		example(mtv5-dgx1-hgpu-031)	maxlength(253)
//	@Param			model_name		query		string			false	"Only GPUs of this model"	example(NVIDIA H100 80GB HBM3)	maxlength(256)
//	@Param			limit			query		int				false	"Page size"					default(1000)	minimum(1)	maximum(10000)
//	@Param			cursor			query		string			false	"next_cursor of the previous page, unchanged"
//	@Param			X-Request-Id	header		string			false	"Request id to echo (a sane token); one is generated otherwise"
//	@Success		200				{object}	GPUList			"A page of the GPU registry; gpus is [] when empty"
//	@Failure		400				{object}	ErrorResponse	"Bad limit or cursor, a filter over its length bound or holding a NUL or invalid UTF-8, unknown parameter"
//	@Failure		405				{object}	ErrorResponse	"Method not allowed (see the Allow header)"
//	@Failure		500				{object}	ErrorResponse	"Internal error (details are logged, never returned)"
//	@Failure		503				{object}	ErrorResponse	"The telemetry store is unavailable"
//	@Failure		504				{object}	ErrorResponse	"The store did not answer in time"
//	@Header			all				{string}	X-Request-Id	"The request id, echoed or generated"
//	@Router			/api/v1/gpus [get]
func (s *Server) listGPUs(w http.ResponseWriter, r *http.Request) {
	vals, err := queryParams(r, gpuParams)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var q ports.GPUQuery
	if q.Hostname, err = parseFilter(vals, "hostname", domain.MaxHostnameBytes); err != nil {
		s.writeError(w, r, err)
		return
	}
	if q.ModelName, err = parseFilter(vals, "model_name", domain.MaxModelNameBytes); err != nil {
		s.writeError(w, r, err)
		return
	}
	if q.Limit, err = parseLimit(vals, DefaultGPUPage, MaxGPUPage); err != nil {
		s.writeError(w, r, err)
		return
	}
	if vals.Has("cursor") {
		c, err := decodeGPUCursor(q, vals.Get("cursor"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		q.After = &c
	}
	page, err := s.reader.QueryGPUs(r.Context(), q)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list gpus: %w", err))
		return
	}
	body := GPUList{GPUs: make([]GPU, 0, len(page.GPUs))}
	for _, g := range page.GPUs {
		body.GPUs = append(body.GPUs, gpuOf(g))
	}
	if page.Next != nil {
		body.NextCursor = encodeGPUCursor(q, *page.Next)
	}
	s.writeJSON(w, r, http.StatusOK, body)
}

// listMetrics godoc
//
//	@Summary		List metric names
//	@Description	Every metric name the store has seen, with how many GPUs reported it, and the unit and description of
//	@Description	the DCGM fields we know (empty for others: newer exporters add fields, and they are served all the same).
//	@Tags			metrics
//	@Produce		json
//	@Success		200	{object}	MetricList		"Metric names by name"
//	@Failure		503	{object}	ErrorResponse	"The telemetry store is unavailable"
//	@Failure		504	{object}	ErrorResponse	"The store did not answer in time"
//	@Router			/api/v1/metrics [get]
func (s *Server) listMetrics(w http.ResponseWriter, r *http.Request) {
	if _, err := queryParams(r, nil); err != nil {
		s.writeError(w, r, err)
		return
	}
	metrics, err := s.reader.ListMetrics(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list metrics: %w", err))
		return
	}
	body := MetricList{Metrics: make([]MetricInfo, 0, len(metrics))}
	for _, m := range metrics {
		f, _ := domain.DCGMField(m.Name)
		body.Metrics = append(body.Metrics, MetricInfo{Name: m.Name, GPUs: m.GPUs, Unit: f.Unit, Description: f.Description})
	}
	s.writeJSON(w, r, http.StatusOK, body)
}

// getLatest godoc
//
//	@Summary		A GPU's latest values
//	@Description	The newest stored sample of each metric of one GPU (value null when that sample was blank).
//	@Tags			telemetry
//	@Produce		json
//	@Param			id	path		string			true	"GPU UUID"	example(GPU-5fd4f087-86f3-7a43-b711-4771313afc50)
//	@Success		200	{object}	LatestValues	"One entry per metric, by name"
//	@Failure		400	{object}	ErrorResponse	"Bad GPU id, unknown parameter"
//	@Failure		404	{object}	ErrorResponse	"Unknown GPU"
//	@Failure		503	{object}	ErrorResponse	"The telemetry store is unavailable"
//	@Failure		504	{object}	ErrorResponse	"The store did not answer in time"
//	@Router			/api/v1/gpus/{id}/latest [get]
func (s *Server) getLatest(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if err := checkGPUID(id); err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := queryParams(r, nil); err != nil {
		s.writeError(w, r, err)
		return
	}
	values, err := s.reader.LatestValues(r.Context(), id)
	if err != nil {
		s.writeError(w, r, gpuError(id, err))
		return
	}
	body := LatestValues{GPUID: id, Metrics: make([]LatestEntry, 0, len(values))}
	for _, v := range values {
		body.Metrics = append(body.Metrics, LatestEntry{MetricName: v.MetricName, Timestamp: v.Timestamp.UTC(), Value: finite(v.Value), Unit: unitOf(v.MetricName)})
	}
	s.writeJSON(w, r, http.StatusOK, body)
}

// parseStep reads step as a Go duration (30s, 1m, 1h) or a number of seconds.
func parseStep(vals map[string][]string) (time.Duration, error) {
	raw := ""
	if vs := vals["step"]; len(vs) > 0 {
		raw = vs[0]
	}
	if raw == "" {
		return time.Minute, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		secs, nerr := strconv.ParseFloat(raw, 64)
		if nerr != nil {
			return 0, badRequest("step: %q is not a duration (want e.g. 30s, 1m, 5m, 1h, or seconds)", clip(raw))
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < time.Second {
		return 0, badRequest("step: %q is below 1s", clip(raw))
	}
	return d, nil
}

// getSeries godoc
//
//	@Summary		A GPU's metric bucketed over time
//	@Description	One metric of one GPU in buckets of step over [start_time, end_time] (both inclusive): bucket k starts at
//	@Description	start_time + k·step; every bucket is returned, empty ones with count 0 and null values. Each bucket has
//	@Description	min, max, avg, count and last of the non-null samples. When step is a whole number of minutes and
//	@Description	start_time is on a minute, buckets come from the 1-minute rollups (source=rollup; they outlive raw
//	@Description	samples, so long windows work after raw retention; buckets then cover whole minutes, the minute holding
//	@Description	end_time included); otherwise from raw samples (source=raw). At most 10,000 buckets (400 beyond).
//	@Description	end_time defaults to now, start_time to one hour before end_time, step to 1m.
//	@Tags			telemetry
//	@Produce		json
//	@Param			id			path		string			true	"GPU UUID"													example(GPU-5fd4f087-86f3-7a43-b711-4771313afc50)
//	@Param			metric_name	query		string			true	"Metric name"												example(DCGM_FI_DEV_GPU_TEMP)
//	@Param			start_time	query		string			false	"Inclusive lower bound, RFC 3339"							format(date-time)	example(2025-07-18T20:00:00Z)
//	@Param			end_time	query		string			false	"Inclusive upper bound, RFC 3339"							format(date-time)	example(2025-07-18T21:00:00Z)
//	@Param			step		query		string			false	"Bucket width: a Go duration (30s, 1m, 1h) or seconds, >= 1s"	default(1m)			example(5m)
//	@Success		200			{object}	Series			"The buckets, in time order"
//	@Failure		400			{object}	ErrorResponse	"Bad time, inverted window, bad step, more than 10,000 buckets, missing metric_name, unknown parameter"
//	@Failure		404			{object}	ErrorResponse	"Unknown GPU"
//	@Failure		503			{object}	ErrorResponse	"The telemetry store is unavailable"
//	@Failure		504			{object}	ErrorResponse	"The store did not answer in time"
//	@Router			/api/v1/gpus/{id}/series [get]
func (s *Server) getSeries(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	q, err := parseSeries(r, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	series, err := s.reader.QuerySeries(r.Context(), q)
	if err != nil {
		s.writeError(w, r, gpuError(id, err))
		return
	}
	body := Series{GPUID: id, MetricName: q.MetricName, StartTime: q.Start, EndTime: q.End, StepSeconds: q.Step.Seconds(),
		Source: series.Source, Unit: unitOf(q.MetricName), Buckets: make([]SeriesBucket, 0, len(series.Buckets))}
	for _, b := range series.Buckets {
		body.Buckets = append(body.Buckets, bucketOf(b))
	}
	s.writeJSON(w, r, http.StatusOK, body)
}

func parseSeries(r *http.Request, id string) (ports.SeriesQuery, error) {
	q := ports.SeriesQuery{GPUUUID: id}
	if err := checkGPUID(id); err != nil {
		return q, err
	}
	vals, err := queryParams(r, seriesParams)
	if err != nil {
		return q, err
	}
	if q.MetricName, err = parseMetricName(vals, true); err != nil {
		return q, err
	}
	if q.Start, err = parseTime(vals, "start_time"); err != nil {
		return q, err
	}
	if q.End, err = parseTime(vals, "end_time"); err != nil {
		return q, err
	}
	if q.Step, err = parseStep(vals); err != nil {
		return q, err
	}
	if q.End.IsZero() {
		q.End = time.Now().UTC().Truncate(time.Microsecond)
	}
	if q.Start.IsZero() {
		q.Start = q.End.Add(-defaultSeriesWindow).Truncate(time.Minute)
	}
	if q.End.Before(q.Start) {
		return q, badRequest("end_time (%s) is before start_time (%s)", q.End.Format(time.RFC3339Nano), q.Start.Format(time.RFC3339Nano))
	}
	if n := domain.BucketCount(q.Start, q.End, q.Step); n > ports.MaxSeriesBuckets {
		return q, badRequest("%d buckets of %s in the window, want at most %d: widen step or narrow the window", n, q.Step, ports.MaxSeriesBuckets)
	}
	return q, nil
}

// fleetSummary godoc
//
//	@Summary		One metric across the fleet
//	@Description	Count, min, avg, p50, p95 (linear interpolation between closest ranks) and max of every GPU's latest
//	@Description	value of one metric, and the top GPUs by that value (hottest, busiest). GPUs whose latest sample is blank
//	@Description	are left out. The statistics are null when no GPU has a value.
//	@Tags			fleet
//	@Produce		json
//	@Param			metric_name	query		string			true	"Metric name"					example(DCGM_FI_DEV_GPU_TEMP)
//	@Param			top			query		int				false	"How many top GPUs to list"	default(5)	minimum(0)	maximum(100)
//	@Success		200			{object}	FleetSummary	"The summary"
//	@Failure		400			{object}	ErrorResponse	"Missing or bad metric_name, bad top, unknown parameter"
//	@Failure		503			{object}	ErrorResponse	"The telemetry store is unavailable"
//	@Failure		504			{object}	ErrorResponse	"The store did not answer in time"
//	@Router			/api/v1/fleet/summary [get]
func (s *Server) fleetSummary(w http.ResponseWriter, r *http.Request) {
	vals, err := queryParams(r, fleetParams)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	metric, err := parseMetricName(vals, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	top := defaultTop
	if vals.Has("top") {
		n, err := strconv.Atoi(vals.Get("top"))
		if err != nil || n < 0 || n > maxTop {
			s.writeError(w, r, badRequest("top: %q is not an integer from 0 to %d", clip(vals.Get("top")), maxTop))
			return
		}
		top = n
	}
	sum, err := s.reader.FleetSummary(r.Context(), metric, top)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("fleet summary: %w", err))
		return
	}
	s.writeJSON(w, r, http.StatusOK, fleetOf(sum))
}
