-- Least-privilege grants of the apps' PostgreSQL roles (global.database.mode
-- cnpg with global.database.roles). The roles (LOGIN, passwords) are
-- CloudNativePG managed roles (the Cluster's spec.managed.roles); this file
-- gives them their rights. The migration Job runs it after "migrate up", as
-- the schema owner (the migrator, CloudNativePG's application owner), in one
-- transaction, on every install and upgrade: every statement is idempotent,
-- and the table grants are reset first, so what is not granted here is not
-- held. A migration that adds a table an app writes must add its grant here
-- (test/k8s/roles_test.go runs the apps' real queries under these roles).

-- The operator creates the roles once the cluster is up: wait for them.
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '5 minutes';
BEGIN
    WHILE (SELECT count(*) FROM pg_roles WHERE rolname IN
            ('telemetry_mqwriter', 'telemetry_mqreader', 'telemetry_collector', 'telemetry_apigw')) < 4 LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the apps'' roles (telemetry_mqwriter, telemetry_mqreader, telemetry_collector, telemetry_apigw) do not exist: are they in the Cluster''s spec.managed.roles?';
        END IF;
        PERFORM pg_sleep(2);
    END LOOP;
END
$$;

-- Nobody but the owner creates objects (PostgreSQL < 15 let PUBLIC).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO telemetry_mqwriter, telemetry_mqreader, telemetry_collector, telemetry_apigw;

-- Start from nothing, so a grant removed from this file is removed.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM telemetry_mqwriter, telemetry_mqreader, telemetry_collector, telemetry_apigw;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM telemetry_mqwriter, telemetry_mqreader, telemetry_collector, telemetry_apigw;

-- mqwriter publishes: inserts queue messages (duplicates skipped).
GRANT SELECT, INSERT ON queue_messages TO telemetry_mqwriter;
GRANT USAGE ON SEQUENCE queue_messages_id_seq TO telemetry_mqwriter;

-- mqreader reads its partitions' messages and deletes the acked ones,
-- records the delivery counts of deliveries that ended without an ack
-- (UPDATE of deliveries/last_error, migration 0003), and the queue's own
-- dead-lettering moves messages at their delivery limit to dead_letters.
GRANT SELECT, UPDATE (deliveries, last_error), DELETE ON queue_messages TO telemetry_mqreader;
GRANT SELECT, INSERT ON dead_letters TO telemetry_mqreader;
GRANT USAGE ON SEQUENCE dead_letters_id_seq TO telemetry_mqreader;

-- collector: nothing here. It stores telemetry and maintains it: it
-- creates tomorrow's day partitions (CREATE TABLE ... PARTITION OF) and
-- drops expired ones, which PostgreSQL allows only to the partitioned
-- tables' owner, so its managed role is a member of the owner role (inRoles
-- in the Cluster) and can change the schema. Narrowing it needs SECURITY
-- DEFINER maintenance functions (a migration).

-- apigw only reads: every table but the migrations' bookkeeping. (Its URL
-- also makes its sessions read-only: default_transaction_read_only=on.)
GRANT SELECT ON ALL TABLES IN SCHEMA public TO telemetry_apigw;
REVOKE SELECT ON schema_migrations FROM telemetry_apigw;
