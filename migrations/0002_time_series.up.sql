-- Telemetry as time series (issue 14, ADR 0004): series identity and
-- attributes kept once per distinct attribute set, narrow samples
-- partitioned by day, 1-minute rollups, and a maintenance watermark. The
-- rows of the old wide telemetry table are moved over, then it is dropped.

-- telemetry_attrs_key is a series' attribute-set key: md5 over the
-- length-prefixed attributes, so no value can run into the next one. The
-- store computes the same key in Go (postgres.attrsKey).
CREATE FUNCTION telemetry_attrs_key(hostname text, gpu_index integer, device text, model_name text,
    container text, pod text, namespace text, labels_raw text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT md5(octet_length(hostname) || ':' || hostname || octet_length(gpu_index::text) || ':' || gpu_index::text
        || octet_length(device) || ':' || device || octet_length(model_name) || ':' || model_name
        || octet_length(container) || ':' || container || octet_length(pod) || ':' || pod
        || octet_length(namespace) || ':' || namespace || octet_length(labels_raw) || ':' || labels_raw)::uuid
$$;

-- One row per (GPU, metric, attribute set): a GPU that moves host or gets a
-- new label set starts a new series, and the old row stays as history
-- (first_seen/last_seen say when each set was current).
CREATE TABLE telemetry_series (
    id          integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gpu_uuid    text        NOT NULL,
    metric_name text        NOT NULL,
    attrs_key   uuid        NOT NULL,
    hostname    text        NOT NULL DEFAULT '',
    gpu_index   integer     NOT NULL,
    device      text        NOT NULL DEFAULT '',
    model_name  text        NOT NULL DEFAULT '',
    container   text        NOT NULL DEFAULT '',
    pod         text        NOT NULL DEFAULT '',
    namespace   text        NOT NULL DEFAULT '',
    labels_raw  text        NOT NULL DEFAULT '',
    first_seen  timestamptz NOT NULL,
    -- last_seen is a lower bound of the series' newest sample, kept coarse
    -- (see the store's SeriesResolution) so it is not rewritten per sample.
    last_seen   timestamptz NOT NULL,
    CONSTRAINT telemetry_series_identity_key UNIQUE (gpu_uuid, metric_name, attrs_key)
);
-- Fleet questions go by metric: every GPU's series of one metric.
CREATE INDEX telemetry_series_metric_gpu_idx ON telemetry_series (metric_name, gpu_uuid);

-- Narrow samples. The primary key (series_id, ts) is both the dedup key
-- (a redelivered sample has the same series and timestamp) and the index of
-- every window query; it carries value (INCLUDE) so window, latest and
-- series reads are index-only scans: samples arrive interleaved across
-- series, so a heap fetch would cost one page per sample. Partitioned by
-- day on ts; no default partition: the store creates a missing day on
-- demand (telemetry_ensure_partition).
CREATE TABLE telemetry_samples (
    series_id integer          NOT NULL,
    ts        timestamptz      NOT NULL,
    value     double precision NULL,
    CONSTRAINT telemetry_samples_pkey PRIMARY KEY (series_id, ts) INCLUDE (value)
) PARTITION BY RANGE (ts);
-- The rollup job reads samples by time across all series: a BRIN index on
-- ts (samples arrive roughly in time order) finds a chunk's blocks for a
-- few kilobytes per partition.
CREATE INDEX telemetry_samples_ts_brin ON telemetry_samples USING brin (ts);

-- One row per series per minute of non-null values (count may be 0 when
-- the minute held only nulls; then min/max/sum/last are NULL). last is the
-- value of the newest non-null sample of the minute.
CREATE TABLE telemetry_rollups_1m (
    series_id integer          NOT NULL,
    bucket    timestamptz      NOT NULL,
    count     integer          NOT NULL,
    min       double precision NULL,
    max       double precision NULL,
    sum       double precision NULL,
    last      double precision NULL,
    CONSTRAINT telemetry_rollups_1m_pkey PRIMARY KEY (series_id, bucket)
) PARTITION BY RANGE (bucket);

-- The maintenance job's state: rollups are complete for every minute
-- before rolled_up_to (NULL: nothing rolled up yet).
CREATE TABLE telemetry_maintenance (
    id           boolean     PRIMARY KEY DEFAULT true CHECK (id),
    rolled_up_to timestamptz NULL
);
INSERT INTO telemetry_maintenance (id) VALUES (true);

-- telemetry_ensure_partition creates the day partition of parent holding
-- instant at (UTC days, named parent_YYYYMMDD) unless it exists, and
-- returns whether it created it. An advisory transaction lock serialises
-- concurrent creators; the loser sees duplicate_table and returns false. CREATE TABLE … PARTITION OF locks the parent
-- briefly (ACCESS EXCLUSIVE): the maintenance job creates days ahead so
-- writers rarely pay it.
CREATE FUNCTION telemetry_ensure_partition(parent text, at timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    day  timestamp := date_trunc('day', at AT TIME ZONE 'UTC');
    name text      := parent || '_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(name));
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', name, parent,
        (day AT TIME ZONE 'UTC'), ((day + interval '1 day') AT TIME ZONE 'UTC'));
    RETURN true;
EXCEPTION WHEN duplicate_table THEN
    -- A concurrent creator won (the catalog snapshot of this statement may
    -- predate its commit, so the check above cannot see it).
    RETURN false;
END
$$;

-- Move today's rows: one series per distinct attribute set (first and
-- last sample as first_seen/last_seen), then the samples. Rows of the old
-- table that share (series, timestamp) under different message UUIDs
-- collapse into the first one: that is the new dedup key.
INSERT INTO telemetry_series (gpu_uuid, metric_name, attrs_key, hostname, gpu_index, device, model_name,
    container, pod, namespace, labels_raw, first_seen, last_seen)
SELECT gpu_uuid, metric_name,
    telemetry_attrs_key(hostname, gpu_index, device, model_name, container, pod, namespace, labels_raw),
    hostname, gpu_index, device, model_name, container, pod, namespace, labels_raw,
    min("timestamp"), max("timestamp")
FROM telemetry
GROUP BY gpu_uuid, metric_name, hostname, gpu_index, device, model_name, container, pod, namespace, labels_raw
ORDER BY min("timestamp");

SELECT telemetry_ensure_partition('telemetry_samples', d)
FROM (SELECT DISTINCT date_trunc('day', "timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS d FROM telemetry) days;

INSERT INTO telemetry_samples (series_id, ts, value)
SELECT s.id, t."timestamp", t.value
FROM telemetry t
JOIN telemetry_series s ON s.gpu_uuid = t.gpu_uuid AND s.metric_name = t.metric_name
    AND s.attrs_key = telemetry_attrs_key(t.hostname, t.gpu_index, t.device, t.model_name, t.container, t.pod,
        t.namespace, t.labels_raw)
ORDER BY t.id
ON CONFLICT DO NOTHING;

DROP TABLE telemetry;
