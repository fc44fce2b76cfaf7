SET LOCAL lock_timeout = '5s';
ALTER TABLE dead_letters
    DROP COLUMN source,
    DROP COLUMN deliveries;
ALTER TABLE queue_messages
    DROP COLUMN last_error,
    DROP COLUMN deliveries;
