-- The delivery limit (issue 13). Every ADD COLUMN here is catalog-only on
-- PostgreSQL 11+: a constant default is stored in the catalog, not written
-- into each row, so no table is rewritten. The ACCESS EXCLUSIVE lock is held
-- for milliseconds; lock_timeout makes the migration fail (and be retried
-- by the next start) rather than queue every writer behind a long
-- transaction while it waits for that lock.
SET LOCAL lock_timeout = '5s';

-- How often the queue handed a message out without an ack, and the last
-- failure a consumer gave on release. Written only when a delivery ends
-- without an ack (release or lease expiry), never on the lease/ack path,
-- so a reader that restarts keeps counting where the last one stopped.
ALTER TABLE queue_messages
    ADD COLUMN deliveries integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text;

-- Who set a message aside ('queue' at the delivery limit, 'collector' for a
-- message it cannot parse or whose data the store refuses) and how often it
-- had been delivered. Every dead letter before this migration came from the
-- collector.
ALTER TABLE dead_letters
    ADD COLUMN deliveries integer NOT NULL DEFAULT 0,
    ADD COLUMN source text NOT NULL DEFAULT 'collector';
