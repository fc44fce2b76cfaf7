-- Back to the wide telemetry table of 0001. Every raw sample still kept
-- comes back as one row with its series' attributes; the queue message
-- UUIDs were not kept by 0002, so each row gets a fresh one (they only
-- deduplicate redeliveries, and anything redelivered after a downgrade is
-- a new message). Rollups cannot be turned back into samples and are
-- dropped with the other new tables.
CREATE TABLE telemetry (
    id          bigserial        PRIMARY KEY,
    uuid        uuid             NOT NULL,
    gpu_uuid    text             NOT NULL,
    gpu_index   integer          NOT NULL,
    device      text             NOT NULL DEFAULT '',
    hostname    text             NOT NULL DEFAULT '',
    model_name  text             NOT NULL DEFAULT '',
    metric_name text             NOT NULL,
    "timestamp" timestamptz      NOT NULL,
    container   text             NOT NULL DEFAULT '',
    pod         text             NOT NULL DEFAULT '',
    namespace   text             NOT NULL DEFAULT '',
    value       double precision NULL,
    labels_raw  text             NOT NULL DEFAULT '',
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT telemetry_uuid_key UNIQUE (uuid)
);

INSERT INTO telemetry (uuid, gpu_uuid, gpu_index, device, hostname, model_name, metric_name, "timestamp",
    container, pod, namespace, value, labels_raw)
SELECT gen_random_uuid(), s.gpu_uuid, s.gpu_index, s.device, s.hostname, s.model_name, s.metric_name, x.ts,
    s.container, s.pod, s.namespace, x.value, s.labels_raw
FROM telemetry_samples x
JOIN telemetry_series s ON s.id = x.series_id
ORDER BY x.ts, x.series_id;

CREATE INDEX telemetry_gpu_uuid_timestamp_id_idx ON telemetry (gpu_uuid, "timestamp", id);

DROP TABLE telemetry_samples;
DROP TABLE telemetry_rollups_1m;
DROP TABLE telemetry_series;
DROP TABLE telemetry_maintenance;
DROP FUNCTION telemetry_ensure_partition(text, timestamptz);
DROP FUNCTION telemetry_attrs_key(text, integer, text, text, text, text, text, text);
