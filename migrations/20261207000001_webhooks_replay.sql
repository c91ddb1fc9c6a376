-- Webhooks: where an import's end is announced, and the deliveries owed (an outbox).
-- notify_url is fixed when the import is created: the import's own allowlisted `notify=`, or
-- the operator's CSVBUS_WEBHOOK_URL; NULL when neither (no delivery is owed).
ALTER TABLE csvbus.imports ADD COLUMN notify_url text;
-- A replay's original import (POST /v1/imports/{id}/replay).
ALTER TABLE csvbus.imports ADD COLUMN replay_of uuid REFERENCES csvbus.imports (id) ON DELETE SET NULL;

-- The offsets of each import's messages per partition, moved by the sink in the batch's
-- transaction with max_line: where a replay reads the import back from the topic.
ALTER TABLE csvbus.import_partitions
    ADD COLUMN first_offset bigint,
    ADD COLUMN last_offset bigint;

-- One delivery per import and final status, owed from the transaction that made the status
-- final (the trigger below) until a sender records it delivered or given up, in the
-- transaction that claimed it (FOR UPDATE SKIP LOCKED): one sender at a time, whatever the
-- number of replicas, and nothing forgotten across restarts.
CREATE TABLE csvbus.deliveries (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    import_id       uuid        NOT NULL REFERENCES csvbus.imports (id) ON DELETE CASCADE,
    -- The final status announced: completed, failed or aborted.
    event           text        NOT NULL CHECK (event IN ('completed', 'failed', 'aborted')),
    url             text        NOT NULL,
    -- pending: owed (next try at next_attempt_at); delivered: the receiver answered 2xx;
    -- failed: the retry window passed without a 2xx.
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    last_status     integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (import_id, event)
);
CREATE INDEX deliveries_due ON csvbus.deliveries (next_attempt_at) WHERE state = 'pending';

-- An import's end is final when its status is completed, or failed/aborted and the sink has
-- handled every row produced before (staged modes: at once, staged rows are never moved).
-- The same rule as ImportRecord::is_final. Whichever transition makes it so owes the delivery
-- in its own transaction; a row lock on the import orders concurrent transitions, so the last
-- one sees the others' counters.
CREATE FUNCTION csvbus.owe_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'completed'
       OR NEW.mode IN ('atomic', 'replace')
       OR NEW.rows_written + NEW.rows_write_rejected + NEW.rows_skipped + NEW.rows_set_aside
          >= NEW.rows_produced THEN
        INSERT INTO csvbus.deliveries (import_id, event, url)
        VALUES (NEW.id, NEW.status, NEW.notify_url)
        ON CONFLICT (import_id, event) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER imports_owe_delivery AFTER UPDATE ON csvbus.imports FOR EACH ROW
    WHEN (NEW.notify_url IS NOT NULL AND NEW.status IN ('completed', 'failed', 'aborted'))
    EXECUTE FUNCTION csvbus.owe_delivery();
