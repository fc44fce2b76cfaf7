-- The queue's durable FIFO. Rows are inserted by mqwriter (group-committed
-- with COPY) and deleted by mqreader when a lease is acked. Lease state lives
-- only in the reader's memory, never here.
CREATE TABLE queue_messages (
    id            bigserial   PRIMARY KEY,
    topic         text        NOT NULL,
    msg_uuid      uuid        NOT NULL,
    payload       jsonb       NOT NULL,
    partition_key smallint    NOT NULL CHECK (partition_key BETWEEN 0 AND 255),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queue_messages_topic_msg_uuid_key UNIQUE (topic, msg_uuid)
);
-- Readers refill by (topic, partition range) in id order.
CREATE INDEX queue_messages_topic_partition_id_idx ON queue_messages (topic, partition_key, id);

-- Persisted telemetry. uuid is the queue message UUID (the dedup key);
-- gpu_uuid is the GPU's identity.
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
-- Window queries and keyset pagination: WHERE gpu_uuid = $1 AND (timestamp, id) > cursor.
CREATE INDEX telemetry_gpu_uuid_timestamp_id_idx ON telemetry (gpu_uuid, "timestamp", id);

-- The GPU registry, upserted by the store with each batch so listing GPUs
-- never scans telemetry.
CREATE TABLE gpus (
    uuid       text        PRIMARY KEY,
    hostname   text        NOT NULL DEFAULT '',
    gpu_index  integer     NOT NULL,
    device     text        NOT NULL DEFAULT '',
    model_name text        NOT NULL DEFAULT '',
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL
);

-- Messages that can never be processed (poison), kept with the reason.
CREATE TABLE dead_letters (
    id         bigserial   PRIMARY KEY,
    msg_uuid   uuid        NOT NULL,
    topic      text        NOT NULL,
    payload    text        NOT NULL,
    reason     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dead_letters_msg_uuid_key UNIQUE (msg_uuid)
);
